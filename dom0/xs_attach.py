"""xenstored's way into an introduced domain: `PrivcmdDomainAttacher`
implements xenstore.attach.DomainAttacher over xen-core's privileged
interface (foreign map of the store page, an interdomain event channel
whose events count on an eventfd xenstored's loop watches).

    attacher = PrivcmdDomainAttacher(Privcmd(run_dir))
    page = attacher.map_store_page(domid, gfn)      # writable mmap of the guest page
    notify, fd = attacher.bind_evtchn(domid, port)  # notify() kicks the guest
    attacher.release(domid)
"""
from __future__ import annotations

import mmap
import os

from .evtchn import Evtchn
from .privcmd import Privcmd, XenError

PAGE_SIZE = 4096


class PrivcmdDomainAttacher:
    def __init__(self, privcmd: Privcmd):
        self.pc = privcmd
        self.evtchn = Evtchn(privcmd)
        self.pages: dict[int, list[mmap.mmap]] = {}
        self.ports: dict[int, int] = {}

    def map_store_page(self, domid: int, gfn: int) -> mmap.mmap:
        fd, offsets, errors, _ = self.pc.foreign_map_fd(domid, [gfn])
        try:
            if errors[0]:
                raise XenError(-errors[0], "ENOENT", f"gfn {gfn:#x} of domain {domid} not populated")
            page = mmap.mmap(fd, PAGE_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                             offset=offsets[0])
        finally:
            os.close(fd)
        self.pages.setdefault(domid, []).append(page)
        return page

    def bind_evtchn(self, domid: int, port: int):
        """(notify, fd): fd is a non-blocking eventfd, readable after the
        guest sent on its port (drain it with os.read). A repeat bind for
        the same domain (re-INTRODUCE) replaces the previous channel."""
        old = self.ports.pop(domid, None)
        if old is not None:
            self._unbind(old)
        local, efd = self.evtchn.bind_interdomain(domid, port, eventfd=True)
        self.ports[domid] = local

        def notify():
            try:
                self.evtchn.notify(local)
            except XenError:
                pass   # unbound meanwhile (domain gone): nothing to kick

        return notify, efd

    def _unbind(self, port: int) -> None:
        try:
            self.evtchn.unbind(port)
        except XenError:
            pass   # the domain died first: xen-core closed it already

    def release(self, domid: int) -> None:
        port = self.ports.pop(domid, None)
        if port is not None:
            self._unbind(port)
        for page in self.pages.pop(domid, []):
            page.close()

    def close(self) -> None:
        for domid in list(set(self.pages) | set(self.ports)):
            self.release(domid)
        self.evtchn.close()
