"""Xen's generic shared ring (io/ring.h) over a memoryview, both ends.

Sans-I/O: the caller owns the memory (a granted page mapped through gntdev,
or a plain buffer in tests) and the event channel; these objects only move
indexes and say when a notification is due. The hold-off rules are Xen's:
a producer notifies only when the new index range crosses the consumer's
`*_event` mark, and a consumer about to sleep re-arms `*_event` and looks
once more ("final check") so nothing is lost between the two.

The backend copies each request out of the shared page once: a frontend
may rewrite a slot while it is being looked at, and a second read would
see different values (the double-fetch Xen's backends guard against).
"""
import threading

from xen_core.abi.ring import (HEADER_SIZE, IDX_MASK, REQ_EVENT, REQ_PROD,
                               RING_IDX, RSP_EVENT, RSP_PROD, ring_size)

# A locked instruction is a full barrier on x86 (Xen's mb()); CPython's lock
# acquire does one. Needed between publishing an index and re-reading the
# peer's, which TSO alone may reorder.
_fence = threading.Lock()


def mb() -> None:
    _fence.acquire()
    _fence.release()


class RingProtocolError(Exception):
    """The peer's index claims more entries than the ring holds."""


class SharedRing:
    """The shared part: header indexes and entry slots. `buf` is one buffer,
    or a list of page views for a multi-page ring whose pages are mapped
    apart (a gntdev map of ring-ref0..N-1); entries may then straddle pages."""

    def __init__(self, buf, entry_size: int):
        pages = [memoryview(p).cast("B") for p in buf] if isinstance(buf, (list, tuple)) \
            else [memoryview(buf).cast("B")]
        self.buf = pages[0]
        self.pages = pages
        self.page_size = len(pages[0])
        self.entry_size = entry_size
        self.size = ring_size(sum(len(p) for p in pages), entry_size)

    def release(self) -> None:
        """Drop our views of the pages (before they are unmapped)."""
        for p in self.pages:
            p.release()
        self.buf.release()
        self.pages = []

    def _get(self, off: int) -> int:
        return RING_IDX.unpack_from(self.buf, off)[0]

    def _set(self, off: int, value: int) -> None:
        RING_IDX.pack_into(self.buf, off, value & IDX_MASK)

    req_prod = property(lambda s: s._get(REQ_PROD), lambda s, v: s._set(REQ_PROD, v))
    req_event = property(lambda s: s._get(REQ_EVENT), lambda s, v: s._set(REQ_EVENT, v))
    rsp_prod = property(lambda s: s._get(RSP_PROD), lambda s, v: s._set(RSP_PROD, v))
    rsp_event = property(lambda s: s._get(RSP_EVENT), lambda s, v: s._set(RSP_EVENT, v))

    def init(self) -> None:
        """SHARED_RING_INIT: the frontend's job, before granting the page."""
        self.req_prod = self.rsp_prod = 0
        self.req_event = self.rsp_event = 1

    def _spans(self, idx: int):
        pos = HEADER_SIZE + (idx & (self.size - 1)) * self.entry_size
        left = self.entry_size
        while left:
            page, off = divmod(pos, self.page_size)
            n = min(left, self.page_size - off)
            yield self.pages[page], off, n
            pos += n
            left -= n

    def read_slot(self, idx: int) -> bytes:
        if len(self.pages) == 1:
            start = HEADER_SIZE + (idx & (self.size - 1)) * self.entry_size
            return bytes(self.buf[start:start + self.entry_size])
        return b"".join(bytes(p[o:o + n]) for p, o, n in self._spans(idx))

    def write_slot(self, idx: int, data: bytes) -> None:
        data = bytes(data).ljust(self.entry_size, b"\0")[:self.entry_size]
        pos = 0
        for p, o, n in self._spans(idx):
            p[o:o + n] = data[pos:pos + n]
            pos += n


def _crossed(new: int, old: int, event: int) -> bool:
    # (RING_IDX)(new - event) < (RING_IDX)(new - old): the peer asked to be
    # woken at `event`, which lies in (old, new].
    return ((new - event) & IDX_MASK) < ((new - old) & IDX_MASK)


class FrontRing:
    """The frontend's private indexes (FRONT_RING_INIT)."""

    def __init__(self, sring: SharedRing):
        self.sring = sring
        self.size = sring.size
        self.req_prod_pvt = 0
        self.rsp_cons = 0

    def free_requests(self) -> int:
        return self.size - ((self.req_prod_pvt - self.rsp_cons) & IDX_MASK)

    def full(self) -> bool:
        return self.free_requests() == 0

    def put_request(self, data: bytes) -> None:
        if self.full():
            raise RingProtocolError("ring full")
        self.sring.write_slot(self.req_prod_pvt, data)
        self.req_prod_pvt = (self.req_prod_pvt + 1) & IDX_MASK

    def push_requests_and_check_notify(self) -> bool:
        old = self.sring.req_prod
        new = self.req_prod_pvt
        self.sring.req_prod = new          # entries written before (TSO)
        mb()
        return _crossed(new, old, self.sring.req_event)

    def unconsumed_responses(self) -> int:
        return (self.sring.rsp_prod - self.rsp_cons) & IDX_MASK

    def get_response(self) -> bytes:
        data = self.sring.read_slot(self.rsp_cons)
        self.rsp_cons = (self.rsp_cons + 1) & IDX_MASK
        return data

    def final_check_for_responses(self) -> bool:
        if self.unconsumed_responses():
            return True
        self.sring.rsp_event = self.rsp_cons + 1
        mb()
        return self.unconsumed_responses() > 0


class BackRing:
    """The backend's private indexes (BACK_RING_INIT)."""

    def __init__(self, sring: SharedRing):
        self.sring = sring
        self.size = sring.size
        self.rsp_prod_pvt = 0
        self.req_cons = 0

    def unconsumed_requests(self) -> int:
        """RING_HAS_UNCONSUMED_REQUESTS, after checking the frontend's
        req_prod as blkback/netback do (RING_REQUEST_PROD_OVERFLOW)."""
        prod = self.sring.req_prod
        if ((prod - self.rsp_prod_pvt) & IDX_MASK) > self.size:
            raise RingProtocolError(
                f"frontend provided bogus ring requests ({prod} - "
                f"{self.rsp_prod_pvt} = {(prod - self.rsp_prod_pvt) & IDX_MASK}"
                f" > ring size {self.size})")
        req = (prod - self.req_cons) & IDX_MASK
        rsp = self.size - ((self.req_cons - self.rsp_prod_pvt) & IDX_MASK)
        return min(req, rsp)

    def get_request(self) -> bytes:
        """Copy the next request out of the shared page (read once)."""
        data = self.sring.read_slot(self.req_cons)
        self.req_cons = (self.req_cons + 1) & IDX_MASK
        return data

    def put_response(self, data: bytes) -> None:
        self.sring.write_slot(self.rsp_prod_pvt, data)
        self.rsp_prod_pvt = (self.rsp_prod_pvt + 1) & IDX_MASK

    def push_responses_and_check_notify(self) -> bool:
        old = self.sring.rsp_prod
        new = self.rsp_prod_pvt
        self.sring.rsp_prod = new
        mb()
        return _crossed(new, old, self.sring.rsp_event)

    def final_check_for_requests(self) -> bool:
        if self.unconsumed_requests():
            return True
        self.sring.req_event = self.req_cons + 1
        mb()
        return self.unconsumed_requests() > 0

    def requests_available(self, needed: int) -> bool:
        """At least `needed` unconsumed requests; if not, ask the frontend
        to notify on its next one (req_event = req_prod + 1) and look again,
        as netback does before it sleeps waiting for rx buffers."""
        while True:
            prod = self.sring.req_prod
            if self.unconsumed_requests() >= needed:
                return True
            self.sring.req_event = prod + 1
            mb()
            if self.sring.req_prod == prod:
                return False
