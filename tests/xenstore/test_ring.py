"""The shared-ring transport: ring arithmetic, and introduced domains talking
to the daemon through a file-backed xenstore page and FIFO event channel."""

import struct

import pytest

from xen_core.abi import xs_wire as w
from xenstore.ring import RingError, XsRingBackend, XsRingFrontend

from .conftest import Daemon, RawClient, RingGuest, introduce, settle

U32 = struct.Struct("<I")


def test_ring_roundtrip_and_wrap():
    page = bytearray(w.XS_RING_PAGE_SIZE)
    front, back = XsRingFrontend(page), XsRingBackend(page)
    total = b""
    for i in range(50):                      # 50 * 100 bytes: wraps many times
        msg = bytes([i]) * 100
        assert front.write_request(msg) == 100
        total += back.read_requests()
    assert total == b"".join(bytes([i]) * 100 for i in range(50))
    assert back.write_responses(b"x" * 2000) == w.XENSTORE_RING_SIZE   # full ring
    assert back.write_responses(b"y") == 0
    assert front.read_responses() == b"x" * 1024
    assert back.write_responses(b"y") == 1


def test_ring_index_overflow_is_fatal():
    page = bytearray(w.XS_RING_PAGE_SIZE)
    U32.pack_into(page, w.XS_RING_REQ_PROD, w.XENSTORE_RING_SIZE + 1)
    with pytest.raises(RingError):
        XsRingBackend(page).read_requests()
    page = bytearray(w.XS_RING_PAGE_SIZE)
    U32.pack_into(page, w.XS_RING_RSP_CONS, 0xFFFFF000)
    with pytest.raises(RingError):
        XsRingBackend(page).write_responses(b"x")


def test_ring_indexes_wrap_at_u32():
    page = bytearray(w.XS_RING_PAGE_SIZE)
    for off in (w.XS_RING_REQ_CONS, w.XS_RING_REQ_PROD):
        U32.pack_into(page, off, 0xFFFFFFF0)
    front, back = XsRingFrontend(page), XsRingBackend(page)
    assert front.write_request(b"a" * 40) == 40
    assert U32.unpack_from(page, w.XS_RING_REQ_PROD)[0] == 0x18
    assert back.read_requests() == b"a" * 40


@pytest.fixture
def dom5(daemon, client):
    g = introduce(client, daemon, 5)
    yield g
    g.close()


def test_introduced_domain_over_the_ring(daemon, client, dom5):
    assert dom5.ring.server_features() & w.XENSTORE_SERVER_FEATURE_ERROR
    dom5.write(b"data/x", b"from-the-guest")            # relative to its home
    assert client.ok(w.XS_READ, b"/local/domain/5/data/x") == b"from-the-guest"
    assert dom5.ok(w.XS_GET_PERMS, b"data/x") == b"n5\0"
    assert dom5.ok(w.XS_GET_DOMAIN_PATH, b"5") == b"/local/domain/5\0"
    assert client.ok(w.XS_IS_DOMAIN_INTRODUCED, b"5") == b"T\0"
    # Its reads of dom0's nodes are refused; the error names the errno.
    t, body = dom5.request(w.XS_READ, b"/local/domain/0/name\0")
    assert (t, body) == (w.XS_ERROR, b"EACCES\0")
    t, body = dom5.request(w.XS_WRITE, b"/tool/x\0v")
    assert (t, body) == (w.XS_ERROR, b"EACCES\0")
    t, body = dom5.request(w.XS_CONTROL, b"check\0")
    assert (t, body) == (w.XS_ERROR, b"EACCES\0")
    # dom0 grants read access: now it may read.
    client.ok(w.XS_SET_PERMS, b"/local/domain/0/name", b"n0", b"r5")
    assert dom5.ok(w.XS_READ, b"/local/domain/0/name") == b"Domain-0"


def test_guest_watch_events_over_the_ring(daemon, client, dom5):
    dom5.ok(w.XS_WATCH, b"device", b"dev-token")
    # The registration event follows the reply, with the path as given.
    assert dom5.recv_msg() == (w.XS_WATCH_EVENT, 0, 0, b"device\0dev-token\0")
    client.ok(w.XS_WRITE, b"/local/domain/5/device/vbd", b"")
    # The event reaches the guest without it asking for anything else.
    assert dom5.recv_msg() == (w.XS_WATCH_EVENT, 0, 0, b"device/vbd\0dev-token\0")


def test_long_messages_cross_the_ring_in_pieces(daemon, client, dom5):
    value = bytes(range(256)) * 7                    # 1792 bytes > ring size
    dom5.write(b"big", value)
    assert dom5.ok(w.XS_READ, b"big") == value


def test_introduce_and_release_watches(daemon, client):
    client.ok(w.XS_WATCH, b"@introduceDomain", b"I")
    client.ok(w.XS_WATCH, b"@releaseDomain", b"R")
    g = introduce(client, daemon, 6)
    g.write(b"mine", b"1")
    client.ok(w.XS_RELEASE, b"6")
    client.ok(w.XS_READ, b"/")                       # sync: events come first
    # Each fires once at registration, then on the introduction and release.
    assert client.events == [(b"@introduceDomain", b"I"), (b"@releaseDomain", b"R"),
                             (b"@introduceDomain", b"I"), (b"@releaseDomain", b"R")]
    assert client.ok(w.XS_IS_DOMAIN_INTRODUCED, b"6") == b"F\0"
    assert client.ok(w.XS_GET_PERMS, b"/local/domain/6/mine") == b"n0\0"
    g.close()


def test_set_target_over_the_ring(daemon, client):
    dm = introduce(client, daemon, 7)
    introduce(client, daemon, 8).close()
    t, _ = dm.request(w.XS_READ, b"/local/domain/8\0")
    assert t == w.XS_ERROR
    client.ok(w.XS_SET_TARGET, b"7", b"8")
    dm.write(b"/local/domain/8/dm-state", b"running")
    assert client.ok(w.XS_GET_PERMS, b"/local/domain/8/dm-state") == b"n7\0"
    dm.close()


def test_fatal_ring_index_hurts_only_that_domain(daemon, client):
    bad = introduce(client, daemon, 9)
    good = introduce(client, daemon, 10)
    prod = U32.unpack_from(bad.page, w.XS_RING_REQ_PROD)[0]
    U32.pack_into(bad.page, w.XS_RING_REQ_PROD, prod + 5000)
    bad.kick()
    bad.wait()
    assert bad.ring.error() == w.XENSTORE_ERROR_RINGIDX
    good.write(b"still", b"fine")
    assert client.ok(w.XS_READ, b"/local/domain/10/still") == b"fine"
    assert daemon.alive()
    bad.close()
    good.close()


def test_oversized_length_on_ring_is_fatal(daemon, client):
    g = introduce(client, daemon, 11)
    g.ring.write_request(w.XSD_SOCKMSG.pack(w.XS_READ, 1, 0, 5000))
    g.kick()
    g.wait()
    assert g.ring.error() == w.XENSTORE_ERROR_PROTO
    assert client.ok(w.XS_READ, b"/local/domain/0/name") == b"Domain-0"
    g.close()


def test_reconnect_resets_the_ring(daemon, client, dom5):
    dom5.ok(w.XS_WATCH, b"w", b"t")
    dom5.recv_msg()
    dom5.ring.request_reconnect()
    dom5.kick()
    settle(client)          # not wait(): a notification left from the WATCH may be pending
    assert dom5.ring.connected()
    dom5.inbuf = b""
    t, body = dom5.request(w.XS_UNWATCH, b"w\0t\0")
    assert (t, body) == (w.XS_ERROR, b"ENOENT\0")       # watches were dropped


def test_outstanding_quota_stops_reading_requests(tmp_path):
    d = Daemon(tmp_path, "-Q", "outstanding=2")
    try:
        c = RawClient(d.sock)
        g = introduce(c, d, 12)
        g.write(b"v", b"x" * 100)
        req = w.XSD_SOCKMSG.pack(w.XS_READ, 0, 0, 2) + b"v\0"
        n = w.XENSTORE_RING_SIZE // len(req)             # fills the req ring
        assert g.ring.write_request(req * n) == len(req) * n
        g.kick()
        settle(c)           # xenstored's pass for this kick is over
        cons = U32.unpack_from(g.page, w.XS_RING_REQ_CONS)[0]
        prod = U32.unpack_from(g.page, w.XS_RING_REQ_PROD)[0]
        assert cons < prod, "xenstored kept reading past the outstanding quota"
        replies = [g.recv_msg() for _ in range(n)]
        assert all(r[0] == w.XS_READ and r[3] == b"x" * 100 for r in replies)
        g.close()
    finally:
        d.stop()


def test_reintroduce_rebinds_the_event_channel(daemon, client, dom5):
    gfn = b"%d" % 0xFEFFC
    assert client.ok(w.XS_INTRODUCE, b"5", gfn, b"8") == b"OK\0"
    t, body = client.request(w.XS_INTRODUCE, b"5\0" b"1234\0" b"8\0")
    assert (t, body) == (w.XS_ERROR, b"EINVAL\0")          # another page
    rebound = RingGuest(daemon.ring_dir, 5, 8)               # same page, port 8
    rebound.write(b"after-rebind", b"1")
    assert client.ok(w.XS_READ, b"/local/domain/5/after-rebind") == b"1"
    rebound.close()


def test_memory_quota_stops_talking_to_the_domain(tmp_path):
    d = Daemon(tmp_path, "-Q", "memory=3000", "-q", "memory=1500")
    try:
        c = RawClient(d.sock)
        g = introduce(c, d, 13)
        for i in range(4):
            g.write(b"blob%d" % i, b"z" * 900)            # over 3000 after the 4th
        usage = c.ok(w.XS_CONTROL, b"quota", b"13").decode()
        assert "memory" in usage
        req = w.XSD_SOCKMSG.pack(w.XS_READ, 9, 0, 6) + b"blob0\0"
        g.ring.write_request(req)
        g.kick()
        settle(c)                                          # it has seen the kick
        assert g.ring.read_responses() == b""              # not answered
        assert U32.unpack_from(g.page, w.XS_RING_REQ_CONS)[0] != \
            U32.unpack_from(g.page, w.XS_RING_REQ_PROD)[0]  # not even read
        c.ok(w.XS_RM, b"/local/domain/13/blob3")           # dom0 frees some
        g.kick()
        assert g.recv_msg() == (w.XS_READ, 9, 0, b"z" * 900)
        with open(d.log) as f:
            assert "over the soft memory quota" in f.read()
        g.close()
    finally:
        d.stop()
