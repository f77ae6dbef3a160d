"""grant_table_op (20): setup_table, query_size, set/get_version, map,
unmap, copy, get_status_frames, as Xen 4.17 answers an HVM/PVH guest.

Batched ops (`count` structs) report per-op GNTST_* status in the struct and
return 0; an unreadable struct is -EFAULT, as in Xen.
"""
from __future__ import annotations

from .. import events
from ..abi import grant_table as g
from ..abi import xen as x
from .call import s32

MAX_BATCH = 1 << 16
INVALID_GFN = (1 << 64) - 1


def _gc(cur):
    return events.of(cur.core).gnttab


def _target_table(cur, dom):
    """(table, status): the domain a query names, with XSM_TARGET."""
    d = cur.core.domains.get(cur.domain.domid if dom == x.DOMID_SELF else dom)
    if d is None:
        return None, g.GNTST_bad_domain
    if d is not cur.domain and not cur.domain.privileged:
        return None, g.GNTST_permission_denied
    t = _gc(cur).table(d.domid)
    return (t, g.GNTST_okay) if t is not None else (None, g.GNTST_bad_domain)


def _setup_table(cur, arg, count):
    if count != 1:
        return -x.EINVAL
    dom, nr_frames, _, frame_list = g.SETUP_TABLE.unpack(cur.copy_from(arg, g.SETUP_TABLE.size))
    t, status = _target_table(cur, dom)
    if t is not None:
        gc = _gc(cur)
        with gc.tables.lock:
            grown = nr_frames <= t.max_frames and t.grow(nr_frames)
        if not grown:
            status = g.GNTST_general_error
        else:
            d = cur.core.domains[t.domid]
            for i in range(nr_frames):
                try:
                    cur.copy_to(frame_list + 8 * i, gc.frame_gfn(d, i).to_bytes(8, "little"))
                except Exception:
                    status = g.GNTST_bad_virt_addr
                    break
    cur.copy_to(arg + 8, status.to_bytes(2, "little", signed=True))
    return 0


def _query_size(cur, arg, count):
    if count != 1:
        return -x.EINVAL
    dom, _, _, _ = g.QUERY_SIZE.unpack(cur.copy_from(arg, g.QUERY_SIZE.size))
    t, status = _target_table(cur, dom)
    nr, mx = (t.nr_frames, t.max_frames) if t is not None else (0, 0)
    cur.copy_to(arg, g.QUERY_SIZE.pack(dom, nr, mx, status))
    return 0


def _set_version(cur, arg, count):
    (version,) = g.SET_VERSION.unpack(cur.copy_from(arg, 4))
    if version == 2:
        return -x.ENOSYS     # v2 not offered (yet)
    if version != 1:
        return -x.EINVAL
    t = _gc(cur).table(cur.domain.domid)
    t.version = 1
    cur.copy_to(arg, g.SET_VERSION.pack(1))
    return 0


def _get_version(cur, arg, count):
    dom, _ = g.GET_VERSION.unpack(cur.copy_from(arg, g.GET_VERSION.size))
    d = cur.target(dom)
    t = _gc(cur).table(d.domid)
    cur.copy_to(arg, g.GET_VERSION.pack(dom, t.version if t else 1))
    return 0


def _get_status_frames(cur, arg, count):
    if count != 1:
        return -x.EINVAL
    nr_frames, dom, _, frame_list = g.GET_STATUS_FRAMES.unpack(
        cur.copy_from(arg, g.GET_STATUS_FRAMES.size))
    t, status = _target_table(cur, dom)
    # v1 has no status frames: asking for any is general_error.
    if t is not None and nr_frames > 0:
        status = g.GNTST_general_error
    cur.copy_to(arg + 6, status.to_bytes(2, "little", signed=True))
    return 0


def _map(cur, arg, count):
    """Each op maps a grant at the guest-physical address host_addr
    (GNTMAP_host_map, optionally GNTMAP_readonly), as for an HVM guest."""
    gc = _gc(cur)
    gc.table(cur.domain.domid)
    for i in range(count):
        a = arg + i * g.MAP_GRANT_REF.size
        host_addr, flags, ref, dom, _, _, _ = g.MAP_GRANT_REF.unpack(
            cur.copy_from(a, g.MAP_GRANT_REF.size))
        if dom != x.DOMID_SELF:
            gc.table(dom)
        status, handle = gc.guest_map(cur.domain, host_addr, flags, ref, dom)
        cur.copy_to(a + 18, status.to_bytes(2, "little", signed=True) + handle.to_bytes(4, "little"))
    return 0


def _unmap(cur, arg, count):
    gc = _gc(cur)
    for i in range(count):
        a = arg + i * g.UNMAP_GRANT_REF.size
        host_addr, _, handle, _ = g.UNMAP_GRANT_REF.unpack(cur.copy_from(a, g.UNMAP_GRANT_REF.size))
        status = gc.guest_unmap(cur.domain, host_addr, handle)
        cur.copy_to(a + 20, status.to_bytes(2, "little", signed=True))
    return 0


def _copy(cur, arg, count):
    """The whole array in one gnttab_copy (pins reused between ops on the
    same grant), then each op's status."""
    raw = cur.copy_from(arg, count * g.COPY.size) if count else b""
    ops = [op[:8] for op in g.COPY.iter_unpack(raw)]
    for i, status in enumerate(_gc(cur).copy_many(cur.domain.domid, ops)):
        cur.copy_to(arg + i * g.COPY.size + 36, status.to_bytes(2, "little", signed=True))
    return 0


OPS = {
    g.GNTTABOP_setup_table: _setup_table,
    g.GNTTABOP_query_size: _query_size,
    g.GNTTABOP_set_version: _set_version,
    g.GNTTABOP_get_version: _get_version,
    g.GNTTABOP_get_status_frames: _get_status_frames,
    g.GNTTABOP_map_grant_ref: _map,
    g.GNTTABOP_unmap_grant_ref: _unmap,
    g.GNTTABOP_copy: _copy,
}


def do_grant_table_op(cur, cmd, arg, count, *_):
    cmd, count = s32(cmd), count & 0xFFFF_FFFF
    fn = OPS.get(cmd)
    if fn is None:
        return cur.unknown("grant_table_op", cmd)
    if count > MAX_BATCH:
        return -x.EINVAL
    return fn(cur, arg, count)
