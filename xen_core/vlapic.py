"""IPIs a guest sends through its local APIC's ICR, as Xen's vlapic_ipi
handles them: INIT and STARTUP bring a secondary vCPU up the native way
(Linux's native_cpu_up; vlapic_init_sipi_one), fixed and lowest-priority
IPIs deliver their vector to the destination vCPUs.

The engine traps the ICR write and hands it here as the x2APIC ICR MSR
(`abi.apic.MSR_X2APIC_ICR`). Called on the sending vCPU's thread, outside
guest code (the engine's CPU lock is released while the core runs).
Not modelled: logical destinations, NMI/SMI (the guest's event channels
are its IPIs on Xen; Linux uses the APIC only for INIT/SIPI and a few
fixed vectors such as REBOOT_VECTOR).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .abi import apic as a
from .abi import vcpu as vabi
from .accel.base import BootState, CpuMode

if TYPE_CHECKING:
    from .vcpu import VCPU


def _targets(source: "VCPU", short_hand: int, dest: int) -> list[int]:
    """vCPU ids the IPI reaches (vlapic_match_dest, physical mode)."""
    d = source.domain
    if short_hand == a.APIC_DEST_SELF:
        return [source.id]
    if short_hand == a.APIC_DEST_ALLINC:
        return list(range(d.max_vcpus))
    if short_hand == a.APIC_DEST_ALLBUT:
        return [i for i in range(d.max_vcpus) if i != source.id]
    if dest == a.APIC_BROADCAST:
        return list(range(d.max_vcpus))
    return [i for i in range(d.max_vcpus) if a.apic_id(i) == dest]


def vlapic_ipi(source: "VCPU", icr_low: int, dest: int) -> None:
    d = source.domain
    mode = icr_low & a.APIC_DM_MASK
    short_hand = icr_low & a.APIC_SHORT_MASK
    if icr_low & a.APIC_DEST_LOGICAL and short_hand == a.APIC_DEST_NOSHORT:
        d.log_once("ipi-logical",
                   f"IPI to logical destination {dest:#x} ignored (ICR {icr_low:#x})")
        return
    targets = _targets(source, short_hand, dest)
    if mode == a.APIC_DM_INIT:
        # No work on INIT de-assert (vlapic_init_sipi_one).
        if icr_low & (a.APIC_INT_LEVELTRIG | a.APIC_INT_ASSERT) == a.APIC_INT_LEVELTRIG:
            return
        for t in targets:
            if t != source.id:
                vcpu_init(d, t)
        return
    if mode == a.APIC_DM_STARTUP:
        for t in targets:
            if t != source.id:
                vcpu_startup(d, t, (icr_low & a.APIC_VECTOR_MASK) << 12)
        return
    if mode in (a.APIC_DM_FIXED, a.APIC_DM_LOWEST):
        vector = icr_low & a.APIC_VECTOR_MASK
        if vector < 16:
            return            # Xen: APIC_ESR_SENDILL, nothing delivered
        live = [v for v in (d.vcpu(t) for t in targets)
                if v is not None and v.online and v.initialised]
        if mode == a.APIC_DM_LOWEST:
            live = live[:1]
        for v in live:
            v.engine.request_interrupt(vector)
            v.kick()
        return
    d.log_once(f"ipi-mode-{mode:#x}", f"IPI delivery mode {mode >> 8} ignored (ICR {icr_low:#x})")


def vcpu_init(d, vcpu_id: int) -> None:
    """INIT: a vCPU that runs goes down and loses its state (hvm_vcpu_down,
    vcpu_reset); one never initialised is left alone."""
    v = d.vcpu(vcpu_id)
    if v is None:
        return
    with d.lock:
        if not v.initialised:
            return
        v.online = False
    v.stop()
    with d.lock:
        while not d.dying and v.runstate != vabi.RUNSTATE_offline:
            d.state_cond.wait()
        v.initialised = False
        v.hlt_masked = False
    v.timer.stop()


def vcpu_startup(d, vcpu_id: int, start: int) -> None:
    """STARTUP: a vCPU waiting after INIT (or never started) begins in real
    mode at CS = vector << 8, IP = 0 (hvm_vcpu_reset_state); one that is
    initialised ignores it."""
    v = d.ensure_vcpu(vcpu_id)
    with d.lock:
        if v.initialised or d.dying:
            return
    d.set_boot_state(vcpu_id, BootState(CpuMode.REAL16, rip=start, regs={"rflags": 0x2}))
    with d.lock:
        v.online = True
        v.cond.notify_all()
