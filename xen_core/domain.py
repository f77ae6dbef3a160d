"""A domain: its memory, vCPUs, life cycle, HVM params, console and the
hypercall page.

Life cycle as Xen's: created paused (pause count 1, the toolstack unpauses
after building), running/blocked while vCPUs run, shut down with a reason
(crash is a shutdown with reason crash) until destroyed; dying while torn down.
"""
from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from .abi import hvm as hvmabi
from .abi import sched as schedabi
from .abi import xen as xenabi
from .abi.layout import PAGE_SHIFT, PAGE_SIZE
from .accel.base import BootState
from .memory import GuestFault, GuestMemory, SHARED_INFO_XENHEAP_INDEX
from .vcpu import VCPU, XenError  # noqa: F401  (XenError is re-exported)

if TYPE_CHECKING:
    from .hypervisor import Hypervisor

log = logging.getLogger(__name__)

CONSOLE_LOG_LIMIT = 1 << 20   # bytes of console output kept per domain


class Domain:
    def __init__(self, core: "Hypervisor", domid: int, *, hvm: bool = False,
                 max_vcpus: int = 1, max_pages: int = 0, privileged: bool = False):
        self.core = core
        self.domid = domid
        self.hvm = hvm                 # False: PVH (an HVM container without device model)
        self.privileged = privileged
        self.max_vcpus = max_vcpus
        self.max_pages = max_pages
        self.lock = threading.RLock()
        self.state_cond = threading.Condition(self.lock)  # a vCPU changed runstate
        self.pause_count = 1
        self.shutdown_reason: int | None = None
        self.shutdown_code: int | None = None   # SCHEDOP_shutdown_code, used at shutdown
        self.crash_detail = ""
        self.dying = False
        self.hvm_params = [0] * hvmabi.HVM_NR_PARAMS
        self.handle = bytes(16)        # xen_domain_handle_t (the toolstack's UUID)
        self.e820: list[tuple[int, int, int]] = []  # XENMEM_set_memory_map
        self.watchdogs: list = [None] * schedabi.NR_DOMAIN_WATCHDOG_TIMERS
        self.shared_info_gfn: int | None = None
        self.hypercall_page_gfn: int | None = None
        self.console = bytearray()
        self.console_base = 0          # absolute offset of console[0]
        self.console_input = bytearray()
        self._logged: set[str] = set()
        self.memory: GuestMemory | None = None
        self.machine = None
        self.vcpus: list[VCPU | None] = []
        if privileged and domid == 0:
            return  # dom0 is the host's own processes: no memory or vCPUs here
        # hvm_domain_initialise: a triple fault resets the machine unless
        # the toolstack chooses another SHUTDOWN_* action.
        self.hvm_params[hvmabi.HVM_PARAM_TRIPLE_FAULT_REASON] = schedabi.SHUTDOWN_reboot
        self.memory = GuestMemory(f"dom{domid}", max_pages)
        try:
            self.machine = core.accel.create_machine()
            self.memory.attach(self.machine)
            self.vcpus = [None] * max_vcpus
            self.vcpus[0] = self._new_vcpu(0)
        except BaseException:
            self._release()
            raise
        self.vcpus[0].online = True  # vCPU 0 runs once booted and unpaused

    # -- vCPUs ---------------------------------------------------------------
    def _new_vcpu(self, vcpu_id: int) -> VCPU:
        v = VCPU(self, vcpu_id, self.machine.create_vcpu(vcpu_id))
        v.start()
        return v

    def vcpu(self, vcpu_id: int) -> VCPU | None:
        if 0 <= vcpu_id < len(self.vcpus):
            return self.vcpus[vcpu_id]
        return None

    def ensure_vcpu(self, vcpu_id: int) -> VCPU:
        with self.lock:
            if self.vcpus[vcpu_id] is None:
                self.vcpus[vcpu_id] = self._new_vcpu(vcpu_id)
            return self.vcpus[vcpu_id]

    def set_boot_state(self, vcpu_id: int, state: BootState) -> None:
        v = self.ensure_vcpu(vcpu_id)
        with self.lock:
            if v.runstate == 0 and not v.blocked and v.initialised and self.pause_count == 0 \
                    and not self.is_shut_down():
                raise XenError(xenabi.EBUSY, f"vcpu {vcpu_id} is running")
            v.engine.set_boot_state(state)
            v.initialised = True
            v.cond.notify_all()

    def online_vcpus(self) -> list[VCPU]:
        return [v for v in self.vcpus if v is not None and v.online]

    # -- life cycle ----------------------------------------------------------
    def is_shut_down(self) -> bool:
        return self.shutdown_reason is not None

    @property
    def state(self) -> str:
        with self.lock:
            if self.dying:
                return "dying"
            if self.shutdown_reason == schedabi.SHUTDOWN_crash:
                return "crashed"
            if self.shutdown_reason is not None:
                return "shutdown"
            if self.pause_count:
                return "paused"
            vs = self.online_vcpus()
            if vs and all(v.blocked for v in vs):
                return "blocked"
            return "running"

    def pause(self) -> None:
        """Synchronous, as Xen's domain_pause: returns once no vCPU runs
        guest code (blocked vCPUs stay blocked)."""
        with self.lock:
            if self.dying:
                raise XenError(xenabi.EINVAL, "domain is dying")
            self.pause_count += 1
            vcpus = [v for v in self.vcpus if v is not None]
        for v in vcpus:
            v.stop()
        me = threading.current_thread()
        with self.lock:
            while not self.dying and any(v.runstate == 0 and v.thread is not me for v in vcpus):
                self.state_cond.wait()

    @contextlib.contextmanager
    def quiesced(self):
        """Other vCPUs out of guest code while the guest-physical map changes
        (an engine must not remap under a running vCPU); a no-op for one vCPU."""
        me = threading.current_thread()
        others = [v for v in self.vcpus if v is not None and v.thread is not me
                  and v.online and v.initialised]
        if not others or self.dying:
            yield
            return
        self.pause()
        try:
            yield
        finally:
            self.unpause()

    def unpause(self) -> None:
        with self.lock:
            if self.pause_count == 0:
                raise XenError(xenabi.EINVAL, "domain is not paused")
            self.pause_count -= 1
            for v in self.vcpus:
                if v is not None:
                    v.cond.notify_all()

    def shutdown(self, reason: int, detail: str = "") -> bool:
        """Stop every vCPU; the domain keeps its memory until destroyed.
        The first reason sticks (Xen ignores later shutdowns)."""
        with self.lock:
            if self.shutdown_reason is not None or self.dying:
                return False
            if self.shutdown_code is not None:  # SCHEDOP_shutdown_code overrides, as in Xen
                reason = self.shutdown_code
            self.shutdown_reason = reason
            self.crash_detail = detail
            vcpus = [v for v in self.vcpus if v is not None]
        for v in vcpus:
            v.stop()
        self.core.printk(b"(XEN) d%d shut down: %s\n" % (
            self.domid, schedabi.SHUTDOWN_NAMES.get(reason, str(reason)).encode()))
        self.core.domain_event(self, "shutdown")
        return True

    def watchdog_fired(self, wd_id: int) -> None:
        self.core.printk(b"(XEN) Watchdog timer %d fired for domain %d\n" % (wd_id, self.domid))
        self.shutdown(schedabi.SHUTDOWN_watchdog, f"watchdog {wd_id} fired")

    def crash(self, detail: str = "") -> None:
        log.warning("domain %d crashed: %s", self.domid, detail)
        self.core.printk(f"(XEN) d{self.domid} crashed: {detail}\n".encode())
        self.append_console(f"(XEN) domain {self.domid} crashed: {detail}\n".encode())
        self.shutdown(schedabi.SHUTDOWN_crash, detail)

    def triple_fault(self, vcpu: VCPU) -> None:
        """hvm_triple_fault: the shutdown action in HVM_PARAM_TRIPLE_FAULT_REASON
        (SHUTDOWN_reboot unless the toolstack set another)."""
        reason = self.hvm_params[hvmabi.HVM_PARAM_TRIPLE_FAULT_REASON] & 0xFF
        self.core.printk(b"(XEN) d%dv%d Triple fault - invoking HVM shutdown action %d\n"
                         % (self.domid, vcpu.id, reason))
        detail = f"vcpu{vcpu.id}: triple fault"
        if reason == schedabi.SHUTDOWN_crash:
            self.crash(detail)
        else:
            self.shutdown(reason, detail)

    def destroy(self) -> bool:
        """Stop and join every vCPU thread, then release engine and memory.
        False when another caller is already destroying it."""
        with self.lock:
            if self.dying:
                return False
            self.dying = True
            vcpus = [v for v in self.vcpus if v is not None]
        for t in self.watchdogs:
            if t is not None:
                t.stop()
        for v in vcpus:
            v.timer.stop()
            v.stop()
        current = threading.current_thread()
        for v in vcpus:
            if v.thread is not None and v.thread is not current:
                v.thread.join()
        self._release()
        return True

    def _release(self) -> None:
        """vCPUs first, then the engine's mappings and the engine, and the
        memory last: nothing may still point into the memfd mapping."""
        for v in self.vcpus:
            if v is not None:
                try:
                    v.engine.close()
                except Exception:
                    log.exception("d%d: closing vcpu %d", self.domid, v.id)
        if self.memory is not None:
            self.memory.detach()
        if self.machine is not None:
            try:
                self.machine.close()
            except Exception:
                log.exception("d%d: closing machine", self.domid)
            self.machine = None
        if self.memory is not None:
            self.memory.close()

    # -- pages Xen places ----------------------------------------------------
    def map_shared_info(self, gfn: int) -> None:
        mem = self.memory
        frame = mem.xenheap_frame(SHARED_INFO_XENHEAP_INDEX)
        with self.quiesced():
            mem.place_xen_frame(gfn, frame)
        with self.lock:
            self.shared_info_gfn = gfn
        now_s, now_ns = divmod(self.core.wallclock_ns(), 1_000_000_000)
        from .abi import shared_info as si
        base = gfn << PAGE_SHIFT
        ver = int.from_bytes(mem.read_phys(base + si.SHARED_INFO_WC_VERSION, 4), "little") | 1
        mem.write_phys(base + si.SHARED_INFO_WC_VERSION, ver.to_bytes(4, "little"))
        mem.write_phys(base + si.SHARED_INFO_WC_SEC, (now_s & 0xFFFF_FFFF).to_bytes(4, "little"))
        mem.write_phys(base + si.SHARED_INFO_WC_NSEC, now_ns.to_bytes(4, "little"))
        mem.write_phys(base + si.SHARED_INFO_WC_SEC_HI, (now_s >> 32).to_bytes(4, "little"))
        mem.write_phys(base + si.SHARED_INFO_WC_VERSION, ((ver + 1) & 0xFFFF_FFFF).to_bytes(4, "little"))
        for v in self.vcpus:
            if v is not None:
                v.update_time()

    def write_hypercall_page(self, msr_value: int) -> None:
        """Fill the page the guest named with one 32-byte stub per hypercall:
        `mov $nr, %eax; out %eax, $HYPERCALL_PORT; ret`, int3 elsewhere."""
        from .hypercall_page import hypercall_page
        gpa = msr_value & ~(PAGE_SIZE - 1)
        if msr_value & (PAGE_SIZE - 1):
            self.log_once("hcpage-idx", f"hypercall page index {msr_value & 0xfff} refused (one page)")
            return
        try:
            self.memory.write_phys(gpa, hypercall_page())
        except GuestFault:
            self.log_once("hcpage-gfn", f"hypercall page at absent gpa {gpa:#x} refused")
            return
        self.machine.invalidate_code(gpa, PAGE_SIZE)
        self.hypercall_page_gfn = gpa >> PAGE_SHIFT

    # -- console -------------------------------------------------------------
    def append_console(self, data: bytes) -> None:
        with self.lock:
            offset = self.console_base + len(self.console)
            self.console += data
            if len(self.console) > CONSOLE_LOG_LIMIT:
                drop = len(self.console) - CONSOLE_LOG_LIMIT
                del self.console[:drop]
                self.console_base += drop
        self.core.console_event(self, offset, data)

    def console_since(self, offset: int) -> tuple[bytes, int]:
        """Output from absolute `offset` on, and the offset after it."""
        with self.lock:
            start = max(0, offset - self.console_base)
            return bytes(self.console[start:]), self.console_base + len(self.console)

    # -- events (event channels hook in here) --------------------------------
    def send_virq(self, vcpu: VCPU, virq: int) -> None:
        """VIRQ delivery point; event channels (a later layer) bind ports here."""
        hook = self.core.virq_hook
        if hook is not None:
            hook(self, vcpu, virq)

    def send_upcall(self, vcpu: VCPU) -> None:
        """An event is pending for `vcpu` (vcpu_info.evtchn_upcall_pending):
        event channels inject the callback vector here; the vCPU is woken."""
        hook = self.core.upcall_hook
        if hook is not None:
            hook(self, vcpu)
        vcpu.kick()

    def log_once(self, key: str, message: str) -> None:
        with self.lock:
            if key in self._logged:
                return
            self._logged.add(key)
        log.info("d%d: %s", self.domid, message)

    def info(self) -> dict:
        with self.lock:
            vcpus = [v for v in self.vcpus if v is not None]
            return {
                "domid": self.domid,
                "state": self.state,
                "hvm": self.hvm,
                "privileged": self.privileged,
                "paused": bool(self.pause_count),
                "shutdown_reason": self.shutdown_reason,
                "shutdown_reason_name": schedabi.SHUTDOWN_NAMES.get(self.shutdown_reason),
                "crash_detail": self.crash_detail,
                "max_vcpus": self.max_vcpus,
                "online_vcpus": len(self.online_vcpus()),
                "cpu_time_ns": sum(v.cpu_time_ns() for v in vcpus),
                "vcpus": [v.info() for v in vcpus],
                "tot_pages": self.memory.tot_pages if self.memory else 0,
                "max_pages": self.max_pages,
                "handle": self.handle.hex(),
            }
