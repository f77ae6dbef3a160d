"""memory_op: shared info placement, the memory map, reservations."""
from __future__ import annotations

from ..abi import memory as m
from ..abi import xen as x
from ..memory import GuestFault

# Largest extent a domU may ask for: 2 MiB (Xen's default domU max order, 9).
MAX_EXTENT_ORDER = 9
GFN_LIMIT = 1 << 40   # 52-bit guest-physical addresses


def _add_to_physmap(cur, arg) -> int:
    domid, _size, space, idx, gpfn = m.ADD_TO_PHYSMAP.unpack(cur.copy_from(arg, m.ADD_TO_PHYSMAP.size))
    d = cur.target(domid)
    if space == m.XENMAPSPACE_shared_info:
        if idx != 0 or gpfn >= GFN_LIMIT:
            return -x.EINVAL
        d.map_shared_info(gpfn)
        return 0
    hook = cur.core.add_to_physmap_hook
    if hook is not None:  # grant tables place their frames here
        return hook(cur, d, space, idx, gpfn)
    return cur.unknown("add_to_physmap space", space)


def _memory_map(cur, arg) -> int:
    e820 = cur.domain.e820
    if not e820:
        return -x.ENOSYS   # the toolstack set none; Xen checks before the copy
    nr_entries, buffer = m.MEMORY_MAP.unpack(cur.copy_from(arg, m.MEMORY_MAP.size))
    n = min(nr_entries, len(e820))
    cur.copy_to(buffer, b"".join(m.E820_ENTRY.pack(*e) for e in e820[:n]))
    cur.copy_to(arg, m.MEMORY_MAP.pack(n, buffer))
    return 0


def _reservation(cur, arg, start: int, populate: bool) -> int:
    handle, nr_extents, order, _flags, domid = m.MEMORY_RESERVATION.unpack(
        cur.copy_from(arg, m.MEMORY_RESERVATION.size))
    d = cur.target(domid)
    if order > MAX_EXTENT_ORDER or start > nr_extents:
        return start
    # Xen's convention: the result is how many extents were done.
    for i in range(start, nr_extents):
        try:
            (gfn,) = m.XEN_PFN.unpack(cur.copy_from(handle + 8 * i, 8))
        except GuestFault:
            return i
        base = gfn & ~((1 << order) - 1)
        if base >= GFN_LIMIT:
            return i
        gfns = range(base, base + (1 << order))
        if populate:
            absent = [g for g in gfns if g not in d.memory.p2m]
            if d.memory.tot_pages + len(absent) > d.max_pages:
                return i
            with d.quiesced():
                if d.memory.populate(absent) < len(absent):
                    return i
        else:
            if not all(g in d.memory.p2m for g in gfns):
                return i
            with d.quiesced():
                for g in gfns:
                    d.memory.remove(g)
    return max(start, nr_extents)


def do_memory_op(cur, cmd, arg, *_):
    op, start = cmd & m.MEMOP_CMD_MASK, (cmd & 0xFFFF_FFFF) >> m.MEMOP_EXTENT_SHIFT
    if op == m.XENMEM_add_to_physmap:
        return _add_to_physmap(cur, arg)
    if op == m.XENMEM_memory_map:
        return _memory_map(cur, arg)
    if op in (m.XENMEM_current_reservation, m.XENMEM_maximum_reservation):
        (domid,) = m.DOMID.unpack(cur.copy_from(arg, 2))
        d = cur.target(domid)
        return d.memory.tot_pages if op == m.XENMEM_current_reservation else d.max_pages
    if op == m.XENMEM_populate_physmap:
        return _reservation(cur, arg, start, populate=True)
    if op == m.XENMEM_decrease_reservation:
        return _reservation(cur, arg, start, populate=False)
    return cur.unknown("memory_op", op)
