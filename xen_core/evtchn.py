"""Event channels: the per-domain port tables and Xen's rules for them, sans I/O.

One `EventChannels` registry holds every domain's `EvtchnDomain` under one
lock (interdomain operations touch two tables, as Xen's double event_lock).
Operations follow xen/common/event_channel.c of Xen 4.17, errno for errno.
How a pending event reaches a domain is its `PortDelivery`:
`TwoLevel` writes Xen's 2-level ABI into the guest's shared info through an
atomic accessor, `UserPorts` is dom0's side (the evtchn device's semantics:
an event masks its port until user space unmasks it). Callbacks into the
outside world (interrupt injection, vCPU kicks, queueing a port to a dom0
process) are given by the caller, so tests drive all of it on a bytearray.

Errors are raised as `XenError(errno)`; the hypercall layer turns them into
the guest's return value.
"""
from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

from .abi import event_channel as e
from .abi import shared_info as si
from .abi.xen import DOMID_SELF, EEXIST, EINVAL, ENOENT, ENOSPC, EPERM, ESRCH
from .vcpu import XenError

# Channel states (ECS_*, xen/include/xen/sched.h).
ECS_FREE = 0
ECS_RESERVED = 1
ECS_UNBOUND = 2
ECS_INTERDOMAIN = 3
ECS_PIRQ = 4
ECS_VIRQ = 5
ECS_IPI = 6

# Ports become valid a bucket at a time (EVTCHNS_PER_BUCKET: a page of
# 64-byte struct evtchn); a port past the last bucket is -EINVAL even where
# the ABI limit is higher.
EVTCHNS_PER_BUCKET = 64
MAX_PORTS_2L = si.EVTCHN_2L_NR_CHANNELS   # 4096 for a 64-bit guest
BITS_PER_WORD = 64


class PortDelivery(Protocol):
    """How events reach one domain (Xen's evtchn_port_ops)."""

    def set_pending(self, vcpu: int, port: int) -> None: ...
    def clear_pending(self, port: int) -> None: ...
    def is_pending(self, port: int) -> bool: ...
    def is_masked(self, port: int) -> bool: ...
    def unmask(self, vcpu: int, port: int) -> None: ...


class SharedBits(Protocol):
    """Atomic access to the memory Xen shares with the guest (byte offsets)."""

    def test_and_set_bit(self, offset: int, bit: int) -> bool: ...
    def test_and_clear_bit(self, offset: int, bit: int) -> bool: ...
    def test_bit(self, offset: int, bit: int) -> bool: ...
    def set_byte(self, offset: int, value: int) -> int: ...


# SharedBits may also offer set_pending_2l(pending_word, mask_word,
# vcpu_info or None, port) doing TwoLevel.set_pending's bit steps at once;
# it answers these flags.
SET_PENDING_NEW = 1      # the port became pending: wake pollers
SET_PENDING_UPCALL = 2   # evtchn_upcall_pending went 0 -> 1: the upcall


class TwoLevel:
    """The 2-level ABI in shared info: evtchn_pending[], evtchn_mask[], per
    vCPU evtchn_pending_sel and evtchn_upcall_pending (evtchn_2l.c).

    `shared_info` is the byte offset of the shared-info page for `bits`;
    `vcpu_info(vcpu)` the offset of that vCPU's vcpu_info (None: none yet,
    only the bitmaps are written); `upcall(vcpu)` runs when
    evtchn_upcall_pending goes 0 -> 1 (vcpu_mark_events_pending: inject
    the callback vector, kick); `pollers(port)` wakes vCPUs polling.
    """

    def __init__(self, bits: SharedBits, shared_info: int,
                 vcpu_info: Callable[[int], int | None],
                 upcall: Callable[[int], None], pollers: Callable[[int], None],
                 guard: Callable[[], ContextManager] = contextlib.nullcontext):
        """`guard()`: held around each read-modify-write of the bitmaps and
        evtchn_pending_sel, for an engine whose `lock` instructions are not
        atomic against this thread (emu: EmuMachine.paused)."""
        self.bits = bits
        self.guard = guard
        self.pending = shared_info + si.SHARED_INFO_EVTCHN_PENDING
        self.mask = shared_info + si.SHARED_INFO_EVTCHN_MASK
        self.vcpu_info = vcpu_info
        self.upcall = upcall
        self.pollers = pollers

    @staticmethod
    def _word(port: int) -> tuple[int, int]:
        return 8 * (port // BITS_PER_WORD), port % BITS_PER_WORD

    def _mark(self, vcpu: int, port: int) -> bool:
        """evtchn_pending_sel, then evtchn_upcall_pending; True when the
        latter went 0 -> 1 (the caller makes the upcall, outside the guard)."""
        info = self.vcpu_info(vcpu)
        if info is None:
            return False
        sel = port // BITS_PER_WORD
        if self.bits.test_and_set_bit(info + si.VCPU_INFO_PENDING_SEL, sel):
            return False
        return not self.bits.set_byte(info + si.VCPU_INFO_UPCALL_PENDING, 1)

    def set_pending(self, vcpu: int, port: int) -> None:
        # Strict order as in evtchn_2l_set_pending: pending, then mask, then sel.
        word, bit = self._word(port)
        combined = getattr(self.bits, "set_pending_2l", None)
        if combined is not None:   # the same four steps in one call (SharedBits2L)
            info = self.vcpu_info(vcpu)
            with self.guard():
                r = combined(self.pending + word, self.mask + word, info, port)
            if r & SET_PENDING_UPCALL:
                self.upcall(vcpu)
            if r & SET_PENDING_NEW:
                self.pollers(port)
            return
        with self.guard():
            if self.bits.test_and_set_bit(self.pending + word, bit):
                return
            upcall = not self.bits.test_bit(self.mask + word, bit) and self._mark(vcpu, port)
        if upcall:
            self.upcall(vcpu)
        self.pollers(port)

    def clear_pending(self, port: int) -> None:
        word, bit = self._word(port)
        with self.guard():
            self.bits.test_and_clear_bit(self.pending + word, bit)

    def is_pending(self, port: int) -> bool:
        word, bit = self._word(port)
        return self.bits.test_bit(self.pending + word, bit)

    def is_masked(self, port: int) -> bool:
        word, bit = self._word(port)
        return self.bits.test_bit(self.mask + word, bit)

    def unmask(self, vcpu: int, port: int) -> None:
        word, bit = self._word(port)
        with self.guard():
            upcall = self.bits.test_and_clear_bit(self.mask + word, bit) and \
                self.bits.test_bit(self.pending + word, bit) and self._mark(vcpu, port)
        if upcall:
            self.upcall(vcpu)


class PortFlags:
    """Dom0's per-port device state: masked (reported, not yet unmasked)
    and latched (an event came while masked). `evtchn_fast.Dom0PortState`
    is the same in C, shared with the software CPU's fast path."""

    def __init__(self):
        self._masked: set[int] = set()
        self._latched: set[int] = set()

    def mark(self, port: int) -> bool:
        if port in self._masked:
            self._latched.add(port)
            return False
        self._masked.add(port)
        return True

    def unmask(self, port: int) -> bool:
        if port not in self._masked:
            return False
        self._masked.discard(port)
        if port in self._latched:
            self._latched.discard(port)
            return True
        return False

    def unmark(self, port: int) -> None:
        self._masked.discard(port)

    def clear(self, port: int) -> None:
        self._latched.discard(port)
        self._masked.discard(port)

    def masked(self, port: int) -> bool:
        return port in self._masked

    def latched(self, port: int) -> bool:
        return port in self._latched


class UserPorts:
    """Dom0's ports as Linux's /dev/xen/evtchn presents them: an event
    queues the port to its reader and masks it; writing the port back
    (unmask) re-arms it, and a notification that came meanwhile fires again.
    `deliver(port)` queues it; a fresh port starts unmasked. A consumer
    that counts events rather than queueing ports (an eventfd) returns
    False from deliver: its port stays unmasked."""

    def __init__(self, deliver: Callable[[int], None], flags: PortFlags | None = None):
        self.deliver = deliver
        self.flags = PortFlags() if flags is None else flags

    def set_pending(self, vcpu: int, port: int) -> None:
        if not self.flags.mark(port):
            return
        if self.deliver(port) is False:
            self.flags.unmark(port)

    def clear_pending(self, port: int) -> None:
        self.flags.clear(port)

    def is_pending(self, port: int) -> bool:
        return self.flags.latched(port)

    def is_masked(self, port: int) -> bool:
        return self.flags.masked(port)

    def unmask(self, vcpu: int, port: int) -> None:
        if self.flags.unmask(port):
            self.set_pending(vcpu, port)


@dataclass
class Channel:
    port: int
    state: int = ECS_FREE
    notify_vcpu: int = 0
    remote_domid: int = 0     # unbound: who may bind; interdomain: the peer
    remote_port: int = 0
    virq: int = 0
    owner: object = None      # dom0: the handle that bound it (None for guests)


def virq_is_global(virq: int) -> bool:
    return virq not in e.PER_VCPU_VIRQS


class EvtchnDomain:
    """One domain's port table (struct domain's evtchn fields)."""

    def __init__(self, domid: int, nr_vcpus: int, delivery: PortDelivery,
                 privileged: bool = False, max_port: int = MAX_PORTS_2L - 1):
        self.domid = domid
        self.nr_vcpus = nr_vcpus
        self.delivery = delivery
        self.privileged = privileged
        self.max_port = min(max_port, MAX_PORTS_2L - 1)
        self.chans: dict[int, Channel] = {0: Channel(0, ECS_RESERVED)}  # port 0 is never handed out
        self.valid = EVTCHNS_PER_BUCKET
        self.virqs: dict[tuple[int, int], int] = {}   # (vcpu, virq) -> port
        # The fast path's cache of this domain's sends (evtchn_fast.FastPorts),
        # emptied here whenever a cached channel changes; None: no fast path.
        self.fast = None

    def port_is_valid(self, port: int) -> bool:
        return 0 <= port < self.valid and port <= self.max_port

    def chan(self, port: int) -> Channel:
        c = self.chans.get(port)
        return c if c is not None else Channel(port)

    def get_free_port(self) -> int:
        port = 0
        while self.port_is_valid(port):
            if port not in self.chans:
                return port
            port += 1
        if port > self.max_port or port >= MAX_PORTS_2L:
            raise XenError(ENOSPC, f"d{self.domid}: no free event channel")
        self.valid += EVTCHNS_PER_BUCKET   # a new bucket
        return port

    def take(self, port: int, state: int, **fields) -> Channel:
        c = Channel(port, state, **fields)
        self.chans[port] = c
        return c

    def free(self, c: Channel) -> None:
        # evtchn_free: clear the pending event so a re-bind starts clean; the
        # channel returns to vCPU 0.
        drop = getattr(self.fast, "drop_posted", None)   # emu: posted to a vCPU, not yet set
        if drop is not None:
            drop(c.port)
        self.delivery.clear_pending(c.port)
        self.chans.pop(c.port, None)

    def ports(self) -> list[int]:
        return sorted(p for p, c in self.chans.items() if c.state not in (ECS_FREE, ECS_RESERVED))


class EventChannels:
    """Every domain's ports, and the operations of event_channel_op."""

    def __init__(self, factory: Callable[[int], EvtchnDomain | None] = lambda domid: None):
        self.lock = threading.RLock()
        self.domains: dict[int, EvtchnDomain] = {}
        self.factory = factory    # makes the table of a domain seen for the first time
        # Called (under the lock) after an interdomain send was delivered:
        # (sender table, port, peer table, peer channel). The fast path's
        # chance to cache the channel (events.EventCore.cache_send).
        self.sent: Callable[[EvtchnDomain, int, EvtchnDomain, Channel], None] | None = None

    # -- domains -------------------------------------------------------------
    def add_domain(self, d: EvtchnDomain) -> EvtchnDomain:
        with self.lock:
            self.domains[d.domid] = d
        return d

    def remove_domain(self, domid: int) -> None:
        """Domain destruction: close every port (peers see theirs unbound)."""
        with self.lock:
            d = self.domains.get(domid)
            if d is None:
                return
            for port in d.ports():
                self._close(d, port, dying=True)
            del self.domains[domid]

    def _dom(self, domid: int) -> EvtchnDomain:
        d = self.domains.get(domid)
        if d is None:
            d = self.factory(domid)
            if d is None:
                raise XenError(ESRCH, f"no domain {domid}")
            self.domains[domid] = d
        return d

    def _target(self, caller: EvtchnDomain, domid: int) -> EvtchnDomain:
        """DOMID_SELF/own id, or another domain for a privileged caller
        (rcu_lock_domain_by_any_id + XSM_TARGET)."""
        if domid in (DOMID_SELF, caller.domid):
            return caller
        d = self._dom(domid)
        if not caller.privileged:
            raise XenError(EPERM)
        return d

    # -- operations (caller = the domain issuing the op) ----------------------
    def alloc_unbound(self, caller: int, dom: int, remote_dom: int, owner=None) -> int:
        with self.lock:
            c = self._dom(caller)
            d = self._target(c, dom)
            port = d.get_free_port()
            if remote_dom == DOMID_SELF:
                remote_dom = caller
            d.take(port, ECS_UNBOUND, remote_domid=remote_dom, owner=owner)
            return port

    def bind_interdomain(self, caller: int, remote_dom: int, remote_port: int, owner=None) -> int:
        with self.lock:
            ld = self._dom(caller)
            if remote_dom == DOMID_SELF:
                remote_dom = caller
            rd = self._dom(remote_dom)
            lport = ld.get_free_port()
            if not rd.port_is_valid(remote_port):
                raise XenError(EINVAL, f"d{rd.domid} port {remote_port} invalid")
            rchn = rd.chan(remote_port)
            if rchn.state != ECS_UNBOUND or rchn.remote_domid != ld.domid:
                raise XenError(EINVAL, f"d{rd.domid} port {remote_port} is not unbound for d{ld.domid}")
            lchn = ld.take(lport, ECS_INTERDOMAIN, remote_domid=rd.domid,
                           remote_port=remote_port, owner=owner)
            rchn.state, rchn.remote_domid, rchn.remote_port = ECS_INTERDOMAIN, ld.domid, lport
            # Notifications sent to the unbound remote port were dropped:
            # Xen conservatively marks the new local port pending.
            ld.delivery.set_pending(lchn.notify_vcpu, lport)
            return lport

    def bind_virq(self, caller: int, virq: int, vcpu: int, owner=None) -> int:
        with self.lock:
            d = self._dom(caller)
            if not 0 <= virq < e.NR_VIRQS:
                raise XenError(EINVAL, f"virq {virq}")
            if virq_is_global(virq) and vcpu != 0:
                raise XenError(EINVAL, f"global virq {virq} bound to vcpu {vcpu}")
            if not 0 <= vcpu < d.nr_vcpus:
                raise XenError(ENOENT, f"vcpu {vcpu}")
            if (vcpu, virq) in d.virqs:
                raise XenError(EEXIST, f"virq {virq} of vcpu {vcpu} already bound")
            port = d.get_free_port()
            d.take(port, ECS_VIRQ, notify_vcpu=vcpu, virq=virq, owner=owner)
            d.virqs[(vcpu, virq)] = port
            return port

    def bind_ipi(self, caller: int, vcpu: int, owner=None) -> int:
        with self.lock:
            d = self._dom(caller)
            if not 0 <= vcpu < d.nr_vcpus:
                raise XenError(ENOENT, f"vcpu {vcpu}")
            port = d.get_free_port()
            d.take(port, ECS_IPI, notify_vcpu=vcpu, owner=owner)
            return port

    def close(self, caller: int, port: int) -> None:
        with self.lock:
            self._close(self._dom(caller), port)

    def _close(self, d: EvtchnDomain, port: int, dying: bool = False) -> None:
        if not d.port_is_valid(port):
            raise XenError(EINVAL, f"port {port} invalid")
        c = d.chan(port)
        if c.state in (ECS_FREE, ECS_RESERVED):
            raise XenError(EINVAL, f"port {port} is not bound")
        if d.fast is not None:
            d.fast.uncache(port)
        if c.state == ECS_VIRQ:
            d.virqs.pop((c.notify_vcpu, c.virq), None)
        elif c.state == ECS_INTERDOMAIN:
            rd = self.domains.get(c.remote_domid)
            if rd is not None:
                if rd.fast is not None:
                    rd.fast.uncache(c.remote_port)
                r = rd.chans.get(c.remote_port)
                if r is not None and r.state == ECS_INTERDOMAIN and r.remote_domid == d.domid:
                    r.state, r.remote_domid, r.remote_port = ECS_UNBOUND, d.domid, 0
        if dying:   # its memory is going: only the table entry goes
            d.chans.pop(port, None)
        else:
            d.free(c)

    def send(self, caller: int, port: int) -> None:
        with self.lock:
            d = self._dom(caller)
            if not d.port_is_valid(port):
                raise XenError(EINVAL, f"port {port} invalid")
            c = d.chan(port)
            if c.state == ECS_INTERDOMAIN:
                rd = self.domains.get(c.remote_domid)
                r = rd.chans.get(c.remote_port) if rd is not None else None
                if r is not None:
                    rd.delivery.set_pending(r.notify_vcpu, r.port)
                    if self.sent is not None:
                        self.sent(d, port, rd, r)
            elif c.state == ECS_IPI:
                d.delivery.set_pending(c.notify_vcpu, port)
            elif c.state == ECS_UNBOUND:
                pass   # nobody at the other end yet: Xen drops it silently
            else:
                raise XenError(EINVAL, f"port {port} cannot send (state {c.state})")

    def ipi_target(self, caller: int, port: int) -> int | None:
        """The vCPU a send on `port` interrupts, if it is an IPI port."""
        d = self.domains.get(caller)
        c = d.chans.get(port) if d is not None else None
        return c.notify_vcpu if c is not None and c.state == ECS_IPI else None

    def status(self, caller: int, dom: int, port: int) -> tuple[int, int, int, int]:
        """(EVTCHNSTAT_*, vcpu, a, b): a = remote dom / virq, b = remote port."""
        with self.lock:
            c0 = self._dom(caller)
            d = self._dom(c0.domid if dom == DOMID_SELF else dom)
            if not d.port_is_valid(port):
                raise XenError(EINVAL, f"port {port} invalid")
            if d is not c0 and not c0.privileged:
                raise XenError(EPERM)
            c = d.chan(port)
            if c.state in (ECS_FREE, ECS_RESERVED):
                return e.EVTCHNSTAT_closed, c.notify_vcpu, 0, 0
            if c.state == ECS_UNBOUND:
                return e.EVTCHNSTAT_unbound, c.notify_vcpu, c.remote_domid, 0
            if c.state == ECS_INTERDOMAIN:
                return e.EVTCHNSTAT_interdomain, c.notify_vcpu, c.remote_domid, c.remote_port
            if c.state == ECS_VIRQ:
                return e.EVTCHNSTAT_virq, c.notify_vcpu, c.virq, 0
            return e.EVTCHNSTAT_ipi, c.notify_vcpu, 0, 0

    def bind_vcpu(self, caller: int, port: int, vcpu: int) -> None:
        with self.lock:
            d = self._dom(caller)
            if not 0 <= vcpu < d.nr_vcpus:
                raise XenError(ENOENT, f"vcpu {vcpu}")
            if not d.port_is_valid(port):
                raise XenError(EINVAL, f"port {port} invalid")
            c = d.chan(port)
            if c.state == ECS_VIRQ and virq_is_global(c.virq):
                d.virqs.pop((c.notify_vcpu, c.virq), None)
                c.notify_vcpu = vcpu
                d.virqs[(vcpu, c.virq)] = port
            elif c.state in (ECS_UNBOUND, ECS_INTERDOMAIN):
                c.notify_vcpu = vcpu
                rd = self.domains.get(c.remote_domid) if c.state == ECS_INTERDOMAIN else None
                if rd is not None and rd.fast is not None:
                    rd.fast.uncache(c.remote_port)   # its cached deliveries name the old vCPU
            else:
                raise XenError(EINVAL, f"port {port} cannot move (state {c.state})")

    def unmask(self, caller: int, port: int) -> None:
        with self.lock:
            d = self._dom(caller)
            if not d.port_is_valid(port):
                raise XenError(EINVAL, f"port {port} invalid")
            d.delivery.unmask(d.chan(port).notify_vcpu, port)

    def reset(self, caller: int, dom: int, target_paused: bool = True) -> None:
        """Close every port of `dom` (a foreign reset needs it paused)."""
        with self.lock:
            c = self._dom(caller)
            d = self._target(c, dom)
            if d is not c and not target_paused:
                raise XenError(EINVAL, f"d{d.domid} is not paused")
            for port in d.ports():
                self._close(d, port)

    # -- raised by the hypervisor ---------------------------------------------
    def send_virq(self, domid: int, vcpu: int, virq: int) -> bool:
        """A per-vCPU VIRQ (timer, debug); True if a port was bound."""
        with self.lock:
            d = self.domains.get(domid)
            port = d.virqs.get((vcpu, virq)) if d is not None else None
            if port is None:
                return False
            d.delivery.set_pending(vcpu, port)
            return True

    def send_global_virq(self, domid: int, virq: int) -> bool:
        """A global VIRQ goes to the vCPU its port is bound to."""
        with self.lock:
            d = self.domains.get(domid)
            if d is None:
                return False
            for (vcpu, v), port in d.virqs.items():
                if v == virq:
                    d.delivery.set_pending(vcpu, port)
                    return True
            return False

    def is_pending(self, domid: int, port: int) -> bool:
        with self.lock:
            d = self.domains.get(domid)
            return d is not None and d.port_is_valid(port) and d.delivery.is_pending(port)

    def owned_by(self, domid: int, owner) -> list[int]:
        with self.lock:
            d = self.domains.get(domid)
            if d is None:
                return []
            return [p for p, c in d.chans.items() if c.owner is owner and c.state != ECS_RESERVED]

    def owner_of(self, domid: int, port: int):
        with self.lock:
            d = self.domains.get(domid)
            c = d.chans.get(port) if d is not None else None
            return None if c is None else c.owner


__all__ = ["EventChannels", "EvtchnDomain", "TwoLevel", "UserPorts", "PortFlags", "Channel"]
