"""Grant tables wired into the core: each guest's grant frames are Xen-owned
frames of its memfd (xenheap indices 1..max_grant_frames, placed in the p2m
by XENMEM_add_to_physmap at any gfn, RAM or not); entries are read and
flag-updated there atomically; dom0 maps grants by receiving the granter's
memfd (once per gntdev handle) and page offsets; a guest maps a grant into
its own p2m at host_addr, as Xen does for HVM/PVH guests (a foreign entry
of GuestMemory, read-only in the engine for a read-only map).

A granter destroyed while dom0 maps its pages: its table stays (dying) until
the last unmap, and the pages stay with dom0's mappings of the memfd (the
kernel keeps a memfd's pages while any mapping holds them).
"""
from __future__ import annotations

import contextlib
import logging

from grant_tables.table import GrantError, GrantTable, GrantTables
from .abi import grant_table as g
from .abi import memory as m
from .abi import xen as x
from .abi.layout import PAGE_SHIFT, PAGE_SIZE
from .guest_atomic import MemfdAtomics
from .memory import EngineMapError, GrantOverlap, GuestFault

log = logging.getLogger(__name__)

GRANT_XENHEAP_BASE = 1          # xenheap index of grant frame 0 (0 is shared info)
XENMAPIDX_grant_table_status = 1 << 31
GFN_LIMIT = 1 << 40
INVALID_HANDLE = 0xFFFF_FFFF


class FrameEntries:
    """v1 entries in a domain's grant frames (memfd offsets)."""

    def __init__(self, memory, guard=contextlib.nullcontext):
        """`guard()`: held around each read-modify-write of an entry's
        flags, which the guest changes with `lock cmpxchg` (see
        EmuMachine.paused: not atomic against this thread on emu)."""
        self.mem = memory
        self.atomics = MemfdAtomics(memory)
        self.guard = guard

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
        off = self.offset(ref)
        with self.guard():
            return self.atomics.cmpxchg_u32(off, old, new)

    def clear_flags(self, ref: int, bits: int) -> None:
        try:
            off = self.offset(ref)
            with self.guard():
                self.atomics.clear_u16_bits(off, bits)
        except GuestFault:
            pass


class GrantCore:
    def __init__(self, core):
        self.core = core
        self.tables = GrantTables(self._resolve, hold=lambda f: f[0].get_page(f[1]),
                                  unhold=lambda f: f[0].put_page(f[1]))
        # A guest's own grant maps in its p2m: (domid, handle) -> (gfn,
        # granter's memory, frame), for unmap_grant_ref's host_addr check.
        self.host_maps: dict[tuple[int, int], tuple[int, object, int]] = {}
        self._busy: set[tuple[int, int]] = set()   # handles being mapped or unmapped

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
            entries = (FrameEntries(d.memory, getattr(d.machine, "paused", contextlib.nullcontext))
                       if d.memory is not None else None)
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
        try:
            with d.quiesced():
                d.memory.place_xen_frame(gpfn, frame)
        except GrantOverlap as e:        # p2m_add_page over a grant entry crashes it
            d.crash(f"add_to_physmap grant frame {idx}: {e}")
            return -x.EINVAL
        return 0

    # -- a guest's own map/unmap (create/replace_grant_p2m_mapping) ----------------
    def guest_map(self, d, host_addr: int, flags: int, ref: int, rdomid: int) -> tuple[int, int]:
        """(GNTST_*, handle): map the grant at guest-physical host_addr, as
        Xen does for HVM/PVH guests (a p2m_grant_map_rw/ro entry)."""
        try:
            with self.tables.lock:     # the handle is busy until its p2m entry is in
                handle, (gmem, frame) = self.tables.map(d.domid, rdomid, ref, flags)
                self._busy.add((d.domid, handle))
        except GrantError as e:
            log.debug("d%d: map of d%d ref %d: %s", d.domid, rdomid, ref, e)
            return e.status, INVALID_HANDLE
        try:
            return self._guest_map(d, host_addr, flags, ref, rdomid, handle, gmem, frame)
        finally:
            with self.tables.lock:
                self._busy.discard((d.domid, handle))

    def _guest_map(self, d, host_addr, flags, ref, rdomid, handle, gmem, frame):
        readonly = bool(flags & g.GNTMAP_readonly)
        status = g.GNTST_okay
        gfn = host_addr >> PAGE_SHIFT
        rt = self.tables.table(rdomid if rdomid != x.DOMID_SELF else d.domid)
        cache = rt.entries.read(ref)[0] & (g.GTF_PWT | g.GTF_PCD | g.GTF_PAT) \
            if rt is not None and rt.entries is not None else 0
        if not flags & g.GNTMAP_host_map:
            pass                         # device_map alone: a pin, nothing in the p2m
        elif cache or flags & ~g.GNTMAP_readonly != g.GNTMAP_host_map or gfn >= GFN_LIMIT:
            status = g.GNTST_general_error
        else:
            try:
                with d.quiesced():
                    d.memory.map_foreign(gfn, gmem, frame, readonly)
                with self.tables.lock:
                    self.host_maps[(d.domid, handle)] = (gfn, gmem, frame)
            except GrantOverlap as e:    # Xen's p2m_add_page crashes the domain for this
                d.crash(f"grant map of d{rdomid} ref {ref}: {e}")
                status = g.GNTST_general_error
            except (GuestFault, EngineMapError) as e:
                log.debug("d%d: map of d%d ref %d at %#x: %s", d.domid, rdomid, ref, host_addr, e)
                status = g.GNTST_general_error
        if status != g.GNTST_okay:
            self.tables.unmap(d.domid, handle)
            return status, INVALID_HANDLE
        return status, handle

    def guest_unmap(self, d, host_addr: int, handle: int) -> int:
        """unmap_grant_ref: host_addr must name the gfn the handle maps (its
        p2m entry is removed, leaving the gfn empty), else general_error
        and the mapping stays."""
        key = (d.domid, handle)
        with self.tables.lock:
            if key in self._busy or handle not in self.tables.mapped_by(d.domid):
                return g.GNTST_bad_handle
            hm = self.host_maps.get(key)
            if hm is not None and host_addr >> PAGE_SHIFT != hm[0]:
                return g.GNTST_general_error
            self._busy.add(key)
        try:
            if hm is not None:          # the p2m entry goes before the pin
                with d.quiesced():
                    d.memory.unmap_foreign(*hm)
            with self.tables.lock:
                self.host_maps.pop(key, None)
                self.tables.unmap(d.domid, handle)
            return g.GNTST_okay
        except GrantError as e:
            return e.status
        finally:
            with self.tables.lock:
                self._busy.discard(key)

    # -- teardown ------------------------------------------------------------------
    def domain_destroyed(self, domid: int) -> None:
        with self.tables.lock:
            for key in [k for k in self.host_maps if k[0] == domid]:
                del self.host_maps[key]      # its memory dropped them on close
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
