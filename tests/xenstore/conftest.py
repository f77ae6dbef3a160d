"""Fixtures: a xenstored daemon in a temporary directory, raw clients for
the socket and for a domain's ring."""

import mmap
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from xen_core.abi import xs_wire as w
from xenstore.attach import FileDomainAttacher
from xenstore.ring import XsRingFrontend

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HDR = w.XSD_SOCKMSG


class Daemon:
    def __init__(self, tmp, *extra):
        self.dir = str(tmp)
        self.sock = os.path.join(self.dir, "xenstored", "socket")
        self.ring_dir = os.path.join(self.dir, "rings")
        self.pid_file = os.path.join(self.dir, "xenstored.pid")
        self.log = os.path.join(self.dir, "xenstored.log")
        env = dict(os.environ, XENSTORED_PATH=self.sock,
                   PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xenstore.daemon", "-N", "--pid-file", self.pid_file,
             "--log", self.log, "--ring-dir", self.ring_dir, *extra],
            env=env, cwd=self.dir)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None:
                raise RuntimeError(f"xenstored exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("xenstored socket never appeared")
            time.sleep(0.02)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path)
    yield d
    d.stop()


class RawClient:
    """A dom0 client speaking xs_wire over the socket, one frame at a time."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.settimeout(30)
        self.events = []
        self.req_id = 0

    def close(self):
        self.sock.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def recv_msg(self):
        hdr = self._exact(16)
        mtype, req_id, tx_id, length = HDR.unpack(hdr)
        return mtype, req_id, tx_id, self._exact(length)

    def _exact(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("closed by xenstored")
            buf += chunk
        return buf

    def request(self, mtype, payload: bytes, tx_id=0):
        """Send one request; return (type, payload) of its reply, keeping
        watch events that arrive meanwhile in ``self.events``."""
        self.req_id += 1
        self.send_raw(HDR.pack(mtype, self.req_id, tx_id, len(payload)) + payload)
        while True:
            mtype_r, req_id, tx_r, body = self.recv_msg()
            if mtype_r == w.XS_WATCH_EVENT:
                self.events.append(tuple(body.split(b"\0")[:2]))
                continue
            assert req_id == self.req_id and tx_r == tx_id
            return mtype_r, body

    def ok(self, mtype, *args, tx_id=0):
        t, body = self.request(mtype, b"".join(a + b"\0" for a in args), tx_id)
        if t == w.XS_ERROR:
            raise OSError(body.rstrip(b"\0").decode())
        return body

    def write(self, path, value, tx_id=0):
        t, body = self.request(w.XS_WRITE, path + b"\0" + value, tx_id)
        if t == w.XS_ERROR:
            raise OSError(body.rstrip(b"\0").decode())


@pytest.fixture
def client(daemon):
    c = RawClient(daemon.sock)
    yield c
    c.close()


class RingGuest:
    """The guest end of an introduced domain's xenstore ring (file-backed
    page, FIFO event channel), using the same ring code as xenstored."""

    def __init__(self, ring_dir, domid, port):
        att = FileDomainAttacher(ring_dir)
        fd = os.open(att.page_path(domid), os.O_RDWR)
        self.page = mmap.mmap(fd, w.XS_RING_PAGE_SIZE)
        os.close(fd)
        to_xs, to_guest = att.fifo_paths(domid, port)
        self.kick_fd = os.open(to_xs, os.O_RDWR | os.O_NONBLOCK)
        self.wait_fd = os.open(to_guest, os.O_RDWR | os.O_NONBLOCK)
        self.ring = XsRingFrontend(self.page)
        self.inbuf = b""
        self.events = []
        self.req_id = 0

    def close(self):
        os.close(self.kick_fd)
        os.close(self.wait_fd)
        self.page.close()

    def kick(self):
        os.write(self.kick_fd, b"!")

    def wait(self, timeout=30):
        r, _, _ = select.select([self.wait_fd], [], [], timeout)
        if not r:
            raise TimeoutError("xenstored did not notify")
        try:
            os.read(self.wait_fd, 4096)
        except BlockingIOError:
            pass

    def send_raw(self, data: bytes):
        while data:
            n = self.ring.write_request(data)
            data = data[n:]
            self.kick()
            if data:
                self.wait()

    def recv_msg(self):
        while True:
            if len(self.inbuf) >= 16:
                mtype, req_id, tx_id, length = HDR.unpack_from(self.inbuf)
                if len(self.inbuf) >= 16 + length:
                    body = self.inbuf[16:16 + length]
                    self.inbuf = self.inbuf[16 + length:]
                    return mtype, req_id, tx_id, body
            data = self.ring.read_responses()
            if data:
                self.inbuf += data
                self.kick()     # tell xenstored there is room in rsp
                continue
            self.wait()

    request = RawClient.request
    ok = RawClient.ok
    write = RawClient.write


def settle(client):
    """Return once xenstored has handled every kick sent before this call.

    A guest's notifications can go stale (xenstored notifies after writing,
    the guest may already have read what it announced), so ``wait()`` after
    a kick may return before xenstored saw that kick.  Two dom0 round trips
    cannot: the FIFO was readable when the first request was polled, so its
    callback ran in that loop iteration, before the second request is read.
    """
    for _ in range(2):
        client.ok(w.XS_READ, b"/local/domain/0/domid")


def introduce(client, daemon, domid, port=7, gfn=0xFEFFC):
    """Make /local/domain/<domid> owned by the domain, introduce it, and
    return its guest end."""
    home = b"/local/domain/%d" % domid
    client.ok(w.XS_MKDIR, home)
    client.ok(w.XS_SET_PERMS, home, b"n%d" % domid)
    client.ok(w.XS_INTRODUCE, b"%d" % domid, b"%d" % gfn, b"%d" % port)
    return RingGuest(daemon.ring_dir, domid, port)


@pytest.fixture
def have_xenstore_utils():
    if not shutil.which("xenstore-write"):
        pytest.skip("Debian's xenstore-utils is not installed (make deps)")
