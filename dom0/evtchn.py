"""Event channels for dom0 processes: libxenevtchn over xen-core's
privileged interface.

    from dom0.privcmd import Privcmd
    from dom0.evtchn import Evtchn

    pc = Privcmd(run_dir)
    xe = Evtchn(pc)                           # xenevtchn_open
    port = xe.bind_interdomain(domid, remote_port)
    xe.notify(port)                           # kick the guest
    p = xe.pending()                          # blocks; select() on xe.fd() first if you like
    xe.unmask(p)                              # re-arm it (the device masks each port it reports)
    xe.unbind(port)
    xe.close()                                # unbinds whatever is left

Like /dev/xen/evtchn, `fd()` turns readable when a port is pending; each
report masks its port until `unmask`. `pending()` returns one port (or
None after `timeout` seconds). `notify` and `unmask` are one write each, with
no reply: a port not bound by this handle raises ENOTCONN locally, as the
device's ioctl does. The handle is two pipes from xen-core (ports in,
commands out); it lives until `close()` or the privcmd connection's end. Binding with `eventfd=True` returns `(port, efd)`:
that port's events are counted on the eventfd instead, never masked (read
the eventfd to reset it) — the model xenstored's ring kicks use.

Errors are `dom0.privcmd.XenError` with Xen's errno (EINVAL for a remote
port that is not unbound for dom0, EEXIST for a VIRQ bound twice, ESRCH for
a missing domain).
"""
from __future__ import annotations

import os
import select
import struct

from xen_core.abi import xen as xenabi
from xen_core.abi.privif import EVTCHN_CMD as _CMD
from xen_core.abi.privif import EVTCHN_CMD_NOTIFY as _CMD_NOTIFY
from xen_core.abi.privif import EVTCHN_CMD_UNMASK as _CMD_UNMASK
from .privcmd import Privcmd, XenError


class Evtchn:
    def __init__(self, privcmd: Privcmd):
        self.pc = privcmd
        result, fds = privcmd.call("evtchn_open")
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            raise XenError(xenabi.EINVAL, "EINVAL", "evtchn_open reply without its two pipes")
        self.handle = result["handle"]
        self.rfd, self.wfd = fds     # ports from xen-core; commands to it
        self.ports: set[int] = set()
        self.eventfds: dict[int, int] = {}
        self._rbuf = b""

    def fd(self) -> int:
        """Readable while a port is pending (poll/select/asyncio add_reader)."""
        return self.rfd

    # -- binding --------------------------------------------------------------
    def _bind(self, op: str, eventfd: bool, **args):
        result, fds = self.pc.call(op, handle=self.handle, eventfd=eventfd, **args)
        port = result["port"]
        self.ports.add(port)
        if eventfd:
            self.eventfds[port] = fds[0]
            return port, fds[0]
        for fd in fds:
            os.close(fd)
        return port

    def bind_interdomain(self, domid: int, remote_port: int, eventfd: bool = False):
        """A local port connected to `remote_port` of `domid` (which must be
        unbound for dom0). Xen marks the new port pending at once."""
        return self._bind("evtchn_bind_interdomain", eventfd, domid=domid, remote_port=remote_port)

    def bind_unbound_port(self, domid: int, eventfd: bool = False):
        """A fresh dom0 port that `domid` may bind to (alloc_unbound)."""
        return self._bind("evtchn_bind_unbound_port", eventfd, domid=domid)

    def bind_virq(self, virq: int, eventfd: bool = False):
        """A global VIRQ for dom0 (VIRQ_DOM_EXC, VIRQ_CONSOLE, ...)."""
        return self._bind("evtchn_bind_virq", eventfd, virq=virq)

    def unbind(self, port: int) -> None:
        self.pc.call("evtchn_unbind", handle=self.handle, port=port)
        self.ports.discard(port)
        efd = self.eventfds.pop(port, None)
        if efd is not None:
            os.close(efd)

    # -- the hot path ------------------------------------------------------------
    def _check(self, port: int) -> None:
        if port not in self.ports:
            raise XenError(xenabi.ENOTCONN, "ENOTCONN", f"port {port} is not bound by this handle")

    def _write(self, records: bytes) -> None:
        # Under PIPE_BUF: one write, whole.
        try:
            os.write(self.wfd, records)
        except BrokenPipeError:
            raise XenError(xenabi.EBADF, "EBADF", "xen-core closed the evtchn handle") from None

    def notify(self, port: int) -> None:
        self._check(port)
        self._write(_CMD.pack(_CMD_NOTIFY, port))

    def unmask(self, port: int) -> None:
        self._check(port)
        self._write(_CMD.pack(_CMD_UNMASK, port))

    def unmask_and_notify(self, unmask_port: int, notify_port: int) -> None:
        """Both in one write (a backend's usual pair)."""
        self._check(unmask_port)
        self._check(notify_port)
        self._write(_CMD.pack(_CMD_UNMASK, unmask_port) + _CMD.pack(_CMD_NOTIFY, notify_port))

    def pending(self, timeout: float | None = None) -> int | None:
        """The next pending port (masked until unmask); None on timeout.
        One port per read, as xenevtchn_pending: `fd()` stays readable
        while more are queued, so a select loop that takes one per wake-up
        misses none."""
        while len(self._rbuf) < 4:
            if timeout is not None:
                r, _, _ = select.select([self.rfd], [], [], timeout)
                if not r:
                    return None
            data = os.read(self.rfd, 4 - len(self._rbuf))
            if not data:
                raise XenError(xenabi.EBADF, "EBADF", "xen-core closed the evtchn handle")
            self._rbuf += data
        (port,) = struct.unpack_from("<I", self._rbuf)
        self._rbuf = b""
        return port

    # -- teardown ----------------------------------------------------------------
    def close(self) -> None:
        """Unbind everything this handle holds (synchronously, when xen-core
        is reachable) and drop the fd."""
        if self.rfd < 0:
            return
        try:
            self.pc.call("evtchn_close", handle=self.handle)
        except (XenError, OSError):
            pass
        for efd in self.eventfds.values():
            os.close(efd)
        self.eventfds.clear()
        self.ports.clear()
        os.close(self.rfd)
        os.close(self.wfd)
        self.rfd = self.wfd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
