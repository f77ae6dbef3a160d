"""The backend's transport over the real grant path: a guest (grant-share)
grants a page to dom0; XenQueue maps it through gntdev as a ring and
copies through it with batched grant copies (and maps it persistently); blkback serves a request in
that ring into an image, refuses a bad gref and a range past the end, and
a garbage index in a real granted page is a protocol error."""
import pytest

from pv_drivers.blkback import BlkBackend
from pv_drivers.grants import GrantError
from pv_drivers.image import RawImage
from pv_drivers.ring import BackRing, FrontRing, RingProtocolError, SharedRing
from pv_drivers.transport import TransportError, XenQueue
from xen_core.abi import blkif

from tests.evtchn.test_guests import core, events, finish, pc, wait_for  # noqa: F401 (fixtures)
from .doubles import rw_request


def test_ring_and_grant_copies_through_gntdev(pc, events, tmp_path):  # noqa: F811
    from tests.core.conftest import start_guest
    dom = start_guest(pc, "grant-share")
    pc.domain_unpause(dom)
    ref = int(wait_for(pc, dom, r"gref (\d+) frame").group(1))
    with pytest.raises(TransportError):
        XenQueue(pc, dom, [[ref + 100]], [])          # never granted: nothing mapped
    q = XenQueue(pc, dom, [[ref]], [])
    try:
        page = q.rings[0][0]
        assert bytes(page[:19]) == b"grant-share:pattern"
        # The guest's bytes read as ring indexes claim far more than 32 requests.
        hostile = SharedRing(q.rings[0], blkif.ENTRY_SIZE)
        with pytest.raises(RingProtocolError):
            BackRing(hostile).unconsumed_requests()
        hostile.release()
        assert q.copy_from_many([(ref, 0, 11), (ref, 12, 7)]) == [b"grant-share", b"pattern"]
        # Segments that would straddle a page of the bounce buffer if packed
        # back to back (a grant copy segment may not cross a page).
        whole = bytes(page)
        assert q.copy_from_many([(ref, 0, 3000), (ref, 1000, 3000), (ref, 96, 4000)]) == \
            [whole[:3000], whole[1000:4000], whole[96:4096]]
        with pytest.raises(GrantError):
            q.copy_from_many([(ref, 0, 4), (ref + 100, 0, 4)])
        with pytest.raises(GrantError):
            q.copy_from(ref, 4090, 10)
        # Now the page as a frontend would lay out a blkif ring: one good
        # request whose data page is the ring page itself, one bad gref,
        # one past the end of the disk.
        sring = SharedRing(q.rings[0], blkif.ENTRY_SIZE)
        sring.init()
        front = FrontRing(sring)
        for r in (rw_request(blkif.BLKIF_OP_WRITE, 1, 8, [(ref, 0, 7)]),
                  rw_request(blkif.BLKIF_OP_WRITE, 2, 0, [(ref + 100, 0, 7)]),
                  rw_request(blkif.BLKIF_OP_READ, 3, 2047, [(ref, 4, 5)])):
            front.put_request(r)
        front.push_requests_and_check_notify()
        snapshot = bytes(page)
        disk = tmp_path / "d.img"
        disk.write_bytes(bytes(1 << 20))
        image = RawImage(str(disk))
        bring = SharedRing(q.rings[0], blkif.ENTRY_SIZE)
        BlkBackend(BackRing(bring), q, image).process()
        got = [blkif.RESPONSE.unpack(front.get_response()[:blkif.RESPONSE.size])
               for _ in range(front.unconsumed_responses())]
        assert [(r[0], r[2]) for r in got] == [(1, 0), (2, -1), (3, -1)]
        assert disk.read_bytes()[8 * 512:8 * 512 + 4096] == snapshot
        assert disk.read_bytes()[:8 * 512] == bytes(8 * 512)
        image.close()
        for ring in (sring, bring):
            ring.release()
        # Persistent grants: mapped writable through gntdev, all or none;
        # close() unmaps them (the guest's revoke below would hang if not).
        with pytest.raises(GrantError):
            q.map_grants([ref, ref + 100])
        view = q.map_grants([ref])[0]
        assert bytes(view[:4096]) == bytes(page)
        view[100:104] = b"PERS"
        assert q.copy_from(ref, 100, 4) == b"PERS"
        q.copy_to_many([(ref, 0, b"peer:"), (ref, 5, b"done\0")])
    finally:
        q.close()
    assert 'peer wrote "peer:done"' in wait_for(pc, dom, r"grant-share: revoked.*").string
    finish(pc, events, dom)
