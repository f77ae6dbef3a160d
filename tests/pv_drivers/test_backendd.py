"""xen-backendd's vbd path end to end over a real xenstored: libxl's keys,
the xenbus handshake, I/O landing in the image, hot-unplug, and a hostile
frontend closed alone while another disk keeps working."""
import os

import pytest

from xen_core.abi import blkif
from xen_core.abi.blkif import BLKIF_OP_READ, BLKIF_OP_WRITE, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY

from .conftest import BlkFront, add_vbd, wait_for
from .doubles import rw_request


def image(tmp_path, name="disk.img", size=1 << 20):
    p = tmp_path / name
    p.write_bytes(bytes(size))
    return p


def test_connect_write_read_and_host_sees_data(store, backendd, tmp_path):
    img = image(tmp_path)
    bpath, _ = add_vbd(store, 3, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 3, 51712)
    front.connect()
    assert store.read(f"{bpath}/sectors") == str(2048)
    assert store.read(f"{bpath}/info") == "0"
    assert store.read(f"{bpath}/feature-flush-cache") == "1"
    assert store.read(f"{bpath}/feature-max-indirect-segments") == "256"
    data = os.urandom(4096)
    src = front.grants.grant(bytearray(data), readonly=True)
    dst = front.grants.grant()
    assert front.submit(rw_request(BLKIF_OP_WRITE, 1, 8, [(src, 0, 7)])) == \
        [(1, BLKIF_OP_WRITE, BLKIF_RSP_OKAY)]
    assert img.read_bytes()[4096:8192] == data
    # ...and the other way round: the host writes, the guest reads.
    with open(img, "r+b") as f:
        f.seek(65536)
        f.write(b"H" * 512)
    assert front.submit(rw_request(BLKIF_OP_READ, 2, 128, [(dst, 0, 0)]))[0][2] == BLKIF_RSP_OKAY
    assert front.grants.pages[dst][:512] == b"H" * 512


@pytest.mark.parametrize("offer", [None, 0, 1])
def test_persistent_grants_only_when_the_frontend_offers_them(store, backendd, tmp_path, offer):
    """feature-persistent=1 from the backend; the pool is mapped (once per
    gref) only if the frontend wrote feature-persistent=1 too, else every
    request is a grant copy and nothing stays mapped."""
    img = image(tmp_path)
    bpath, _ = add_vbd(store, 6, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 6, 51712)
    front.connect(persistent=offer)
    assert store.read(f"{bpath}/feature-persistent") == "1"
    pool = [front.grants.grant(bytearray(bytes([i + 1]) * 4096)) for i in range(4)]
    for rnd in range(2):
        got = front.submit(*[rw_request(BLKIF_OP_WRITE, i, 8 * i, [(r, 0, 7)])
                             for i, r in enumerate(pool)])
        assert [g[2] for g in got] == [BLKIF_RSP_OKAY] * 4
    assert img.read_bytes()[:4 * 4096] == b"".join(bytes([i + 1]) * 4096 for i in range(4))
    assert front.grants.maps == (4 if offer else 0)


def test_multi_page_ring(store, backendd, tmp_path):
    img = image(tmp_path)
    add_vbd(store, 4, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 4, 51712, order=2)
    front.connect()
    dst = front.grants.grant()
    reqs = [rw_request(BLKIF_OP_READ, i, i, [(dst, 0, 0)]) for i in range(100)]
    assert [r[2] for r in front.submit(*reqs)] == [BLKIF_RSP_OKAY] * 100


def test_multi_queue(store, backendd, tmp_path):
    """blkfront's multi-queue layout (queue-N/ring-ref, queue-N/event-channel):
    each queue is its own ring, all on the one image; a count above
    multi-queue-max-queues fails that device only."""
    img = image(tmp_path)
    bpath, _ = add_vbd(store, 11, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 11, 51712, order=1, queues=3)
    front.connect()
    assert store.read(f"{bpath}/multi-queue-max-queues") == "4"
    data = [os.urandom(4096) for _ in range(3)]
    for q in range(3):          # written through queue q, read back through the next
        src = front.grants.grant(bytearray(data[q]), readonly=True)
        assert front.submit(rw_request(BLKIF_OP_WRITE, q, 8 * q, [(src, 0, 7)]),
                            queue=q)[0][2] == BLKIF_RSP_OKAY
    for q in range(3):
        dst = bytearray(4096)
        ref = front.grants.grant(dst)
        assert front.submit(rw_request(BLKIF_OP_READ, 10 + q, 8 * q, [(ref, 0, 7)]),
                            queue=(q + 1) % 3)[0][2] == BLKIF_RSP_OKAY
        assert bytes(dst) == data[q]
    assert img.read_bytes()[:3 * 4096] == b"".join(data)

    b2, _ = add_vbd(store, 12, 51712, str(img))
    too_many = BlkFront(store, backendd.transport_double, 12, 51712, queues=5)
    with pytest.raises(ConnectionError, match="Closing"):
        too_many.connect()
    assert store.read(f"{b2}/state") == "5"
    assert "multi-queue-num-queues 5" in store.read("/local/domain/0/error/backend/vbd/12/51712/error")


def test_read_only_and_cdrom(store, backendd, tmp_path):
    img = image(tmp_path)
    bpath, _ = add_vbd(store, 5, 51712, str(img), mode="r")
    cpath, _ = add_vbd(store, 5, 51728, str(img), mode="r", device_type="cdrom")
    ro = BlkFront(store, backendd.transport_double, 5, 51712)
    ro.connect()
    cd = BlkFront(store, backendd.transport_double, 5, 51728)
    cd.connect()
    assert int(store.read(f"{bpath}/info")) == blkif.VDISK_READONLY
    assert int(store.read(f"{cpath}/info")) == \
        blkif.VDISK_READONLY | blkif.VDISK_CDROM | blkif.VDISK_REMOVABLE
    src = ro.grants.grant(bytearray(b"W" * 4096), readonly=True)
    for front in (ro, cd):
        src = front.grants.grant(bytearray(b"W" * 4096), readonly=True)
        assert front.submit(rw_request(BLKIF_OP_WRITE, 1, 0, [(src, 0, 7)]))[0][2] == \
            BLKIF_RSP_ERROR
    assert img.read_bytes() == bytes(1 << 20)


def test_hot_unplug(store, backendd, tmp_path):
    img = image(tmp_path)
    bpath, fpath = add_vbd(store, 6, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 6, 51712)
    front.connect()
    # libxl__initiate_device_generic_remove: online=0, state=Closing.
    store.write(f"{bpath}/online", 0)
    store.write(f"{bpath}/state", 5)
    store.write(f"{fpath}/state", 6)         # the frontend answers Closed
    wait_for(lambda: store.read(f"{bpath}/state") == "6", "backend Closed")
    wait_for(lambda: ("vbd", 6, 51712) not in backendd.devices, "device removed")


def test_hostile_index_closes_only_that_device(store, backendd, tmp_path):
    good_img, bad_img = image(tmp_path, "good.img"), image(tmp_path, "bad.img")
    add_vbd(store, 7, 51712, str(good_img))
    bad_b, _ = add_vbd(store, 8, 51712, str(bad_img))
    good = BlkFront(store, backendd.transport_double, 7, 51712)
    bad = BlkFront(store, backendd.transport_double, 8, 51712)
    good.connect()
    bad.connect()
    bad.ring.sring.req_prod = 0x7FFFFFF0     # claims far more than 32 entries
    bad.chan.kick_backend()
    wait_for(lambda: store.read(f"{bad_b}/state") == "5", "hostile device Closing")
    err = store.read("/local/domain/0/error/backend/vbd/8/51712/error")
    assert "bogus ring requests" in err
    src = good.grants.grant(bytearray(b"g" * 4096), readonly=True)
    assert good.submit(rw_request(BLKIF_OP_WRITE, 1, 0, [(src, 0, 7)]))[0][2] == BLKIF_RSP_OKAY
    assert bad_img.read_bytes() == bytes(1 << 20)


def test_bad_keys_fail_the_device_not_the_daemon(store, backendd, tmp_path):
    bpath, fpath = add_vbd(store, 9, 51712, str(tmp_path / "missing.img"))
    wait_for(lambda: store.read(f"{bpath}/state") == "5", "missing image: Closing")
    assert "No such file" in store.read("/local/domain/0/error/backend/vbd/9/51712/error")
    img = image(tmp_path)
    b2, f2 = add_vbd(store, 9, 51728, str(img))
    wait_for(lambda: store.read(f"{b2}/state") == "2", "InitWait")
    store.write(f"{f2}/ring-ref", 4242)       # never granted
    store.write(f"{f2}/event-channel", 1)
    store.write(f"{f2}/state", 3)
    wait_for(lambda: store.read(f"{b2}/state") == "5", "bad ring-ref: Closing")
    assert "4242" in store.read("/local/domain/0/error/backend/vbd/9/51728/error")
    # The daemon still serves a new, well-behaved disk.
    add_vbd(store, 10, 51712, str(img))
    front = BlkFront(store, backendd.transport_double, 10, 51712)
    front.connect()
    dst = front.grants.grant()
    assert front.submit(rw_request(BLKIF_OP_READ, 1, 0, [(dst, 0, 7)]))[0][2] == BLKIF_RSP_OKAY
