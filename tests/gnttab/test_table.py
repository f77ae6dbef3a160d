"""The grant-table engine alone: v1 entries in a bytearray, every GNTST_*
code of map/unmap/copy misuse, GTF_reading/GTF_writing upkeep, limits."""
import struct

import pytest

from grant_tables.table import GrantError, GrantTable, GrantTables
from xen_core.abi import grant_table as g
from xen_core.abi.xen import DOMID_SELF


class Entries:
    def __init__(self, nr=512 * 4):
        self.mem = bytearray(8 * nr)

    def set(self, ref, flags, domid, frame):
        struct.pack_into("<HHI", self.mem, 8 * ref, flags, domid, frame)

    def read(self, ref):
        return struct.unpack_from("<HHI", self.mem, 8 * ref)

    def flags(self, ref):
        return self.read(ref)[0]

    def cmpxchg_header(self, ref, old, new):
        cur = struct.unpack_from("<I", self.mem, 8 * ref)[0]
        if cur == old:
            struct.pack_into("<I", self.mem, 8 * ref, new)
        return cur

    def clear_flags(self, ref, bits):
        f = self.flags(ref)
        struct.pack_into("<H", self.mem, 8 * ref, f & ~bits)


PAGES = {(1, gfn): bytearray(4096) for gfn in range(16)}
PAGES.update({(2, gfn): bytearray(4096) for gfn in range(16)})


@pytest.fixture
def gt():
    t = GrantTables(lambda domid, gfn: PAGES.get((domid, gfn)))
    e1, e2 = Entries(), Entries()
    t.add(GrantTable(0, None, privileged=True))
    t.add(GrantTable(1, e1))
    t.add(GrantTable(2, e2))
    return t, e1, e2


def status(fn, *a):
    with pytest.raises(GrantError) as ei:
        fn(*a)
    return ei.value.status


def test_map_sets_flags_unmap_clears(gt):
    t, e1, _ = gt
    e1.set(8, g.GTF_permit_access, 0, 3)
    h, frame = t.map(0, 1, 8, g.GNTMAP_host_map)
    assert frame is PAGES[(1, 3)]
    assert e1.flags(8) == g.GTF_permit_access | g.GTF_reading | g.GTF_writing
    h2, _ = t.map(0, 1, 8, g.GNTMAP_host_map | g.GNTMAP_readonly)
    t.unmap(0, h)
    assert e1.flags(8) == g.GTF_permit_access | g.GTF_reading      # a reader remains
    t.unmap(0, h2)
    assert e1.flags(8) == g.GTF_permit_access
    assert status(t.unmap, 0, h2) == g.GNTST_bad_handle             # unmap twice
    assert status(t.unmap, 0, 12345) == g.GNTST_bad_handle


def test_map_misuse_codes(gt):
    t, e1, e2 = gt
    e1.set(8, g.GTF_permit_access, 0, 3)
    e1.set(9, g.GTF_permit_access | g.GTF_readonly, 0, 4)
    e1.set(10, g.GTF_permit_access, 2, 5)                # for domain 2
    e1.set(11, 0, 0, 5)                                  # no GTF_permit_access
    e1.set(12, g.GTF_permit_access, 0, 99)               # frame not populated
    assert status(t.map, 0, 1, 8, 0) == g.GNTST_bad_gntref           # neither host nor device map
    assert status(t.map, 0, 7, 8, g.GNTMAP_host_map) == g.GNTST_bad_domain
    assert status(t.map, 0, 1, 512, g.GNTMAP_host_map) == g.GNTST_bad_gntref   # beyond 1 frame
    assert status(t.map, 0, 1, 11, g.GNTMAP_host_map) == g.GNTST_general_error
    assert status(t.map, 0, 1, 10, g.GNTMAP_host_map) == g.GNTST_general_error  # wrong domid
    assert status(t.map, 0, 1, 9, g.GNTMAP_host_map) == g.GNTST_general_error   # r/o grant, rw map
    assert e1.flags(9) == g.GTF_permit_access | g.GTF_readonly       # left untouched
    assert status(t.map, 0, 1, 12, g.GNTMAP_host_map) == g.GNTST_bad_page
    assert e1.flags(12) == g.GTF_permit_access                       # undone
    h, _ = t.map(0, 1, 9, g.GNTMAP_host_map | g.GNTMAP_readonly)
    assert e1.flags(9) == g.GTF_permit_access | g.GTF_readonly | g.GTF_reading
    # pinned by dom0: domain 2 cannot map it even with its own grant rules
    e1.set(10, g.GTF_permit_access, 0, 5)
    t.map(0, 1, 10, g.GNTMAP_host_map)
    assert status(t.map, 2, 1, 10, g.GNTMAP_host_map) == g.GNTST_general_error
    t.unmap(0, h)


def test_grow_and_limits(gt):
    t, e1, _ = gt
    tb = t.table(1)
    assert tb.nr_frames == 1 and tb.max_frames == g.DEFAULT_MAX_GRANT_FRAMES == 64
    assert tb.grow(4) and tb.nr_entries == 2048
    assert not tb.grow(65)
    assert tb.maptrack_limit == 1024 * g.MAPTRACK_PER_FRAME
    e1.set(600, g.GTF_permit_access, 0, 1)
    h, _ = t.map(0, 1, 600, g.GNTMAP_host_map)
    t.unmap(0, h)


def test_maptrack_full(gt):
    t, e1, _ = gt
    t.table(0).max_maptrack_frames = 1
    e1.set(8, g.GTF_permit_access, 0, 3)
    hs = [t.map(0, 1, 8, g.GNTMAP_host_map | g.GNTMAP_readonly)[0] for _ in range(127)]
    # pins saturate before the maptrack (Xen's counter overflow guard)
    assert status(t.map, 0, 1, 8, g.GNTMAP_host_map | g.GNTMAP_readonly) == g.GNTST_general_error
    for h in hs:
        t.unmap(0, h)
    e1.set(9, g.GTF_permit_access, 0, 4)
    for ref in range(20, 20 + g.MAPTRACK_PER_FRAME):
        e1.set(ref, g.GTF_permit_access, 0, 4)
    e1.set(300, g.GTF_permit_access, 0, 4)
    tb = t.table(1)
    tb.grow(2)
    for ref in range(20, 20 + g.MAPTRACK_PER_FRAME):
        t.map(0, 1, ref, g.GNTMAP_host_map)
    assert status(t.map, 0, 1, 9, g.GNTMAP_host_map) == g.GNTST_no_device_space


def copier(log):
    def do_copy(sf, so, df, do, n):
        df[do:do + n] = sf[so:so + n]
        log.append(n)
    return do_copy


def test_copy_codes_and_no_pins_left(gt):
    t, e1, e2 = gt
    e1.set(8, g.GTF_permit_access, 2, 3)
    e1.set(9, g.GTF_permit_access | g.GTF_readonly, 2, 4)
    PAGES[(1, 3)][:4] = b"abcd"
    log = []
    local = lambda domid, gmfn: PAGES.get((domid, gmfn))
    src_ref = (8, 1, 0)
    t.copy(2, src_ref, (7, DOMID_SELF, 10), 4, g.GNTCOPY_source_gref, local, copier(log))
    assert PAGES[(2, 7)][10:14] == b"abcd" and e1.flags(8) == g.GTF_permit_access
    t.copy(2, (7, DOMID_SELF, 10), (8, 1, 100), 4, g.GNTCOPY_dest_gref, local, copier(log))
    assert PAGES[(1, 3)][100:104] == b"abcd"

    def code(src, dst, n, flags):
        return status(t.copy, 2, src, dst, n, flags, local, copier(log))
    assert code(src_ref, (7, DOMID_SELF, 4090), 10, g.GNTCOPY_source_gref) == g.GNTST_bad_copy_arg
    assert code((8, 1, 4095), (7, DOMID_SELF, 0), 2, g.GNTCOPY_source_gref) == g.GNTST_bad_copy_arg
    assert code((7, DOMID_SELF, 0), (9, 1, 0), 4, g.GNTCOPY_dest_gref) == g.GNTST_general_error
    assert code((3, 1, 0), (7, DOMID_SELF, 0), 4, 0) == g.GNTST_permission_denied   # gmfn of another
    assert code((8, 5, 0), (7, DOMID_SELF, 0), 4, g.GNTCOPY_source_gref) == g.GNTST_bad_domain
    assert code((5000, 1, 0), (7, DOMID_SELF, 0), 4, g.GNTCOPY_source_gref) == g.GNTST_bad_gntref
    assert code(src_ref, (99, DOMID_SELF, 0), 4, g.GNTCOPY_source_gref) == g.GNTST_bad_page
    assert e1.flags(8) == g.GTF_permit_access and e1.flags(9) == g.GTF_permit_access | g.GTF_readonly
    assert not t.table(1).active


def test_dying_granter_lives_until_last_unmap(gt):
    t, e1, _ = gt
    e1.set(8, g.GTF_permit_access, 0, 3)
    h, _ = t.map(0, 1, 8, g.GNTMAP_host_map)
    t.domain_destroyed(1)
    assert t.table(1) is not None and t.table(1).dying
    assert status(t.map, 0, 1, 8, g.GNTMAP_host_map) == g.GNTST_bad_domain
    t.unmap(0, h)
    assert t.table(1) is None


def test_copy_many_reuses_a_pin_per_side_and_drops_all(gt):
    """gnttab_copy_buf: consecutive ops on one grant share its pin; a new
    grant on that side releases the old; nothing is pinned afterwards."""
    t, e1, _ = gt
    e1.set(8, g.GTF_permit_access, 2, 3)
    e1.set(10, g.GTF_permit_access, 2, 5)
    PAGES[(1, 3)][:4] = b"wxyz"
    seen = []
    local = lambda domid, gmfn: PAGES.get((domid, gmfn))

    def do_copy(sf, so, df, do, n):
        seen.append({ref: (a.readers, a.writers) for ref, a in t.table(1).active.items()})
        df[do:do + n] = sf[so:so + n]
    src = lambda ref: (ref, 1, 0)
    op = lambda s, gmfn, n=4: (*s, gmfn, DOMID_SELF, 0, n, g.GNTCOPY_source_gref)
    st = t.copy_many(2, [op(src(8), 7), op(src(8), 8), op(src(8), 9, 5000),
                         op(src(10), 7), op((11, 1, 0), 7), op(src(8), 7)], local, do_copy)
    assert st == [0, 0, g.GNTST_bad_copy_arg, 0, g.GNTST_general_error, 0]
    assert seen == [{8: (1, 0)}, {8: (1, 0)}, {10: (1, 0)}, {8: (1, 0)}]
    assert PAGES[(2, 8)][:4] == b"wxyz"
    assert not t.table(1).active
    assert e1.flags(8) == e1.flags(10) == g.GTF_permit_access


def test_active_entry_holds_its_frame_once(gt):
    """The first pin resolves and holds the frame, later pins reuse it (even
    if the granter's gfn changed meanwhile), the last unpin lets it go."""
    t, e1, _ = gt
    held = []
    t.hold, t.unhold = held.append, held.remove
    e1.set(8, g.GTF_permit_access, 0, 3)
    h1, f1 = t.map(0, 1, 8, g.GNTMAP_host_map)
    e1.set(8, g.GTF_permit_access | g.GTF_reading | g.GTF_writing, 0, 4)   # gfn rewritten
    h2, f2 = t.map(0, 1, 8, g.GNTMAP_host_map | g.GNTMAP_readonly)
    assert f1 is f2 is PAGES[(1, 3)] and held == [f1]
    t.unmap(0, h1)
    assert held == [f1]
    t.unmap(0, h2)
    assert held == []
    e1.set(9, g.GTF_permit_access, 0, 99)                     # no such gfn
    assert status(t.map, 0, 1, 9, g.GNTMAP_host_map) == g.GNTST_bad_page
    assert held == [] and not t.table(1).active
