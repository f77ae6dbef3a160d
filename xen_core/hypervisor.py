"""The hypervisor: every domain, the engine, the timer thread and the events
dom0 subscribes to (VIRQ_DOM_EXC, console output)."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from .abi import xen as xenabi
from .abi.layout import LOWMEM_LIMIT, PAGE_SHIFT
from .domain import Domain, XenError
from .time import time_scale, tsc_hz
from .timers import TimerService

log = logging.getLogger(__name__)

MAX_VCPUS = 128
DMESG_LIMIT = 64 << 10   # bytes of hypervisor log kept (Xen's conring is 16 KiB+)


class Hypervisor:
    def __init__(self, accel):
        self.accel = accel
        self.lock = threading.Lock()
        self.domains: dict[int, Domain] = {}
        self.timers = TimerService()
        self.tsc_hz = tsc_hz()
        self.time_scale = time_scale(self.tsc_hz)
        self._next_domid = 1
        self._subscribers: list[Callable[[dict], None]] = []
        self._console_subscribers: dict[int, list[Callable[[int, bytes], None]]] = {}
        self.virq_hook = None     # event channels install their VIRQ delivery here
        self.upcall_hook = None   # ... and the callback-vector injection here
        self.add_to_physmap_hook = None   # grant tables: (cur, d, space, idx, gpfn) -> rc
        self.dmesg = bytearray()   # the hypervisor's console ring (`xl dmesg`)
        self.printk(b"pyxen hypervisor, Xen 4.17 ABI, accel %s\n" % accel.name.encode())
        self.domains[0] = Domain(self, 0, privileged=True)
        self.domains[0].pause_count = 0

    # -- domains -------------------------------------------------------------
    def _alloc_domid(self, wanted: int | None) -> int:
        if wanted:
            if not 0 < wanted < xenabi.DOMID_FIRST_RESERVED:
                raise XenError(xenabi.EINVAL, f"domid {wanted} out of range")
            if wanted in self.domains:
                raise XenError(xenabi.EEXIST, f"domid {wanted} in use")
            return wanted
        # Xen hands out ids round-robin, skipping ones in use.
        for _ in range(xenabi.DOMID_FIRST_RESERVED):
            domid = self._next_domid
            self._next_domid = domid + 1 if domid + 1 < xenabi.DOMID_FIRST_RESERVED else 1
            if domid not in self.domains:
                return domid
        raise XenError(xenabi.ENOSPC, "no free domid")

    def create_domain(self, *, max_vcpus: int = 1, max_memory: int = 0, hvm: bool = False,
                      domid: int | None = None, handle: bytes | None = None) -> Domain:
        if not 1 <= max_vcpus <= MAX_VCPUS:
            raise XenError(xenabi.EINVAL, f"max_vcpus {max_vcpus} not in 1..{MAX_VCPUS}")
        if not 0 <= max_memory <= LOWMEM_LIMIT:
            raise XenError(xenabi.ENOMEM, f"max_memory {max_memory} over {LOWMEM_LIMIT:#x}")
        with self.lock:
            domid = self._alloc_domid(domid)
            self.domains[domid] = None   # reserved while building
        try:
            d = Domain(self, domid, hvm=hvm, max_vcpus=max_vcpus,
                       max_pages=(max_memory + 4095) >> PAGE_SHIFT)
        except BaseException:
            with self.lock:
                del self.domains[domid]
            raise
        if handle:
            d.handle = bytes(handle[:16]).ljust(16, b"\0")
        with self.lock:
            self.domains[domid] = d
        log.info("created domain %d (%s, %d vcpus, %d pages)", domid,
                 "hvm" if hvm else "pvh", max_vcpus, d.max_pages)
        self.printk(b"(XEN) created d%d: %d vCPUs, %d pages\n" % (domid, max_vcpus, d.max_pages))
        return d

    def domain(self, domid: int) -> Domain:
        with self.lock:
            d = self.domains.get(domid)
        if d is None:
            raise XenError(xenabi.ESRCH, f"no domain {domid}")
        return d

    def destroy_domain(self, domid: int) -> None:
        if domid == 0:
            raise XenError(xenabi.EPERM, "domain 0 cannot be destroyed")
        d = self.domain(domid)
        if not d.destroy():
            return   # someone else is tearing it down and will announce it
        with self.lock:
            self.domains.pop(domid, None)
        self._console_subscribers.pop(domid, None)
        log.info("destroyed domain %d", domid)
        self.printk(b"(XEN) destroyed d%d\n" % domid)
        self.domain_event(d, "destroyed")

    def list_domains(self) -> list[Domain]:
        with self.lock:
            return [d for _, d in sorted(self.domains.items()) if d is not None]

    # -- the hypervisor's own console ring ----------------------------------------
    def printk(self, data: bytes) -> None:
        with self.lock:
            self.dmesg += data
            if len(self.dmesg) > DMESG_LIMIT:
                del self.dmesg[:len(self.dmesg) - DMESG_LIMIT]

    def read_dmesg(self, clear: bool = False) -> bytes:
        with self.lock:
            data = bytes(self.dmesg)
            if clear:
                self.dmesg.clear()
            return data

    # -- time ----------------------------------------------------------------
    @staticmethod
    def wallclock_ns() -> int:
        return time.time_ns()

    # -- subscriptions (VIRQ_DOM_EXC, console) ------------------------------
    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        with self.lock:
            self._subscribers.append(callback)

        def cancel():
            with self.lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return cancel

    def domain_event(self, d: Domain, kind: str) -> None:
        """Xen raises VIRQ_DOM_EXC to dom0 when a domain shuts down or dies."""
        event = {"event": "dom_exc", "kind": kind, "domid": d.domid,
                 "state": d.state, "shutdown_reason": d.shutdown_reason}
        with self.lock:
            subs = list(self._subscribers)
        for cb in subs:
            try:
                cb(event)
            except Exception:
                log.exception("dom_exc subscriber failed")

    def subscribe_console(self, domid: int, callback) -> Callable[[], None]:
        with self.lock:
            self._console_subscribers.setdefault(domid, []).append(callback)

        def cancel():
            with self.lock:
                subs = self._console_subscribers.get(domid, [])
                if callback in subs:
                    subs.remove(callback)
        return cancel

    def console_event(self, d: Domain, offset: int, data: bytes) -> None:
        with self.lock:
            subs = list(self._console_subscribers.get(d.domid, ()))
        for cb in subs:
            try:
                cb(d.domid, offset, data)
            except Exception:
                log.exception("console subscriber failed")

    def close(self) -> None:
        for d in self.list_domains():
            if d.domid != 0:
                try:
                    self.destroy_domain(d.domid)
                except XenError:
                    pass
        self.timers.close()
