"""Grant mapping and grant copy for dom0 processes: Linux's gntdev /
libxengnttab over xen-core's privileged interface.

    from dom0.gntdev import Gntdev

    gd = Gntdev(pc)                              # xengnttab_open
    m = gd.map(domid, [ref])                     # or readonly=True
    m.page(0)[0:4] = b"ping"                     # the guest's real page (shared memfd)
    m.unmap()                                    # clears GTF_reading/GTF_writing
    st = gd.copy([{"source": {"ref": r, "domid": d, "offset": 0},
                   "dest": {"buf": 0}, "len": 4096}])     # -> [GNTST_okay]
    data = gd.buf[0:4096]                        # the local side of copies
    gd.close()                                   # unmaps whatever is left

`map` checks every entry in the core (GTF_permit_access for dom0,
GTF_readonly against a writable map, ...) and marks it in use; a failure
maps nothing and raises XenError naming the GNTST_* status. The pages are
mmaps of the granting domain's memfd: PROT_READ only for a read-only map,
so a write through it faults. The mapping outlives the granter's
destruction until it is unmapped.

Copy segments: each side is {"ref", "domid", "offset"} (a grant) or
{"buf": offset} (this handle's bounce buffer `buf`, GNTDEV_BUF_SIZE bytes,
shared with xen-core). Returns one GNTST_* per segment.
"""
from __future__ import annotations

import mmap
import os

from xen_core.abi import grant_table as g
from xen_core.abi import xen as xenabi
from .privcmd import Privcmd, XenError

PAGE_SIZE = 4096


class GrantMapping:
    """Pages of one map call; `page(i)` is a memoryview of refs[i]'s page."""

    def __init__(self, gntdev: "Gntdev", domid: int, refs, handles, offsets, fd, readonly):
        self.gntdev = gntdev
        self.domid = domid
        self.refs = list(refs)
        self.handles = list(handles)
        self.readonly = readonly
        prot = mmap.PROT_READ | (0 if readonly else mmap.PROT_WRITE)
        self._maps, self._views = [], []
        try:
            for off in offsets:
                mm = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, prot, offset=off)
                self._maps.append(mm)
                self._views.append(memoryview(mm))
        except BaseException:
            self._release()
            raise

    def page(self, i: int = 0) -> memoryview:
        return self._views[i]

    def _release(self) -> None:
        for v in self._views:
            v.release()
        for mm in self._maps:
            mm.close()
        self._views, self._maps = [], []

    def unmap(self) -> list[int]:
        """Drop the pages here, then the grants in the core; GNTST_* each."""
        if not self.handles:
            return []
        self._release()
        status = self.gntdev._unmap(self.handles)
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
            self._buf_map = mmap.mmap(fds[0], self.buf_size, mmap.MAP_SHARED,
                                      mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            for fd in fds:
                os.close(fd)
        self.buf = memoryview(self._buf_map)
        self.mappings: set[GrantMapping] = set()

    def map(self, domid: int, refs: list[int], readonly: bool = False) -> GrantMapping:
        result, fds = self.pc.call("gntdev_map", handle=self.handle, domid=domid,
                                   refs=list(refs), readonly=readonly)
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise XenError(xenabi.EINVAL, "EINVAL", "gntdev_map reply without a memfd")
        try:
            m = GrantMapping(self, domid, refs, result["handles"], result["offsets"], fds[0], readonly)
        except BaseException:
            self._unmap(result["handles"])
            raise
        finally:
            os.close(fds[0])
        self.mappings.add(m)
        return m

    def _unmap(self, handles) -> list[int]:
        return self.pc.call("gntdev_unmap", handle=self.handle, handles=list(handles))[0]["status"]

    def unmap_handles(self, handles) -> list[int]:
        """Raw unmap by grant handle (GNTST_bad_handle for one not held)."""
        return self._unmap(handles)

    def copy(self, segments: list[dict]) -> list[int]:
        return self.pc.call("gntdev_copy", handle=self.handle, segments=segments)[0]["status"]

    def close(self) -> None:
        for m in list(self.mappings):
            m._release()
        self.mappings.clear()
        self.buf.release()
        self._buf_map.close()
        try:
            self.pc.call("gntdev_close", handle=self.handle)
        except (XenError, OSError):
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


GNTST_okay = g.GNTST_okay
