"""Ring arithmetic on a ``xenstore_domain_interface`` page.

Sans-I/O: both ends work on any writable buffer (an mmap of guest memory, of
a file, or a bytearray); notifications are the caller's business.  Indexes
are free-running u32s masked by MASK_XENSTORE_IDX; a producer index more
than XENSTORE_RING_SIZE ahead of its consumer is a fatal ring error.
"""

import struct

from xen_core.abi import xs_wire as w

_u32 = struct.Struct("<I")
_SIZE = w.XENSTORE_RING_SIZE
_MASK = _SIZE - 1


class RingError(Exception):
    """The peer's indexes are impossible; the connection is dead."""


def _get(buf, off):
    return _u32.unpack_from(buf, off)[0]


def _put(buf, off, val):
    _u32.pack_into(buf, off, val & 0xFFFFFFFF)


def _consume(buf, ring_off, cons_off, prod_off, limit=_SIZE):
    cons = _get(buf, cons_off)
    prod = _get(buf, prod_off)
    avail = (prod - cons) & 0xFFFFFFFF
    if avail > _SIZE:
        raise RingError(f"producer {prod} is {avail} bytes ahead of consumer {cons}")
    avail = min(avail, limit)
    if not avail:
        return b""
    start = cons & _MASK
    first = min(avail, _SIZE - start)
    data = bytes(buf[ring_off + start:ring_off + start + first])
    if first < avail:
        data += bytes(buf[ring_off:ring_off + avail - first])
    _put(buf, cons_off, cons + avail)
    return data


def _produce(buf, ring_off, cons_off, prod_off, data):
    cons = _get(buf, cons_off)
    prod = _get(buf, prod_off)
    used = (prod - cons) & 0xFFFFFFFF
    if used > _SIZE:
        raise RingError(f"producer {prod} is {used} bytes ahead of consumer {cons}")
    n = min(len(data), _SIZE - used)
    if not n:
        return 0
    start = prod & _MASK
    first = min(n, _SIZE - start)
    buf[ring_off + start:ring_off + start + first] = data[:first]
    if first < n:
        buf[ring_off:ring_off + n - first] = data[first:n]
    _put(buf, prod_off, prod + n)
    return n


class XsRingBackend:
    """xenstored's end: consumes ``req``, produces ``rsp``."""

    def __init__(self, buf):
        self.buf = buf

    def init(self) -> None:
        """Advertise what we support, as xenstored does on introduction."""
        _put(self.buf, w.XS_RING_SERVER_FEATURES,
             w.XENSTORE_SERVER_FEATURE_RECONNECTION | w.XENSTORE_SERVER_FEATURE_ERROR)

    def read_requests(self, limit: int = _SIZE) -> bytes:
        return _consume(self.buf, w.XS_RING_REQ_OFF, w.XS_RING_REQ_CONS,
                        w.XS_RING_REQ_PROD, limit)

    def write_responses(self, data: bytes) -> int:
        return _produce(self.buf, w.XS_RING_RSP_OFF, w.XS_RING_RSP_CONS, w.XS_RING_RSP_PROD, data)

    def reconnect_requested(self) -> bool:
        return _get(self.buf, w.XS_RING_CONNECTION) == w.XENSTORE_RECONNECT

    def reset(self) -> None:
        """Complete a guest-requested reconnection: empty rings, connected."""
        for off in (w.XS_RING_REQ_CONS, w.XS_RING_REQ_PROD, w.XS_RING_RSP_CONS,
                    w.XS_RING_RSP_PROD, w.XS_RING_ERROR):
            _put(self.buf, off, 0)
        _put(self.buf, w.XS_RING_CONNECTION, w.XENSTORE_CONNECTED)

    def set_error(self, code: int) -> None:
        _put(self.buf, w.XS_RING_ERROR, code)

    def error(self) -> int:
        return _get(self.buf, w.XS_RING_ERROR)


class XsRingFrontend:
    """The guest's end: produces ``req``, consumes ``rsp`` (xenbus in a kernel)."""

    def __init__(self, buf):
        self.buf = buf

    def write_request(self, data: bytes) -> int:
        return _produce(self.buf, w.XS_RING_REQ_OFF, w.XS_RING_REQ_CONS, w.XS_RING_REQ_PROD, data)

    def read_responses(self) -> bytes:
        return _consume(self.buf, w.XS_RING_RSP_OFF, w.XS_RING_RSP_CONS, w.XS_RING_RSP_PROD)

    def server_features(self) -> int:
        return _get(self.buf, w.XS_RING_SERVER_FEATURES)

    def error(self) -> int:
        return _get(self.buf, w.XS_RING_ERROR)

    def request_reconnect(self) -> None:
        _put(self.buf, w.XS_RING_CONNECTION, w.XENSTORE_RECONNECT)

    def connected(self) -> bool:
        return _get(self.buf, w.XS_RING_CONNECTION) == w.XENSTORE_CONNECTED
