"""The event-channel fast path's Python half (C in accel/evtchn_fast.c).

The software CPU answers EVTCHNOP_send in its hypercall hook, with no GIL
and no Python, for a guest port whose peer is a dom0 evtchn handle: the
most frequent call of a guest talking to a dom0 backend. What it needs
is a cache that `xen_core.evtchn` (the one place the rules live) fills
after answering such a send itself and empties whenever either end of the
channel changes. Dom0's "masked until user space unmasks it" state is kept
in C (`Dom0PortState`) so that both paths share one copy.

`available()` is False when the C engine is not built; the event code then
keeps everything in Python (`xen_core.evtchn.PortFlags`).
"""
from __future__ import annotations

from .abi import event_channel as e
from .abi import shared_info as si
from .abi import xen as x

try:
    from .accel._emu_c import ffi, lib
except ImportError:   # not built: everything stays in Python
    ffi = lib = None

NR_PORTS = si.EVTCHN_2L_NR_CHANNELS   # the C tables' size (EVF_NR_PORTS)
MASKED = 1
LATCHED = 2


def available() -> bool:
    return lib is not None and len(ffi.new("struct evf_dom0 *").state) == NR_PORTS


class Dom0PortState:
    """Dom0's per-port device state (the `PortFlags` protocol) in C."""

    def __init__(self):
        self.cdata = ffi.new("struct evf_dom0 *")

    def mark(self, port: int) -> bool:
        """An event: True if the port was unmasked (now masked: deliver it),
        False if it was masked (latched until the unmask)."""
        return lib.evf_dom0_mark(self.cdata, port) == 1

    def unmask(self, port: int) -> bool:
        """Unmask; True if an event was latched meanwhile (deliver again)."""
        return lib.evf_dom0_unmask(self.cdata, port) == 1

    def unmark(self, port: int) -> None:
        lib.evf_dom0_clear(self.cdata, port, MASKED)

    def clear(self, port: int) -> None:
        lib.evf_dom0_clear(self.cdata, port, MASKED | LATCHED)

    def masked(self, port: int) -> bool:
        return bool(lib.evf_dom0_state(self.cdata, port) & MASKED)

    def latched(self, port: int) -> bool:
        return bool(lib.evf_dom0_state(self.cdata, port) & LATCHED)

    def write_port(self, fd: int, port: int) -> int:
        """Queue `port` to a handle's socket without blocking, serialized
        with the fast path's writes; 0 or the errno (the event is lost)."""
        return lib.evf_write_port(self.cdata, fd, port)

    @property
    def lost(self) -> int:
        return self.cdata.lost


class FastPorts:
    """One guest's cache: port -> (dom0 handle socket, dom0 port)."""

    def __init__(self, dom0: Dom0PortState):
        self.cdata = ffi.new("struct evf_table *")
        self.cdata.dom0 = dom0.cdata
        self.cdata.hypercall = x.HYPERVISOR_event_channel_op
        self.cdata.send_op = e.EVTCHNOP_send
        self._dom0 = dom0    # the C table points into it

    def cache(self, port: int, fd: int, rport: int) -> None:
        lib.evf_cache(self.cdata, port, fd, rport)

    def uncache(self, port: int) -> None:
        lib.evf_uncache(self.cdata, port)

    def uncache_fd(self, fd: int) -> None:
        lib.evf_uncache_fd(self.cdata, fd)

    def cached(self, port: int) -> bool:
        return 0 <= port < NR_PORTS and bool(self.cdata.cached[port])

    def send(self, port: int) -> bool:
        """What the hypercall hook does: True if answered from the cache."""
        return lib.evf_send(self.cdata, port) == 0

    @property
    def fast_sends(self) -> int:
        return self.cdata.fast_sends


def set_pending_2l(pending: int, mask: int, sel: int, upcall: int, port: int) -> int:
    """Xen's 2-level set_pending on host addresses (sel/upcall 0: no
    vcpu_info); xen_core.evtchn.SET_PENDING_* flags."""
    return lib.evf_2l_set_pending(pending, mask, sel, upcall, port)
