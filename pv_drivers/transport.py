"""The backend's view of one queue of a device: its ring pages mapped from
the frontend's grants, grant copy for data pages, and its event channel(s),
all through dom0's gntdev and evtchn clients (libxengnttab/libxenevtchn).

Each queue owns its own gntdev handle (its bounce buffer is not shared
between threads) and its own evtchn handle (its fd wakes only this queue's
thread), as each blkback/netback queue has its own kthread.
"""
from __future__ import annotations

import logging

from .grants import PAGE_SIZE, GrantError, check_span

log = logging.getLogger("xen-backendd")

MAP_CHUNK = 256         # grefs per gntdev map call (a request has at most 256)


class TransportError(Exception):
    """A ring or event channel the frontend named cannot be used."""


class XenQueue:
    def __init__(self, privcmd, domid: int, rings: list[list[int]], ports: list[int]):
        from dom0.evtchn import Evtchn        # issue 5's clients; imported late so
        from dom0.gntdev import Gntdev        # the daemon runs (and says why) without
        from dom0.privcmd import XenError
        self.domid = domid
        self.gd = Gntdev(privcmd)
        self.xe = None
        self.maps = []
        self.pmaps = []                       # persistent grants (blkback)
        self.masked = []                      # ports taken by ack, not re-armed yet
        try:
            for refs in rings:
                self.maps.append(self.gd.map(domid, refs))
            self.xe = Evtchn(privcmd)
            self.local = [self.xe.bind_interdomain(domid, p) for p in ports]
        except XenError as e:
            self.close()
            raise TransportError(str(e)) from None
        self.rings = [[m.page(i) for i in range(len(m.refs))] for m in self.maps]

    # GrantAccess, by grant copy through this handle's bounce buffer.
    def copy_from(self, gref: int, offset: int, length: int) -> bytes:
        check_span(offset, length)
        st = self.gd.copy([{"source": {"ref": gref, "domid": self.domid, "offset": offset},
                            "dest": {"buf": 0}, "len": length}])
        if st[0] != 0:
            raise GrantError(f"grant copy from gref {gref}: GNTST {st[0]}")
        return bytes(self.gd.buf[:length])

    def copy_to(self, gref: int, offset: int, data: bytes) -> None:
        check_span(offset, len(data))
        self.gd.buf[:len(data)] = data
        st = self.gd.copy([{"source": {"buf": 0},
                            "dest": {"ref": gref, "domid": self.domid, "offset": offset},
                            "len": len(data)}])
        if st[0] != 0:
            raise GrantError(f"grant copy to gref {gref}: GNTST {st[0]}")

    def copy_from_many(self, segs) -> list[bytes]:
        out = []
        for batch, places in self._batches(segs, lambda s: s[2]):
            ops = []
            for (gref, offset, length), pos in zip(batch, places):
                check_span(offset, length)
                ops.append({"source": {"ref": gref, "domid": self.domid, "offset": offset},
                            "dest": {"buf": pos}, "len": length})
            self._check(self.gd.copy(ops), batch)
            out += [bytes(self.gd.buf[pos:pos + length])
                    for (_, _, length), pos in zip(batch, places)]
        return out

    def copy_to_many(self, segs) -> None:
        for batch, places in self._batches(segs, lambda s: len(s[2])):
            ops = []
            for (gref, offset, data), pos in zip(batch, places):
                check_span(offset, len(data))
                self.gd.buf[pos:pos + len(data)] = data
                ops.append({"source": {"buf": pos},
                            "dest": {"ref": gref, "domid": self.domid, "offset": offset},
                            "len": len(data)})
            self._check(self.gd.copy(ops), batch)

    def _batches(self, segs, size):
        """Runs of segments that fit the bounce buffer together, with each
        one's place in it. A grant copy segment may not cross a page on
        either side, so a segment that would straddle a page of the bounce
        buffer starts on the next one."""
        batch, places, pos = [], [], 0
        for seg in segs:
            n = size(seg)
            if pos % PAGE_SIZE + n > PAGE_SIZE:
                pos = (pos + PAGE_SIZE - 1) // PAGE_SIZE * PAGE_SIZE
            if batch and pos + n > self.gd.buf_size:
                yield batch, places
                batch, places, pos = [], [], 0
            batch.append(seg)
            places.append(pos)
            pos += n
        if batch:
            yield batch, places

    def map_grants(self, grefs: list[int]) -> list[memoryview]:
        """Map writable, in one gntdev call per MAP_CHUNK grefs; all or none."""
        from dom0.privcmd import XenError
        done, views = [], []
        try:
            for i in range(0, len(grefs), MAP_CHUNK):
                m = self.gd.map(self.domid, grefs[i:i + MAP_CHUNK])
                done.append(m)
                views += [m.page(j) for j in range(len(m.refs))]
        except XenError as e:
            for m in done:
                m.unmap()
            raise GrantError(f"map of gref(s) {grefs[:4]}{'...' if len(grefs) > 4 else ''}: "
                             f"{e}") from None
        self.pmaps += done
        return views

    @staticmethod
    def _check(status, batch) -> None:
        for st, seg in zip(status, batch):
            if st != 0:
                raise GrantError(f"grant copy with gref {seg[0]}: GNTST {st}")

    def fileno(self) -> int:
        return self.xe.fd()

    def ack(self) -> None:
        """An event came (fd readable): take it. The port stays masked while
        we serve (the frontend's further kicks only mark it pending) and is
        re-armed by `rearm`, in the same write as our kick if there is one."""
        port = self.xe.pending(0)
        if port is not None:
            self.masked.append(port)

    def notify(self) -> None:
        # Split tx/rx channels are both kicked: a spurious event is harmless.
        for port in self.local:
            self.xe.notify(port)

    def rearm(self, notify: bool) -> None:
        """Before sleeping: unmask what `ack` took (a port that went pending
        meanwhile is reported again) and kick the frontend if asked."""
        kick = list(self.local) if notify else []
        masked, self.masked = self.masked, []
        for port in masked:
            if kick:
                self.xe.unmask_and_notify(port, kick.pop(0))
            else:
                self.xe.unmask(port)
        for port in kick:
            self.xe.notify(port)

    def close(self) -> None:
        for m in self.pmaps + self.maps:
            try:
                m.unmap()
            except Exception as e:      # the core may be gone already
                log.debug("dom%d: unmap: %s", self.domid, e)
        self.maps, self.pmaps = [], []
        if self.xe is not None:
            self.xe.close()
            self.xe = None
        self.gd.close()


class XenTransport:
    def __init__(self, privcmd):
        self.privcmd = privcmd

    def open(self, domid: int, rings: list[list[int]], ports: list[int]) -> XenQueue:
        return XenQueue(self.privcmd, domid, rings, ports)
