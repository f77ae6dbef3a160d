"""Grant tables v1, sans I/O: each domain's shared entries (through an
accessor, they live in the guest's grant frames), active entries (pins) and
maptrack (the mappings a domain holds of others' grants), with the checks
and GNTST_* codes of xen/common/grant_table.c (Xen 4.17).

`GrantTables` is the registry; `map`, `unmap` and `acquire/release` (the
pins a grant copy takes for its duration) are its operations.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable, Protocol

from xen_core.abi import grant_table as g
from xen_core.abi.xen import DOMID_SELF

PIN_MAX = 0x7F   # Xen refuses a pin that would reach a counter's top bit


class Entries(Protocol):
    """A domain's v1 shared entries (grant_entry_v1 in its grant frames)."""

    def read(self, ref: int) -> tuple[int, int, int]:
        """(flags, domid, frame)."""

    def cmpxchg_header(self, ref: int, old: int, new: int) -> int:
        """Compare-and-exchange flags | domid << 16; returns the value found."""

    def clear_flags(self, ref: int, bits: int) -> None: ...


@dataclass
class Active:
    """struct active_grant_entry: who pinned the entry, how, and its frame
    (resolved once, at the first pin: later pins use the same page)."""
    domid: int
    gfn: int
    readers: int = 0
    writers: int = 0
    frame: object = None

    @property
    def pin(self) -> int:
        return self.readers + self.writers


@dataclass
class Mapping:
    """A maptrack entry of the mapping domain."""
    domid: int      # the granting domain
    ref: int
    flags: int      # GNTMAP_*
    gfn: int


@dataclass
class GrantTable:
    domid: int
    entries: Entries | None
    max_frames: int = g.DEFAULT_MAX_GRANT_FRAMES
    max_maptrack_frames: int = g.DEFAULT_MAX_MAPTRACK_FRAMES
    nr_frames: int = 1            # INITIAL_NR_GRANT_FRAMES
    version: int = 1
    privileged: bool = False
    active: dict[int, Active] = field(default_factory=dict)
    maptrack: dict[int, Mapping] = field(default_factory=dict)
    dying: bool = False
    _next_handle: int = 0

    @property
    def nr_entries(self) -> int:
        return self.nr_frames * g.ENTRIES_PER_FRAME_V1

    @property
    def maptrack_limit(self) -> int:
        return self.max_maptrack_frames * g.MAPTRACK_PER_FRAME

    def grow(self, nr_frames: int) -> bool:
        if nr_frames > self.max_frames:
            return False
        self.nr_frames = max(self.nr_frames, nr_frames)
        return True

    def alloc_handle(self) -> int | None:
        if len(self.maptrack) >= self.maptrack_limit:
            return None
        h = self._next_handle
        while h in self.maptrack:
            h = (h + 1) % self.maptrack_limit
        self._next_handle = (h + 1) % self.maptrack_limit
        return h


class GrantError(Exception):
    def __init__(self, status: int, message: str = ""):
        super().__init__(message or g.GNTST_NAMES.get(status, str(status)))
        self.status = status


class GrantTables:
    """Every domain's grant table, under one lock (Xen takes the granter's
    table lock and the mapper's maptrack lock)."""

    def __init__(self, resolve: Callable[[int, int], object | None],
                 hold: Callable[[object], None] | None = None,
                 unhold: Callable[[object], None] | None = None):
        # resolve(domid, gfn) -> the granter's frame (opaque), None if absent;
        # hold/unhold(frame): a page reference for as long as an active
        # entry pins the frame (the page outlives its gfn meanwhile, as Xen's
        # get_page/put_page keep it).
        self.lock = threading.RLock()
        self.tables: dict[int, GrantTable] = {}
        self.resolve = resolve
        self.hold = hold
        self.unhold = unhold

    def add(self, t: GrantTable) -> GrantTable:
        with self.lock:
            self.tables[t.domid] = t
        return t

    def table(self, domid: int) -> GrantTable | None:
        return self.tables.get(domid)

    # -- pins on a shared entry (_set_status_v1 and its undo) ----------------
    @staticmethod
    def _set_status(rt: GrantTable, ref: int, act: Active | None, readonly: bool,
                    ldomid: int) -> None:
        """Set GTF_reading (and GTF_writing) on the entry, checking it first
        when nobody has it pinned; a guest racing the update gets 5 tries."""
        flags, domid, _ = rt.entries.read(ref)
        combo = flags | domid << 16
        for _ in range(5):
            flags, domid = combo & 0xFFFF, combo >> 16
            if act is None and ((flags & (g.GTF_type_mask | g.GTF_sub_page)) != g.GTF_permit_access
                                or domid != ldomid):
                raise GrantError(g.GNTST_general_error,
                                 f"ref {ref}: flags {flags:#x} dom {domid}, expected d{ldomid}")
            new = flags | g.GTF_reading
            if not readonly:
                if flags & g.GTF_readonly:
                    raise GrantError(g.GNTST_general_error, f"ref {ref}: write-pin of a r/o grant")
                new |= g.GTF_writing
            found = rt.entries.cmpxchg_header(ref, combo, new | domid << 16)
            if found == combo:
                return
            combo = found
        raise GrantError(g.GNTST_general_error, f"ref {ref}: shared entry is unstable")

    def _unpin(self, rt: GrantTable, ref: int, act: Active, readonly: bool) -> None:
        if readonly:
            act.readers -= 1
        else:
            act.writers -= 1
        if act.pin == 0 and act.frame is not None and self.unhold is not None:
            self.unhold(act.frame)
        if rt.dying:
            if act.pin == 0:
                del rt.active[ref]
            return
        if not readonly and act.writers == 0:
            rt.entries.clear_flags(ref, g.GTF_writing)
        if act.pin == 0:
            rt.entries.clear_flags(ref, g.GTF_reading)
            del rt.active[ref]

    def _pin(self, rt: GrantTable, ref: int, ldomid: int, readonly: bool) -> Active:
        if ref >= rt.nr_entries:
            raise GrantError(g.GNTST_bad_gntref, f"ref {ref} beyond d{rt.domid}'s {rt.nr_entries}")
        act = rt.active.get(ref)
        if act is not None and (act.domid != ldomid or act.readers >= PIN_MAX
                                or act.writers >= PIN_MAX):
            raise GrantError(g.GNTST_general_error, f"ref {ref} pinned by d{act.domid}")
        if act is None or (not readonly and act.writers == 0):
            self._set_status(rt, ref, act, readonly, ldomid)
        if act is None:
            act = Active(ldomid, rt.entries.read(ref)[2])
            act.frame = self.resolve(rt.domid, act.gfn)
            rt.active[ref] = act
            if act.frame is not None and self.hold is not None:
                self.hold(act.frame)
        if readonly:
            act.readers += 1
        else:
            act.writers += 1
        if act.frame is None:
            self._unpin(rt, ref, act, readonly)
            raise GrantError(g.GNTST_bad_page, f"ref {ref}: gfn {act.gfn:#x} not present")
        return act

    # -- map / unmap -----------------------------------------------------------
    def map(self, ldomid: int, rdomid: int, ref: int, flags: int) -> tuple[int, object]:
        """(handle, frame) or GrantError; __gnttab_map_grant_ref's checks."""
        with self.lock:
            if not flags & (g.GNTMAP_device_map | g.GNTMAP_host_map):
                raise GrantError(g.GNTST_bad_gntref, f"bad map flags {flags:#x}")
            lt = self.tables.get(ldomid)
            if rdomid == DOMID_SELF:
                rdomid = ldomid
            rt = self.tables.get(rdomid)
            if rt is None or rt.dying or lt is None:
                raise GrantError(g.GNTST_bad_domain, f"no domain {rdomid}")
            handle = lt.alloc_handle()
            if handle is None:
                raise GrantError(g.GNTST_no_device_space, "maptrack full")
            readonly = bool(flags & g.GNTMAP_readonly)
            act = self._pin(rt, ref, ldomid, readonly)
            lt.maptrack[handle] = Mapping(rdomid, ref, flags, act.gfn)
            return handle, act.frame

    def unmap(self, ldomid: int, handle: int) -> Mapping:
        with self.lock:
            lt = self.tables.get(ldomid)
            if lt is None or handle not in lt.maptrack:
                raise GrantError(g.GNTST_bad_handle, f"handle {handle}")
            m = lt.maptrack.pop(handle)
            rt = self.tables.get(m.domid)
            act = rt.active.get(m.ref) if rt is not None else None
            if act is not None:
                self._unpin(rt, m.ref, act, bool(m.flags & g.GNTMAP_readonly))
                self._maybe_forget(rt)
            return m

    # -- copy ------------------------------------------------------------------
    def acquire(self, ldomid: int, rdomid: int, ref: int, readonly: bool) -> object:
        """Pin a grant for a copy (acquire_grant_for_copy); the frame."""
        with self.lock:
            rt = self.tables.get(rdomid)
            if rt is None or rt.dying:
                raise GrantError(g.GNTST_bad_domain, f"no domain {rdomid}")
            act = self._pin(rt, ref, ldomid, readonly)
            return act.frame

    def release(self, rdomid: int, ref: int, readonly: bool) -> None:
        with self.lock:
            rt = self.tables.get(rdomid)
            act = rt.active.get(ref) if rt is not None else None
            if act is not None:
                self._unpin(rt, ref, act, readonly)
                self._maybe_forget(rt)

    def copy_many(self, ldomid: int, ops, local_frame: Callable[[int, int], object | None],
                  do_copy: Callable[[object, int, object, int, int], None]) -> list[int]:
        """gnttab_copy over an array of ops, each (src ref or gmfn, src domid,
        src offset, dst ..., len, flags): GNTST_* per op. A side without its
        GNTCOPY_*_gref flag is a frame of the caller (DOMID_SELF only),
        resolved by `local_frame(domid, gmfn)`. As Xen's gnttab_copy_buf, an
        op naming the same grant or frame as the previous op on that side
        reuses its pin; every pin is dropped by the end."""
        held: list = [None, None]      # per side: (key, frame, pin or None)
        out = []
        try:
            for op in ops:
                try:
                    self._copy_one(ldomid, op, held, local_frame, do_copy)
                    out.append(g.GNTST_okay)
                except GrantError as e:
                    out.append(e.status)
        finally:
            for h in held:
                self._drop(h)
        return out

    def copy(self, ldomid: int, src: tuple, dst: tuple, length: int, flags: int,
             local_frame, do_copy) -> None:
        """One gnttab_copy; `src`/`dst` are (ref or gmfn, domid, offset)."""
        held: list = [None, None]
        try:
            self._copy_one(ldomid, (*src, *dst, length, flags), held, local_frame, do_copy)
        finally:
            for h in held:
                self._drop(h)

    def _drop(self, h) -> None:
        if h is not None and h[2] is not None:
            self.release(*h[2])

    def _copy_one(self, ldomid, op, held, local_frame, do_copy) -> None:
        su, sdom, soff, du, ddom, doff, length, flags = op
        sides = ((su, sdom, bool(flags & g.GNTCOPY_source_gref), True),
                 (du, ddom, bool(flags & g.GNTCOPY_dest_gref), False))
        for _, domid, is_gref, _ in sides:          # gnttab_copy_lock_domain
            if domid != DOMID_SELF and not is_gref:
                raise GrantError(g.GNTST_permission_denied, "copy by frame needs DOMID_SELF")
            t = self.tables.get(ldomid if domid == DOMID_SELF else domid)
            if t is None or t.dying:
                raise GrantError(g.GNTST_bad_domain, f"no domain {domid}")
        frames = []
        for i, (u, domid, is_gref, readonly) in enumerate(sides):   # gnttab_copy_claim_buf
            domid = ldomid if domid == DOMID_SELF else domid
            key = (domid, is_gref, u)
            if held[i] is None or held[i][0] != key:
                h, held[i] = held[i], None
                self._drop(h)
                if is_gref:
                    frame = self.acquire(ldomid, domid, u, readonly)
                    held[i] = (key, frame, (domid, u, readonly))
                else:
                    frame = local_frame(domid, u)
                    if frame is None:
                        raise GrantError(g.GNTST_bad_page, f"frame {u:#x} invalid")
                    held[i] = (key, frame, None)
            frames.append(held[i][1])
        if soff + length > 4096 or doff + length > 4096:
            raise GrantError(g.GNTST_bad_copy_arg, "copy beyond page area")
        do_copy(frames[0], soff, frames[1], doff, length)

    # -- life cycle ------------------------------------------------------------
    def domain_destroyed(self, domid: int) -> list[Mapping]:
        """The domain's own mappings are released (gnttab_release_mappings);
        its table stays, dying, while others still map its grants."""
        with self.lock:
            t = self.tables.get(domid)
            if t is None:
                return []
            released = []
            for handle in list(t.maptrack):
                released.append(self.unmap(domid, handle))
            t.dying = True
            self._maybe_forget(t)
            return released

    def _maybe_forget(self, t: GrantTable) -> None:
        if t.dying and not t.active and not t.maptrack:
            self.tables.pop(t.domid, None)

    def mapped_by(self, ldomid: int) -> dict[int, Mapping]:
        with self.lock:
            t = self.tables.get(ldomid)
            return dict(t.maptrack) if t is not None else {}
