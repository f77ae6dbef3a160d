"""The backend half of the PV console ring, sans I/O.

`ConsoleRing` works on any writable 4 KiB buffer holding a
`xencons_interface` (a foreign mapping of the guest's console page, or a
bytearray in tests): drain `out`, fill `in`. A guest that moves its
producer index more than a ring's size ahead of our consumer is broken;
we take what one ring holds and resynchronise, as xenconsoled does.
"""
from __future__ import annotations

from xen_core.abi import console as c

MASK32 = 0xFFFFFFFF


class ConsoleRing:
    def __init__(self, page):
        self.page = page

    def _get(self, off: int) -> int:
        return c.IDX.unpack_from(self.page, off)[0]

    def _put(self, off: int, value: int) -> None:
        c.IDX.pack_into(self.page, off, value & MASK32)

    def read_output(self) -> bytes:
        """Everything the guest produced since last time; advances out_cons."""
        cons, prod = self._get(c.OUT_CONS), self._get(c.OUT_PROD)
        avail = (prod - cons) & MASK32
        if avail == 0:
            return b""
        if avail > c.OUT_SIZE:            # bogus producer: keep the last ring's worth
            cons = (prod - c.OUT_SIZE) & MASK32
            avail = c.OUT_SIZE
        start = cons % c.OUT_SIZE
        first = min(avail, c.OUT_SIZE - start)
        base = c.OUT_OFFSET
        data = bytes(self.page[base + start:base + start + first])
        if first < avail:
            data += bytes(self.page[base:base + avail - first])
        self._put(c.OUT_CONS, prod)
        return data

    def in_space(self) -> int:
        used = (self._get(c.IN_PROD) - self._get(c.IN_CONS)) & MASK32
        return max(0, c.IN_SIZE - used)

    def write_input(self, data: bytes) -> int:
        """Queue input for the guest; how many bytes fitted."""
        prod = self._get(c.IN_PROD)
        n = min(len(data), self.in_space())
        for i in range(n):
            self.page[c.IN_OFFSET + ((prod + i) % c.IN_SIZE)] = data[i]
        self._put(c.IN_PROD, prod + n)
        return n

    def pending_output(self) -> bool:
        return self._get(c.OUT_CONS) != self._get(c.OUT_PROD)
