"""Grant mapping and grant copy for dom0 processes: Linux's gntdev /
libxengnttab over xen-core's privileged interface.

    from dom0.gntdev import Gntdev

    gd = Gntdev(pc)                              # xengnttab_open
    m = gd.map(domid, [ref])                     # or readonly=True
    m.page(0)[0:4] = b"ping"                     # the guest's real page (shared memfd)
    m.unmap()                                    # clears GTF_reading/GTF_writing
    out = gd.map_grant_refs([(d1, r1, False), (d2, r2, True)])
                                                 # [(handle, page) | GrantStatusError]
    gd.unmap_grant_refs([h for h, _ in ...])     # -> [GNTST_* per handle]
    st = gd.copy([{"source": {"ref": r, "domid": d, "offset": 0},
                   "dest": {"buf": 0}, "len": 4096}])     # -> [GNTST_okay]
    data = gd.buf[0:4096]                        # the local side of copies
    gd.close()                                   # unmaps whatever is left

The core checks every entry (GTF_permit_access for dom0, GTF_readonly
against a writable map, ...) and marks it in use. The first grant of a
domain brings that domain's memfd over the socket once; the handle maps it
whole, once read-write and (when a read-only grant needs it) once
PROT_READ, and hands out page views of those mappings, so a map or unmap
is one small request with no fd and no mmap. A read-only page is a
read-only view of the PROT_READ mapping: a write raises, and even through
its address the kernel refuses it. A domain's mappings are dropped once
the core reports it gone and nothing of it is mapped here; until then they
keep its memory alive (destroy-while-mapped, as in Xen).

Copy segments: each side is {"ref", "domid", "offset"} (a grant) or
{"buf": offset} (this handle's bounce buffer `buf`, GNTDEV_BUF_SIZE bytes,
shared with xen-core). Returns one GNTST_* per segment.
"""
from __future__ import annotations

import array
import mmap
import os
import socket
import threading

from xen_core.abi import grant_table as g
from xen_core.abi import privif as pv
from xen_core.abi import xen as xenabi
from .privcmd import Privcmd, XenError

PAGE_SIZE = 4096


class GrantStatusError(XenError):
    """One entry of a batch map that the core refused (`status`: GNTST_*)."""

    def __init__(self, status: int, domid: int, ref: int):
        name = g.GNTST_NAMES.get(status, str(status))
        super().__init__(xenabi.EINVAL, "EINVAL",
                         f"d{domid} ref {ref}: GNTST_{name} ({status})")
        self.status, self.domid, self.ref = status, domid, ref


class _DomainMemory:
    """A granting domain's memfd, mapped whole at most once per protection."""

    def __init__(self, fd: int):
        self.fd = fd
        self.size = os.fstat(fd).st_size
        self.maps: dict[bool, tuple[mmap.mmap, memoryview]] = {}
        self.users = 0           # pages of it mapped through this handle
        self.gone = False        # its domain is destroyed

    def page(self, offset: int, readonly: bool) -> memoryview:
        mv = self.maps.get(readonly)
        if mv is None:
            prot = mmap.PROT_READ | (0 if readonly else mmap.PROT_WRITE)
            mm = mmap.mmap(self.fd, self.size, mmap.MAP_SHARED, prot)
            view = memoryview(mm)
            mv = self.maps[readonly] = (mm, view.toreadonly() if readonly else view)
        return mv[1][offset:offset + PAGE_SIZE]

    def close(self) -> None:
        for mm, view in self.maps.values():
            view.release()
            try:
                mm.close()
            except BufferError:  # a caller still holds a slice: the mapping goes with it
                pass
        self.maps.clear()
        os.close(self.fd)


class GrantMapping:
    """Pages of one map call; `page(i)` is a memoryview of refs[i]'s page."""

    def __init__(self, gntdev: "Gntdev", domid: int, refs, handles, views, readonly):
        self.gntdev = gntdev
        self.domid = domid
        self.refs = list(refs)
        self.handles = list(handles)
        self.readonly = readonly
        self._views = list(views)

    def page(self, i: int = 0) -> memoryview:
        return self._views[i]

    def _release(self) -> None:
        for v in self._views:
            v.release()
        self._views = []

    def unmap(self) -> list[int]:
        """Drop the pages here, then the grants in the core; GNTST_* each."""
        if not self.handles:
            return []
        self._views = []
        status = self.gntdev.unmap_grant_refs(self.handles)
        self.gntdev.mappings.discard(self)
        self.handles = []
        return status


class Gntdev:
    def __init__(self, privcmd: Privcmd):
        self.pc = privcmd
        result, fds = privcmd.call("gntdev_open")
        self.handle = result["handle"]
        self.buf_size = result["buf_size"]
        try:
            if len(fds) != 2:
                raise XenError(xenabi.EINVAL, "EINVAL", "gntdev_open reply without memfd and channel")
            self._buf_map = mmap.mmap(fds[0], self.buf_size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE)
            self._chan = socket.socket(fileno=os.dup(fds[1]))
        finally:
            for fd in fds:
                os.close(fd)
        self._chan_lock = threading.Lock()
        self._lock = threading.RLock()     # the views and memories below
        self.buf = memoryview(self._buf_map)
        self.mappings: set[GrantMapping] = set()
        self._mems: dict[int, _DomainMemory] = {}               # serial -> memory
        self._held: dict[int, tuple[_DomainMemory, memoryview]] = {}   # grant handle

    # -- the handle's channel -------------------------------------------------------
    def _request(self, cmd: int, records: list[bytes], rec) -> list[tuple]:
        """One request on the channel: the reply's records (tuples of `rec`);
        memfds it passes are adopted, gone domains noted."""
        if not 0 < len(records) <= pv.GNTDEV_MAX_RECORDS:
            raise XenError(xenabi.EINVAL, "EINVAL",
                           f"1..{pv.GNTDEV_MAX_RECORDS} entries per request, not {len(records)}")
        with self._chan_lock:
            self._chan.sendall(pv.GNTDEV_REQ.pack(cmd, len(records)) + b"".join(records))
            data, anc, _, _ = self._chan.recvmsg(
                1 << 16, socket.CMSG_SPACE(pv.MAX_FDS_PER_FRAME * 4))
        fds = array.array("i")
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % 4])
        try:
            if not data:
                raise XenError(xenabi.EBADF, "EBADF", "gntdev handle closed by xen-core")
            result, count = pv.GNTDEV_REP.unpack_from(data)
            if result < 0:
                raise XenError(-result, xenabi.errno_name(-result), "gntdev request refused")
            pos = pv.GNTDEV_REP.size + count * rec.size
            out = list(rec.iter_unpack(data[pv.GNTDEV_REP.size:pos]))
            lists = []
            for _ in range(2):
                (n,) = pv.GNTDEV_U32.unpack_from(data, pos)
                lists.append(list(array.array("I", data[pos + 4:pos + 4 + 4 * n])))
                pos += 4 + 4 * n
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        serials, gone = lists
        for serial, fd in zip(serials, fds):
            old = self._mems.get(serial)
            if old is not None and not old.users:
                del self._mems[serial]
                old.close()
                old = None
            if old is None:
                self._mems[serial] = _DomainMemory(fd)
            else:
                os.close(fd)
        for fd in fds[len(serials):]:
            os.close(fd)
        self._gone(gone)
        return out

    # -- libxengnttab: map / unmap -------------------------------------------------
    def map_grant_refs(self, entries) -> list:
        """xengnttab_map_grant_refs, one entry at a time: [(domid, ref,
        readonly)] -> per entry (handle, 4 KiB memoryview) or a
        GrantStatusError (that entry only; the others stay mapped)."""
        with self._lock:
            return self._map_grant_refs(entries)

    def _map_grant_refs(self, entries) -> list:
        entries = [(int(d), int(r), bool(ro)) for d, r, ro in entries]
        for d, r, _ in entries:
            if not (0 <= d < 1 << 16 and 0 <= r < 1 << 32):
                raise XenError(xenabi.EINVAL, "EINVAL", f"bad grant d{d} ref {r}")
        reply = self._request(pv.GNTDEV_CMD_MAP,
                              [pv.GNTDEV_MAP.pack(r, d, ro) for d, r, ro in entries],
                              pv.GNTDEV_MAP_REP)
        out, mapped = [], []
        try:
            for (domid, ref, ro), (st, h, serial, offset) in zip(entries, reply):
                if st != g.GNTST_okay:
                    out.append(GrantStatusError(st, domid, ref))
                    continue
                mapped.append(h)
                mem = self._mems[serial]
                view = mem.page(offset, ro)
                mem.users += 1
                self._held[h] = (mem, view)
                out.append((h, view))
        except BaseException:
            self.unmap_grant_refs(mapped)
            raise
        return out

    def map_grant_ref(self, domid: int, ref: int, readonly: bool = False):
        """xengnttab_map_grant_ref: (handle, page); GrantStatusError if refused."""
        (r,) = self.map_grant_refs([(domid, ref, readonly)])
        if isinstance(r, Exception):
            raise r
        return r

    def unmap_grant_refs(self, handles) -> list[int]:
        """Drop the pages here, then the grants in the core: GNTST_* per
        handle (GNTST_bad_handle for one this handle does not hold)."""
        with self._lock:
            return self._unmap_grant_refs(handles)

    def _unmap_grant_refs(self, handles) -> list[int]:
        handles = list(handles)
        for h in handles:
            held = self._held.pop(h, None)
            if held is not None:
                mem, view = held
                view.release()
                mem.users -= 1
        valid = [h for h in handles if isinstance(h, int) and 0 <= h < 1 << 32]
        status = []
        for i in range(0, len(valid), pv.GNTDEV_MAX_RECORDS):
            part = valid[i:i + pv.GNTDEV_MAX_RECORDS]
            status += [st for (st,) in self._request(
                pv.GNTDEV_CMD_UNMAP, [pv.GNTDEV_UNMAP.pack(h) for h in part], pv.GNTDEV_STATUS)]
        self._gone(())
        it = iter(status)
        return [next(it) if isinstance(h, int) and 0 <= h < 1 << 32 else g.GNTST_bad_handle
                for h in handles]

    def _gone(self, gone) -> None:
        """Drop the mappings of domains that are gone and no longer mapped."""
        for serial in gone:
            mem = self._mems.get(serial)
            if mem is not None:
                mem.gone = True
        for serial, mem in list(self._mems.items()):
            if mem.gone and not mem.users:
                del self._mems[serial]
                mem.close()

    def map(self, domid: int, refs: list[int], readonly: bool = False) -> GrantMapping:
        """All of `refs` of one domain, or nothing (XenError naming the
        first refused entry's GNTST_* status)."""
        out = self.map_grant_refs([(domid, r, readonly) for r in refs])
        bad = [r for r in out if isinstance(r, Exception)]
        if bad:
            self.unmap_grant_refs([r[0] for r in out if not isinstance(r, Exception)])
            raise bad[0]
        m = GrantMapping(self, domid, refs, [h for h, _ in out], [v for _, v in out], readonly)
        self.mappings.add(m)
        return m

    def unmap_handles(self, handles) -> list[int]:
        """Raw unmap by grant handle (GNTST_bad_handle for one not held)."""
        return self.unmap_grant_refs(handles)

    # -- grant copy ----------------------------------------------------------------
    def copy(self, segments: list[dict]) -> list[int]:
        """xengnttab_grant_copy: GNTST_* per segment, in batches of
        GNTDEV_MAX_RECORDS per request."""
        recs = [self._copy_record(seg) for seg in segments]
        out = []
        for i in range(0, len(recs), pv.GNTDEV_MAX_RECORDS):
            out += [st for (st,) in self._request(
                pv.GNTDEV_CMD_COPY, recs[i:i + pv.GNTDEV_MAX_RECORDS], pv.GNTDEV_STATUS)]
        return out

    def _copy_record(self, seg: dict) -> bytes:
        try:
            fields, flags = [], 0
            for name, flag in (("source", g.GNTCOPY_source_gref), ("dest", g.GNTCOPY_dest_gref)):
                side = seg[name]
                if "ref" in side:
                    flags |= flag
                    fields += [side["ref"], side["domid"], side["offset"]]
                else:
                    off = side["buf"]
                    if not 0 <= off < self.buf_size:
                        raise ValueError(f"buf offset {off} outside the {self.buf_size}-byte buffer")
                    fields += [off >> 12, xenabi.DOMID_SELF, off & 0xFFF]
            return pv.GNTDEV_COPY.pack(*fields, seg["len"], flags)
        except (KeyError, TypeError, ValueError, pv.struct.error) as e:
            raise XenError(xenabi.EINVAL, "EINVAL", f"bad copy segment {seg!r}: {e}") from None

    def close(self) -> None:
        with self._lock:
            for m in list(self.mappings):
                m._release()
            self.mappings.clear()
            for _, view in self._held.values():
                view.release()
            self._held.clear()
            for mem in self._mems.values():
                mem.close()
            self._mems.clear()
        self.buf.release()
        self._buf_map.close()
        self._chan.close()
        try:
            self.pc.call("gntdev_close", handle=self.handle)
        except (XenError, OSError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


GNTST_okay = g.GNTST_okay
