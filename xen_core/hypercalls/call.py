"""Helpers shared by the hypercall families.

A handler is `do_<family>(cur, *registers)`: `cur` is the calling VCPU
(Xen's `current`), which offers `copy_from`, `copy_to`, `target` and
`unknown`; the registers are the engine's six arguments, unused ones swallowed.
"""


def s32(value: int) -> int:
    """The C `int` a 64-bit register argument is truncated to."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value
