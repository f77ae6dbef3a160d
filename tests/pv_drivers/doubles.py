"""Peers for the backends in unit tests: a grant table over plain pages with
Xen's rules (unknown gref, read-only grant, page bounds) and frontends that
drive the real ring code over a plain shared buffer."""
import os
import struct

from pv_drivers.grants import PAGE_SIZE, GrantError, check_span
from pv_drivers.ring import FrontRing, SharedRing
from xen_core.abi import blkif, netif


class PageGrants:
    """A frontend domain's granted pages, seen from the backend."""

    def __init__(self):
        self.pages: dict[int, bytearray] = {}
        self.readonly: set[int] = set()
        self.next_ref = 8            # refs 0-7 are reserved, as in Xen
        self.maps = 0                # grefs mapped by map_grants, ever

    def grant(self, page: bytearray | None = None, readonly=False) -> int:
        ref = self.next_ref
        self.next_ref += 1
        self.pages[ref] = page if page is not None else bytearray(PAGE_SIZE)
        if readonly:
            self.readonly.add(ref)
        return ref

    def _page(self, gref):
        try:
            return self.pages[gref]
        except KeyError:
            raise GrantError(f"gref {gref} is not granted") from None

    def copy_from(self, gref, offset, length):
        check_span(offset, length)
        return bytes(self._page(gref)[offset:offset + length])

    def map_grants(self, grefs):
        """Writable views, all or none (gntdev's map of several refs)."""
        for g in grefs:
            self._page(g)
            if g in self.readonly:
                raise GrantError(f"gref {g} is read-only: cannot map it writable")
        self.maps += len(grefs)
        return [memoryview(self.pages[g]) for g in grefs]

    def copy_to(self, gref, offset, data):
        check_span(offset, len(data))
        page = self._page(gref)
        if gref in self.readonly:
            raise GrantError(f"gref {gref} is read-only")
        page[offset:offset + len(data)] = data


def new_front(entry_size, pages=1):
    buf = bytearray(PAGE_SIZE * pages)
    sring = SharedRing(buf, entry_size)
    sring.init()
    return buf, FrontRing(sring)


def rw_request(op, rid, sector, segs, handle=0):
    req = bytearray(blkif.REQUEST_SIZE)
    blkif.REQUEST_HDR.pack_into(req, 0, op, len(segs), handle, 0, rid, sector)
    for i, (gref, first, last) in enumerate(segs):
        blkif.SEGMENT.pack_into(req, blkif.SEGMENTS_OFFSET + i * 8, gref, first, last, 0)
    return bytes(req)


def indirect_request(op, rid, sector, nseg, indirect_grefs, handle=0):
    req = bytearray(blkif.REQUEST_SIZE)
    blkif.INDIRECT_HDR.pack_into(req, 0, blkif.BLKIF_OP_INDIRECT, op, nseg, 0, rid,
                                 sector, handle, 0)
    for i, g in enumerate(indirect_grefs):
        struct.pack_into("<I", req, blkif.INDIRECT_GREFS_OFFSET + 4 * i, g)
    return bytes(req)


def discard_request(rid, sector, nsects, flag=0):
    req = bytearray(blkif.REQUEST_SIZE)
    blkif.DISCARD.pack_into(req, 0, blkif.BLKIF_OP_DISCARD, flag, 0, 0, rid, sector, nsects)
    return bytes(req)


def responses(front):
    out = []
    while front.unconsumed_responses():
        out.append(blkif.RESPONSE.unpack(front.get_response()[:blkif.RESPONSE.size]))
    return out


def tx_request(gref, offset, flags, rid, size):
    return netif.TX_REQUEST.pack(gref, offset, flags, rid, size)


class LocalChannel:
    """An event channel between the test frontend and the backend: a pipe
    each way (the backend waits on its fd exactly as on an evtchn fd)."""

    def __init__(self):
        self.to_back_r, self.to_back_w = os.pipe()
        self.to_front_r, self.to_front_w = os.pipe()
        for fd in (self.to_back_r, self.to_front_r):
            os.set_blocking(fd, False)

    def kick_backend(self):
        os.write(self.to_back_w, b"!")


class LocalQueue:
    def __init__(self, grants, rings, ports, channels):
        from pv_drivers.transport import TransportError
        try:
            self.rings = [[memoryview(grants.pages[r]) for r in refs] for refs in rings]
        except KeyError as e:
            raise TransportError(f"ring-ref {e.args[0]}: GNTST_bad_gntref") from None
        try:
            self.chans = [channels[p] for p in ports]
        except KeyError as e:
            raise TransportError(f"event-channel {e.args[0]}: EINVAL") from None
        self.grants = grants

    def copy_from(self, gref, offset, length):
        return self.grants.copy_from(gref, offset, length)

    def copy_to(self, gref, offset, data):
        self.grants.copy_to(gref, offset, data)

    def map_grants(self, grefs):
        return self.grants.map_grants(grefs)

    def fileno(self):
        return self.chans[0].to_back_r

    def ack(self):
        for c in self.chans[:1]:
            try:
                os.read(c.to_back_r, 4096)
            except BlockingIOError:
                pass

    def notify(self):
        for c in self.chans:
            os.write(c.to_front_w, b"!")

    def rearm(self, notify):
        if notify:
            self.notify()

    def close(self):
        pass


class LocalTransport:
    """Frontend domains' grants and channels, by domid, for backendd tests."""

    def __init__(self):
        self.grants: dict[int, PageGrants] = {}
        self.channels: dict[int, dict[int, LocalChannel]] = {}
        self.next_port = 10

    def domain(self, domid):
        return self.grants.setdefault(domid, PageGrants())

    def alloc_port(self, domid):
        port = self.next_port
        self.next_port += 1
        ch = self.channels.setdefault(domid, {})[port] = LocalChannel()
        return port, ch

    def open(self, domid, rings, ports):
        return LocalQueue(self.domain(domid), rings, ports, self.channels.get(domid, {}))
