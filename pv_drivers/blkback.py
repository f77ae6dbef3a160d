"""Block backend request processing (Linux xen-blkback's semantics), sans-I/O
apart from the image it is given.

One BlkBackend per ring. Each request is copied out of the ring once,
checked (operation, segment count, first/last_sect, range, read-only)
and answered on its own: a bad request gets BLKIF_RSP_ERROR (or
BLKIF_RSP_EOPNOTSUPP for an operation not offered) and the next request
is served as usual. Only a bogus ring index stops the ring.

Data pages are reached by grant copy, or, when both ends offered
`feature-persistent`, through the ring's persistently mapped grants: the
image is then read into / written from the guest's pages directly
(preadv/pwritev over views of them), with no copy and no round trip to
the hypervisor once a page has been seen.
"""
import logging
from dataclasses import dataclass

from xen_core.abi import blkif
from xen_core.abi.blkif import (BLKIF_OP_DISCARD, BLKIF_OP_FLUSH_DISKCACHE,
                                BLKIF_OP_INDIRECT, BLKIF_OP_READ,
                                BLKIF_OP_WRITE, BLKIF_OP_WRITE_BARRIER,
                                BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR,
                                BLKIF_RSP_OKAY, XEN_SECTOR_SIZE)

from .grants import (GrantAccess, GrantError, PersistentGrants, copy_from_many,
                     copy_to_many)
from .ring import BackRing

log = logging.getLogger("xen-backendd.vbd")


class RequestError(Exception):
    """Answer this request with `status`."""

    def __init__(self, message: str, status: int = BLKIF_RSP_ERROR):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Features:
    flush: bool = True
    barrier: bool = True
    discard: bool = True
    max_indirect_segments: int = blkif.MAX_INDIRECT_SEGMENTS


class BlkBackend:
    def __init__(self, ring: BackRing, grants: GrantAccess, image,
                 features: Features = Features(), name: str = "vbd",
                 persistent: PersistentGrants | None = None):
        self.ring = ring
        self.grants = grants
        self.persistent = persistent
        self.image = image
        self.features = features
        self.name = name
        self.stats = {"ok": 0, "error": 0, "eopnotsupp": 0}

    def process(self, budget: int = 64) -> tuple[bool, bool]:
        """Serve up to `budget` requests. Returns (notify, more): whether the
        frontend must be kicked, and whether requests remain (so a flooding
        frontend cannot starve the other devices). RingProtocolError
        propagates: the caller closes this device."""
        notify = False
        done = 0
        while True:
            n = self.ring.unconsumed_requests()
            while n and done < budget:
                self.ring.put_response(self.handle(self.ring.get_request()))
                n -= 1
                done += 1
            notify |= self.ring.push_responses_and_check_notify()
            if done >= budget:
                return notify, self.ring.unconsumed_requests() > 0
            if not self.ring.final_check_for_requests():
                return notify, False

    def handle(self, req: bytes) -> bytes:
        op = req[0]
        rid = int.from_bytes(req[8:16], "little")
        rsp_op = op
        try:
            if op == BLKIF_OP_INDIRECT:
                rsp_op = req[1]
                self._indirect(req)
            elif op in (BLKIF_OP_READ, BLKIF_OP_WRITE):
                self._direct(req, op)
            elif op in (BLKIF_OP_FLUSH_DISKCACHE, BLKIF_OP_WRITE_BARRIER):
                self._flush(req, op)
            elif op == BLKIF_OP_DISCARD:
                self._discard(req)
            else:
                raise RequestError(f"unknown operation {op}", BLKIF_RSP_EOPNOTSUPP)
            status = BLKIF_RSP_OKAY
            self.stats["ok"] += 1
        except RequestError as e:
            status = e.status
            self.stats["eopnotsupp" if status == BLKIF_RSP_EOPNOTSUPP else "error"] += 1
            log.warning("%s: request %#x op %d: %s", self.name, rid, op, e)
        except GrantError as e:
            status = BLKIF_RSP_ERROR
            self.stats["error"] += 1
            log.warning("%s: request %#x op %d: bad grant: %s", self.name, rid, op, e)
        except OSError as e:
            status = BLKIF_RSP_ERROR
            self.stats["error"] += 1
            log.error("%s: request %#x op %d: I/O error: %s", self.name, rid, op, e)
        return blkif.RESPONSE.pack(rid, rsp_op, status)

    # --- operations -------------------------------------------------------

    def _direct(self, req: bytes, op: int) -> None:
        _, nseg, _, _, _, sector = blkif.REQUEST_HDR.unpack_from(req)
        if nseg == 0 or nseg > blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST:
            raise RequestError(f"bad number of segments {nseg}")
        segs = [blkif.SEGMENT.unpack_from(req, blkif.SEGMENTS_OFFSET + i * blkif.SEGMENT.size)
                for i in range(nseg)]
        self._rw(op, sector, segs)

    def _indirect(self, req: bytes) -> None:
        _, op, nseg, _, _, sector, _, _ = blkif.INDIRECT_HDR.unpack_from(req)
        if op not in (BLKIF_OP_READ, BLKIF_OP_WRITE):
            raise RequestError(f"indirect operation {op} is not read or write")
        if nseg == 0 or nseg > self.features.max_indirect_segments:
            raise RequestError(f"bad number of indirect segments {nseg}")
        per = blkif.SEGMENTS_PER_INDIRECT_FRAME
        pages = []
        for page in range((nseg + per - 1) // per):
            gref = int.from_bytes(req[blkif.INDIRECT_GREFS_OFFSET + 4 * page:
                                      blkif.INDIRECT_GREFS_OFFSET + 4 * page + 4], "little")
            pages.append((gref, 0, min(per, nseg - page * per) * blkif.SEGMENT.size))
        segs = []
        for frame in self._fetch(pages):
            segs += [blkif.SEGMENT.unpack_from(frame, i * blkif.SEGMENT.size)
                     for i in range(len(frame) // blkif.SEGMENT.size)]
        self._rw(op, sector, segs)

    def _rw(self, op: int, sector: int, segs) -> None:
        nsects = 0
        for gref, first, last, _ in segs:
            if last >= blkif.SECTORS_PER_PAGE or last < first:
                raise RequestError(f"bad segment sectors {first}..{last} (gref {gref})")
            nsects += last - first + 1
        self._check_range(sector, nsects)
        offset = sector * XEN_SECTOR_SIZE
        if op == BLKIF_OP_WRITE and self.image.read_only:
            raise RequestError("write to a read-only device")
        views = self.persistent.get([s[0] for s in segs]) if self.persistent else None
        if views is not None:
            bufs = [v[first * XEN_SECTOR_SIZE:(last + 1) * XEN_SECTOR_SIZE]
                    for v, (_, first, last, _) in zip(views, segs)]
            try:
                if op == BLKIF_OP_WRITE:
                    _pwritev(self.image, offset, bufs)
                else:
                    _preadv(self.image, offset, bufs)
            finally:
                for b in bufs:          # no view may outlive the mapping
                    b.release()
            return
        if op == BLKIF_OP_WRITE:
            # Every segment is fetched before anything reaches the image: a
            # bad grant fails the request without a partial write.
            data = b"".join(copy_from_many(self.grants, [
                (gref, first * XEN_SECTOR_SIZE, (last - first + 1) * XEN_SECTOR_SIZE)
                for gref, first, last, _ in segs]))
            self.image.pwrite(offset, data)
        else:
            data = self.image.pread(offset, nsects * XEN_SECTOR_SIZE)
            out, pos = [], 0
            for gref, first, last, _ in segs:
                n = (last - first + 1) * XEN_SECTOR_SIZE
                out.append((gref, first * XEN_SECTOR_SIZE, data[pos:pos + n]))
                pos += n
            copy_to_many(self.grants, out)

    def _fetch(self, spans) -> list[bytes]:
        """[(gref, offset, length)] -> the bytes, copied out once (the
        frontend may rewrite them while we look: no double fetch)."""
        views = self.persistent.get([g for g, _, _ in spans]) if self.persistent else None
        if views is None:
            return copy_from_many(self.grants, spans)
        return [bytes(v[off:off + n]) for v, (_, off, n) in zip(views, spans)]

    def _flush(self, req: bytes, op: int) -> None:
        offered = self.features.flush if op == BLKIF_OP_FLUSH_DISKCACHE else self.features.barrier
        if not offered:
            raise RequestError("operation not advertised", BLKIF_RSP_EOPNOTSUPP)
        if self.image.read_only:
            raise RequestError("flush of a read-only device")
        nseg = req[1]
        # A flush or barrier may carry data: flush what came before, write
        # it, and make it durable (REQ_PREFLUSH | REQ_FUA in blkback).
        self.image.flush()
        if nseg:
            self._direct(req, BLKIF_OP_WRITE)
            self.image.flush()

    def _discard(self, req: bytes) -> None:
        if not self.features.discard:
            raise RequestError("discard not advertised", BLKIF_RSP_EOPNOTSUPP)
        _, flag, _, _, _, sector, nsects = blkif.DISCARD.unpack_from(req)
        if self.image.read_only:
            raise RequestError("discard on a read-only device")
        self._check_range(sector, nsects)
        self.image.discard(sector * XEN_SECTOR_SIZE, nsects * XEN_SECTOR_SIZE,
                           secure=bool(flag & blkif.BLKIF_DISCARD_SECURE))

    def _check_range(self, sector: int, nsects: int) -> None:
        if sector + nsects > self.image.sectors:
            raise RequestError(f"access beyond end of device: sectors "
                               f"{sector}+{nsects} > {self.image.sectors}")


def _pwritev(image, offset: int, bufs) -> None:
    vec = getattr(image, "pwritev", None)
    if vec is not None:
        vec(offset, bufs)
    else:
        image.pwrite(offset, b"".join(bufs))


def _preadv(image, offset: int, bufs) -> None:
    vec = getattr(image, "preadv", None)
    if vec is not None:
        vec(offset, bufs)
        return
    data = image.pread(offset, sum(len(b) for b in bufs))
    pos = 0
    for b in bufs:
        b[:] = data[pos:pos + len(b)]
        pos += len(b)
