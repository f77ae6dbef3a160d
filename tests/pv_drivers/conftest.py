"""A private xenstored and an in-process xen-backendd whose queues reach
test frontends through LocalTransport (grants and channels as plain pages
and pipes; the ring and xenbus code are the real ones)."""
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pyxs
import pytest

from pv_drivers.backendd import Backendd
from pv_drivers.ring import FrontRing, SharedRing
from pv_drivers.vbd import VbdDevice
from xen_core.abi import blkif

from .doubles import LocalTransport, responses

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HANG_GUARD_S = 120      # not a speed limit: only stops a hung test


def wait_for(cond, what):
    deadline = time.monotonic() + HANG_GUARD_S
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.01)


class Store:
    def __init__(self, tmp):
        self.sock = os.path.join(str(tmp), "xenstored", "socket")
        env = dict(os.environ, XENSTORED_PATH=self.sock,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenstore.daemon", "-N", "--pid-file",
             os.path.join(str(tmp), "xenstored.pid"), "--log", os.path.join(str(tmp), "xs.log"),
             "--ring-dir", os.path.join(str(tmp), "rings")], env=env, cwd=str(tmp))
        wait_for(lambda: os.path.exists(self.sock) or self.proc.poll() is not None, "xenstored")
        assert self.proc.poll() is None, "xenstored exited"
        self.client = pyxs.Client(unix_socket_path=self.sock)
        self.client.connect()

    def read(self, path):
        try:
            v = self.client.read(path.encode())
        except pyxs.PyXSError:
            return None
        return None if v is None else v.decode()

    def write(self, path, value):
        self.client.write(path.encode(), str(value).encode())

    def rm(self, path):
        self.client.rm(path.encode())

    def stop(self):
        self.client.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def backendd(store):
    transport = LocalTransport()
    d = Backendd(store.sock, transport, kinds={"vbd": VbdDevice})
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    d.transport_double = transport
    yield d
    d.stop()
    t.join(timeout=30)
    assert not t.is_alive(), "backendd main loop did not stop"
    d.close()


def add_vbd(store, domid, devid, target, mode="w", device_type="disk", params=None):
    """The keys libxl writes for a disk (device_disk_add)."""
    bpath = f"/local/domain/0/backend/vbd/{domid}/{devid}"
    fpath = f"/local/domain/{domid}/device/vbd/{devid}"
    for k, v in [("frontend", fpath), ("frontend-id", domid), ("online", 1), ("removable", 0),
                 ("bootable", 1), ("dev", "xvda"), ("type", "phy"), ("mode", mode),
                 ("device-type", device_type), ("params", params or target),
                 ("discard-enable", 1)]:
        store.write(f"{bpath}/{k}", v)
    for k, v in [("backend", bpath), ("backend-id", 0), ("virtual-device", devid),
                 ("device-type", device_type), ("state", 1)]:
        store.write(f"{fpath}/{k}", v)
    store.write(f"{bpath}/state", 1)
    return bpath, fpath


class BlkFront:
    """A blkfront double: the real FrontRing over pages it grants."""

    def __init__(self, store, transport, domid, devid, order=0, queues=1):
        self.store, self.domid = store, domid
        self.bpath = f"/local/domain/0/backend/vbd/{domid}/{devid}"
        self.fpath = f"/local/domain/{domid}/device/vbd/{devid}"
        self.grants = transport.domain(domid)
        self.order, self.nr_queues = order, queues
        self.queues = []          # per queue: (refs, FrontRing, port, channel)
        for _ in range(queues):
            pages = [bytearray(4096) for _ in range(1 << order)]
            refs = [self.grants.grant(p) for p in pages]
            sring = SharedRing(pages, blkif.ENTRY_SIZE)
            sring.init()
            self.queues.append((refs, FrontRing(sring)) + tuple(transport.alloc_port(domid)))
        self.refs, self.ring, self.port, self.chan = self.queues[0]

    def be_state(self):
        return self.store.read(f"{self.bpath}/state")

    def connect(self, persistent=None):
        wait_for(lambda: self.be_state() == "2", "backend InitWait")
        if persistent is not None:
            self.store.write(f"{self.fpath}/feature-persistent", persistent)
        if self.order:
            self.store.write(f"{self.fpath}/ring-page-order", self.order)
        if self.nr_queues > 1:     # blkfront's layout: queue-N/ring-ref..., event-channel
            self.store.write(f"{self.fpath}/multi-queue-num-queues", self.nr_queues)
        for q, (refs, _, port, _) in enumerate(self.queues):
            qpath = f"{self.fpath}/queue-{q}" if self.nr_queues > 1 else self.fpath
            if self.order:
                for i, r in enumerate(refs):
                    self.store.write(f"{qpath}/ring-ref{i}", r)
            else:
                self.store.write(f"{qpath}/ring-ref", refs[0])
            self.store.write(f"{qpath}/event-channel", port)
        self.store.write(f"{self.fpath}/protocol", "x86_64-abi")
        self.store.write(f"{self.fpath}/state", 3)
        state = wait_for(lambda: (s := self.be_state()) in ("4", "5") and s, "backend Connected")
        if state == "5":
            raise ConnectionError("backend moved to Closing instead of Connected")
        self.store.write(f"{self.fpath}/state", 4)

    def submit(self, *reqs, queue=0):
        _, ring, _, chan = self.queues[queue]
        for r in reqs:
            ring.put_request(r)
        if ring.push_requests_and_check_notify():
            chan.kick_backend()
        got = []
        while len(got) < len(reqs):
            select.select([chan.to_front_r], [], [], 0.2)
            try:
                os.read(chan.to_front_r, 4096)
            except BlockingIOError:
                pass
            got += responses(ring)
            if len(got) < len(reqs) and self.be_state() == "5":
                raise ConnectionError("backend closed the device")
        return got


@pytest.fixture
def netbackendd(store):
    from pv_drivers.vif import VifDevice
    transport = LocalTransport()
    d = Backendd(store.sock, transport, kinds={"vif": VifDevice})
    d.switch_only = True
    t = threading.Thread(target=d.run, daemon=True)
    t.start()
    d.transport_double = transport
    yield d
    d.stop()
    t.join(timeout=30)
    assert not t.is_alive(), "backendd main loop did not stop"
    d.close()


def add_vif(store, domid, devid, mac, bridge="xenbr0"):
    """The keys libxl writes for a vif (libxl__device_nic_add)."""
    bpath = f"/local/domain/0/backend/vif/{domid}/{devid}"
    fpath = f"/local/domain/{domid}/device/vif/{devid}"
    for k, v in [("frontend", fpath), ("frontend-id", domid), ("online", 1),
                 ("script", "vif-bridge"), ("mac", mac), ("bridge", bridge),
                 ("handle", devid), ("type", "vif")]:
        store.write(f"{bpath}/{k}", v)
    for k, v in [("backend", bpath), ("backend-id", 0), ("handle", devid), ("mac", mac),
                 ("state", 1)]:
        store.write(f"{fpath}/{k}", v)
    store.write(f"{bpath}/state", 1)
    return bpath, fpath


class NetFront:
    """A netfront double: real tx/rx FrontRings over pages it grants."""

    def __init__(self, store, transport, domid, devid=0):
        from xen_core.abi import netif
        self.netif = netif
        self.store = store
        self.bpath = f"/local/domain/0/backend/vif/{domid}/{devid}"
        self.fpath = f"/local/domain/{domid}/device/vif/{devid}"
        self.grants = transport.domain(domid)
        self.tx_page, self.rx_page = bytearray(4096), bytearray(4096)
        self.tx_ref, self.rx_ref = self.grants.grant(self.tx_page), self.grants.grant(self.rx_page)
        tx, rx = SharedRing(self.tx_page, netif.TX_ENTRY_SIZE), SharedRing(self.rx_page, netif.RX_ENTRY_SIZE)
        tx.init()
        rx.init()
        self.tx, self.rx = FrontRing(tx), FrontRing(rx)
        self.port, self.chan = transport.alloc_port(domid)
        self.rx_bufs = {}

    def connect(self):
        wait_for(lambda: self.store.read(f"{self.bpath}/state") == "2", "vif InitWait")
        for k, v in [("tx-ring-ref", self.tx_ref), ("rx-ring-ref", self.rx_ref),
                     ("event-channel", self.port), ("request-rx-copy", 1), ("feature-sg", 1),
                     ("feature-rx-notify", 1), ("state", 4)]:
            self.store.write(f"{self.fpath}/{k}", v)
        wait_for(lambda: self.store.read(f"{self.bpath}/state") == "4", "vif Connected")
        self.post_rx(64)

    def post_rx(self, n):
        for _ in range(n):
            ref = self.grants.grant()
            rid = len(self.rx_bufs)
            self.rx_bufs[rid] = ref
            self.rx.put_request(self.netif.RX_REQUEST.pack(rid, ref))
        if self.rx.push_requests_and_check_notify():
            self.chan.kick_backend()

    def send(self, frame):
        ref = self.grants.grant(bytearray(frame.ljust(4096, b"\0")), readonly=True)
        self.tx.put_request(self.netif.TX_REQUEST.pack(ref, 0, 0, ref & 0xFFFF, len(frame)))
        if self.tx.push_requests_and_check_notify():
            self.chan.kick_backend()

    def receive(self):
        def got():
            try:
                os.read(self.chan.to_front_r, 4096)
            except BlockingIOError:
                pass
            if self.rx.unconsumed_responses():
                rid, off, flags, status = self.netif.RX_RESPONSE.unpack(self.rx.get_response()[:8])
                return bytes(self.grants.pages[self.rx_bufs[rid]][off:off + status])
            return None
        return wait_for(got, "a received frame")
