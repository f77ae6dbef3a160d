"""The shared ring: sizing, both ends over one buffer, Xen's notification
hold-off rules, and a frontend index that claims too much."""
import pytest
from hypothesis import given, settings, strategies as st

from pv_drivers.ring import BackRing, FrontRing, RingProtocolError, SharedRing
from xen_core.abi import blkif, netif
from xen_core.abi.ring import HEADER_SIZE, ring_size


def test_sizes_match_xen():
    # blkif: 32 requests in a page (__CONST_RING_SIZE(blkif, 4096)); netif: 256.
    assert ring_size(4096, blkif.ENTRY_SIZE) == 32
    assert ring_size(4096 * 2, blkif.ENTRY_SIZE) == 64
    assert ring_size(4096 * 16, blkif.ENTRY_SIZE) == 512
    assert ring_size(4096, netif.TX_ENTRY_SIZE) == 256
    assert ring_size(4096, netif.RX_ENTRY_SIZE) == 256
    with pytest.raises(ValueError):
        ring_size(HEADER_SIZE + 8, 16)


def pair(entry=16, pages=1):
    buf = bytearray(4096 * pages)
    s = SharedRing(buf, entry)
    s.init()
    return buf, FrontRing(s), BackRing(SharedRing(buf, entry))


def test_round_trip_and_init_values():
    buf, front, back = pair()
    assert (front.sring.req_event, front.sring.rsp_event) == (1, 1)
    front.put_request(b"hello")
    assert front.push_requests_and_check_notify()       # req_event 1 crossed
    assert back.unconsumed_requests() == 1
    assert back.get_request()[:5] == b"hello"
    back.put_response(b"world")
    assert back.push_responses_and_check_notify()
    assert front.get_response()[:5] == b"world"


def test_busy_ring_holds_off_notifications():
    _, front, back = pair()
    front.put_request(b"a")
    assert front.push_requests_and_check_notify()
    # The backend has not re-armed req_event: more pushes need no kick.
    front.put_request(b"b")
    assert not front.push_requests_and_check_notify()
    back.get_request(), back.get_request()
    # Re-arming finds nothing and asks to be woken at the next request.
    assert not back.final_check_for_requests()
    assert back.sring.req_event == back.req_cons + 1
    front.put_request(b"c")
    assert front.push_requests_and_check_notify()


def test_final_check_sees_a_request_that_raced_in():
    _, front, back = pair()
    front.put_request(b"x")
    front.push_requests_and_check_notify()
    assert back.final_check_for_requests()              # work pending: no sleep


def test_full_ring_refuses_more():
    _, front, back = pair()
    for i in range(front.size):
        front.put_request(bytes([i]))
    assert front.full()
    with pytest.raises(RingProtocolError):
        front.put_request(b"!")


@pytest.mark.parametrize("claim", [33, 1000, 0x80000000, 0xFFFFFFFF])
def test_bogus_req_prod_is_a_protocol_error(claim):
    _, front, back = pair(entry=blkif.ENTRY_SIZE)
    front.sring.req_prod = claim
    with pytest.raises(RingProtocolError, match="bogus ring requests"):
        back.unconsumed_requests()


def test_backend_never_reads_past_what_it_answered():
    # A frontend that publishes a full ring while responses are unread
    # still gets only `size` requests consumed.
    _, front, back = pair(entry=blkif.ENTRY_SIZE)
    front.sring.req_prod = 32
    assert back.unconsumed_requests() == 32
    for _ in range(32):
        back.get_request()
    assert back.unconsumed_requests() == 0


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFFFFFF),
       st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40), st.booleans()), max_size=40))
def test_random_traffic_loses_nothing_and_notifies_when_needed(start, steps):
    """Any interleaving, from any starting index (wrap-around included):
    every request reaches the backend once, in order; every response comes
    back; and a sleeping consumer is always kicked for new work."""
    buf, front, back = pair()
    s = front.sring
    for idx in (s,):
        idx.req_prod = idx.rsp_prod = start
        idx.req_event = idx.rsp_event = (start + 1) & 0xFFFFFFFF
    front.req_prod_pvt = front.rsp_cons = start
    back.rsp_prod_pvt = back.req_cons = start
    sent = seen = got = 0
    back_sleeping = front_sleeping = True
    for nreq, nrsp, do_final in steps:
        for _ in range(min(nreq, front.free_requests())):
            front.put_request(sent.to_bytes(4, "little"))
            sent += 1
        new_work = front.req_prod_pvt != s.req_prod
        notified = front.push_requests_and_check_notify()
        if back_sleeping and new_work:
            assert notified, "a sleeping backend was not kicked"
        if notified:
            back_sleeping = False
        for _ in range(min(nrsp, back.unconsumed_requests())):
            assert int.from_bytes(back.get_request()[:4], "little") == seen
            seen += 1
            back.put_response(seen.to_bytes(4, "little"))
        new_rsp = back.rsp_prod_pvt != s.rsp_prod
        notified = back.push_responses_and_check_notify()
        if front_sleeping and new_rsp:
            assert notified, "a sleeping frontend was not kicked"
        if notified:
            front_sleeping = False
        if do_final and not back.final_check_for_requests():
            back_sleeping = True
        while front.unconsumed_responses():
            got += 1
            assert int.from_bytes(front.get_response()[:4], "little") == got
        if not front.final_check_for_responses():
            front_sleeping = True
    assert seen <= sent and got == seen


def test_multi_page_ring_over_separate_pages_matches_contiguous():
    """A 4-page blkif ring given as four page views (as gntdev maps
    ring-ref0..3) sees exactly what a contiguous mapping sees, including
    entries that straddle page boundaries."""
    contiguous = bytearray(4 * 4096)
    s = SharedRing(contiguous, blkif.ENTRY_SIZE)
    s.init()
    front = FrontRing(s)
    pages = [memoryview(contiguous)[i * 4096:(i + 1) * 4096] for i in range(4)]
    back = BackRing(SharedRing(pages, blkif.ENTRY_SIZE))
    assert back.size == 128
    for i in range(128):
        front.put_request(bytes([i]) * blkif.ENTRY_SIZE)
    front.push_requests_and_check_notify()
    assert [back.get_request() for _ in range(128)] == \
        [bytes([i]) * blkif.ENTRY_SIZE for i in range(128)]
    for i in range(128):
        back.put_response(bytes([255 - i]) * 16)
    back.push_responses_and_check_notify()
    assert all(front.get_response()[:16] == bytes([255 - i]) * 16 for i in range(128))
