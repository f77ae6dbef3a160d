"""The KVM engine against real guest code (small assembled guests).

Ring-0 guest code is emulated on kvm_pvm at about 0.56 us per instruction, so
the guests are a few dozen instructions each.
"""
from __future__ import annotations

import os
import struct
import threading

import pytest

from xen_core.abi.cpuid import HYPERCALL_PAGE_MSR, XEN_CPUID_BASE
from xen_core.accel import cpu_has_hardware_virt, kvm
from xen_core.accel.base import BootState, CpuMode, RunResult

from .kvm_guest import (CODE, DATA, PML4, PROLOGUE32, TO_LONG64, GuestMemory,
                        Recorder, hypercall, toolchain_missing)

_USABLE, _WHY = kvm.KvmAccelerator().usable()
pytestmark = [
    pytest.mark.skipif(not _USABLE, reason=f"KVM unusable: {_WHY}"),
    pytest.mark.skipif(bool(toolchain_missing()), reason=toolchain_missing()),
]
DONE = hypercall(Recorder.DONE)
IDT_LOAD = "lidt idtr32\n"


class Vm:
    """A machine with one RAM slot at gpa 0 and a guest loaded at CODE."""

    def __init__(self, src: str | None = None, mem: GuestMemory | None = None):
        self.mem = mem or GuestMemory()
        self.machine = kvm.KvmAccelerator().create_machine()
        self.machine.map_memory(0, self.mem.size, kvm._host_addr(self.mem.mem))
        if src is not None:
            self.mem.load(src + DATA)

    def vcpu(self, vcpu_id=0, rip=CODE, **regs):
        v = self.machine.create_vcpu(vcpu_id)
        v.set_boot_state(BootState(CpuMode.FLAT32, rip=rip, regs=regs))
        return v

    def close(self):
        self.machine.close()
        self.mem.close()


@pytest.fixture
def vm_factory():
    made = []

    def make(src=None, **kw):
        vm = Vm(src, **kw)
        made.append(vm)
        return vm
    yield make
    for vm in made:
        vm.close()


def run_guest(vm_factory, src, handler=None, **regs):
    vm = vm_factory(src)
    vcpu = vm.vcpu(**regs)
    handler = handler or Recorder()
    result = vcpu.run(handler)
    return result, handler, vcpu


# -- host side --------------------------------------------------------------


def test_usable_names_the_problem_when_the_device_is_wrong(tmp_path):
    missing = kvm.KvmAccelerator(str(tmp_path / "kvm")).usable()
    assert missing == (False, f"{tmp_path / 'kvm'}: No such file or directory")
    assert kvm.KvmAccelerator("/dev/null").usable() == (False, "/dev/null: not a KVM device")
    with pytest.raises(OSError, match="not a KVM device"):
        kvm.KvmAccelerator("/dev/null").create_machine()


def test_usable_says_when_the_c_module_is_not_built(monkeypatch):
    monkeypatch.setattr(kvm, "lib", None)
    monkeypatch.setattr(kvm, "_IMPORT_ERROR", "No module named 'xen_core.accel._kvm'")
    monkeypatch.setattr(kvm.KvmAccelerator, "_probes", {})
    ok, why = kvm.KvmAccelerator().usable()
    assert not ok
    assert why == "xen_core.accel._kvm is not built (No module named 'xen_core.accel._kvm')"


def test_tss_and_identity_map_outside_ram_and_special_pages():
    from xen_core.abi.layout import LOWMEM_LIMIT, SPECIAL_REGION_END, SPECIAL_REGION_START
    for addr, size in ((kvm.KVM_TSS_ADDR, 3 * 4096), (kvm.KVM_IDENTITY_MAP_ADDR, 4096)):
        assert addr >= LOWMEM_LIMIT and addr + size <= 1 << 32
        assert addr + size <= SPECIAL_REGION_START or addr >= SPECIAL_REGION_END


# -- hypercalls, registers, modes --------------------------------------------

def test_flat32_hypercall_passes_nr_args_and_returns_rax(vm_factory):
    src = PROLOGUE32 + f"""
    mov $0x11111111, %edi
    mov $0x22222222, %esi
    mov $0x33333333, %edx
    {hypercall(0x26)}
    mov %eax, %edi                /* the result comes back in eax */
    {DONE}
    """
    handler = Recorder(results={0x26: 0xCAFEF00D})
    result, handler, vcpu = run_guest(vm_factory, src, handler,
                                      r10=0x4444, r8=0x5555, r9=0x6666)
    assert result is RunResult.STOPPED
    assert handler.calls[0] == (0x26, (0x11111111, 0x22222222, 0x33333333, 0x4444, 0x5555, 0x6666))
    assert handler.calls[1][1][0] == 0xCAFEF00D
    assert handler.nrs == [0x26, Recorder.DONE]
    sregs = vcpu.get_sregs()
    assert sregs.cr0 & 1 and not sregs.cr0 & (1 << 31) and sregs.cpl == 0


def test_negative_errno_result_reaches_guest_as_64bit_value(vm_factory):
    src = PROLOGUE32 + TO_LONG64 + hypercall(0x11) + "mov %rax, %rdi\n" + DONE
    handler = Recorder(results={0x11: -38})  # -ENOSYS
    result, handler, vcpu = run_guest(vm_factory, src, handler)
    assert result is RunResult.STOPPED
    assert handler.calls[-1][1][0] == (-38) & (2 ** 64 - 1)


def test_switch_to_long_mode_and_64bit_hypercall(vm_factory):
    src = PROLOGUE32 + TO_LONG64 + f"""
    movabs $0x0123456789abcdef, %rdi
    movabs $0xfedcba9876543210, %rsi
    mov $-1, %rdx
    movabs $0x1000000000000001, %r10
    mov $8, %r8
    mov $9, %r9
    {hypercall(0x22)}
    mov %rax, %rdi
    {DONE}
    """
    seen = {}

    def on_hypercall(vcpu, nr, args):
        if nr == 0x22:
            seen["sregs"] = vcpu.get_sregs()
            seen["regs"] = vcpu.get_regs()

    handler = Recorder(results={0x22: 0x8000000000000042}, on_hypercall=on_hypercall)
    result, handler, vcpu = run_guest(vm_factory, src, handler)
    assert result is RunResult.STOPPED, vcpu.last_error
    assert handler.calls[0] == (0x22, (0x0123456789ABCDEF, 0xFEDCBA9876543210, 2 ** 64 - 1,
                                       0x1000000000000001, 8, 9))
    assert handler.calls[1][1][0] == 0x8000000000000042
    sregs = seen["sregs"]
    assert sregs.efer & 0x500 == 0x500 and sregs.cr0 & (1 << 31) and sregs.cr4 & 0x20
    assert sregs.cr3 == PML4
    assert seen["regs"]["rdi"] == 0x0123456789ABCDEF


def test_long64_boot_state_runs_64bit_code_directly(vm_factory):
    vm = vm_factory()
    vm.mem.load(".code64\n" + "lea 0f(%rip), %rdi\n0:\n" + hypercall(0x33) + DONE)
    vcpu = vm.machine.create_vcpu(1)
    vcpu.set_boot_state(BootState(CpuMode.LONG64, rip=CODE, cr3=PML4,
                                  regs={"rsp": 0x70000, "rbx": 7}))
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
    # lea's 7 bytes: the label is at CODE + 7, addressed rip-relative.
    assert handler.calls[0] == (0x33, (CODE + 7, 0, 0, 0, 0, 0))
    assert vcpu.get_regs()["rbx"] == 7 and vcpu.get_regs()["rsp"] == 0x70000
    s = vcpu.get_sregs()
    assert s.efer & 0x400 and s.cr3 == PML4


def test_set_regs_inside_handler_reaches_guest(vm_factory):
    src = PROLOGUE32 + hypercall(1) + "mov %ebx, %edi\n" + DONE

    def on_hypercall(vcpu, nr, args):
        if nr == 1:
            vcpu.set_regs({"rbx": 0xABCD})

    result, handler, _ = run_guest(vm_factory, src, Recorder(on_hypercall=on_hypercall))
    assert handler.calls[1][1][0] == 0xABCD


def test_stop_completes_the_out_first(vm_factory):
    vm = vm_factory()
    sym = vm.mem.load(PROLOGUE32 + DONE + "after_out:\n    nop\n" + DATA)
    vcpu = vm.vcpu()
    assert vcpu.run(Recorder()) is RunResult.STOPPED
    assert vcpu.get_regs()["rip"] == sym["after_out"]


def test_cpuid_advertises_xen(vm_factory):
    src = PROLOGUE32
    for leaf in (XEN_CPUID_BASE, XEN_CPUID_BASE + 1, XEN_CPUID_BASE + 2):
        # 32-bit code: eax, ebx, ecx, edx go out in edi, esi, ebp, ebx
        src += f"""
    mov ${leaf:#x}, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, %edi
    mov %ebx, %esi
    mov %ecx, %ebp
    mov %edx, %ebx
    {hypercall(leaf & 0xFF)}
        """
    got = {}

    def on_hypercall(vcpu, nr, args):
        r = vcpu.get_regs()
        got[nr] = (args[0], args[1], r["rbp"], r["rbx"])

    result, handler, _ = run_guest(vm_factory, src + DONE, Recorder(on_hypercall=on_hypercall))
    assert result is RunResult.STOPPED
    sig = struct.unpack("<3I", b"XenVMMXenVMM")
    assert got[0] == (XEN_CPUID_BASE + 2, *sig)
    assert got[1] == ((4 << 16) | 17, 0, 0, 0)
    assert got[2] == (1, HYPERCALL_PAGE_MSR, 0, 0)


def test_cpuid_leaf1_has_hypervisor_bit_and_apic_id(vm_factory):
    src = PROLOGUE32 + """
    mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, %edi
    mov %ebx, %esi
    """ + DONE
    vm = vm_factory(src)
    vcpu = vm.vcpu(vcpu_id=3)
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED
    ecx, ebx = handler.calls[0][1][:2]
    assert ecx >> 31 == 1
    assert ebx >> 24 == 3


def test_guest_tsc_is_the_host_tsc(vm_factory):
    """The core publishes host TSC readings in vcpu_time_info."""
    src = PROLOGUE32 + "rdtsc\nmov %eax, %edi\nmov %edx, %esi\n" + DONE
    vm = vm_factory(src)
    vcpu = vm.vcpu()
    handler = Recorder()
    before = kvm.lib.xk_host_tsc()
    assert vcpu.run(handler) is RunResult.STOPPED
    after = kvm.lib.xk_host_tsc()
    lo, hi = handler.calls[0][1][:2]
    assert before <= (hi << 32 | lo) <= after


# -- MSRs, io, hlt -------------------------------------------------------------

def test_wrmsr_of_hypercall_msr_reaches_handler(vm_factory):
    src = PROLOGUE32 + f"""
    mov ${HYPERCALL_PAGE_MSR:#x}, %ecx
    mov $0x5000, %eax
    mov $0x1, %edx
    wrmsr
    """ + DONE
    result, handler, _ = run_guest(vm_factory, src)
    assert result is RunResult.STOPPED
    assert handler.msrs == [(HYPERCALL_PAGE_MSR, 0x1_0000_5000)]
    assert handler.nrs == [Recorder.DONE]


def test_refused_wrmsr_and_rdmsr_of_hypercall_msr_raise_gp(vm_factory):
    wrmsr = f"mov ${HYPERCALL_PAGE_MSR:#x}, %ecx\nmov $0x2000, %eax\nxor %edx, %edx\nwrmsr\n"
    for body, ok in ((wrmsr, False),
                     (f"mov ${HYPERCALL_PAGE_MSR:#x}, %ecx\nrdmsr\n", True)):
        vm = vm_factory()
        # the #GP handler reports the error code
        sym = vm.mem.load(PROLOGUE32 + IDT_LOAD + body + DONE + "gp_handler:\n    pop %edi\n"
                          + hypercall(0x0D) + "    hlt\n" + DATA)
        vm.mem.idt32_gate(13, sym["gp_handler"])
        vcpu = vm.vcpu()
        handler = Recorder(wrmsr_ok=ok)
        assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
        assert handler.nrs == [0x0D], body
        assert handler.calls[0][1][0] == 0  # #GP error code 0
        assert handler.msrs == ([] if ok else [(HYPERCALL_PAGE_MSR, 0x2000)])


def test_io_in_and_out_reach_handler(vm_factory):
    src = PROLOGUE32 + """
    mov $0x8f, %al
    out %al, $0x70
    mov $0x1234, %ax
    mov $0x402, %dx
    out %ax, %dx
    in $0x71, %al
    movzbl %al, %edi
    mov $0xcf8, %dx
    in %dx, %eax
    mov %eax, %esi
    """ + DONE
    handler = Recorder()
    handler.in_values = {0x71: 0x5A, 0xCF8: 0x80000000}
    result, handler, _ = run_guest(vm_factory, src, handler)
    assert result is RunResult.STOPPED
    assert handler.io == [("out", 0x70, 1, 0x8F), ("out", 0x402, 2, 0x1234),
                          ("in", 0x71, 1), ("in", 0xCF8, 4)]
    assert handler.calls[0][1][:2] == (0x5A, 0x80000000)


def test_hlt_calls_halt_then_resumes(vm_factory):
    src = PROLOGUE32 + "hlt\n" + hypercall(7) + "hlt\n"
    halts = []

    def on_halt(vcpu):
        halts.append(vcpu.get_regs()["rip"])
        if len(halts) == 2:
            vcpu.request_stop()

    result, handler, _ = run_guest(vm_factory, src, Recorder(on_halt=on_halt))
    assert result is RunResult.STOPPED
    assert handler.nrs == [7] and handler.halts == 2
    assert halts[1] > halts[0]


def test_unbacked_memory_reads_all_ones_and_drops_writes(vm_factory):
    vm = vm_factory()
    vm.machine.unmap_memory(0x100000, 0x1000)   # split the slot around one page
    vm.mem.write(0x100000, b"\x11" * 8)
    vm.mem.write(0x101000, b"\x22" * 4)
    vm.mem.load(PROLOGUE32 + """
    movl $0x12345678, 0x100000
    mov 0x100000, %edi
    mov 0x101000, %esi
    """ + DONE + DATA)
    vcpu = vm.vcpu()
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
    assert handler.calls[0][1][:2] == (0xFFFFFFFF, 0x22222222)
    assert vm.mem.read(0x100000, 8) == b"\x11" * 8


# -- stopping and interrupts ---------------------------------------------------

SPIN = PROLOGUE32 + hypercall(1) + "2: jmp 2b\n"


def test_request_stop_from_another_thread_stops_a_spinning_guest(vm_factory):
    vm = vm_factory(SPIN)
    vcpu = vm.vcpu()
    spinning = threading.Event()
    handler = Recorder(on_hypercall=lambda v, nr, a: spinning.set())
    stopper = threading.Thread(target=lambda: (spinning.wait(), vcpu.request_stop()))
    stopper.start()
    assert vcpu.run(handler) is RunResult.STOPPED
    stopper.join()
    assert handler.nrs == [1]
    rip = vcpu.get_regs()["rip"]
    # again, from a different thread running the vCPU this time
    out = []
    t = threading.Thread(target=lambda: out.append(vcpu.run(handler)))
    t.start()
    vcpu.request_stop()
    t.join()
    assert out == [RunResult.STOPPED] and handler.nrs == [1]
    assert vcpu.get_regs()["rip"] == rip   # still in the jmp loop


def test_no_stop_or_interrupt_request_is_lost_in_races(vm_factory):
    """Requests land at every point of the run loop (before KVM_RUN, inside
    it, in the handler): each must end its run. A lost one would leave run()
    spinning; the watchdog then stops it and the test fails."""
    import random
    vm = vm_factory()
    _irq_guest(vm.mem, 0x43, "sti\n" + hypercall(1) + "2: jmp 2b\n")
    vcpu = vm.vcpu()
    delivered = []

    def on_hypercall(v, nr, args):
        if nr == 1:
            v.request_stop()      # first run: stop once the guest is spinning
        if nr == 0x40:
            delivered.append(1)
            v.request_stop()

    handler = Recorder(on_hypercall=on_hypercall)
    assert vcpu.run(handler) is RunResult.STOPPED
    rng = random.Random(4)
    lost = []
    for i in range(100):
        interrupt = i % 2
        done = threading.Event()

        def poke():
            for _ in range(rng.randrange(0, 2000)):
                pass
            if interrupt:
                vcpu.request_interrupt(0x43)
            else:
                vcpu.request_stop()
            if not done.wait(30):
                lost.append(i)
                vcpu.request_stop()

        t = threading.Thread(target=poke)
        t.start()
        assert vcpu.run(handler) is RunResult.STOPPED
        done.set()
        t.join()
    assert lost == []
    assert len(delivered) == 50


def test_stop_requested_before_run_returns_at_once(vm_factory):
    vm = vm_factory(SPIN)
    vcpu = vm.vcpu()
    vcpu.request_stop()
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED
    assert handler.calls == []


def _irq_guest(mem: GuestMemory, vector: int, body: str) -> None:
    """Load a long-mode guest with an interrupt gate for `vector` whose
    handler reports the interrupted rflags (from the frame) and its own, then
    iretq. (kvm_pvm cannot emulate a 32-bit iret: see test_emulation_failure.)"""
    sym = mem.load(PROLOGUE32 + TO_LONG64 + "lidt idtr64\n" + body + "irq_handler:\n" + """
    mov 16(%rsp), %rdi          /* rflags in the interrupt frame */
    pushf
    pop %rsi                    /* rflags inside the handler: IF clear */
    """ + hypercall(0x40) + "    iretq\n" + DATA)
    mem.idt64_gate(vector, sym["irq_handler"])


def test_request_interrupt_waits_for_if_then_delivers_through_idt(vm_factory):
    vm = vm_factory()
    body = "cli\n" + hypercall(1) + hypercall(2) + "sti\nnop\n" + hypercall(3) + DONE
    _irq_guest(vm.mem, 0x40, body)
    vcpu = vm.vcpu()

    def on_hypercall(v, nr, args):
        if nr == 1:
            v.request_interrupt(0x40)
            v.request_interrupt(0x40)   # idempotent while pending

    handler = Recorder(on_hypercall=on_hypercall)
    assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
    # Nothing is delivered while IF=0, then exactly once. Hardware takes it
    # right after `sti; nop`; kvm_pvm opens the interrupt window a few
    # emulated instructions late (after hypercall 3 here).
    nrs = handler.nrs
    assert sorted(nrs) == [1, 2, 3, 0x40, Recorder.DONE]
    assert nrs[:2] == [1, 2] and nrs[-1] == Recorder.DONE
    frame_eflags, inside_eflags = handler.calls[nrs.index(0x40)][1][:2]
    assert frame_eflags & 0x200 and not inside_eflags & 0x200
    assert vcpu.pending_interrupt is None


def test_request_interrupt_from_another_thread_kicks_a_spinning_guest(vm_factory):
    vm = vm_factory()
    _irq_guest(vm.mem, 0x41, "sti\n" + hypercall(1) + "2: jmp 2b\n")
    vcpu = vm.vcpu()
    spinning = threading.Event()

    def on_hypercall(v, nr, args):
        if nr == 1:
            spinning.set()
        if nr == 0x40:
            v.request_stop()

    t = threading.Thread(target=lambda: (spinning.wait(), vcpu.request_interrupt(0x41)))
    t.start()
    handler = Recorder(on_hypercall=on_hypercall)
    assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
    t.join()
    assert handler.nrs == [1, 0x40]


def test_interrupt_wakes_a_halted_guest(vm_factory):
    vm = vm_factory()
    _irq_guest(vm.mem, 0x42, "sti\nhlt\n" + hypercall(5) + DONE)
    vcpu = vm.vcpu()
    handler = Recorder(on_halt=lambda v: v.request_interrupt(0x42))
    assert vcpu.run(handler) is RunResult.STOPPED, vcpu.last_error
    assert handler.halts == 1 and handler.nrs == [0x40, 5, Recorder.DONE]


# -- faults and containment ----------------------------------------------------

def test_emulation_failure_is_an_error_naming_the_instruction(vm_factory):
    """kvm_pvm emulates ring-0 code and cannot deliver a 32-bit `int $n`
    (nor run a 32-bit `iret`): that is RunResult.ERROR with the instruction
    bytes. With VT-x/AMD-V it runs."""
    vm = vm_factory()
    sym = vm.mem.load(PROLOGUE32 + IDT_LOAD + "fails: int $0x30\n" + DONE + "handler:\n"
                      + hypercall(0x30) + "iret\n" + DATA)
    vm.mem.idt32_gate(0x30, sym["handler"])
    vcpu = vm.vcpu()
    handler = Recorder()
    result = vcpu.run(handler)
    if cpu_has_hardware_virt():
        assert result is RunResult.STOPPED and handler.nrs == [0x30, Recorder.DONE]
    else:
        assert result is RunResult.ERROR and handler.nrs == []
        assert vcpu.last_error.startswith("KVM_EXIT_INTERNAL_ERROR: emulation failure")
        assert f"at rip {sym['fails']:#x}, instruction bytes cd 30 " in vcpu.last_error


def test_triple_fault_is_reported_and_the_process_is_unharmed(vm_factory):
    src = PROLOGUE32 + """
    lidt null_idtr
    ud2
    null_idtr:
    .word 0
    .long 0
    """
    result, handler, vcpu = run_guest(vm_factory, src)
    assert result is RunResult.TRIPLE_FAULT
    assert handler.calls == []
    # another VM still works afterwards
    result, handler, _ = run_guest(vm_factory, PROLOGUE32 + DONE)
    assert result is RunResult.STOPPED and handler.nrs == [Recorder.DONE]


def test_handler_exception_propagates_and_the_vcpu_stays_usable(vm_factory):
    src = PROLOGUE32 + hypercall(1) + hypercall(2) + DONE

    class Boom(Exception):
        pass

    calls = []

    def on_hypercall(v, nr, args):
        calls.append(nr)
        if nr == 1 and calls.count(1) == 1:
            raise Boom()

    for dispatch in ("return", "callback"):
        calls.clear()
        vm = vm_factory(src)
        vcpu = vm.vcpu()
        vcpu.dispatch = dispatch
        handler = Recorder(on_hypercall=on_hypercall)
        with pytest.raises(Boom):
            vcpu.run(handler)
        assert vcpu.run(handler) is RunResult.STOPPED
        assert calls == [1, 2, Recorder.DONE], dispatch


def test_callback_dispatch_gives_the_same_results(vm_factory):
    src = PROLOGUE32 + "mov $3, %edi\n" + hypercall(9) + "mov %eax, %edi\nhlt\n" + DONE
    vm = vm_factory(src)
    vcpu = vm.vcpu()
    vcpu.dispatch = "callback"
    handler = Recorder(results={9: 77}, on_halt=lambda v: None)
    assert vcpu.run(handler) is RunResult.STOPPED
    assert handler.calls == [(9, (3, 0, 0, 0, 0, 0)), (Recorder.DONE, (77, 0, 0, 0, 0, 0))]
    assert handler.halts == 1


def test_raw_out_trap_reference_runs():
    assert kvm.raw_out_trap_ns(50) > 0


def test_two_vms_run_at_once(vm_factory):
    vms = []
    for n in range(2):
        src = PROLOGUE32 + f"mov ${n + 100}, %edi\n" + hypercall(1) + f"movl ${n + 0x55}, 0x90000\n" + DONE
        vms.append(vm_factory(src))
    results, handlers = [None, None], [Recorder(), Recorder()]
    vcpus = [vm.vcpu() for vm in vms]

    def go(i):
        results[i] = vcpus[i].run(handlers[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [RunResult.STOPPED] * 2
    for n in range(2):
        assert handlers[n].calls[0][1][0] == n + 100
        assert vms[n].mem.read(0x90000, 4) == struct.pack("<I", n + 0x55)


def test_two_vcpus_of_one_vm_run_on_their_own_threads(vm_factory):
    vm = vm_factory(PROLOGUE32 + "mov %ebx, %edi\n" + hypercall(1) + DONE)
    vcpus = [vm.vcpu(i, rbx=10 + i) for i in range(2)]
    handlers = [Recorder(), Recorder()]
    threads = [threading.Thread(target=vcpus[i].run, args=(handlers[i],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [h.calls[0][1][0] for h in handlers] == [10, 11]


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_fd_or_thread_leaks_after_close():
    def cycle():
        vm = Vm(PROLOGUE32 + hypercall(1) + DONE)
        vcpus = [vm.vcpu(i) for i in range(2)]
        for v in vcpus:
            assert v.run(Recorder()) is RunResult.STOPPED
        vm.close()

    cycle()  # warm up one-time state (signal handler, imports)
    fds, threads = _fds(), threading.active_count()
    for _ in range(10):
        cycle()
    assert _fds() == fds
    assert threading.active_count() == threads


# -- bad input -----------------------------------------------------------------

def test_memory_map_errors_are_clear_and_change_nothing(vm_factory):
    vm = vm_factory(PROLOGUE32 + "mov 0x1000, %edi\n" + DONE)
    m = vm.machine
    host = kvm._host_addr(vm.mem.mem)
    with pytest.raises(ValueError, match="not page aligned"):
        m.map_memory(0x300000, 0x1000, host + 8)
    with pytest.raises(ValueError, match="not page aligned"):
        m.map_memory(0x300001, 0x1000, host)
    with pytest.raises(ValueError, match="overlaps"):
        m.map_memory(0x1000, 0x1000, host)
    with pytest.raises(ValueError, match="not mapped"):
        m.unmap_memory(0x200000, 0x1000)
    with pytest.raises(ValueError, match="not mapped"):
        m.unmap_memory(0x1FF000, 0x2000)   # half outside RAM
    with pytest.raises(ValueError, match="empty"):
        m.map_memory(0x300000, 0, host)
    vm.mem.write(0x1000, struct.pack("<I", 0xBEEF))
    vcpu = vm.vcpu()
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED
    assert handler.calls[0][1][0] == 0xBEEF


def test_kvm_refusing_a_slot_is_a_clear_error_and_changes_nothing(vm_factory):
    vm = vm_factory(PROLOGUE32 + "mov 0x1000, %edi\n" + DONE)
    slots = dict(vm.machine._slots)
    with pytest.raises(OSError, match="KVM_SET_USER_MEMORY_REGION 0x300000.*Invalid argument"):
        vm.machine.map_memory(0x300000, 0x1000, 0xFFFF800000000000)  # kernel address
    with pytest.raises(OSError, match="Invalid argument"):
        vm.machine.map_memory(1 << 52, 0x1000, kvm._host_addr(vm.mem.mem))
    assert vm.machine._slots == slots
    vm.mem.write(0x1000, struct.pack("<I", 0xF00D))
    handler = Recorder()
    assert vm.vcpu().run(handler) is RunResult.STOPPED
    assert handler.calls[0][1][0] == 0xF00D


def test_slot_over_inaccessible_host_memory_does_not_harm_the_process(vm_factory):
    import ctypes
    import mmap
    # A page with no access, kept reserved: an address merely unmapped
    # could be handed to the next mapping of this process (the VM's own
    # memory, a thread's stack) and read as zeros.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    addr = libc.mmap(None, 0x1000, 0, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)   # PROT_NONE
    assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
    vm = vm_factory(PROLOGUE32 + "mov 0x100000, %edi\n" + DONE)
    vm.machine.unmap_memory(0x100000, 0x1000)
    vm.machine.map_memory(0x100000, 0x1000, addr)
    try:
        vcpu = vm.vcpu()
        handler = Recorder()
        result = vcpu.run(handler)
        # KVM answers -EFAULT (ERROR); kvm_pvm treats the page as MMIO (all ones).
        assert (result is RunResult.ERROR and "Bad address" in vcpu.last_error) or \
            (result is RunResult.STOPPED and handler.calls[0][1][0] == 0xFFFFFFFF), \
            (result, vcpu.last_error, handler.calls)
    finally:
        vm.machine.unmap_memory(0x100000, 0x1000)
        libc.munmap(addr, 0x1000)


def test_remap_after_unmap_uses_the_new_backing(vm_factory):
    vm = vm_factory(PROLOGUE32 + "mov 0x100000, %edi\n" + DONE)
    other = GuestMemory(0x1000)
    other.write(0, struct.pack("<I", 0x600D))
    try:
        vm.machine.unmap_memory(0x100000, 0x1000)
        vm.machine.map_memory(0x100000, 0x1000, kvm._host_addr(other.mem))
        handler = Recorder()
        assert vm.vcpu().run(handler) is RunResult.STOPPED
        assert handler.calls[0][1][0] == 0x600D
        vm.machine.unmap_memory(0x100000, 0x1000)
    finally:
        other.close()


def test_vcpu_and_state_errors(vm_factory):
    vm = vm_factory(SPIN)
    vcpu = vm.vcpu(0)
    with pytest.raises(ValueError, match="exists"):
        vm.machine.create_vcpu(0)
    with pytest.raises(ValueError, match="out of range"):
        vm.machine.create_vcpu(-1)
    with pytest.raises(ValueError, match="vector"):
        vcpu.request_interrupt(256)
    with pytest.raises(ValueError, match="cr3"):
        vcpu.set_boot_state(BootState(CpuMode.LONG64, rip=CODE))
    with pytest.raises(ValueError, match="unknown registers"):
        vcpu.set_regs({"eax": 1})
    with pytest.raises(ValueError, match="unknown registers"):
        vcpu.set_boot_state(BootState(CpuMode.FLAT32, rip=CODE, regs={"cs": 1}))
    vcpu.close()
    with pytest.raises(RuntimeError, match="closed"):
        vcpu.run(Recorder())
    with pytest.raises(RuntimeError, match="closed"):
        vcpu.get_regs()
    with pytest.raises(RuntimeError, match="closed"):
        vcpu.get_sregs()
    vcpu.request_stop()          # late kicks of a closed vCPU are harmless
    vcpu.request_interrupt(0x20)
    assert vcpu.pending_interrupt is None


def test_new_boot_state_after_a_handler_raised_starts_clean(vm_factory):
    vm = vm_factory()
    sym = vm.mem.load(PROLOGUE32 + hypercall(1) + DONE + "second:\n" + "mov %eax, %edi\nmov %ebx, %esi\n"
                      + hypercall(2) + DONE + DATA)
    vcpu = vm.vcpu()

    def on_hypercall(v, nr, args):
        if nr == 1:
            raise KeyError("handler bug")

    with pytest.raises(KeyError):
        vcpu.run(Recorder(on_hypercall=on_hypercall))
    vcpu.set_boot_state(BootState(CpuMode.FLAT32, rip=sym["second"], regs={"rax": 0x77, "rbx": 5}))
    handler = Recorder()
    assert vcpu.run(handler) is RunResult.STOPPED
    # the abandoned hypercall's result (rax = 0) did not land in the new state
    assert handler.calls[0] == (2, (0x77, 5, 0, 0, 0, 0))
    assert vcpu.get_regs()["rbx"] == 5


def test_close_refuses_while_a_vcpu_runs(vm_factory):
    vm = vm_factory(SPIN)
    vcpu = vm.vcpu()
    started = threading.Event()
    t = threading.Thread(target=vcpu.run,
                         args=(Recorder(on_hypercall=lambda v, nr, a: started.set()),))
    t.start()
    started.wait()
    with pytest.raises(RuntimeError, match="running"):
        vm.machine.close()
    vcpu.request_stop()
    t.join()
    vm.machine.close()
    with pytest.raises(RuntimeError, match="closed"):
        vm.machine.create_vcpu(1)
