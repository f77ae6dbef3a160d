"""A domain's virtual CPU: its thread, run state, timers, blocking and vcpu_info.

The thread runs `engine.run(self)` and this object is the engine's
ExitHandler. Pause, shutdown and destroy reach a running vCPU through
`request_stop()` (it returns STOPPED at a clean point) and a blocked one
through the condition it waits on.
"""
from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from .abi import hvm as hvmabi
from .abi import sched as schedabi
from .abi import shared_info as si
from .abi import vcpu as vabi
from .abi.apic import MSR_X2APIC_ICR
from .abi.cpuid import HYPERCALL_PAGE_MSR
from .abi.xen import DOMID_SELF, ENOSYS, EPERM, ESRCH
from .abi.layout import PAGE_SHIFT
from .accel.base import RunResult
from .memory import GuestFault, PagingState
from .time import rdtsc, system_time_ns
from .vlapic import vlapic_ipi

if TYPE_CHECKING:
    from .domain import Domain


class XenError(Exception):
    """An error that reaches the guest or the dom0 caller as a Xen errno."""

    def __init__(self, errno: int, message: str = ""):
        from .abi.xen import errno_name
        super().__init__(message or errno_name(errno))
        self.errno = errno

log = logging.getLogger(__name__)
RFLAGS_IF = 1 << 9

CONSOLE_DEBUG_PORT = 0xE9     # Bochs/QEMU debugcon: early output before the hypercall page


class VCPU:
    def __init__(self, domain: "Domain", vcpu_id: int, engine_vcpu):
        self.domain = domain
        self.core = domain.core
        self.id = vcpu_id
        self.paging_cache: PagingState | None = None  # for one hypercall
        self.engine = engine_vcpu
        self.online = False          # VCPUOP_up / down; vCPU 0 comes up at build time
        self.hlt_masked = False      # in hlt with interrupts off (see _hlt_masked)
        self.initialised = False     # has a boot state
        self.blocked = False
        self.cond = threading.Condition(domain.lock)
        self.thread: threading.Thread | None = None
        self.timer = domain.core.timers.timer(self._timer_fired)
        self.timer_pending = False   # latched expiry, consumed by block/hlt
        self.kicked = False          # an event arrived for this vCPU
        self.poll_ports: list[int] | None = None
        # vcpu_info: in shared info slot `id` until VCPUOP_register_vcpu_info.
        self.vcpu_info_gpa: int | None = None
        # Runstate accounting (RUNSTATE_*), ns of system time.
        self.runstate = vabi.RUNSTATE_offline
        self.runstate_entry = system_time_ns()
        self.runstate_time = [0, 0, 0, 0]
        # VCPUOP_register_runstate_memory_area: guest-physical pieces of it.
        self.runstate_area: list[tuple[int, int]] = []

    # -- run state -----------------------------------------------------------
    def _set_runstate(self, state: int) -> None:
        now = system_time_ns()
        self.runstate_time[self.runstate] += now - self.runstate_entry
        self.runstate, self.runstate_entry = state, now
        self.domain.state_cond.notify_all()
        if self.runstate_area:
            self.publish_runstate()

    def publish_runstate(self) -> None:
        """Copy vcpu_runstate_info to the area the guest registered (Xen
        rewrites it at every state change)."""
        times = list(self.runstate_time)
        body = vabi.RUNSTATE_INFO.pack(self.runstate, self.runstate_entry, *times)
        pos = 0
        try:
            for gpa, n in self.runstate_area:
                self.domain.memory.write_phys(gpa, body[pos:pos + n])
                pos += n
        except GuestFault:
            pass

    def runstate_snapshot(self) -> tuple[int, int, list[int]]:
        with self.domain.lock:
            now = system_time_ns()
            times = list(self.runstate_time)
            times[self.runstate] += now - self.runstate_entry
            return self.runstate, self.runstate_entry, times

    def cpu_time_ns(self) -> int:
        return self.runstate_snapshot()[2][vabi.RUNSTATE_running]

    def info(self) -> dict:
        """What `xl vcpu-list` shows: online, running/blocked, CPU time."""
        state, _, times = self.runstate_snapshot()
        return {"vcpu": self.id, "online": self.online, "blocked": state == vabi.RUNSTATE_blocked,
                "running": state == vabi.RUNSTATE_running,
                "cpu_time_ns": times[vabi.RUNSTATE_running],
                # engine statistics where the engine keeps them (emu)
                "engine": getattr(self.engine, "counters", dict)()}

    # -- the thread ----------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self._main, daemon=True,
                                       name=f"d{self.domain.domid}v{self.id}")
        self.thread.start()

    def _may_run(self) -> bool:
        d = self.domain
        return self.online and self.initialised and d.pause_count == 0 and not d.is_shut_down()

    def _main(self) -> None:
        d = self.domain
        while True:
            with d.lock:
                while not d.dying and not self._may_run():
                    self._set_runstate(vabi.RUNSTATE_offline if not self.online
                                       else vabi.RUNSTATE_runnable)
                    self.cond.wait()
                if d.dying:
                    self._set_runstate(vabi.RUNSTATE_offline)
                    return
                self._set_runstate(vabi.RUNSTATE_running)
            try:
                result = self.engine.run(self)
            except Exception as e:  # the engine itself failed: contain it
                log.exception("d%dv%d: engine run failed", d.domid, self.id)
                result, why = RunResult.ERROR, f"engine error: {e}"
            else:
                why = result.value
                detail = getattr(self.engine, "error", "")
                if result is RunResult.ERROR and detail:
                    why = f"{why} ({detail})"
            if result is RunResult.TRIPLE_FAULT:
                log.warning("d%dv%d: triple fault", d.domid, self.id)
                d.triple_fault(self)
            elif result is not RunResult.STOPPED:
                log.warning("d%dv%d: %s, crashing the domain", d.domid, self.id, why)
                d.crash(f"vcpu{self.id}: {why}")

    def stop(self) -> None:
        """Make a running vCPU leave guest code, and a blocked one return."""
        try:
            self.engine.request_stop()
        except Exception:
            pass
        with self.domain.lock:
            self.cond.notify_all()

    def kick(self) -> None:
        """An event for this vCPU (timer, event channel): wake it if blocked."""
        with self.domain.lock:
            self.kicked = True
            self.cond.notify_all()
        self._engine_kick()

    def _engine_kick(self) -> None:
        # An engine that waits out a hlt itself (emu) is woken there too.
        kick = getattr(self.engine, "kick", None)
        if kick is not None:
            kick()

    def _timer_fired(self) -> None:
        with self.domain.lock:
            self.timer_pending = True
            self.cond.notify_all()
        self._engine_kick()
        self.domain.send_virq(self, 0)  # VIRQ_TIMER, once event channels exist

    # -- blocking (SCHEDOP_block, SCHEDOP_poll, hlt) --------------------------
    def block(self, deadline_ns: int | None = None, wake_check=None) -> None:
        """Wait until a timer fires, the vCPU is kicked, `wake_check()` holds,
        the deadline passes, or the domain is shut down or destroyed. A paused
        domain keeps its blocked vCPUs blocked."""
        d = self.domain
        # emu: an event posted to the engine (evtchn_fast.c) is applied in C
        posted = getattr(self.engine, "events_posted", bool)
        with d.lock:
            self.blocked = True
            self._set_runstate(vabi.RUNSTATE_blocked)
            try:
                while True:
                    if d.dying or d.is_shut_down() or not self.online:
                        # Taken down meanwhile (VCPUOP_down, INIT): leave
                        # the engine; a wake-up from hlt/block is allowed.
                        self.engine.request_stop()
                        return
                    if self.online and d.pause_count == 0:
                        if self.timer_pending or self.kicked or posted():
                            self.timer_pending = self.kicked = False
                            return
                        if wake_check is not None and wake_check():
                            return
                        if deadline_ns is not None and system_time_ns() >= deadline_ns:
                            return
                    timeout = None
                    if deadline_ns is not None and d.pause_count == 0:
                        timeout = max(0.0, (deadline_ns - system_time_ns()) / 1e9)
                    self.cond.wait(timeout)
            finally:
                self.blocked = False
                self._set_runstate(vabi.RUNSTATE_running)

    # -- vcpu_info and time --------------------------------------------------
    def vcpu_info_location(self) -> int | None:
        """Guest-physical address of this vCPU's vcpu_info, or None."""
        if self.vcpu_info_gpa is not None:
            return self.vcpu_info_gpa
        gfn = self.domain.shared_info_gfn
        if gfn is None or self.id >= si.XEN_LEGACY_MAX_VCPUS:
            return None
        return (gfn << PAGE_SHIFT) + self.id * si.VCPU_INFO_SIZE

    def update_time(self) -> None:
        """Publish vcpu_time_info with the version protocol (odd while
        writing), wherever the guest reads it."""
        gpa = self.vcpu_info_location()
        if gpa is None:
            return
        mem = self.domain.memory
        mul, shift = self.domain.core.time_scale
        gpa += si.VCPU_INFO_TIME
        try:
            version = int.from_bytes(mem.read_phys(gpa, 4), "little")
            version |= 1  # odd: an update is in progress
            mem.write_phys(gpa, version.to_bytes(4, "little"))
            tsc = rdtsc()   # both engines give the guest the host TSC (offset 0)
            now = system_time_ns()
            body = si.VCPU_TIME_INFO.pack(version, 0, tsc, now, mul, shift,
                                          si.XEN_PVCLOCK_TSC_STABLE_BIT)
            mem.write_phys(gpa + 4, body[4:])
            mem.write_phys(gpa, ((version + 1) & 0xFFFF_FFFF).to_bytes(4, "little"))
        except GuestFault:
            pass

    def vcpu_info_byte(self, offset: int) -> int:
        gpa = self.vcpu_info_location()
        if gpa is None:
            return 0
        try:
            return self.domain.memory.read_phys(gpa + offset, 1)[0]
        except GuestFault:
            return 0

    def set_vcpu_info_byte(self, offset: int, value: int) -> None:
        gpa = self.vcpu_info_location()
        if gpa is not None:
            try:
                self.domain.memory.write_phys(gpa + offset, bytes([value]))
            except GuestFault:
                pass

    def paging_state(self) -> PagingState:
        return PagingState.of(self.engine.get_sregs())

    # -- what a hypercall handler uses (this vCPU is Xen's `current`) ---------
    def copy_from(self, gva: int, length: int) -> bytes:
        """Guest-virtual read through this vCPU's page tables (GuestFault)."""
        ps = self.paging_cache
        if ps is None:
            ps = self.paging_cache = self.paging_state()
        return self.domain.memory.copy_from_guest(ps, gva, length)

    def copy_to(self, gva: int, data: bytes) -> None:
        ps = self.paging_cache
        if ps is None:
            ps = self.paging_cache = self.paging_state()
        self.domain.memory.copy_to_guest(ps, gva, data)

    def unknown(self, family: str, op: int) -> int:
        self.domain.log_once(f"{family} {op}", f"{family} sub-op {op} not implemented: -ENOSYS")
        return -ENOSYS

    def target(self, domid: int):
        """DOMID_SELF or the caller's own id is the caller; another domain
        only for a privileged caller (Xen's XSM_TARGET default policy)."""
        d = self.domain
        if domid == DOMID_SELF or domid == d.domid:
            return d
        other = self.core.domains.get(domid)
        if other is None:
            raise XenError(ESRCH)
        if not d.privileged:
            raise XenError(EPERM)
        return other

    # -- ExitHandler ---------------------------------------------------------
    def hypercall(self, engine_vcpu, nr: int, args) -> int:
        rc = _dispatch(self, nr, args)
        self.assert_evtchn_irq()
        d = self.domain
        if d.pause_count and not d.dying and not d.is_shut_down():
            self.engine.request_stop()   # paused meanwhile: leave at this clean point
        return rc

    def wrmsr(self, engine_vcpu, msr: int, value: int) -> None:
        if msr == HYPERCALL_PAGE_MSR:
            self.domain.write_hypercall_page(value)
        elif msr == MSR_X2APIC_ICR:
            vlapic_ipi(self, value & 0xFFFF_FFFF, value >> 32)
        else:
            self.domain.log_once(f"wrmsr {msr:#x}", f"ignored wrmsr {msr:#x} <- {value:#x}")

    io_in_all_ones = True   # so the engine answers `in` itself (ExitHandler)

    def io_in(self, engine_vcpu, port: int, size: int) -> int:
        return (1 << (8 * size)) - 1  # nothing there: all ones

    def io_out(self, engine_vcpu, port: int, size: int, value: int) -> None:
        if port == CONSOLE_DEBUG_PORT and size == 1:  # early output, before hypercalls
            self.domain.append_console(bytes([value & 0xFF]))
            return
        self.domain.log_once(f"out {port:#x}", f"ignored out to port {port:#x}")

    def halt(self, engine_vcpu) -> None:
        # hlt wakes on an interrupt: the engine's pending vector, a timer, an event.
        if not self.engine.get_regs()["rflags"] & RFLAGS_IF:
            self._hlt_masked()
            return
        if self.assert_evtchn_irq():
            return
        self.block()
        self.assert_evtchn_irq()

    def _hlt_masked(self) -> None:
        """hlt with interrupts off. Xen (hvm_hlt: "a pretty sure sign that
        we want to shut down") takes the vCPU down, and powers the domain
        off once none is online ("All CPUs offline -- powering off"): Linux
        ends a halt/poweroff without an ACPI power-off method this way.
        Here the vCPU stays up, blocked, and the domain powers off when every
        online vCPU sits in such a hlt: the same end for the domain."""
        d = self.domain
        with d.lock:
            self.hlt_masked = True
            last = all(v.hlt_masked for v in d.online_vcpus())
        if last:
            d.core.printk(b"(XEN) d%d: All CPUs offline -- powering off.\n" % d.domid)
            d.shutdown(schedabi.SHUTDOWN_poweroff)
            return
        try:
            self.block()
        finally:
            self.hlt_masked = False

    def assert_evtchn_irq(self) -> bool:
        """Xen's hvm_vcpu_has_pending_irq for the callback vector: it is
        asserted for as long as vcpu_info.evtchn_upcall_pending is set (a
        level, checked at each VM entry), not only when the flag goes 0 -> 1
        (the guest may set the vector after events were marked pending, as
        Linux does after register_vcpu_info). Checked here at hypercall
        returns and hlt. True when the vector was requested."""
        via = self.domain.hvm_params[hvmabi.HVM_PARAM_CALLBACK_IRQ]
        if via >> hvmabi.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT != hvmabi.HVM_PARAM_CALLBACK_TYPE_VECTOR:
            return False
        vector = via & 0xFF
        if vector < 0x10 or not self.vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING):
            return False
        self.engine.request_interrupt(vector)
        return True


def _dispatch(v, nr, args):
    # Bound on first use: xen_core.hypercalls imports this module's users.
    global _dispatch
    from .hypercalls import dispatch
    _dispatch = dispatch
    return dispatch(v, nr, args)
