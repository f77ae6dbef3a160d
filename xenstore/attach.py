"""How xenstored reaches an introduced domain's store page and event channel.

``XS_INTRODUCE(domid, gfn, port)`` hands the daemon a guest frame and an
unbound-to-us event channel port.  A ``DomainAttacher`` turns them into a
mapped page and a pair of notifications.  The real one maps through dom0's
privileged interface (foreign map + evtchn bind); ``FileDomainAttacher``
backs each domain's page with a file and its event channel with two FIFOs,
which is what tests and a hypervisor-less dom0 use.
"""

import mmap
import os
from typing import Callable, Protocol

from xen_core.abi.xs_wire import XS_RING_PAGE_SIZE


class DomainAttacher(Protocol):
    def map_store_page(self, domid: int, gfn: int):
        """A writable, mmap-like buffer over the domain's xenstore page."""

    def bind_evtchn(self, domid: int, port: int) -> tuple[Callable[[], None], int]:
        """(notify, fd): notify() kicks the guest; fd turns readable when the
        guest kicked us (the daemon drains it with os.read)."""

    def release(self, domid: int) -> None:
        """Unmap and unbind everything attached for ``domid``."""


class FileDomainAttacher:
    """Pages are ``<dir>/dom<domid>.store`` files; each event channel is a
    pair of FIFOs ``dom<domid>.port<port>.{to-xenstored,to-guest}``."""

    def __init__(self, directory: str):
        self.dir = directory
        self.held: dict[int, list] = {}

    def page_path(self, domid: int) -> str:
        return os.path.join(self.dir, f"dom{domid}.store")

    def fifo_paths(self, domid: int, port: int) -> tuple[str, str]:
        base = os.path.join(self.dir, f"dom{domid}.port{port}")
        return base + ".to-xenstored", base + ".to-guest"

    def map_store_page(self, domid: int, gfn: int):
        fd = os.open(self.page_path(domid), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < XS_RING_PAGE_SIZE:
                os.ftruncate(fd, XS_RING_PAGE_SIZE)
            page = mmap.mmap(fd, XS_RING_PAGE_SIZE)
        finally:
            os.close(fd)
        self.held.setdefault(domid, []).append(page)
        return page

    def bind_evtchn(self, domid: int, port: int):
        fds = []
        for path in self.fifo_paths(domid, port):
            if not os.path.exists(path):
                os.mkfifo(path, 0o600)
            # O_RDWR keeps the FIFO open without waiting for a peer.
            fds.append(os.open(path, os.O_RDWR | os.O_NONBLOCK))
        rx, tx = fds
        self.held.setdefault(domid, []).extend(fds)

        def notify():
            try:
                os.write(tx, b"!")
            except BlockingIOError:
                pass    # FIFO full: the guest has kicks pending already

        return notify, rx

    def release(self, domid: int) -> None:
        for obj in self.held.pop(domid, []):
            if isinstance(obj, int):
                os.close(obj)
            else:
                obj.close()
