"""xs_wire framing and every operation through the RequestHandler (no I/O)."""

import pytest

from xen_core.abi import xs_wire as w
from xenstore.protocol import MessageReader, ProtocolError, RequestHandler, encode
from xenstore.store import Store, create_skeleton

HDR = w.XSD_SOCKMSG


def test_abi_numbers():
    assert (w.XS_CONTROL, w.XS_DIRECTORY, w.XS_READ, w.XS_WATCH_EVENT, w.XS_ERROR,
            w.XS_SET_TARGET, w.XS_RESET_WATCHES, w.XS_DIRECTORY_PART) == \
        (0, 1, 2, 15, 16, 19, 21, 22)
    assert w.XSD_SOCKMSG_SIZE == 16 and w.XENSTORE_PAYLOAD_MAX == 4096
    assert (w.XS_RING_REQ_CONS, w.XS_RING_RSP_PROD, w.XS_RING_SERVER_FEATURES,
            w.XS_RING_CONNECTION, w.XS_RING_ERROR) == (2048, 2060, 2064, 2068, 2072)
    assert w.XSD_ERRORS[0] == "EINVAL"


class H:
    def __init__(self):
        self.store = Store()
        create_skeleton(self.store)
        self.handler = RequestHandler(self.store)
        self.conn = self.store.connect(0)
        self.req = 0

    def __call__(self, mtype, payload, tx_id=0, conn=None):
        self.req += 1
        reply = self.handler.process(conn or self.conn, mtype, self.req, tx_id, payload)
        rtype, req_id, rtx, length = HDR.unpack_from(reply)
        assert req_id == self.req and rtx == tx_id and length == len(reply) - 16
        return rtype, reply[16:]

    def ok(self, mtype, payload, tx_id=0):
        rtype, body = self(mtype, payload, tx_id)
        assert rtype == mtype, body
        return body

    def error(self, mtype, payload, tx_id=0, conn=None):
        rtype, body = self(mtype, payload, tx_id, conn)
        assert rtype == w.XS_ERROR, body
        return body.rstrip(b"\0").decode()


@pytest.fixture
def h():
    return H()


def test_reader_reassembles_and_splits():
    r = MessageReader()
    a = encode(w.XS_READ, 1, 0, b"/a\0")
    b = encode(w.XS_WRITE, 2, 0, b"/b\0v")
    data = a + b
    assert r.feed(data[:5]) == []
    assert r.feed(data[5:20]) == [(w.XS_READ, 1, 0, b"/a\0")]
    assert r.feed(data[20:]) == [(w.XS_WRITE, 2, 0, b"/b\0v")]
    assert r.buf == b""


def test_reader_refuses_oversized_length():
    with pytest.raises(ProtocolError):
        MessageReader().feed(HDR.pack(w.XS_READ, 1, 0, 4097))


def test_basic_ops_formats(h):
    assert h.ok(w.XS_WRITE, b"/x/y\0hello\0world") == b"OK\0"
    assert h.ok(w.XS_READ, b"/x/y\0") == b"hello\0world"
    assert h.ok(w.XS_MKDIR, b"/x/z\0") == b"OK\0"
    assert h.ok(w.XS_DIRECTORY, b"/x\0") == b"y\0z\0"
    assert h.ok(w.XS_DIRECTORY, b"/x/z\0") == b""
    assert h.ok(w.XS_GET_PERMS, b"/x/y\0") == b"n0\0"
    assert h.ok(w.XS_SET_PERMS, b"/x/y\0r0\0w3\0") == b"OK\0"
    assert h.ok(w.XS_GET_PERMS, b"/x/y\0") == b"r0\0w3\0"
    assert h.ok(w.XS_RM, b"/x\0") == b"OK\0"
    assert h.error(w.XS_READ, b"/x/y\0") == "ENOENT"
    assert h.ok(w.XS_GET_DOMAIN_PATH, b"4\0") == b"/local/domain/4\0"
    assert h.ok(w.XS_IS_DOMAIN_INTRODUCED, b"0\0") == b"T\0"
    assert h.ok(w.XS_IS_DOMAIN_INTRODUCED, b"4\0") == b"F\0"


def test_argument_errors(h):
    assert h.error(w.XS_READ, b"/x") == "EINVAL"              # no NUL
    assert h.error(w.XS_READ, b"/x\0/y\0") == "EINVAL"        # two args
    assert h.error(w.XS_READ, b"") == "EINVAL"
    assert h.error(w.XS_WRITE, b"/novalue") == "EINVAL"
    assert h.error(w.XS_READ, b"/\xff\xfe\0") == "EINVAL"     # not UTF-8
    assert h.error(w.XS_WATCH, b"/onlypath\0") == "EINVAL"
    assert h.error(w.XS_GET_DOMAIN_PATH, b"abc\0") == "EINVAL"
    assert h.error(w.XS_TRANSACTION_END, b"X\0") == "EINVAL"  # arg checked first
    assert h.error(w.XS_TRANSACTION_END, b"T\0") == "ENOENT"  # then the tx
    for t in (w.XS_WATCH_EVENT, w.XS_ERROR, 20, w.XS_TYPE_COUNT, w.XS_INVALID, 999):
        assert h.error(t, b"") == "ENOSYS"


def test_watch_tokens_are_returned_as_given(h):
    token = b"\xfftok\x01"
    assert h.ok(w.XS_WATCH, b"/wt\0" + token + b"\0") == b"OK\0"
    assert h.conn.events == [(b"/wt", token)]
    assert h.error(w.XS_WATCH, b"/wt\0" + token + b"\0") == "EEXIST"
    assert h.ok(w.XS_UNWATCH, b"/wt\0" + token + b"\0") == b"OK\0"
    h.ok(w.XS_WATCH, b"/wt\0a\0")
    assert h.ok(w.XS_RESET_WATCHES, b"") == b"OK\0"
    assert h.conn.watches == {}


def test_transactions_over_the_wire(h):
    txid = int(h.ok(w.XS_TRANSACTION_START, b"\0").rstrip(b"\0"))
    assert txid != 0
    assert h.error(w.XS_TRANSACTION_START, b"\0", tx_id=txid) == "EBUSY"
    h.ok(w.XS_WRITE, b"/t\0in-tx", tx_id=txid)
    assert h.ok(w.XS_READ, b"/t\0", tx_id=txid) == b"in-tx"
    assert h.error(w.XS_READ, b"/t\0") == "ENOENT"
    assert h.error(w.XS_READ, b"/t\0", tx_id=txid + 1) == "ENOENT"
    assert h.error(w.XS_TRANSACTION_END, b"maybe\0", tx_id=txid) == "EINVAL"
    assert h.ok(w.XS_TRANSACTION_END, b"T\0", tx_id=txid) == b"OK\0"
    assert h.ok(w.XS_READ, b"/t\0") == b"in-tx"
    # Conflict through the wire.
    txid = int(h.ok(w.XS_TRANSACTION_START, b"\0").rstrip(b"\0"))
    h.ok(w.XS_READ, b"/t\0", tx_id=txid)
    h.ok(w.XS_WRITE, b"/t\0outside")
    h.ok(w.XS_WRITE, b"/u\0x", tx_id=txid)
    assert h.error(w.XS_TRANSACTION_END, b"T\0", tx_id=txid) == "EAGAIN"


def test_directory_part(h):
    names = [b"child-%04d-%s" % (i, b"x" * 40) for i in range(200)]
    for n in names:
        h.ok(w.XS_MKDIR, b"/big/" + n + b"\0")
    got = []
    off = 0
    gens = set()
    while True:
        body = h.ok(w.XS_DIRECTORY_PART, b"/big\0%d\0" % off)
        assert len(body) <= w.XENSTORE_PAYLOAD_MAX
        gen, rest = body.split(b"\0", 1)
        gens.add(gen)
        if rest == b"\0":           # offset past the end
            break
        done = rest.endswith(b"\0\0")
        part = rest[:-1] if done else rest
        chunk = part.split(b"\0")[:-1]
        got += chunk
        off += len(part)
        if done:
            break
    assert got == names and len(gens) == 1
    # The full list would not fit one payload: DIRECTORY says E2BIG.
    assert sum(len(n) + 1 for n in names) > w.XENSTORE_PAYLOAD_MAX
    assert h.error(w.XS_DIRECTORY, b"/big\0") == "E2BIG"
    body = h.ok(w.XS_DIRECTORY_PART, b"/big\0999999\0")
    assert body.endswith(b"\0\0") and body.count(b"\0") == 2


def test_control(h):
    assert h.ok(w.XS_CONTROL, b"check\0") == b"OK\0"
    assert b"quota" in h.ok(w.XS_CONTROL, b"help\0")
    listing = h.ok(w.XS_CONTROL, b"quota\0").decode()
    assert "nodes" in listing and "1000" in listing and "watches" in listing
    assert h.ok(w.XS_CONTROL, b"quota\0nodes\0" b"50\0") == b"OK\0"
    assert h.store.quota.nodes == 50
    assert "nodes" in h.ok(w.XS_CONTROL, b"quota\x000\0").decode()
    assert h.error(w.XS_CONTROL, b"quota\0bogus\0" b"1\0") == "EINVAL"
    assert b"memory" in h.ok(w.XS_CONTROL, b"quota-soft\0")
    assert h.ok(w.XS_CONTROL, b"quota-soft\0memory\0" b"4096\0") == b"OK\0"
    assert h.ok(w.XS_CONTROL, b"log\0on\0") == b"OK\0" and h.store.trace
    assert h.ok(w.XS_CONTROL, b"print\0hello\0") == b"OK\0"
    assert h.store.messages == ["hello"]
    assert h.error(w.XS_CONTROL, b"frobnicate\0") == "EINVAL"
    assert h.error(w.XS_CONTROL, b"") == "EINVAL"


def test_privileged_ops_refused_to_guests(h):
    g = h.store.connect(5)
    h.store.domains  # domain 5 is a plain unprivileged connection here
    assert h.error(w.XS_CONTROL, b"check\0", conn=g) == "EACCES"
    assert h.error(w.XS_INTRODUCE, b"6\0" b"1\0" b"2\0", conn=g) == "EACCES"
    assert h.error(w.XS_RELEASE, b"6\0", conn=g) == "EACCES"
    assert h.error(w.XS_SET_TARGET, b"6\0" b"7\0", conn=g) == "EACCES"
    assert h.error(w.XS_RESUME, b"6\0", conn=g) == "EACCES"


def test_domain_ops_errors(h):
    assert h.error(w.XS_RELEASE, b"6\0") == "ENOENT"
    assert h.error(w.XS_RESUME, b"6\0") == "ENOENT"
    assert h.error(w.XS_SET_TARGET, b"6\0" b"7\0") == "ENOENT"
    assert h.error(w.XS_INTRODUCE, b"0\0" b"1\0" b"2\0") == "EINVAL"
    # No attacher configured in this handler.
    assert h.error(w.XS_INTRODUCE, b"6\0" b"1\0" b"2\0") == "ENOSYS"


def test_internal_error_fails_only_that_request(h, monkeypatch):
    def broken(*args):
        raise RuntimeError("engine bug")
    monkeypatch.setattr(h.store, "read", broken)
    assert h.error(w.XS_READ, b"/local\0") == "EIO"
    assert h.ok(w.XS_DIRECTORY, b"/local\0") == b"domain\0"
