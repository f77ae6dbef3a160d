"""xenstored's way to an introduced domain through the privileged interface
(what C xenstored does with xenforeignmemory/xengnttab and xenevtchn).

`PrivcmdDomainAttacher` implements `xenstore.attach.DomainAttacher`: the
store page is a foreign mapping of the gfn named in XS_INTRODUCE; the event
channel is bound interdomain to the guest's unbound port, with its kicks
counted on an eventfd (readable when the guest notified; xenstored drains
it with os.read). `release` unbinds and unmaps.
"""
from __future__ import annotations

import os

from .evtchn import Evtchn
from .foreignmemory import ForeignMapping
from .privcmd import Privcmd


class PrivcmdDomainAttacher:
    def __init__(self, run_dir: str | None = None):
        self.pc = Privcmd(run_dir)
        self.xe = Evtchn(self.pc)
        self.maps: dict[int, ForeignMapping] = {}
        self.ports: dict[int, int] = {}

    def map_store_page(self, domid: int, gfn: int):
        old = self.maps.pop(domid, None)
        if old is not None:
            old.close()
        m = ForeignMapping(self.pc, domid, [gfn])
        self.maps[domid] = m
        return m.page(gfn)

    def bind_evtchn(self, domid: int, port: int):
        self._unbind(domid)        # a repeat INTRODUCE rebinds
        local, efd = self.xe.bind_interdomain(domid, port, eventfd=True)
        self.ports[domid] = local
        xe = self.xe

        def notify():
            xe.notify(local)
        return notify, efd

    def _unbind(self, domid: int) -> None:
        local = self.ports.pop(domid, None)
        if local is not None:
            try:
                self.xe.unbind(local)
            except OSError:
                pass            # the domain (and so the channel) is gone already

    def release(self, domid: int) -> None:
        self._unbind(domid)
        m = self.maps.pop(domid, None)
        if m is not None:
            m.close()

    def close(self) -> None:
        for domid in list(self.maps):
            self.release(domid)
        self.xe.close()
        self.pc.close()
