"""What secondary-CPU bring-up needs from the software CPU and the core,
on tiny hand-assembled guests: the LAPIC page's ICR write reaches the
core (as the x2APIC ICR MSR), reads back with the delivery-status bit
clear and ICR2 masked as Xen's vlapic keeps them; a vCPU started in real
mode at a STARTUP vector runs 16-bit code with CS = vector << 8; the
core's vlapic routes INIT/STARTUP/fixed IPIs to the right vCPUs."""
import mmap

import pytest

from xen_core.abi import apic as a
from xen_core.accel import emu
from xen_core.accel.base import BootState, CpuMode, RunResult
from xen_core.vlapic import _targets

_USABLE, _WHY = (emu.EmuAccelerator().usable() if emu.lib is not None
                 else (False, emu._IMPORT_ERROR))
needs_emu = pytest.mark.skipif(not _USABLE, reason=f"emu unusable: {_WHY}")


class Recorder:
    def __init__(self, stop_port=None):
        self.msrs, self.outs, self.stop_port = [], [], stop_port

    def hypercall(self, vcpu, nr, args):
        return 0

    def wrmsr(self, vcpu, msr, value):
        self.msrs.append((msr, value))

    def io_in(self, vcpu, port, size):
        return (1 << (8 * size)) - 1

    def io_out(self, vcpu, port, size, value):
        self.outs.append((port, size, value))
        if port == self.stop_port:
            vcpu.request_stop()

    def halt(self, vcpu):
        vcpu.request_stop()


@pytest.fixture
def machine():
    buf = mmap.mmap(-1, 0x20000)
    view = emu.ffi.from_buffer(buf)
    m = emu.EmuAccelerator().create_machine()
    m.map_memory(0, len(buf), int(emu.ffi.cast("uintptr_t", view)))
    try:
        yield m, buf
    finally:
        m.close()
        emu.ffi.release(view)
        buf.close()


@needs_emu
def test_icr_write_reaches_the_core_and_reads_back_idle(machine):
    m, buf = machine
    code = (b"\xb8\x00\x00\xe0\xfe"                          # mov eax, 0xfee00000
            + b"\xc7\x80\x10\x03\x00\x00\x34\x12\x00\x04"    # ICR2 <- 0x04001234
            + b"\xc7\x80\x00\x03\x00\x00\x08\x56\x00\x00"    # ICR <- 0x5608 (busy set)
            + b"\x8b\x98\x00\x03\x00\x00"                    # ebx <- ICR
            + b"\x8b\x88\x10\x03\x00\x00"                    # ecx <- ICR2
            + b"\x89\xd8\xe7\x80"                            # out 0x80, ebx
            + b"\x89\xc8\xe7\x81"                            # out 0x81, ecx
            + b"\xf4")                                       # hlt
    buf[0x1000:0x1000 + len(code)] = code
    v = m.create_vcpu(0)
    v.set_regs({"rip": 0x1000, "rsp": 0x8000})
    h = Recorder()
    assert v.run(h) is RunResult.STOPPED, v.error
    # STARTUP to APIC ID 4, vector 8; the ICR2 low bits are not kept.
    assert h.msrs == [(a.MSR_X2APIC_ICR, 4 << 32 | 0x4608)]
    assert h.outs == [(0x80, 4, 0x4608), (0x81, 4, 0x04000000)]


@needs_emu
def test_xapic_broadcast_is_the_x2apic_broadcast(machine):
    m, buf = machine
    code = (b"\xb8\x00\x00\xe0\xfe"
            + b"\xc7\x80\x10\x03\x00\x00\x00\x00\x00\xff"    # ICR2 <- 0xff000000
            + b"\xc7\x80\x00\x03\x00\x00\xf6\x40\x00\x00"    # fixed 0xf6, assert
            + b"\xf4")
    buf[0x1000:0x1000 + len(code)] = code
    v = m.create_vcpu(1)
    v.set_regs({"rip": 0x1000, "rsp": 0x8000})
    h = Recorder()
    assert v.run(h) is RunResult.STOPPED, v.error
    assert h.msrs == [(a.MSR_X2APIC_ICR, a.APIC_BROADCAST << 32 | 0x40F6)]


@needs_emu
def test_each_vcpu_reads_its_own_apic_id(machine):
    m, buf = machine
    code = b"\xb8\x00\x00\xe0\xfe\x8b\x58\x20\x89\xd8\xe7\x80\xf4"  # out 0x80, [APIC_ID]
    buf[0x1000:0x1000 + len(code)] = code
    for i in (0, 3):
        v = m.create_vcpu(i)
        v.set_regs({"rip": 0x1000, "rsp": 0x8000})
        h = Recorder()
        assert v.run(h) is RunResult.STOPPED, v.error
        assert h.outs == [(0x80, 4, a.apic_id(i) << 24)]


@needs_emu
def test_real_mode_start_at_a_startup_vector(machine):
    """CS = 0x0900 and IP = 0 for vector 9; 16-bit operands by default,
    0x66 for 32-bit; a far jump reloads CS as real mode does."""
    m, buf = machine
    first = (b"\x8c\xc8\xe7\x80"                              # mov ax, cs; out 0x80, ax
             + b"\x66\xb8\x78\x56\x34\x12\x66\xe7\x81"        # mov eax, imm32; out 0x81, eax
             + b"\xea\x10\x00\x00\x0a")                       # ljmp 0x0a00:0x0010
    second = b"\x8c\xc8\xe7\x82\xeb\xfe"                      # mov ax, cs; out 0x82; jmp $
    buf[0x9000:0x9000 + len(first)] = first
    buf[0xA010:0xA010 + len(second)] = second
    v = m.create_vcpu(1)
    v.set_boot_state(BootState(CpuMode.REAL16, rip=9 << 12, regs={"rflags": 2}))
    h = Recorder(stop_port=0x82)
    assert v.run(h) is RunResult.STOPPED, v.error
    assert h.outs == [(0x80, 2, 0x0900), (0x81, 4, 0x12345678), (0x82, 2, 0x0A00)]


@needs_emu
def test_real_mode_start_above_1mib_is_refused(machine):
    m, _ = machine
    v = m.create_vcpu(0)
    with pytest.raises(ValueError, match="above 1 MiB"):
        v.set_boot_state(BootState(CpuMode.REAL16, rip=1 << 20))


class _V:
    def __init__(self, d, i):
        self.domain, self.id = d, i


class _D:
    max_vcpus = 4


@pytest.mark.parametrize("short, dest, want", [
    (a.APIC_DEST_NOSHORT, a.apic_id(2), [2]),
    (a.APIC_DEST_NOSHORT, 3, []),                  # odd: no vCPU has it
    (a.APIC_DEST_NOSHORT, a.APIC_BROADCAST, [0, 1, 2, 3]),
    (a.APIC_DEST_SELF, 0, [1]),
    (a.APIC_DEST_ALLINC, 0, [0, 1, 2, 3]),
    (a.APIC_DEST_ALLBUT, 0, [0, 2, 3]),
])
def test_ipi_destinations(short, dest, want):
    assert _targets(_V(_D(), 1), short, dest) == want
