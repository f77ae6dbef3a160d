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
