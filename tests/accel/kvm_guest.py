"""Small hand-written x86 guests for the KVM engine tests and bench.

Guest code is assembled at test time with the toolchain's `as`/`ld`; the GDT,
IDT and page tables are laid out here as the CPU reads them.
"""
from __future__ import annotations

import mmap
import os
import shutil
import struct
import subprocess
import tempfile

from xen_core.accel.base import HYPERCALL_PORT

MEM_SIZE = 2 << 20          # one 2 MiB page covers it in long mode
GDT = 0x800
IDT = 0x1000
PML4, PDPT, PD = 0x10000, 0x11000, 0x12000
CODE = 0x20000
STACK_TOP = 0x80000

SEL_CODE32, SEL_DATA, SEL_CODE64 = 0x08, 0x10, 0x18

# Flat descriptors: base 0, limit 0xfffff pages; code32 (D=1), data, code64 (L=1).
_GDT_ENTRIES = [0, 0x00CF9B000000FFFF, 0x00CF93000000FFFF, 0x00AF9B000000FFFF]

# Common 32-bit start: our GDT, data segments, a stack.
PROLOGUE32 = f"""
    .code32
    lgdt gdtr
    ljmp ${SEL_CODE32}, $1f
1:  mov ${SEL_DATA}, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov ${STACK_TOP:#x}, %esp
"""

# Enter long mode from PROLOGUE32 state with the identity map below, then
# continue at the 64-bit label `long64`.
TO_LONG64 = f"""
    mov ${PML4:#x}, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x20, %eax                 /* PAE */
    mov %eax, %cr4
    mov $0xC0000080, %ecx          /* EFER */
    rdmsr
    or $0x100, %eax                /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000001, %eax           /* PG | PE */
    mov %eax, %cr0
    ljmp ${SEL_CODE64}, $long64
    .code64
long64:
"""

DATA = f"""
    .p2align 3
gdtr:
    .word {8 * len(_GDT_ENTRIES) - 1}
    .long {GDT:#x}
idtr32:
    .word 256 * 8 - 1
    .long {IDT:#x}
idtr64:
    .word 256 * 16 - 1
    .quad {IDT:#x}
"""


def hypercall(nr: int) -> str:
    return f"mov ${nr:#x}, %eax\n    out %eax, ${HYPERCALL_PORT:#x}\n"


def toolchain_missing() -> str:
    for tool in ("as", "ld", "objcopy", "nm"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (binutils) to assemble the test guests"
    return ""


def assemble(src: str, base: int = CODE) -> tuple[bytes, dict[str, int]]:
    """Flat binary linked at `base`, and its symbols' addresses."""
    with tempfile.TemporaryDirectory() as d:
        s, o, elf, b = (os.path.join(d, n) for n in ("g.S", "g.o", "g.elf", "g.bin"))
        with open(s, "w") as f:
            f.write(src + "\n")
        for cmd in (["as", "--64", "-o", o, s],
                    ["ld", "-m", "elf_x86_64", "-Ttext", hex(base), "-e", hex(base),
                     "-o", elf, o],
                    ["objcopy", "-O", "binary", "-j", ".text", elf, b],
                    ["nm", elf]):
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode:
                raise RuntimeError(f"{cmd[0]} failed:\n{p.stderr}")
        symbols = {}
        for line in p.stdout.splitlines():
            addr, _, name = line.split()
            symbols[name] = int(addr, 16)
        with open(b, "rb") as f:
            return f.read(), symbols


class GuestMemory:
    """Anonymous host memory laid out for the test guests."""

    def __init__(self, size: int = MEM_SIZE):
        self.size = size
        self.mem = mmap.mmap(-1, size)
        if size < MEM_SIZE:
            return
        self.write(GDT, b"".join(struct.pack("<Q", e) for e in _GDT_ENTRIES))
        # Identity map of the first 2 MiB: PML4[0] -> PDPT[0] -> PD[0] (2 MiB page).
        self.write(PML4, struct.pack("<Q", PDPT | 0x3))
        self.write(PDPT, struct.pack("<Q", PD | 0x3))
        self.write(PD, struct.pack("<Q", 0x0 | 0x83))

    def write(self, gpa: int, data: bytes) -> None:
        self.mem[gpa:gpa + len(data)] = data

    def read(self, gpa: int, size: int) -> bytes:
        return self.mem[gpa:gpa + size]

    def load(self, src: str, base: int = CODE) -> dict[str, int]:
        """Assemble `src` at `base` into memory; returns its symbols."""
        code, symbols = assemble(src, base)
        self.write(base, code)
        return symbols

    def idt32_gate(self, vector: int, handler: int) -> None:
        """32-bit interrupt gate (type 0xE, present, DPL 0) in the IDT."""
        self.write(IDT + 8 * vector, struct.pack(
            "<HHBBH", handler & 0xFFFF, SEL_CODE32, 0, 0x8E, handler >> 16))

    def idt64_gate(self, vector: int, handler: int) -> None:
        """64-bit interrupt gate (type 0xE, present, DPL 0, no IST)."""
        self.write(IDT + 16 * vector, struct.pack(
            "<HHBBHII", handler & 0xFFFF, SEL_CODE64, 0, 0x8E, (handler >> 16) & 0xFFFF,
            handler >> 32, 0))

    def close(self) -> None:
        self.mem.close()


class Recorder:
    """Exit handler that records what the guest did. `hypercall(0xff)`
    (DONE) and `hlt` stop the vCPU unless `on_halt` says otherwise."""
    DONE = 0xFF

    def __init__(self, results=None, on_hypercall=None, on_halt=None, wrmsr_ok=True):
        self.calls: list[tuple[int, tuple]] = []
        self.msrs: list[tuple[int, int]] = []
        self.io: list[tuple] = []
        self.halts = 0
        self.results = results or {}
        self.on_hypercall = on_hypercall
        self.on_halt = on_halt
        self.wrmsr_ok = wrmsr_ok
        self.in_values = {}

    def hypercall(self, vcpu, nr, args):
        self.calls.append((nr, args))
        if self.on_hypercall:
            self.on_hypercall(vcpu, nr, args)
        if nr == self.DONE:
            vcpu.request_stop()
        return self.results.get(nr, 0)

    def wrmsr(self, vcpu, msr, value):
        self.msrs.append((msr, value))
        return None if self.wrmsr_ok else False

    def io_in(self, vcpu, port, size):
        self.io.append(("in", port, size))
        return self.in_values.get(port, 0xFFFFFFFF)

    def io_out(self, vcpu, port, size, value):
        self.io.append(("out", port, size, value))

    def halt(self, vcpu):
        self.halts += 1
        if self.on_halt:
            self.on_halt(vcpu)
        else:
            vcpu.request_stop()

    @property
    def nrs(self):
        return [nr for nr, _ in self.calls]
