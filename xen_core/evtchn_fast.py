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

import itertools

from .abi import event_channel as e
from .abi import shared_info as si
from .abi import xen as x

try:
    from .accel._emu_c import ffi, lib
except ImportError:   # not built: everything stays in Python
    ffi = lib = None

NR_PORTS = si.EVTCHN_2L_NR_CHANNELS   # the C tables' size (EVF_NR_PORTS)
MAX_VCPUS = 64                         # EVF_MAX_VCPUS: beyond, deliveries stay in Python
SERVE_EOF, SERVE_SLOW, SERVE_KICK = 0, 1, 2
_tokens = itertools.count(1)           # names a dom0 handle to the C side
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
        """The port is freed: no state, no holder, no cached notify."""
        lib.evf_dom0_clear(self.cdata, port, MASKED | LATCHED)
        lib.evf_dom0_own(self.cdata, port, 0)
        lib.evf_uncache_notify(self.cdata, port)

    # -- what a handle's commands need (evf_serve) --
    def own(self, port: int, token: int) -> None:
        """`port` is held by the handle `token` (a handle's unmask/notify of
        a port it does not hold stays Python's, which ignores it)."""
        lib.evf_dom0_own(self.cdata, port, token)

    def handle_gone(self, token: int) -> None:
        lib.evf_handle_gone(self.cdata, token)

    def cache_notify(self, port: int, guest: "FastPorts", gport: int, vcpu: int) -> None:
        lib.evf_cache_notify(self.cdata, port, guest.cdata, gport, vcpu)

    def uncache(self, port: int) -> None:
        """Either end of dom0 port `port`'s channel changed."""
        lib.evf_uncache_notify(self.cdata, port)

    def cache_dom0(self, port: int, fd: int, rport: int) -> None:
        """Notifies on `port` go to dom0 port `rport` of the handle whose
        report pipe is `fd` (dom0 to dom0)."""
        lib.evf_cache_dom0(self.cdata, port, fd, rport)

    def uncache_fd(self, fd: int) -> None:
        lib.evf_dom0_uncache_fd(self.cdata, fd)

    def notify_cached(self, port: int) -> bool:
        return 0 <= port < NR_PORTS and (self.cdata.target[port] != ffi.NULL
                                         or bool(self.cdata.dcached[port]))

    @property
    def fast_commands(self) -> int:
        return self.cdata.fast_commands

    def masked(self, port: int) -> bool:
        return bool(lib.evf_dom0_state(self.cdata, port) & MASKED)

    def latched(self, port: int) -> bool:
        return bool(lib.evf_dom0_state(self.cdata, port) & LATCHED)

    def write_port(self, fd: int, port: int) -> int:
        """Queue `port` to a handle's report pipe without blocking, serialized
        with the fast path's writes; 0 or the errno (the event is lost)."""
        return lib.evf_write_port(self.cdata, fd, port)

    @property
    def lost(self) -> int:
        return self.cdata.lost


class CommandServer:
    """A dom0 evtchn handle's command pipe served in C (`evf_serve`):
    `next()` blocks without the GIL and returns only for work Python must
    do: ("slow", cmd, port), ("kick", domid, port, vcpu, flags) or None at
    the end of the stream."""

    RECORD = 8

    def __init__(self, state: Dom0PortState, rfd: int, wfd: int):
        self.state = state
        self.token = next(_tokens)
        self.rfd, self.wfd = rfd, wfd
        self.buf = ffi.new("uint8_t[]", 4096)
        self.s = ffi.new("struct evf_serve *")

    def next(self):
        s = self.s
        rc = lib.evf_serve(self.state.cdata, self.token, self.rfd, self.wfd, self.buf,
                           len(self.buf), s)
        if rc == SERVE_SLOW:
            rec = ffi.unpack(self.buf + s.off, self.RECORD)
            s.off += self.RECORD
            return ("slow", int.from_bytes(rec[:4], "little"), int.from_bytes(rec[4:], "little"))
        if rc == SERVE_KICK:
            return ("kick", s.kick_domid, s.kick_port, s.kick_vcpu, s.kick_flags)
        return None

    def stop(self) -> None:
        """`next()` returns None from now on (once a record wakes it)."""
        self.s.closing = 1


class FastPorts:
    """One guest's cache: port -> (dom0 handle report pipe, dom0 port), and what
    delivering into the guest takes (filled by vCPU with `vcpu_ready`)."""

    def __init__(self, dom0: Dom0PortState, domid: int = 0, pending: int = 0, mask: int = 0):
        """`pending`/`mask`: host addresses of the guest's bitmaps (0: no
        delivery into this guest from C)."""
        self.cdata = ffi.new("struct evf_table *")
        self.cdata.dom0 = dom0.cdata
        self.cdata.hypercall = x.HYPERVISOR_event_channel_op
        self.cdata.send_op = e.EVTCHNOP_send
        self.cdata.domid = domid
        self.cdata.pending, self.cdata.mask = pending, mask
        self.cdata.sel_off = si.VCPU_INFO_PENDING_SEL
        self.cdata.upcall_off = si.VCPU_INFO_UPCALL_PENDING
        self.cdata.live = int(bool(pending and mask))
        self._dom0 = dom0    # the C table points into it
        self._peers = {}     # port -> the FastPorts its cached guest peer is (kept alive)
        # (domid, port, vcpu, flags): wake a receiver's vCPU that waits in
        # Python after a send answered in C (events.EventCore.fast_kick).
        self.kick = lambda domid, port, vcpu, flags: None

    def attach_machine(self, m) -> None:
        """The engine machine (`struct emu_machine *`) whose vCPUs it wakes."""
        self.cdata.m = m

    def vcpu_ready(self, vcpu: int, vinfo: int, engine_vcpu, vector: int) -> None:
        """Deliveries to `vcpu` may be made in C: its vcpu_info at host
        address `vinfo` (0: none yet), its engine vCPU, the domain's
        callback vector (0: none)."""
        if 0 <= vcpu < MAX_VCPUS:
            self.cdata.vector = vector
            lib.evf_guest_vcpu(self.cdata, vcpu, vinfo, engine_vcpu)

    def is_ready(self, vcpu: int) -> bool:
        return 0 <= vcpu < MAX_VCPUS and bool(self.cdata.ready[vcpu])

    def flush(self) -> None:
        """vcpu_info, the callback vector or the p2m may have changed."""
        lib.evf_guest_flush(self.cdata)

    def forget_vcpu(self, vcpu: int) -> None:
        lib.evf_guest_forget_vcpu(self.cdata, vcpu)

    def gone(self) -> None:
        """The engine and the memory are going: C touches neither again."""
        lib.evf_guest_gone(self.cdata)

    def cache(self, port: int, fd: int, rport: int) -> None:
        lib.evf_cache(self.cdata, port, fd, rport)

    def uncache(self, port: int) -> None:
        lib.evf_uncache(self.cdata, port)
        self._peers.pop(port, None)

    def cache_guest(self, port: int, peer: "FastPorts", rport: int, vcpu: int) -> None:
        """Sends on `port` go to `rport` of the guest `peer` (delivered to
        its `vcpu`), in C."""
        self._peers[port] = peer
        lib.evf_cache_guest(self.cdata, port, peer.cdata, rport, vcpu)

    def guest_cached(self, port: int) -> bool:
        return 0 <= port < NR_PORTS and self.cdata.gt[port] != ffi.NULL

    def uncache_fd(self, fd: int) -> None:
        lib.evf_uncache_fd(self.cdata, fd)

    def cached(self, port: int) -> bool:
        return 0 <= port < NR_PORTS and bool(self.cdata.cached[port])

    def send(self, port: int) -> bool:
        """What the hypercall hook does: True if answered from the cache
        (a kick it asks for is made here)."""
        k = ffi.new("struct evf_serve *")
        rc = lib.evf_send(self.cdata, port, k)
        if rc == 1:
            self.kick(k.kick_domid, k.kick_port, k.kick_vcpu, k.kick_flags)
        return rc >= 0

    @property
    def fast_sends(self) -> int:
        return self.cdata.fast_sends


def set_pending_2l(pending: int, mask: int, sel: int, upcall: int, port: int) -> int:
    """Xen's 2-level set_pending on host addresses (sel/upcall 0: no
    vcpu_info); xen_core.evtchn.SET_PENDING_* flags."""
    return lib.evf_2l_set_pending(pending, mask, sel, upcall, port)
