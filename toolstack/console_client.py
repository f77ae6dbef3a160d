"""`xl console`'s client (Xen's xenconsole): open the pty xenconsoled
published in `console/tty`, relay it to the terminal in raw mode; Ctrl-]
detaches. Ends when the console goes away (the domain was released).
"""
from __future__ import annotations

import errno
import os
import select
import sys
import termios
import time
import tty

ESCAPE = 0x1D          # Ctrl-]


class ConsoleError(Exception):
    pass


def wait_tty(xs, path: str, alive, timeout: float = 30.0) -> str:
    """The pty path xenconsoled writes at `path` (empty until it attached)."""
    deadline = time.monotonic() + timeout
    while True:
        tty_path = xs.read(path)
        if tty_path:
            return tty_path
        if not alive():
            raise ConsoleError("the domain went away before its console appeared")
        if time.monotonic() > deadline:
            raise ConsoleError(f"no console: {path} stayed empty (is xenconsoled running?)")
        time.sleep(0.01)


def open_tty(tty_path: str) -> int:
    fd = os.open(tty_path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)      # xenconsoled set it raw; make sure of it
    except termios.error:
        pass
    return fd


def relay(fd: int, stdin=None, stdout=None, on_idle=None) -> None:
    """Copy console -> stdout and stdin -> console until EOF/EIO on the
    console or Ctrl-] on stdin. `on_idle()` returning False ends it too."""
    stdin = sys.stdin.fileno() if stdin is None else stdin
    stdout = sys.stdout.fileno() if stdout is None else stdout
    saved = None
    if os.isatty(stdin):
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    fds = [fd, stdin]
    try:
        while True:
            ready, _, _ = select.select(fds, [], [], 0.2)
            if not ready and on_idle is not None and not on_idle():
                # Drain what is left, then stop.
                _drain(fd, stdout)
                return
            if fd in ready:
                try:
                    data = os.read(fd, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:
                        return
                    raise
                if not data:
                    return
                _write_all(stdout, data)
            if stdin in ready:
                data = os.read(stdin, 4096)
                if not data:
                    fds = [fd]              # stdin closed: keep showing output
                    continue
                if ESCAPE in data:
                    data = data[:data.index(ESCAPE)]
                    if data:
                        _write_all(fd, data)
                    return
                _write_all(fd, data)
    finally:
        if saved is not None:
            termios.tcsetattr(stdin, termios.TCSADRAIN, saved)


def _drain(fd: int, stdout: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        try:
            data = os.read(fd, 65536)
        except OSError:
            return
        if not data:
            return
        _write_all(stdout, data)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        n = os.write(fd, data)
        data = data[n:]
