"""blkback over a real ring and a raw image file, driven by a frontend
double: every operation, and each bad request failing alone."""
import os

import pytest

from pv_drivers.blkback import BlkBackend, Features
from pv_drivers.grants import MAX_PERSISTENT_GRANTS, PersistentGrants
from pv_drivers.image import ImageError, RawImage
from pv_drivers.ring import BackRing, RingProtocolError, SharedRing
from xen_core.abi import blkif
from xen_core.abi.blkif import (BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE,
                                BLKIF_OP_READ, BLKIF_OP_WRITE,
                                BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_EOPNOTSUPP,
                                BLKIF_RSP_ERROR, BLKIF_RSP_OKAY)

from .doubles import (PageGrants, discard_request, indirect_request, new_front,
                      responses, rw_request)

SECTORS = 2048          # 1 MiB image


@pytest.fixture
def disk(tmp_path):
    path = tmp_path / "disk.img"
    path.write_bytes(bytes(range(256)) * (SECTORS * 2))
    return path


def backend(path, read_only=False, features=Features(), pages=1, persistent=False,
            limit=MAX_PERSISTENT_GRANTS):
    buf, front = new_front(blkif.ENTRY_SIZE, pages)
    grants = PageGrants()
    image = RawImage(str(path), read_only=read_only)
    pgnts = PersistentGrants(grants.map_grants, limit) if persistent else None
    back = BlkBackend(BackRing(SharedRing(buf, blkif.ENTRY_SIZE)), grants, image, features,
                      persistent=pgnts)
    return front, grants, back


def run(front, back, *reqs):
    for r in reqs:
        front.put_request(r)
    front.push_requests_and_check_notify()
    back.process(budget=1000)
    return responses(front)


def test_write_then_read_direct(disk):
    front, grants, back = backend(disk)
    pages = [bytearray(os.urandom(4096)) for _ in range(11)]
    refs = [grants.grant(p, readonly=True) for p in pages]
    segs = [(r, 0, 7) for r in refs]
    assert run(front, back, rw_request(BLKIF_OP_WRITE, 7, 100, segs)) == \
        [(7, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]
    on_disk = disk.read_bytes()[100 * 512:100 * 512 + 11 * 4096]
    assert on_disk == b"".join(pages)
    # And back into fresh pages, with partial segments (sectors 2..5).
    dst = grants.grant()
    assert run(front, back, rw_request(BLKIF_OP_READ, 8, 100, [(dst, 2, 5)])) == \
        [(8, BLKIF_OP_READ, BLKIF_RSP_OKAY)]
    assert grants.pages[dst][1024:3072] == pages[0][:2048]
    assert grants.pages[dst][:1024] == bytes(1024)


def test_indirect_write_and_read(disk):
    front, grants, back = backend(disk)
    nseg = 200
    data = [os.urandom(4096) for _ in range(nseg)]
    refs = [grants.grant(bytearray(d), readonly=True) for d in data]
    table = bytearray(4096)
    for i, r in enumerate(refs):
        blkif.SEGMENT.pack_into(table, i * 8, r, 0, 7, 0)
    ind = grants.grant(table, readonly=True)
    assert run(front, back, indirect_request(BLKIF_OP_WRITE, 1, 0, nseg, [ind])) == \
        [(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]
    assert disk.read_bytes()[:nseg * 4096] == b"".join(data)
    outs = [grants.grant() for _ in range(nseg)]
    for i, r in enumerate(outs):
        blkif.SEGMENT.pack_into(table, i * 8, r, 0, 7, 0)
    assert run(front, back, indirect_request(BLKIF_OP_READ, 2, 0, nseg, [ind])) == \
        [(2, BLKIF_OP_READ, BLKIF_RSP_OKAY)]
    assert b"".join(bytes(grants.pages[r]) for r in outs) == b"".join(data)


@pytest.mark.parametrize("persistent", [False, True])
def test_each_bad_request_fails_alone_and_writes_nothing(disk, persistent):
    front, grants, back = backend(disk, persistent=persistent)
    before = disk.read_bytes()
    # A persistent frontend grants its pool writable (blkback maps it so).
    good = grants.grant(bytearray(b"G" * 4096), readonly=not persistent)
    ro = grants.grant(bytearray(4096), readonly=True)
    bad_reqs = [
        rw_request(BLKIF_OP_WRITE, 1, SECTORS - 4, [(good, 0, 7)]),     # past the end
        rw_request(BLKIF_OP_WRITE, 2, 0, [(good, 0, 7), (9999, 0, 7)]),  # bad gref
        rw_request(BLKIF_OP_WRITE, 3, 0, [(good, 5, 2)]),                # last < first
        rw_request(BLKIF_OP_WRITE, 4, 0, [(good, 0, 8)]),                # last past page
        rw_request(BLKIF_OP_WRITE, 5, 0, []),                            # no segments
        rw_request(BLKIF_OP_READ, 6, 0, [(ro, 0, 7)]),                   # read into r/o grant
        indirect_request(BLKIF_OP_WRITE, 7, 0, 257, [good]),             # over max segments
        indirect_request(BLKIF_OP_DISCARD, 8, 0, 1, [good]),             # bad indirect op
        discard_request(9, SECTORS - 1, 2),                              # discard past end
    ]
    oversize = bytearray(rw_request(BLKIF_OP_WRITE, 10, 0, [(good, 0, 7)]))
    oversize[1] = 12                                                     # 12 > 11 segments
    bad_reqs.append(bytes(oversize))
    got = run(front, back, *bad_reqs, rw_request(BLKIF_OP_WRITE, 11, 8, [(good, 0, 7)]))
    assert [r[0] for r in got] == list(range(1, 12))
    assert all(r[2] == BLKIF_RSP_ERROR for r in got[:-1]), got
    assert got[-1] == (11, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)
    after = disk.read_bytes()
    assert after[:8 * 512] == before[:8 * 512]
    assert after[8 * 512:16 * 512] == b"G" * 4096
    assert after[16 * 512:] == before[16 * 512:]
    assert grants.pages[ro] == bytes(4096)


def test_persistent_grants_map_each_gref_once(disk):
    front, grants, back = backend(disk, persistent=True)
    pool = [grants.grant() for _ in range(64)]
    table = grants.grant()
    for rnd in range(3):
        data = [os.urandom(4096) for _ in pool]
        for page, d in zip(pool, data):
            grants.pages[page][:] = d
        for i, r in enumerate(pool[11:]):
            blkif.SEGMENT.pack_into(grants.pages[table], i * 8, r, 0, 7, 0)
        assert run(front, back,
                   rw_request(BLKIF_OP_WRITE, 1, 0, [(r, 0, 7) for r in pool[:11]]),
                   indirect_request(BLKIF_OP_WRITE, 2, 88, 53, [table])) == \
            [(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY), (2, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]
        assert disk.read_bytes()[:64 * 4096] == b"".join(data)
        for r in pool:
            grants.pages[r][:] = bytes(4096)
        # Partial segments: sectors 3..6 of the page only.
        assert run(front, back,
                   indirect_request(BLKIF_OP_READ, 3, 88, 53, [table]),
                   rw_request(BLKIF_OP_READ, 4, 0, [(r, 0, 7) for r in pool[:10]] +
                              [(pool[10], 3, 6)])) == \
            [(3, BLKIF_OP_READ, BLKIF_RSP_OKAY), (4, BLKIF_OP_READ, BLKIF_RSP_OKAY)]
        got = b"".join(bytes(grants.pages[r]) for r in pool)
        assert got[:10 * 4096] == b"".join(data[:10])
        assert got[10 * 4096:11 * 4096] == bytes(1536) + data[10][:2048] + bytes(512)
        assert got[11 * 4096:] == b"".join(data[11:])
        # Mapped on first sight only: the pool and the indirect page.
        assert grants.maps == 65


def test_persistent_grant_limit_falls_back_to_copy(disk):
    front, grants, back = backend(disk, persistent=True, limit=2)
    refs = [grants.grant(bytearray(bytes([i]) * 4096)) for i in range(3)]
    assert run(front, back, rw_request(BLKIF_OP_WRITE, 1, 0, [(r, 0, 7) for r in refs])) == \
        [(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]
    assert grants.maps == 0
    assert disk.read_bytes()[:3 * 4096] == bytes(4096) + b"\1" * 4096 + b"\2" * 4096
    assert run(front, back, rw_request(BLKIF_OP_READ, 2, 8, [(r, 0, 7) for r in refs[:2]]),
               rw_request(BLKIF_OP_READ, 3, 8, [(refs[2], 0, 7)])) == \
        [(2, BLKIF_OP_READ, BLKIF_RSP_OKAY), (3, BLKIF_OP_READ, BLKIF_RSP_OKAY)]
    assert grants.maps == 2
    assert [bytes(grants.pages[r][:1]) for r in refs] == [b"\1", b"\2", b"\1"]


def test_read_only_disk_refuses_writes_and_serves_reads(disk):
    front, grants, back = backend(disk, read_only=True)
    src = grants.grant(bytearray(4096), readonly=True)
    dst = grants.grant()
    got = run(front, back,
              rw_request(BLKIF_OP_WRITE, 1, 0, [(src, 0, 7)]),
              discard_request(2, 0, 8),
              rw_request(BLKIF_OP_READ, 3, 1, [(dst, 0, 0)]))
    assert got == [(1, BLKIF_OP_WRITE, BLKIF_RSP_ERROR),
                   (2, BLKIF_OP_DISCARD, BLKIF_RSP_ERROR),
                   (3, BLKIF_OP_READ, BLKIF_RSP_OKAY)]
    assert grants.pages[dst][:512] == disk.read_bytes()[512:1024]


def test_flush_barrier_discard_and_unknown(disk):
    front, grants, back = backend(disk)
    src = grants.grant(bytearray(b"B" * 4096), readonly=True)
    got = run(front, back,
              rw_request(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, []),
              rw_request(BLKIF_OP_WRITE_BARRIER, 2, 16, [(src, 0, 7)]),
              discard_request(3, 64, 16),
              rw_request(blkif.BLKIF_OP_RESERVED_1, 4, 0, []),
              rw_request(99, 5, 0, []))
    assert got == [(1, BLKIF_OP_FLUSH_DISKCACHE, BLKIF_RSP_OKAY),
                   (2, BLKIF_OP_WRITE_BARRIER, BLKIF_RSP_OKAY),
                   (3, BLKIF_OP_DISCARD, BLKIF_RSP_OKAY),
                   (4, blkif.BLKIF_OP_RESERVED_1, BLKIF_RSP_EOPNOTSUPP),
                   (5, 99, BLKIF_RSP_EOPNOTSUPP)]
    data = disk.read_bytes()
    assert data[16 * 512:24 * 512] == b"B" * 4096
    assert data[64 * 512:80 * 512] == bytes(16 * 512)


def test_operations_not_advertised_are_eopnotsupp(disk):
    front, grants, back = backend(disk, features=Features(flush=False, barrier=False,
                                                         discard=False))
    got = run(front, back, rw_request(BLKIF_OP_FLUSH_DISKCACHE, 1, 0, []),
              rw_request(BLKIF_OP_WRITE_BARRIER, 2, 0, []), discard_request(3, 0, 8))
    assert [r[2] for r in got] == [BLKIF_RSP_EOPNOTSUPP] * 3


def test_garbage_index_stops_only_this_ring(disk, tmp_path):
    front, grants, back = backend(disk)
    other_path = tmp_path / "other.img"
    other_path.write_bytes(bytes(4096 * 4))
    ofront, ogrants, oback = backend(other_path)
    front.sring.req_prod = 0xDEADBEEF
    with pytest.raises(RingProtocolError):
        back.process()
    src = ogrants.grant(bytearray(b"O" * 4096), readonly=True)
    assert run(ofront, oback, rw_request(BLKIF_OP_WRITE, 1, 0, [(src, 0, 7)])) == \
        [(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]


def test_flood_is_served_in_budgeted_batches(disk):
    front, grants, back = backend(disk, pages=4)        # 128-entry ring
    dst = grants.grant()
    for i in range(front.size):
        front.put_request(rw_request(BLKIF_OP_READ, i, i, [(dst, 0, 0)]))
    front.push_requests_and_check_notify()
    notify, more = back.process(budget=50)
    assert notify and more and front.unconsumed_responses() == 50
    while more:
        _, more = back.process(budget=50)
    assert [r[0] for r in responses(front)] == list(range(front.size))


def test_image_errors_are_one_line(tmp_path):
    with pytest.raises(ImageError, match="No such file"):
        RawImage(str(tmp_path / "missing.img"))
    with pytest.raises(ImageError, match="neither a regular file"):
        RawImage("/dev/null")


def test_vectored_io_completes_short_transfers():
    """preadv/pwritev may move fewer bytes than asked: the rest follows,
    each buffer filled in order from where the last call stopped."""
    from pv_drivers.image import _vectored
    calls = []

    def short(fd, bufs, offset):                  # at most 4 bytes a call
        calls.append((offset, [len(b) for b in bufs]))
        data, pos = bytes(range(offset, offset + 4)), 0
        for b in bufs:
            k = min(len(b), 4 - pos)
            b[:k] = data[pos:pos + k]
            pos += k
            if pos == 4:
                break
        return min(4, sum(len(b) for b in bufs))
    bufs = [bytearray(5), bytearray(7), bytearray(3)]
    _vectored(short, 0, 0, bufs, "read")
    assert calls == [(0, [5, 7, 3]), (4, [1, 7, 3]), (8, [4, 3]), (12, [3])]
    assert b"".join(bufs) == bytes(range(15))
    with pytest.raises(OSError, match="short read at 0"):
        _vectored(lambda fd, b, o: 0, 0, 0, [bytearray(4)], "read")
