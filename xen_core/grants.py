"""Grant tables wired into the core: each guest's grant frames are Xen-owned
frames of its memfd (xenheap indices 1..max_grant_frames, placed in the p2m
by XENMEM_add_to_physmap at any gfn, RAM or not); entries are read and
flag-updated there atomically; dom0 maps grants by receiving the granter's
memfd and page offsets.

A granter destroyed while dom0 maps its pages: its table stays (dying) until
the last unmap, and the pages stay with dom0's mappings of the memfd (the
kernel keeps a memfd's pages while any mapping holds them).
"""
from __future__ import annotations

import logging

from grant_tables.table import GrantError, GrantTable, GrantTables
from .abi import grant_table as g
from .abi import memory as m
from .abi import xen as x
from .abi.layout import PAGE_SHIFT, PAGE_SIZE
from .guest_atomic import MemfdAtomics
from .memory import GuestFault

log = logging.getLogger(__name__)

GRANT_XENHEAP_BASE = 1          # xenheap index of grant frame 0 (0 is shared info)
XENMAPIDX_grant_table_status = 1 << 31
GFN_LIMIT = 1 << 40


class FrameEntries:
    """v1 entries in a domain's grant frames (memfd offsets)."""

    def __init__(self, memory):
        self.mem = memory
        self.atomics = MemfdAtomics(memory)

    def offset(self, ref: int) -> int:
        frame = self.mem.xenheap_frame(GRANT_XENHEAP_BASE + ref // g.ENTRIES_PER_FRAME_V1)
        return (frame << PAGE_SHIFT) + (ref % g.ENTRIES_PER_FRAME_V1) * g.GRANT_ENTRY_V1_SIZE

    def read(self, ref: int):
        off = self.offset(ref)
        with self.mem.lock:
            if self.mem.closed:
                raise GuestFault("memory released")
            return g.GRANT_ENTRY_V1.unpack(self.mem.mm[off:off + 8])

    def cmpxchg_header(self, ref: int, old: int, new: int) -> int:
        return self.atomics.cmpxchg_u32(self.offset(ref), old, new)

    def clear_flags(self, ref: int, bits: int) -> None:
        try:
            self.atomics.clear_u16_bits(self.offset(ref), bits)
        except GuestFault:
            pass


class GrantCore:
    def __init__(self, core):
        self.core = core
        self.tables = GrantTables(self._resolve)

    # -- tables ------------------------------------------------------------------
    def _resolve(self, domid: int, gfn: int):
        d = self.core.domains.get(domid)
        if d is None or d.memory is None:
            return None
        frame = d.memory.p2m.get(gfn)
        return None if frame is None else (d.memory, frame)

    def table(self, domid: int) -> GrantTable | None:
        """The domain's table, made on first use (None: no such domain)."""
        with self.tables.lock:
            t = self.tables.table(domid)
            if t is not None:
                return t
            d = self.core.domains.get(domid)
            if d is None or d.dying:
                return None
            entries = FrameEntries(d.memory) if d.memory is not None else None
            max_frames = min(getattr(d, "max_grant_frames", g.DEFAULT_MAX_GRANT_FRAMES),
                             (d.memory.nr_frames - d.memory.ram_frames - GRANT_XENHEAP_BASE)
                             if d.memory is not None else 0)
            return self.tables.add(GrantTable(
                domid, entries, max_frames=max_frames,
                max_maptrack_frames=getattr(d, "max_maptrack_frames", g.DEFAULT_MAX_MAPTRACK_FRAMES),
                privileged=d.privileged))

    def frame_gfn(self, d, index: int) -> int:
        """Where grant frame `index` sits in the guest's p2m (INVALID_GFN: nowhere)."""
        frame = d.memory.xenheap_frame(GRANT_XENHEAP_BASE + index)
        with d.memory.lock:
            for gfn, f in d.memory.p2m.items():
                if f == frame:
                    return gfn
        return (1 << 64) - 1

    # -- XENMEM_add_to_physmap, XENMAPSPACE_grant_table -----------------------------
    def add_to_physmap(self, cur, d, space: int, idx: int, gpfn: int) -> int:
        if space != m.XENMAPSPACE_grant_table:
            return cur.unknown("add_to_physmap space", space)
        t = self.table(d.domid)
        if t is None or t.entries is None:
            return -x.EINVAL
        if idx & XENMAPIDX_grant_table_status:
            return -x.EINVAL     # status frames exist only with v2
        if gpfn >= GFN_LIMIT:
            return -x.EINVAL
        with self.tables.lock:
            if not t.grow(idx + 1):
                return -x.EINVAL
        frame = d.memory.xenheap_frame(GRANT_XENHEAP_BASE + idx)
        with d.quiesced():
            d.memory.place_xen_frame(gpfn, frame)
        return 0

    # -- teardown ------------------------------------------------------------------
    def domain_destroyed(self, domid: int) -> None:
        self.tables.domain_destroyed(domid)

    # -- grant copy ----------------------------------------------------------------
    def copy(self, ldomid: int, op: tuple, local=None) -> int:
        """One gnttab_copy op (COPY fields); GNTST_* status."""
        return self.copy_many(ldomid, [op], local)[0]

    def copy_many(self, ldomid: int, ops, local=None) -> list[int]:
        """gnttab_copy ops (COPY fields each): GNTST_* per op. `local`
        (dom0): gmfn -> (memory, frame) of the caller's own buffer page for
        gmfn sides."""
        def local_frame(domid, gmfn):
            try:
                return local(gmfn) if local is not None else self._resolve(domid, gmfn)
            except GuestFault as e:
                raise GrantError(g.GNTST_general_error, str(e)) from None

        def do_copy(sf, so, df, do, n):
            smem, sframe = sf
            dmem, dframe = df
            with smem.lock, dmem.lock:
                if smem.closed or dmem.closed:
                    raise GrantError(g.GNTST_general_error, "memory released")
                s = (sframe << PAGE_SHIFT) + so
                dd = (dframe << PAGE_SHIFT) + do
                dmem.mm[dd:dd + n] = smem.mm[s:s + n]

        if self.table(ldomid) is None:
            return [g.GNTST_bad_domain] * len(ops)
        for dom in {d for op in ops for d in (op[1], op[4])}:
            if dom != x.DOMID_SELF and self.tables.table(dom) is None:
                self.table(dom)          # made on first use
        try:
            return self.tables.copy_many(ldomid, ops, local_frame, do_copy)
        except GuestFault:               # a pin's entry unreadable (memory released)
            return [g.GNTST_general_error] * len(ops)


__all__ = ["GrantCore", "FrameEntries", "PAGE_SIZE"]
