"""Shared by the Linux PVH tests and bench/linux_pvh_boot.py: Debian's
kernel + the project's initramfs booted as a PVH domU on a private xen-core
(the software CPU), its console streamed into memory."""
from __future__ import annotations

import json
import os
import re
import threading
import time

from dom0.privcmd import Privcmd
from toolstack.boot import PrivateCore, create_pvh_domain, run_console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ASSETS_JSON = os.path.join(ROOT, "guests", "build", "linux", "assets.json")
# Without hvc0 (no console ring here) the kernel log reaches console_io
# through the boot console; /init copies its marker into that log.
CMDLINE = "earlyprintk=xen keep_bootcon"
MEMORY_MIB = 256


LINUX_CFG = os.path.join(ROOT, "examples", "linux-pvh.cfg")


def xl_create_linux(d, *args: str) -> None:
    """`xl create examples/linux-pvh.cfg *args` in dom0 `d` (a
    tests.dom0.conftest.Dom0); the test skips when the core refuses the
    kernel for its accelerator (vmcall needs the software CPU)."""
    import pytest
    r = d.xl("create", LINUX_CFG, *args, check=False)
    if r.returncode != 0 and "accel emu" in r.stderr:
        pytest.skip(r.stderr.strip())
    assert r.returncode == 0, r.stderr


def linux_assets() -> dict | None:
    try:
        with open(ASSETS_JSON) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if all(os.path.isfile(meta.get(k, "")) for k in ("kernel", "ramdisk")):
        return meta
    return None


class ConsoleSink:
    """A file-like `out` for run_console that others can wait on."""

    def __init__(self):
        self.data = bytearray()
        self.cond = threading.Condition()

    def write(self, b: bytes) -> None:
        with self.cond:
            self.data += b
            self.cond.notify_all()

    def flush(self) -> None:
        pass

    def wait_for(self, pattern: bytes, timeout: float, done=lambda: False):
        """The first match of `pattern` (a regex), or None on timeout or
        once `done()` holds (the console loop ended)."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                m = rx.search(self.data)
                if m or done():
                    return m
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.cond.wait(min(left, 0.5))


class LinuxPvh:
    """One Linux PVH domU on its own core: `start()`, then `sink` fills."""

    def __init__(self, assets: dict, cmdline: str = CMDLINE, memory_mib: int = MEMORY_MIB,
                 accel: str = "emu"):
        self.assets = assets
        self.cmdline = cmdline
        self.memory_mib = memory_mib
        self.core = PrivateCore(accel)
        self.pc = Privcmd(self.core.run_dir)
        self.events = Privcmd(self.core.run_dir)
        self.sink = ConsoleSink()
        self.domid = None
        self.result = None
        self.t_create = None
        self._thread = None

    def start(self) -> "LinuxPvh":
        self.t_create = time.perf_counter()
        self.domid = create_pvh_domain(self.pc, self.assets["kernel"], self.memory_mib << 20,
                                       self.cmdline, self.assets["ramdisk"])
        self._thread = threading.Thread(target=self._console, daemon=True)
        self._thread.start()
        return self

    def _console(self):
        try:
            self.result = run_console(self.pc, self.events, self.domid, self.sink)
        except Exception as e:  # reported through `result`
            self.result = e
        with self.sink.cond:
            self.sink.cond.notify_all()

    @property
    def ended(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def wait_for(self, pattern: bytes, timeout: float):
        return self.sink.wait_for(pattern, timeout, lambda: self.ended)

    def close(self) -> None:
        try:
            if self.domid is not None:
                try:
                    self.pc.domain_destroy(self.domid)
                except Exception:
                    pass
            if self._thread is not None:
                self._thread.join(30)
        finally:
            self.core.close()


# ---- guests created by `xl create` (tests.dom0.conftest.Dom0) ---------------

def xs_read(d, path: str) -> bytes | None:
    """One xenstore read through d's xenstored (None if the node is absent)."""
    import pyxs
    with pyxs.Client(unix_socket_path=d.env["XENSTORED_PATH"]) as c:
        try:
            return c.read(path.encode())
        except pyxs.PyXSError:
            return None


def xs_list(d, path: str) -> list[str] | None:
    """The children of a xenstore node (None if it is absent)."""
    import pyxs
    with pyxs.Client(unix_socket_path=d.env["XENSTORED_PATH"]) as c:
        try:
            return sorted(k.decode() for k in c.list(path.encode()))
        except pyxs.PyXSError:
            return None


def console_shell(d, name: str, command: str, timeout: float, wait: bool = True,
                  idle=None) -> str:
    """Run `command` in domain `name`'s /init shell through its console pty
    (what `xl console` attaches to); its output up to a computed end marker
    (the marker is computed by the shell so its echo of the command line
    does not match). `idle()`, if given, runs after each quiet second (a
    check that may fail the wait early)."""
    import select
    import tty
    domid = d.domains()[name][0]
    pty = xs_read(d, f"/local/domain/{domid}/console/tty")
    assert pty, f"no console tty for {name}"
    fd = os.open(pty.decode(), os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        if not wait:
            os.write(fd, f"{command}\r".encode())
            return ""
        os.write(fd, f"{command}; echo END-$((40+2))-MARK\r".encode())
        out = b""
        deadline = time.monotonic() + timeout
        while b"END-42-MARK" not in out and time.monotonic() < deadline:
            if select.select([fd], [], [], 1)[0]:
                out += os.read(fd, 65536)
            elif idle is not None:
                idle()
    finally:
        os.close(fd)
    assert b"END-42-MARK" in out, out[-1000:]
    return out.decode(errors="replace").split("END-42-MARK")[0]


def make_disk(path, head: bytes, size: int) -> str:
    """A raw image whose first line is `head` (what /init's PYXEN-DISK-HEAD
    reports), sparse to `size` bytes."""
    with open(path, "wb") as f:
        f.write(head + b"\n")
        f.truncate(size)
    return str(path)
