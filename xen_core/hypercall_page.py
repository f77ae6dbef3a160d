"""The hypercall page the core writes where the guest's MSR write says.

Stub i at offset 32*i: `mov $i, %eax; out %eax, $HYPERCALL_PORT; ret`. The
port fits `out`'s imm8, so rdi, rsi, rdx, r10, r8 reach the engine untouched
(Xen's own HVM stubs are `mov $i, %eax; vmcall; ret`). Padding is int3.
"""
from functools import lru_cache

from .abi.xen import HYPERCALL_STUB_SIZE, NR_HYPERCALL_STUBS
from .accel.base import HYPERCALL_PORT

INT3 = 0xCC


def stub(nr: int) -> bytes:
    code = b"\xb8" + nr.to_bytes(4, "little") + bytes([0xE7, HYPERCALL_PORT]) + b"\xc3"
    return code + bytes([INT3]) * (HYPERCALL_STUB_SIZE - len(code))


@lru_cache(maxsize=1)
def hypercall_page() -> bytes:
    return b"".join(stub(nr) for nr in range(NR_HYPERCALL_STUBS))
