"""The contract between the hypervisor core and its vCPU engines.

Two engines implement it: KVM (`kvm.py`, C in `kvm.c`) and the software CPU
(`emu.py`, unicorn driven from C in `emu.c`). The core (`xen_core/domain.py`,
`xen_core/vcpu.py`, hypercalls) only ever sees these classes, so a guest
behaves the same on both.

Memory: the core owns one memfd per domain and maps it once, MAP_SHARED, in
its own address space. Engines receive *host addresses* inside that mapping
(KVM memory slots and `uc_mem_map_ptr` both take a host pointer), never a
copy.

Threads: `Vcpu.run()` is called on the vCPU's own thread and blocks in C with
the GIL released. It calls back into Python (`ExitHandler`) only for work
Python must do, synchronously, on that same thread. `request_stop()`,
and `request_interrupt()` may be called from any thread.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol


# Port the hypercall-page stubs write to (`out %eax, $HYPERCALL_PORT` after
# `mov $nr, %eax`; arguments stay in rdi, rsi, rdx, r10, r8). It must fit the
# imm8 of `out`: a port in %dx would clobber the third argument (rdx/edx).
HYPERCALL_PORT = 0xE4
# Engines advertise Xen's CPUID leaves themselves (`xen_core.abi.cpuid`),
# including the hypercall-page MSR, HYPERCALL_PAGE_MSR there.


class RunResult(enum.Enum):
    """Why `Vcpu.run()` returned."""
    STOPPED = "stopped"          # request_stop() or an ExitHandler asked to stop
    TRIPLE_FAULT = "triple_fault"  # KVM_EXIT_SHUTDOWN / unrecoverable fault chain
    ERROR = "error"              # internal error, bad instruction the engine cannot run


class CpuMode(enum.Enum):
    FLAT32 = "flat32"  # protected mode, paging off, flat 4 GiB segments (PVH entry)
    LONG64 = "long64"  # long mode, paging on (cr3 required), 64-bit code segment
    REAL16 = "real16"  # real mode as a STARTUP IPI leaves it: CS = rip >> 4, IP = rip & 0xf


@dataclass
class BootState:
    """Initial vCPU state, the shape Xen's `vcpu_hvm_context` describes.

    General registers not named are zero. Segments are flat (base 0, limit
    4 GiB) as the PVH spec and `VCPU_HVM_MODE_32B/64B` require; the engine
    builds the hidden descriptor parts itself.
    """
    mode: CpuMode
    rip: int
    regs: dict[str, int] = field(default_factory=dict)  # "rax".."r15", "rflags"
    cr0: int | None = None   # default: PE (flat32) or PE|PG|... (long64)
    cr3: int = 0
    cr4: int | None = None
    efer: int | None = None


@dataclass
class SpecialRegs:
    cr0: int
    cr2: int
    cr3: int
    cr4: int
    efer: int
    cpl: int


GENERAL_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
                "rip", "rflags")


class ExitHandler(Protocol):
    """What the core answers for a vCPU. Called on the vCPU thread.

    Each method may call `vcpu.request_stop()` to make `run()` return
    STOPPED at this clean point (shutdown, destroy, pause).
    """

    def hypercall(self, vcpu: "Vcpu", nr: int, args: tuple[int, int, int, int, int, int]) -> int:
        """Return the value for rax (negative errno as a Python int is fine)."""

    def wrmsr(self, vcpu: "Vcpu", msr: int, value: int) -> None:
        """A write to an MSR the engine does not handle itself (at least
        xen_core.abi.cpuid.HYPERCALL_PAGE_MSR)."""

    def io_in(self, vcpu: "Vcpu", port: int, size: int) -> int:
        """`in` from a port the engine does not handle (all ones = nothing there).
        A handler whose class sets `io_in_all_ones = True` answers every port
        that way, and an engine may then answer without calling it."""

    def io_out(self, vcpu: "Vcpu", port: int, size: int, value: int) -> None:
        """`out` to any port but HYPERCALL_PORT."""

    def halt(self, vcpu: "Vcpu") -> None:
        """The guest executed `hlt`: return when it should run again (an
        interrupt is pending, a timer fired, or a stop was requested)."""


class Vcpu(Protocol):
    id: int

    def set_boot_state(self, state: BootState) -> None: ...

    def run(self, handler: ExitHandler) -> RunResult:
        """Run guest code until stopped or a fatal condition; see module doc."""

    def request_stop(self) -> None:
        """Make run() return STOPPED at the next clean point (between
        instructions, never in the middle of an exception delivery)."""

    def request_interrupt(self, vector: int) -> None:
        """Deliver `vector` through the guest IDT as soon as the guest has
        interrupts enabled (the event-channel upcall). Idempotent while pending."""

    def get_regs(self) -> dict[str, int]:
        """GENERAL_REGS by name. Valid inside a handler callback or when not running."""

    def set_regs(self, regs: dict[str, int]) -> None: ...

    def get_sregs(self) -> SpecialRegs: ...

    def close(self) -> None: ...


class Machine(Protocol):
    """One domain's address space and vCPUs on an engine."""

    def map_memory(self, gpa: int, size: int, host_addr: int, readonly: bool = False) -> None:
        """Guest-physical [gpa, gpa+size) is backed by host [host_addr, ...).
        Page aligned. Remapping a range that is mapped is an error: unmap first.
        readonly: guest writes do not reach it (a read-only grant mapping)."""

    def unmap_memory(self, gpa: int, size: int) -> None: ...

    def invalidate_code(self, gpa: int, size: int) -> None:
        """Guest code at gpa was written from outside the guest (the hypercall
        page): drop any translation cache of it. No-op on KVM."""

    def create_vcpu(self, vcpu_id: int) -> Vcpu: ...

    def close(self) -> None:
        """Release every resource (fds, threads, C memory). Vcpus must be stopped."""


class Accelerator(Protocol):
    name: str  # "kvm" | "emu"

    def usable(self) -> tuple[bool, str]:
        """(True, "") or (False, reason) — e.g. "/dev/kvm: permission denied"."""

    def create_machine(self) -> Machine: ...
