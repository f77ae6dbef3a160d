"""Mapping a domain's pages into this process (libxenforeignmemory).

The core passes the domain's memfd and each page's offset; each mapping is
an mmap of that fd, so stores from either side are seen by the other at once.
"""
from __future__ import annotations

import mmap
import os

from .privcmd import Privcmd, XenError

PAGE_SIZE = 4096


class ForeignMapping:
    """Pages of one domain, gfn -> writable 4 KiB memoryview."""

    def __init__(self, privcmd: Privcmd, domid: int, gfns: list[int]):
        fd, offsets, errors, _ = privcmd.foreign_map_fd(domid, gfns)
        self.domid = domid
        self.errors = dict(zip(gfns, errors))
        self._maps: list[tuple[mmap.mmap, memoryview]] = []
        self._pages: dict[int, memoryview] = {}
        try:
            # One mmap per run of consecutive gfns at consecutive offsets.
            run = []
            for gfn, off, err in list(zip(gfns, offsets, errors)) + [(None, None, 1)]:
                if run and (err or gfn != run[-1][0] + 1 or off != run[-1][1] + PAGE_SIZE):
                    m = mmap.mmap(fd, PAGE_SIZE * len(run), mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=run[0][1])
                    view = memoryview(m)
                    self._maps.append((m, view))
                    for i, (g, _) in enumerate(run):
                        self._pages.setdefault(g, view[i * PAGE_SIZE:(i + 1) * PAGE_SIZE])
                    run = []
                if not err:
                    run.append((gfn, off))
        except BaseException:
            self.close()
            raise
        finally:
            os.close(fd)
        missing = [g for g, e in self.errors.items() if e]
        if missing and not self._pages:
            self.close()
            raise XenError(-self.errors[missing[0]], "ENOENT",
                           f"gfn {missing[0]:#x} of domain {domid} is not populated")

    def page(self, gfn: int) -> memoryview:
        try:
            return self._pages[gfn]
        except KeyError:
            raise XenError(2, "ENOENT", f"gfn {gfn:#x} not mapped") from None

    def write(self, gpa: int, data: bytes) -> None:
        """Write across pages of this mapping (all must be mapped)."""
        pos = 0
        while pos < len(data):
            addr = gpa + pos
            off = addr % PAGE_SIZE
            n = min(len(data) - pos, PAGE_SIZE - off)
            self.page(addr // PAGE_SIZE)[off:off + n] = data[pos:pos + n]
            pos += n

    def read(self, gpa: int, length: int) -> bytes:
        out = bytearray()
        while len(out) < length:
            addr = gpa + len(out)
            off = addr % PAGE_SIZE
            n = min(length - len(out), PAGE_SIZE - off)
            out += self.page(addr // PAGE_SIZE)[off:off + n]
        return bytes(out)

    def close(self) -> None:
        for view in self._pages.values():
            view.release()
        self._pages.clear()
        for m, view in self._maps:
            view.release()
            m.close()
        self._maps.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def map_range(privcmd: Privcmd, domid: int, gpa: int, length: int) -> ForeignMapping:
    """Map the pages covering guest-physical [gpa, gpa+length)."""
    first, last = gpa // PAGE_SIZE, (gpa + max(length, 1) - 1) // PAGE_SIZE
    return ForeignMapping(privcmd, domid, list(range(first, last + 1)))
