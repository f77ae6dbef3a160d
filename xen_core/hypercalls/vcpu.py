"""vcpu_op: bring secondary vCPUs up and down, runstate, vcpu_info, timers."""
from __future__ import annotations

from ..abi import shared_info as si
from ..abi import vcpu as va
from ..abi import xen as x
from ..abi.layout import PAGE_SHIFT, PAGE_SIZE
from ..accel.base import BootState, CpuMode
from ..memory import GuestFault
from ..time import system_time_ns
from .call import s32


def boot_state_from_hvm_context(raw: bytes) -> BootState:
    """vcpu_hvm_context (hvm_vcpu.h) -> the engine's BootState."""
    mode, _ = va.VCPU_HVM_CONTEXT_HDR.unpack_from(raw)
    body = raw[va.VCPU_HVM_CONTEXT_HDR.size:]
    if mode == va.VCPU_HVM_MODE_32B:
        (eax, ecx, edx, ebx, esp, ebp, esi, edi, eip, eflags,
         cr0, cr3, cr4, _pad, efer) = va.VCPU_HVM_X86_32.unpack_from(body)
        regs = dict(rax=eax, rcx=ecx, rdx=edx, rbx=ebx, rsp=esp, rbp=ebp, rsi=esi,
                    rdi=edi, rflags=eflags or 2)
        return BootState(CpuMode.FLAT32, eip, regs, cr0 or None, cr3, cr4 or None, efer or None)
    if mode == va.VCPU_HVM_MODE_64B:
        (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, rip, rflags,
         cr0, cr3, cr4, efer) = va.VCPU_HVM_X86_64.unpack_from(body)
        regs = dict(rax=rax, rcx=rcx, rdx=rdx, rbx=rbx, rsp=rsp, rbp=rbp, rsi=rsi,
                    rdi=rdi, rflags=rflags or 2)
        return BootState(CpuMode.LONG64, rip, regs, cr0 or None, cr3, cr4 or None, efer or None)
    raise ValueError(f"vcpu_hvm_context mode {mode}")


def _register_vcpu_info(cur, v, arg) -> int:
    mfn, offset, _ = va.REGISTER_VCPU_INFO.unpack(cur.copy_from(arg, va.REGISTER_VCPU_INFO.size))
    if offset > PAGE_SIZE - si.VCPU_INFO_SIZE:
        return -x.EINVAL
    if v.vcpu_info_gpa is not None:
        return -x.EINVAL   # Xen allows one registration per vCPU
    if v is not cur and v.online:
        return -x.EINVAL   # on yourself, or on a vCPU that is down
    mem = cur.domain.memory
    try:
        mem.frame_of(mfn)
    except GuestFault:
        return -x.EINVAL
    gpa = (mfn << PAGE_SHIFT) + offset
    old = v.vcpu_info_location()
    current = mem.read_phys(old, si.VCPU_INFO_SIZE) if old is not None else bytes(si.VCPU_INFO_SIZE)
    mem.write_phys(gpa, current)   # Xen carries the old contents over
    v.vcpu_info_gpa = gpa
    # Xen marks everything pending so no event is lost across the move (the
    # guest sees one spurious upcall).
    mem.write_phys(gpa + si.VCPU_INFO_UPCALL_PENDING, b"\x01")
    mem.write_phys(gpa + si.VCPU_INFO_PENDING_SEL, (2**64 - 1).to_bytes(8, "little"))
    v.update_time()
    cur.domain.send_upcall(v)
    return 0


def do_vcpu_op(cur, cmd, vcpuid, arg, *_):
    cmd, vcpuid = s32(cmd), s32(vcpuid)
    d = cur.domain
    if not 0 <= vcpuid < d.max_vcpus:
        return -x.ENOENT
    if cmd == va.VCPUOP_is_up:
        v = d.vcpu(vcpuid)
        return int(v is not None and v.online)
    if cmd == va.VCPUOP_initialise:
        raw = cur.copy_from(arg, va.VCPU_HVM_CONTEXT_SIZE)
        v = d.vcpu(vcpuid)
        if v is not None and v.initialised:
            return -x.EEXIST
        try:
            state = boot_state_from_hvm_context(raw)
        except ValueError:
            return -x.EINVAL
        d.set_boot_state(vcpuid, state)
        return 0
    if cmd == va.VCPUOP_up:
        v = d.vcpu(vcpuid)
        if v is None or not v.initialised:
            return -x.EINVAL
        with d.lock:
            v.online = True
            v.cond.notify_all()
        return 0
    if cmd == va.VCPUOP_down:
        v = d.vcpu(vcpuid)
        if v is None:
            return 0
        with d.lock:
            v.online = False
        if v is cur:
            v.engine.request_stop()
        else:
            v.stop()
        return 0
    v = d.ensure_vcpu(vcpuid)
    if cmd == va.VCPUOP_get_runstate_info:
        state, entry, times = v.runstate_snapshot()
        cur.copy_to(arg, va.RUNSTATE_INFO.pack(state, entry, *times))
        return 0
    if cmd == va.VCPUOP_register_runstate_memory_area:
        (addr,) = va.REGISTER_RUNSTATE_MEMORY_AREA.unpack(
            cur.copy_from(arg, va.REGISTER_RUNSTATE_MEMORY_AREA.size))
        # Translated once, here: Xen translates at each update, which gives
        # the same pages for the kernel addresses guests register. Like Xen,
        # an address that does not resolve is accepted and never written.
        try:
            pieces = [] if addr == 0 else cur.domain.memory.translate_range(
                cur.paging_state(), addr, va.RUNSTATE_INFO.size, write=True)
        except GuestFault:
            pieces = []
        with d.lock:
            v.runstate_area = pieces
            if pieces:
                v.publish_runstate()
        return 0
    if cmd == va.VCPUOP_register_vcpu_info:
        return _register_vcpu_info(cur, v, arg)
    if cmd == va.VCPUOP_set_singleshot_timer:
        if v is not cur:
            return -x.EINVAL
        timeout, flags = va.SET_SINGLESHOT_TIMER.unpack(cur.copy_from(arg, va.SET_SINGLESHOT_TIMER.size))
        if flags & va.VCPU_SSHOTTMR_future and timeout < system_time_ns():
            return -x.ETIME
        with d.lock:
            v.timer_pending = False
        v.timer.set(timeout)   # in the past: fires at once
        return 0
    if cmd == va.VCPUOP_stop_periodic_timer:
        # No periodic timer is ever armed here (Xen's default period is for
        # PV vCPUs); Linux takes success as "the vcpuop timer interface
        # works" and uses set_singleshot_timer.
        return 0
    if cmd == va.VCPUOP_stop_singleshot_timer:
        if v is not cur:
            return -x.EINVAL
        v.timer.stop()
        return 0
    return cur.unknown("vcpu_op", cmd)
