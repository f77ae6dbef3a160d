"""Hypercall argument handling against a real domain (emu engine, vCPU not
started): Xen's errno values, guest memory effects, nothing escaping."""
import struct
import time

import pytest

from xen_core.abi import hvm as h
from xen_core.abi import memory as m
from xen_core.abi import sched as s
from xen_core.abi import shared_info as si
from xen_core.abi import vcpu as va
from xen_core.abi import version as ver
from xen_core.abi import xen as x
from xen_core.hypercalls import dispatch
from xen_core.memory import CR0_PE, PagingState

from .conftest import engine_or_skip

PAGE = 4096
RAM_PAGES = 64
BUF = 0x8000          # scratch guest buffer (paging off: gva == gpa)
HOLE = RAM_PAGES * PAGE + 0x10000


@pytest.fixture
def dom():
    from xen_core.hypervisor import Hypervisor
    core = Hypervisor(engine_or_skip("emu"))
    d = core.create_domain(max_vcpus=2, max_memory=RAM_PAGES * PAGE)
    d.memory.populate(range(RAM_PAGES))
    v = d.vcpus[0]
    v.paging_state = lambda: PagingState(cr0=CR0_PE, cr3=0, cr4=0, efer=0)
    yield d
    core.close()


def call(d, nr, *args):
    return dispatch(d.vcpus[0], nr, args)


def rd(d, gpa, n):
    return d.memory.read_phys(gpa, n)


def test_unknown_numbers_and_subops_are_enosys(dom, caplog):
    for nr in (63, 100, 127, x.HYPERVISOR_tmem_op, 5000):
        assert call(dom, nr, 0, 0) == -x.ENOSYS
    assert call(dom, 63) == -x.ENOSYS
    assert sum("hypercall 63" in r.message for r in caplog.records) <= 1
    assert call(dom, x.HYPERVISOR_xen_version, 0x7FFF, 0) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_console_io, 99, 0, 0) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_sched_op, 99, 0) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_memory_op, 99, 0) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_hvm_op, h.HVMOP_pagetable_dying, 0) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_vcpu_op, 99, 0, 0) == -x.ENOSYS


def test_xen_version(dom):
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_version, 0) == (4 << 16) | 17
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_pagesize, 0) == 4096
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_pagesize, BUF) == -x.EINVAL
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_extraversion, BUF) == 0
    assert rd(dom, BUF, 16).rstrip(b"\0") == ver.EXTRAVERSION
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_capabilities, BUF) == 0
    assert rd(dom, BUF, 14) == b"xen-3.0-x86_64"
    dom.memory.write_phys(BUF, struct.pack("<II", 0, 0))
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_get_features, BUF) == 0
    _, submap = struct.unpack("<II", rd(dom, BUF, 8))
    assert submap & (1 << ver.XENFEAT_hvm_callback_vector)
    assert submap & (1 << ver.XENFEAT_auto_translated_physmap)
    assert not submap & (1 << ver.XENFEAT_dom0)
    dom.memory.write_phys(BUF, struct.pack("<II", 1, 0))
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_get_features, BUF) == -x.EINVAL
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_commandline, BUF) == -x.EPERM
    dom.handle = bytes(range(16))
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_guest_handle, BUF) == 0
    assert rd(dom, BUF, 16) == bytes(range(16))
    for op in (ver.XENVER_extraversion, ver.XENVER_compile_info, ver.XENVER_changeset,
               ver.XENVER_platform_parameters, ver.XENVER_get_features):
        assert call(dom, x.HYPERVISOR_xen_version, op, HOLE) == -x.EFAULT
    # compile_info is 144 bytes: straddling the end of RAM faults and writes nothing.
    end = RAM_PAGES * PAGE
    dom.memory.write_phys(end - 16, b"\xaa" * 16)
    assert call(dom, x.HYPERVISOR_xen_version, ver.XENVER_compile_info, end - 16) == -x.EFAULT
    assert rd(dom, end - 16, 16) == b"\xaa" * 16


def test_console_io(dom):
    dom.memory.write_phys(BUF, b"hello, console")
    assert call(dom, x.HYPERVISOR_console_io, x.CONSOLEIO_write, 14, BUF) == 0
    assert bytes(dom.console).endswith(b"hello, console")
    before = bytes(dom.console)
    assert call(dom, x.HYPERVISOR_console_io, x.CONSOLEIO_write, 64, RAM_PAGES * PAGE - 16) == -x.EFAULT
    assert bytes(dom.console) == before
    dom.console_input += b"abc"
    assert call(dom, x.HYPERVISOR_console_io, x.CONSOLEIO_read, 2, BUF) == 2
    assert rd(dom, BUF, 2) == b"ab"
    assert call(dom, x.HYPERVISOR_console_io, x.CONSOLEIO_read, 8, BUF) == 1
    assert call(dom, x.HYPERVISOR_console_io, x.CONSOLEIO_read, 8, BUF) == 0


def test_sched_shutdown_reasons_and_code(dom):
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_shutdown, HOLE) == -x.EFAULT
    assert dom.state == "paused"
    dom.memory.write_phys(BUF, struct.pack("<I", s.SHUTDOWN_watchdog))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_shutdown_code, BUF) == 0
    assert dom.shutdown_reason is None
    dom.memory.write_phys(BUF, struct.pack("<I", s.SHUTDOWN_reboot))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_shutdown, BUF) == 0
    assert dom.shutdown_reason == s.SHUTDOWN_watchdog   # shutdown_code wins, as in Xen
    assert dom.state == "shutdown"


def test_watchdog(dom):
    def wd(wd_id, timeout):
        dom.memory.write_phys(BUF, s.SCHED_WATCHDOG.pack(wd_id, timeout))
        return call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_watchdog, BUF)

    assert wd(0, 3600) == 1 and wd(0, 3600) == 2
    assert wd(0, 3600) == -x.ENOSPC
    assert wd(3, 10) == -x.EINVAL
    assert wd(2, 0) == 0 and wd(2, 5) == -x.EINVAL      # released
    assert wd(1, 7200) == 0                              # re-armed
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_watchdog, HOLE) == -x.EFAULT
    assert wd(0, 0) == 2       # expires at once: the domain shuts down
    while dom.shutdown_reason is None:
        time.sleep(0.001)
    assert dom.shutdown_reason == s.SHUTDOWN_watchdog
    assert b"Watchdog timer 2 fired" in dom.core.read_dmesg()


def test_remote_shutdown_needs_privilege(dom):
    dom.memory.write_phys(BUF, s.SCHED_REMOTE_SHUTDOWN.pack(dom.domid, s.SHUTDOWN_poweroff))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_remote_shutdown, BUF) == -x.EPERM
    dom.memory.write_phys(BUF, s.SCHED_REMOTE_SHUTDOWN.pack(999, s.SHUTDOWN_poweroff))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_remote_shutdown, BUF) == -x.ESRCH
    assert dom.shutdown_reason is None


def test_poll_arguments(dom):
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(0, 129, 1))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == -x.EINVAL
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(HOLE, 2, 1))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == -x.EFAULT
    dom.memory.write_phys(BUF + 64, struct.pack("<I", 4096))
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(BUF + 64, 1, 1))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == -x.EINVAL
    # A pending port returns at once (the 2-level bitmap in shared info).
    dom.unpause()
    dom.map_shared_info(RAM_PAGES - 1)
    dom.memory.write_phys(((RAM_PAGES - 1) << 12) + si.SHARED_INFO_EVTCHN_PENDING, (1 << 5).to_bytes(8, "little"))
    dom.memory.write_phys(BUF + 64, struct.pack("<I", 5))
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(BUF + 64, 1, 0))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == 0
    # An upcall pending and unmasked: returns at once, whatever the ports.
    dom.memory.write_phys(BUF + 64, struct.pack("<I", 6))
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(BUF + 64, 1, 0))
    dom.vcpus[0].set_vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING, 1)
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == 0
    dom.vcpus[0].set_vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING, 0)
    # No ports and a timeout already past: returns.
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(0, 0, 1))
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF) == 0


def test_hvm_params(dom):
    def param(op, index, value=0):
        dom.memory.write_phys(BUF, h.HVM_PARAM.pack(x.DOMID_SELF, index, value))
        rc = call(dom, x.HYPERVISOR_hvm_op, op, BUF)
        return rc, h.HVM_PARAM.unpack(rd(dom, BUF, 16))[2]

    vector = (h.HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | 0xF3
    assert param(h.HVMOP_set_param, h.HVM_PARAM_CALLBACK_IRQ, vector)[0] == 0
    assert param(h.HVMOP_get_param, h.HVM_PARAM_CALLBACK_IRQ) == (0, vector)
    assert param(h.HVMOP_set_param, h.HVM_PARAM_STORE_PFN, 5)[0] == -x.EPERM
    dom.hvm_params[h.HVM_PARAM_STORE_PFN] = 0xFEFFC
    assert param(h.HVMOP_get_param, h.HVM_PARAM_STORE_PFN) == (0, 0xFEFFC)
    assert param(h.HVMOP_get_param, h.HVM_NR_PARAMS)[0] == -x.EINVAL
    assert call(dom, x.HYPERVISOR_hvm_op, h.HVMOP_get_param, HOLE) == -x.EFAULT
    dom.memory.write_phys(BUF, h.HVM_PARAM.pack(0, h.HVM_PARAM_STORE_PFN, 0))
    assert call(dom, x.HYPERVISOR_hvm_op, h.HVMOP_get_param, BUF) == -x.EPERM   # dom0's
    dom.memory.write_phys(BUF, h.HVM_PARAM.pack(4000, h.HVM_PARAM_STORE_PFN, 0))
    assert call(dom, x.HYPERVISOR_hvm_op, h.HVMOP_get_param, BUF) == -x.ESRCH


def test_shared_info_time_and_wallclock(dom):
    dom.memory.write_phys(BUF, m.ADD_TO_PHYSMAP.pack(x.DOMID_SELF, 0, m.XENMAPSPACE_shared_info, 1, 10))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_add_to_physmap, BUF) == -x.EINVAL
    dom.memory.write_phys(BUF, m.ADD_TO_PHYSMAP.pack(x.DOMID_SELF, 0, m.XENMAPSPACE_shared_info, 0, 10))
    pages = dom.memory.tot_pages
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_add_to_physmap, BUF) == 0
    assert dom.memory.tot_pages == pages - 1       # the RAM page at gfn 10 is gone
    version, _, tsc, system, mul, shift, flags = si.VCPU_TIME_INFO.unpack(rd(dom, 10 * PAGE + 32, 32))
    assert version % 2 == 0 and version > 0
    assert (mul, shift) == dom.core.time_scale and mul
    assert flags & si.XEN_PVCLOCK_TSC_STABLE_BIT
    assert abs(system - time.monotonic_ns()) < 60 * 10**9
    wc_sec = struct.unpack("<I", rd(dom, 10 * PAGE + si.SHARED_INFO_WC_SEC, 4))[0]
    assert abs(wc_sec - time.time()) < 60
    # Frames beyond RAM are accepted (Linux puts grant frames there).
    dom.memory.write_phys(BUF, m.ADD_TO_PHYSMAP.pack(x.DOMID_SELF, 0, m.XENMAPSPACE_shared_info, 0, 0x107FFF))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_add_to_physmap, BUF) == 0
    assert dom.shared_info_gfn == 0x107FFF
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_add_to_physmap, HOLE) == -x.EFAULT


def test_reservations_and_memory_map(dom):
    dom.memory.write_phys(BUF, struct.pack("<H", x.DOMID_SELF))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_current_reservation, BUF) == RAM_PAGES
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_maximum_reservation, BUF) == RAM_PAGES
    # Give back two pages, then populate them again; a third is over max_pages.
    dom.memory.write_phys(BUF + 64, struct.pack("<3Q", 40, 41, 42))
    dom.memory.write_phys(BUF, m.MEMORY_RESERVATION.pack(BUF + 64, 2, 0, 0, x.DOMID_SELF))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_decrease_reservation, BUF) == 2
    assert dom.memory.tot_pages == RAM_PAGES - 2
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_decrease_reservation, BUF) == 0  # absent now
    dom.memory.write_phys(BUF + 64, struct.pack("<3Q", 40, 41, 100))
    dom.memory.write_phys(BUF, m.MEMORY_RESERVATION.pack(BUF + 64, 3, 0, 0, x.DOMID_SELF))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_populate_physmap, BUF) == 2
    assert dom.memory.tot_pages == RAM_PAGES
    # A bad extent list stops at the faulting entry.
    dom.memory.write_phys(BUF, m.MEMORY_RESERVATION.pack(HOLE, 1, 0, 0, x.DOMID_SELF))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_populate_physmap, BUF) == 0
    # memory_map: -ENOSYS until the toolstack sets one, then the entries.
    dom.memory.write_phys(BUF, m.MEMORY_MAP.pack(8, BUF + 64))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_memory_map, BUF) == -x.ENOSYS
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_memory_map, HOLE) == -x.ENOSYS
    dom.e820 = [(0, RAM_PAGES * PAGE, 1), (0xFEFF8000, 0x8000, 2)]
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_memory_map, BUF) == 0
    assert m.MEMORY_MAP.unpack(rd(dom, BUF, 16))[0] == 2
    assert m.E820_ENTRY.unpack(rd(dom, BUF + 64 + 20, 20)) == (0xFEFF8000, 0x8000, 2)


def test_vcpu_op(dom):
    vcpu_op = x.HYPERVISOR_vcpu_op
    assert call(dom, vcpu_op, va.VCPUOP_is_up, 4096, 0) == -x.ENOENT
    assert call(dom, vcpu_op, va.VCPUOP_is_up, 2, 0) == -x.ENOENT     # max_vcpus is 2
    assert call(dom, vcpu_op, va.VCPUOP_is_up, 0, 0) == 1
    assert call(dom, vcpu_op, va.VCPUOP_is_up, 1, 0) == 0
    assert call(dom, vcpu_op, va.VCPUOP_up, 1, 0) == -x.EINVAL        # not initialised
    assert call(dom, vcpu_op, va.VCPUOP_get_runstate_info, 0, BUF) == 0
    state, entry, *times = va.RUNSTATE_INFO.unpack(rd(dom, BUF, 48))
    assert state in (va.RUNSTATE_runnable, va.RUNSTATE_offline, va.RUNSTATE_running)
    assert call(dom, vcpu_op, va.VCPUOP_get_runstate_info, 0, HOLE) == -x.EFAULT
    # A registered runstate area is written now and at every state change.
    assert call(dom, vcpu_op, va.VCPUOP_register_runstate_memory_area, 0, HOLE) == -x.EFAULT
    dom.memory.write_phys(BUF, va.REGISTER_RUNSTATE_MEMORY_AREA.pack(HOLE))     # accepted, as Xen
    assert call(dom, vcpu_op, va.VCPUOP_register_runstate_memory_area, 0, BUF) == 0
    dom.memory.write_phys(BUF, va.REGISTER_RUNSTATE_MEMORY_AREA.pack(PAGE * 3 - 16))   # spans 2 pages
    assert call(dom, vcpu_op, va.VCPUOP_register_runstate_memory_area, 0, BUF) == 0
    first = va.RUNSTATE_INFO.unpack(rd(dom, PAGE * 3 - 16, 48))
    assert first[1] == dom.vcpus[0].runstate_entry
    with dom.lock:
        dom.vcpus[0]._set_runstate(va.RUNSTATE_blocked)
    assert va.RUNSTATE_INFO.unpack(rd(dom, PAGE * 3 - 16, 48))[0] == va.RUNSTATE_blocked
    dom.memory.write_phys(BUF, va.REGISTER_RUNSTATE_MEMORY_AREA.pack(0))
    assert call(dom, vcpu_op, va.VCPUOP_register_runstate_memory_area, 0, BUF) == 0
    assert dom.vcpus[0].runstate_area == []
    dom.memory.write_phys(BUF, va.REGISTER_VCPU_INFO.pack(20, 4090, 0))
    assert call(dom, vcpu_op, va.VCPUOP_register_vcpu_info, 0, BUF) == -x.EINVAL
    dom.memory.write_phys(BUF, va.REGISTER_VCPU_INFO.pack(5000, 0, 0))
    assert call(dom, vcpu_op, va.VCPUOP_register_vcpu_info, 0, BUF) == -x.EINVAL  # no such gfn
    dom.memory.write_phys(BUF, va.REGISTER_VCPU_INFO.pack(20, 64, 0))
    assert call(dom, vcpu_op, va.VCPUOP_register_vcpu_info, 0, BUF) == 0
    assert call(dom, vcpu_op, va.VCPUOP_register_vcpu_info, 0, BUF) == -x.EINVAL  # only once
    assert si.VCPU_TIME_INFO.unpack(rd(dom, 20 * PAGE + 64 + 32, 32))[4] == dom.core.time_scale[0]
    assert rd(dom, 20 * PAGE + 64, 1) == b"\x01"                   # all marked pending
    assert rd(dom, 20 * PAGE + 64 + 8, 8) == b"\xff" * 8
    dom.vcpus[0].kicked = False
    dom.memory.write_phys(BUF, va.SET_SINGLESHOT_TIMER.pack(1, va.VCPU_SSHOTTMR_future))
    assert call(dom, vcpu_op, va.VCPUOP_set_singleshot_timer, 0, BUF) == -x.ETIME
    assert call(dom, vcpu_op, va.VCPUOP_set_singleshot_timer, 1, BUF) == -x.EINVAL  # not current
    dom.memory.write_phys(BUF, va.SET_SINGLESHOT_TIMER.pack(time.monotonic_ns() + 10**12, 0))
    assert call(dom, vcpu_op, va.VCPUOP_set_singleshot_timer, 0, BUF) == 0
    assert dom.vcpus[0].timer.armed
    assert call(dom, vcpu_op, va.VCPUOP_stop_singleshot_timer, 0, 0) == 0
    assert not dom.vcpus[0].timer.armed
    # initialise with a bad mode, then a good 64-bit context; twice is EEXIST.
    ctx = va.VCPU_HVM_CONTEXT_HDR.pack(7, 0) + bytes(120)
    dom.memory.write_phys(BUF, ctx)
    assert call(dom, vcpu_op, va.VCPUOP_initialise, 1, BUF) == -x.EINVAL
    regs = [0] * 14
    regs[8], regs[11], regs[4] = 0x100000, 0x1000, 0x9000   # rip, cr3, rsp
    ctx = va.VCPU_HVM_CONTEXT_HDR.pack(va.VCPU_HVM_MODE_64B, 0) + va.VCPU_HVM_X86_64.pack(*regs) + bytes(8)
    assert len(ctx) == va.VCPU_HVM_CONTEXT_SIZE
    dom.memory.write_phys(BUF, ctx)
    assert call(dom, vcpu_op, va.VCPUOP_initialise, 1, BUF) == 0
    assert call(dom, vcpu_op, va.VCPUOP_initialise, 1, BUF) == -x.EEXIST
    assert call(dom, vcpu_op, va.VCPUOP_initialise, 1, HOLE) == -x.EFAULT   # copied first, as Xen


def test_set_timer_op_fires(dom):
    v = dom.vcpus[0]
    assert call(dom, x.HYPERVISOR_set_timer_op, time.monotonic_ns() + 10**12) == 0
    assert v.timer.armed
    assert call(dom, x.HYPERVISOR_set_timer_op, 0) == 0
    assert not v.timer.armed
    # Wrapped or absurd deadlines fire in 100 ms, as Xen's guard does.
    now = time.monotonic_ns()
    for huge in ((1 << 64) - 5, now + (1 << 51)):
        assert call(dom, x.HYPERVISOR_set_timer_op, huge) == 0
        assert now + 100_000_000 <= v.timer.deadline <= time.monotonic_ns() + 100_000_000
    # A time in the past fires at once: a block right after returns.
    dom.unpause()
    assert call(dom, x.HYPERVISOR_set_timer_op, 1) == 0
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_block, 0) == 0


def test_secondary_vcpu_comes_up_and_runs(dom):
    """VCPUOP_initialise + VCPUOP_up start vCPU 1 on real code: 32-bit flat
    mode, two bytes to the debug console port, then hlt."""
    code = bytes([0xB0, ord("S"), 0xE6, 0xE9, 0xB0, ord("M"), 0xE6, 0xE9, 0xF4, 0xEB, 0xFD])
    dom.memory.write_phys(0x1000, code)
    regs32 = [0] * 14 + [0]
    regs32[8], regs32[10], regs32[4] = 0x1000, 0x1, 0x2000     # eip, cr0 = PE, esp
    ctx = (va.VCPU_HVM_CONTEXT_HDR.pack(va.VCPU_HVM_MODE_32B, 0)
           + va.VCPU_HVM_X86_32.pack(*regs32)).ljust(va.VCPU_HVM_CONTEXT_SIZE, b"\0")
    dom.memory.write_phys(BUF, ctx)
    assert call(dom, x.HYPERVISOR_vcpu_op, va.VCPUOP_initialise, 1, BUF) == 0
    dom.unpause()
    assert call(dom, x.HYPERVISOR_vcpu_op, va.VCPUOP_up, 1, 0) == 0
    assert call(dom, x.HYPERVISOR_vcpu_op, va.VCPUOP_is_up, 1, 0) == 1
    for _ in range(60000):      # until the vCPU has run (no bound on how fast)
        if b"SM" in dom.console:
            break
        time.sleep(0.001)
    assert bytes(dom.console).endswith(b"SM")
    for _ in range(60000):
        if dom.vcpus[1].blocked:   # in hlt
            break
        time.sleep(0.001)
    assert dom.vcpus[1].blocked
    # Remapping guest memory with another vCPU up quiesces it and keeps it blocked.
    dom.memory.write_phys(BUF, m.ADD_TO_PHYSMAP.pack(x.DOMID_SELF, 0, m.XENMAPSPACE_shared_info, 0, 30))
    assert call(dom, x.HYPERVISOR_memory_op, m.XENMEM_add_to_physmap, BUF) == 0
    assert dom.pause_count == 0 and dom.vcpus[1].blocked
    assert call(dom, x.HYPERVISOR_vcpu_op, va.VCPUOP_down, 1, 0) == 0
    assert call(dom, x.HYPERVISOR_vcpu_op, va.VCPUOP_is_up, 1, 0) == 0


def test_block_wakes_on_the_timer_not_before(dom):
    dom.unpause()
    deadline = time.monotonic_ns() + 20_000_000
    assert call(dom, x.HYPERVISOR_set_timer_op, deadline) == 0
    assert call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_block, 0) == 0
    assert time.monotonic_ns() >= deadline


def test_poll_wakes_on_an_event_and_domain_shows_blocked(dom):
    import threading
    dom.unpause()
    dom.map_shared_info(RAM_PAGES - 1)
    dom.memory.write_phys(BUF + 64, struct.pack("<I", 70))
    far = time.monotonic_ns() + 3600 * 10**9
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(BUF + 64, 1, far))
    result = []
    t = threading.Thread(target=lambda: result.append(call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF)))
    t.start()
    v = dom.vcpus[0]
    while not v.blocked:
        time.sleep(0.001)
    assert v.poll_ports == [70]
    v.online = True
    assert dom.state == "blocked"
    # What an event channel send does: set the port pending, kick the vCPU.
    pending = ((RAM_PAGES - 1) << 12) + si.SHARED_INFO_EVTCHN_PENDING + 8
    dom.memory.write_phys(pending, (1 << (70 - 64)).to_bytes(8, "little"))
    v.kick()
    t.join()
    assert result == [0] and not v.blocked


def test_shutdown_wakes_a_blocked_vcpu(dom):
    import threading
    dom.unpause()
    dom.memory.write_phys(BUF, s.SCHED_POLL.pack(0, 0, 0))   # no ports, no timeout: forever
    result = []
    t = threading.Thread(target=lambda: result.append(call(dom, x.HYPERVISOR_sched_op, s.SCHEDOP_poll, BUF)))
    t.start()
    while not dom.vcpus[0].blocked:
        time.sleep(0.001)
    dom.shutdown(s.SHUTDOWN_poweroff)
    t.join()
    assert result == [0]
