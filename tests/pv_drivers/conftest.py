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

    def __init__(self, store, transport, domid, devid, order=0):
        self.store, self.domid = store, domid
        self.bpath = f"/local/domain/0/backend/vbd/{domid}/{devid}"
        self.fpath = f"/local/domain/{domid}/device/vbd/{devid}"
        self.grants = transport.domain(domid)
        self.pages = [bytearray(4096) for _ in range(1 << order)]
        self.refs = [self.grants.grant(p) for p in self.pages]
        sring = SharedRing(self.pages, blkif.ENTRY_SIZE)
        sring.init()
        self.ring = FrontRing(sring)
        self.port, self.chan = transport.alloc_port(domid)
        self.order = order

    def be_state(self):
        return self.store.read(f"{self.bpath}/state")

    def connect(self):
        wait_for(lambda: self.be_state() == "2", "backend InitWait")
        if self.order:
            self.store.write(f"{self.fpath}/ring-page-order", self.order)
            for i, r in enumerate(self.refs):
                self.store.write(f"{self.fpath}/ring-ref{i}", r)
        else:
            self.store.write(f"{self.fpath}/ring-ref", self.refs[0])
        self.store.write(f"{self.fpath}/event-channel", self.port)
        self.store.write(f"{self.fpath}/protocol", "x86_64-abi")
        self.store.write(f"{self.fpath}/state", 3)
        wait_for(lambda: self.be_state() == "4", "backend Connected")
        self.store.write(f"{self.fpath}/state", 4)

    def submit(self, *reqs):
        for r in reqs:
            self.ring.put_request(r)
        if self.ring.push_requests_and_check_notify():
            self.chan.kick_backend()
        got = []
        while len(got) < len(reqs):
            select.select([self.chan.to_front_r], [], [], 0.2)
            try:
                os.read(self.chan.to_front_r, 4096)
            except BlockingIOError:
                pass
            got += responses(self.ring)
            if len(got) < len(reqs) and self.be_state() == "5":
                raise ConnectionError("backend closed the device")
        return got
