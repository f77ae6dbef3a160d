"""Atomic operations on a domain's memfd, for the words Xen shares with a
running guest (event-channel bitmaps, grant-entry flags).

The guest updates those words concurrently with `lock`-prefixed
instructions, so a plain read-modify-write from Python could lose its
update (a mask bit set, a pending bit cleared). These go through
libatomic's lock-free `__atomic_*` entry points (cffi ABI mode: no build
step) on the host address of the word inside the core's mapping, under the
memory's lock so that a domain torn down meanwhile faults instead of
touching unmapped memory.
"""
from __future__ import annotations

from cffi import FFI

from .memory import GuestFault

_ffi = FFI()
_ffi.cdef("""
uint64_t __atomic_fetch_or_8(void *p, uint64_t v, int order);
uint64_t __atomic_fetch_and_8(void *p, uint64_t v, int order);
uint16_t __atomic_fetch_or_2(void *p, uint16_t v, int order);
uint16_t __atomic_fetch_and_2(void *p, uint16_t v, int order);
uint8_t __atomic_exchange_1(void *p, uint8_t v, int order);
_Bool __atomic_compare_exchange_4(void *p, void *expected, uint32_t desired,
                                  _Bool weak, int success, int failure);
""")
_lib = _ffi.dlopen("libatomic.so.1")
SEQ_CST = 5
# Module-level names: inside a class body `_lib.__atomic_x` would be mangled.
_fetch_or_8 = _lib.__atomic_fetch_or_8
_fetch_and_8 = _lib.__atomic_fetch_and_8
_fetch_and_2 = _lib.__atomic_fetch_and_2
_exchange_1 = _lib.__atomic_exchange_1
_cmpxchg_4 = _lib.__atomic_compare_exchange_4


class MemfdAtomics:
    """Atomic bit and word operations at byte offsets of one GuestMemory."""

    def __init__(self, memory):
        self.mem = memory

    def _addr(self, offset: int, size: int):
        mem = self.mem
        if mem.closed:
            raise GuestFault("memory released")
        if offset < 0 or offset + size > mem.nr_frames << 12 or offset % size:
            raise GuestFault(f"atomic access at {offset:#x} out of range")
        return _ffi.cast("void *", mem.host_base + offset)

    def test_and_set_bit(self, offset: int, bit: int) -> bool:
        """Bit `bit` (0..63) of the u64 at `offset`; returns the old value."""
        with self.mem.lock:
            old = _fetch_or_8(self._addr(offset, 8), 1 << bit, SEQ_CST)
        return bool(old >> bit & 1)

    def test_and_clear_bit(self, offset: int, bit: int) -> bool:
        with self.mem.lock:
            old = _fetch_and_8(self._addr(offset, 8),
                                            ~(1 << bit) & 0xFFFF_FFFF_FFFF_FFFF, SEQ_CST)
        return bool(old >> bit & 1)

    def test_bit(self, offset: int, bit: int) -> bool:
        with self.mem.lock:
            self._addr(offset, 8)
            word = int.from_bytes(self.mem.mm[offset:offset + 8], "little")
        return bool(word >> bit & 1)

    def set_byte(self, offset: int, value: int) -> int:
        """Exchange one byte (evtchn_upcall_pending); returns the old one."""
        with self.mem.lock:
            return _exchange_1(self._addr(offset, 1), value, SEQ_CST)

    def read_u32(self, offset: int) -> int:
        with self.mem.lock:
            self._addr(offset, 4)
            return int.from_bytes(self.mem.mm[offset:offset + 4], "little")

    def cmpxchg_u32(self, offset: int, expected: int, new: int) -> int:
        """Compare-and-exchange; returns the value found (== expected on success)."""
        exp = _ffi.new("uint32_t *", expected)
        with self.mem.lock:
            _cmpxchg_4(self._addr(offset, 4), exp, new, False,
                                             SEQ_CST, SEQ_CST)
        return exp[0]

    def clear_u16_bits(self, offset: int, bits: int) -> int:
        with self.mem.lock:
            return _fetch_and_2(self._addr(offset, 2), ~bits & 0xFFFF, SEQ_CST)
