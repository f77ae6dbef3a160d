"""Event channels and grant tables wired into a running Hypervisor.

The pure engines (`xen_core.evtchn`, `grant_tables`) know nothing of vCPUs,
memfds or dom0 processes; this module gives them those: the 2-level bitmaps
in each guest's shared-info frame (atomically, the guest runs meanwhile),
the callback vector from HVM_PARAM_CALLBACK_IRQ injected into the notified
vCPU, pollers and blocked vCPUs woken, VIRQs raised by the core (timer,
console, dom_exc, debug), dom0's ports delivered to the process handle that
bound them, and teardown when a domain is destroyed.

`of(core)` attaches once per Hypervisor, on first use.
"""
from __future__ import annotations

import contextlib
import logging
import threading

from .abi import event_channel as e
from .abi import hvm as h
from .abi import shared_info as si
from .abi.layout import PAGE_SHIFT
from . import evtchn_fast
from .evtchn import (SET_PENDING_NEW, SET_PENDING_UPCALL, EventChannels, EvtchnDomain,
                     TwoLevel, UserPorts)
from .guest_atomic import MemfdAtomics
from .memory import GuestFault, SHARED_INFO_XENHEAP_INDEX

log = logging.getLogger(__name__)

_attach_lock = threading.Lock()


_flush_hooked = False
_flush_lock = threading.Lock()


def _hook_flushes() -> None:
    """Hypercalls that may move what a C delivery into the guest uses (its
    vcpu_info, callback vector, p2m) empty that cache when they return:
    vcpu_op register_vcpu_info, hvm_op, memory_op. Once per process."""
    global _flush_hooked
    with _flush_lock:
        if _flush_hooked:
            return
        _flush_hooked = True
    from . import hypercalls
    from .abi import vcpu as va
    from .abi import xen as x

    def flushing(handler, when):
        def call(v, *args):
            try:
                return handler(v, *args)
            finally:
                ec = getattr(v.core, "_event_core", None)
                if ec is not None and when(args):
                    ec.flush_guest(v.domain.domid)
        return call

    for nr, when in ((x.HYPERVISOR_vcpu_op, lambda a: a and a[0] == va.VCPUOP_register_vcpu_info),
                     (x.HYPERVISOR_hvm_op, lambda a: True),
                     (x.HYPERVISOR_memory_op, lambda a: True)):
        hypercalls.register(nr, flushing(hypercalls.HANDLERS[nr], when))


def of(core) -> "EventCore":
    ec = getattr(core, "_event_core", None)
    if ec is None:
        with _attach_lock:
            ec = getattr(core, "_event_core", None)
            if ec is None:
                ec = core._event_core = EventCore(core)
    return ec


class _SafeBits(MemfdAtomics):
    """A domain torn down under a sender loses the event, not the sender."""

    def test_and_set_bit(self, offset, bit):
        try:
            return super().test_and_set_bit(offset, bit)
        except GuestFault:
            return True

    def test_and_clear_bit(self, offset, bit):
        try:
            return super().test_and_clear_bit(offset, bit)
        except GuestFault:
            return False

    def test_bit(self, offset, bit):
        try:
            return super().test_bit(offset, bit)
        except GuestFault:
            return True

    def set_byte(self, offset, value):
        try:
            return super().set_byte(offset, value)
        except GuestFault:
            return 1

    if evtchn_fast.available():
        def set_pending_2l(self, pending: int, mask: int, info: int | None, port: int) -> int:
            """TwoLevel.set_pending's four atomics in one C call (memfd offsets)."""
            mem = self.mem
            with mem.lock:
                end = mem.nr_frames << PAGE_SHIFT
                if mem.closed or not (0 <= pending and pending + 8 <= end and 0 <= mask
                                      and mask + 8 <= end) or pending % 8 or mask % 8:
                    return 0
                base = mem.host_base
                sel = upcall = 0
                if info is not None and 0 <= info and info + si.VCPU_INFO_SIZE <= end:
                    sel = base + info + si.VCPU_INFO_PENDING_SEL
                    upcall = base + info + si.VCPU_INFO_UPCALL_PENDING
                return evtchn_fast.set_pending_2l(base + pending, base + mask, sel, upcall, port)


class EventCore:
    def __init__(self, core):
        self.core = core
        self.evtchn = EventChannels(self._make_table)
        # Dom0's port state in C when the fast path exists (shared with it).
        self.dom0_state = evtchn_fast.Dom0PortState() if evtchn_fast.available() else None
        self.evtchn.sent = self.cache_send
        if self.dom0_state is not None:
            _hook_flushes()
        from .grants import GrantCore
        self.gnttab = GrantCore(core)
        core.virq_hook = self._virq
        core.add_to_physmap_hook = self.gnttab.add_to_physmap
        self._cancel = core.subscribe(self._domain_event)

    # -- tables ----------------------------------------------------------------
    def _make_table(self, domid: int) -> EvtchnDomain | None:
        d = self.core.domains.get(domid)
        if d is None or d.dying:
            return None
        if d.memory is None:   # dom0: host processes, ports go to their handles
            table = EvtchnDomain(domid, 1, UserPorts(self._deliver_dom0, self.dom0_state),
                                 privileged=True)
            table.fast = self.dom0_state   # its cached notifies
            return table
        mem = d.memory
        shared = mem.xenheap_frame(SHARED_INFO_XENHEAP_INDEX) << PAGE_SHIFT
        delivery = TwoLevel(_SafeBits(mem), shared,
                            vcpu_info=lambda vcpu: self._vcpu_info(d, vcpu),
                            upcall=lambda vcpu: self._upcall(d, vcpu),
                            pollers=lambda port: self._wake_pollers(d, port),
                            guard=getattr(d.machine, "paused", contextlib.nullcontext))
        table = EvtchnDomain(domid, d.max_vcpus, delivery, privileged=d.privileged)
        attach = getattr(d.machine, "set_evtchn_fast", None)
        if attach is not None and self.dom0_state is not None:
            base = mem.host_base + shared
            table.fast = evtchn_fast.FastPorts(
                self.dom0_state, domid, base + si.SHARED_INFO_EVTCHN_PENDING,
                base + si.SHARED_INFO_EVTCHN_MASK)
            table.fast.kick = self.fast_kick
            attach(table.fast)
        return table

    # -- the fast path's cache ---------------------------------------------------
    def cache_send(self, d: EvtchnDomain, port: int, rd: EvtchnDomain, r) -> None:
        """After a send from guest port `port` reached dom0 port `r.port`:
        let the engine answer the next ones itself, if dom0's end is a
        handle that takes ports on its report pipe (not an eventfd)."""
        if d.fast is None or rd.fast is None:
            return
        if d.domid == 0:
            cached = self.dom0_state.notify_cached(port)
            if rd.domid == 0:   # another handle's port (unless an eventfd one)
                fd = getattr(r.owner, "fast_fd", lambda port: None)(r.port)
                if fd is not None and not cached:
                    self.dom0_state.cache_dom0(port, fd, r.port)
            elif self._ready(rd, r.notify_vcpu) and not cached:   # (re)fills the vCPU
                self.dom0_state.cache_notify(port, rd.fast, r.port, r.notify_vcpu)
            return
        if rd.domid != 0:   # another guest (or itself)
            if not d.fast.guest_cached(port) and self._ready(rd, r.notify_vcpu):
                d.fast.cache_guest(port, rd.fast, r.port, r.notify_vcpu)
            return
        if d.fast.cached(port):
            return
        fd = getattr(r.owner, "fast_fd", lambda port: None)(r.port)
        if fd is not None:
            d.fast.cache(port, fd, r.port)

    def _ready(self, rd: EvtchnDomain, vcpu: int) -> bool:
        """Can C deliver into guest `rd`'s `vcpu`? Tells it the vCPU's
        vcpu_info, engine vCPU and the callback vector if it did not know."""
        g = rd.fast
        if g.is_ready(vcpu):
            return True
        d = self.core.domains.get(rd.domid)
        v = d.vcpu(vcpu) if d is not None and not d.dying else None
        engine = getattr(v.engine, "_v", None) if v is not None else None
        if engine is None or d.memory is None or d.memory.closed:
            return False
        off = self._vcpu_info(d, vcpu)
        if off is not None and not 0 <= off <= (d.memory.nr_frames << PAGE_SHIFT) - si.VCPU_INFO_SIZE:
            return False
        via = d.hvm_params[h.HVM_PARAM_CALLBACK_IRQ]
        vector = 0
        if via >> h.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT == h.HVM_PARAM_CALLBACK_TYPE_VECTOR:
            vector = via & 0xFF if via & 0xFF >= 0x10 else 0
        g.vcpu_ready(vcpu, 0 if off is None else d.memory.host_base + off, engine, vector)
        return g.is_ready(vcpu)

    def flush_guest(self, domid: int) -> None:
        """A guest's vcpu_info, callback vector or p2m may have changed."""
        t = self.evtchn.domains.get(domid)
        if t is not None and domid != 0 and t.fast is not None:
            t.fast.flush()

    def fast_kick(self, domid: int, port: int, vcpu: int, flags: int) -> None:
        """The rest of a delivery made in C while some vCPU of the guest was
        in Python (blocked, polling): the Python half of _upcall, pollers.
        KICK_DELIVER: an event posted to a vCPU that C could no longer
        deliver (its cache was flushed): delivered here."""
        d = self.core.domains.get(domid)
        if d is None or d.memory is None:
            return
        if flags & evtchn_fast.KICK_DELIVER:
            with self.evtchn.lock:
                t = self.evtchn.domains.get(domid)
                if t is not None and port in t.chans:   # not freed since it was posted
                    t.delivery.set_pending(vcpu, port)
            return
        if flags & SET_PENDING_UPCALL:
            v = d.vcpu(vcpu)
            if v is not None:
                v.kick()
        if flags & SET_PENDING_NEW:
            self._wake_pollers(d, port)

    def forget_fd(self, fd: int) -> None:
        """A dom0 handle's report pipe is closing: no cached send may write to
        its number again (its ports were closed first; this is the backstop)."""
        with self.evtchn.lock:
            for t in self.evtchn.domains.values():
                if t.fast is not None:
                    t.fast.uncache_fd(fd)

    @staticmethod
    def _vcpu_info(d, vcpu: int) -> int | None:
        """memfd offset of vCPU `vcpu`'s vcpu_info: the registered one, or its
        slot in shared info (Xen's frame, whether or not the guest mapped it)."""
        v = d.vcpu(vcpu)
        mem = d.memory
        if v is not None and v.vcpu_info_gpa is not None:
            gpa = v.vcpu_info_gpa
            frame = mem.p2m.get(gpa >> PAGE_SHIFT)
            return None if frame is None else (frame << PAGE_SHIFT) | (gpa & 0xFFF)
        if vcpu >= si.XEN_LEGACY_MAX_VCPUS:
            return None
        return (mem.xenheap_frame(SHARED_INFO_XENHEAP_INDEX) << PAGE_SHIFT) + vcpu * si.VCPU_INFO_SIZE

    @staticmethod
    def _upcall(d, vcpu: int) -> None:
        """vcpu_mark_events_pending for an HVM/PVH vCPU: with a callback
        vector (HVM_PARAM_CALLBACK_IRQ type 2) inject it; wake it anyway
        (SCHEDOP_block waits for evtchn_upcall_pending)."""
        v = d.vcpu(vcpu)
        if v is None:
            return
        via = d.hvm_params[h.HVM_PARAM_CALLBACK_IRQ]
        if via >> h.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT == h.HVM_PARAM_CALLBACK_TYPE_VECTOR:
            vector = via & 0xFF
            if vector >= 0x10:
                try:
                    v.engine.request_interrupt(vector)
                except Exception:
                    log.exception("d%dv%d: injecting vector %#x", d.domid, vcpu, vector)
        v.kick()

    @staticmethod
    def _wake_pollers(d, port: int) -> None:
        # evtchn_check_pollers: a vCPU polling one port wakes for that port,
        # one polling several (or none) wakes for any.
        for v in d.vcpus:
            if v is None:
                continue
            ports = v.poll_ports
            if ports is not None and (len(ports) != 1 or ports[0] == port):
                v.kick()

    def _deliver_dom0(self, port: int):
        owner = self.evtchn.owner_of(0, port)
        if owner is not None:
            return owner.deliver(port)   # False: counted on an eventfd, stays unmasked

    # -- VIRQs and domain life cycle --------------------------------------------
    def _virq(self, d, vcpu, virq: int) -> None:
        """Domain.send_virq: a per-vCPU VIRQ on `vcpu`, a global one when
        `vcpu` is None."""
        try:
            if vcpu is None:
                self.evtchn.send_global_virq(d.domid, virq)
            else:
                self.evtchn.send_virq(d.domid, vcpu.id, virq)
        except GuestFault:
            pass   # the domain is being torn down

    def send_global_virq(self, domid: int, virq: int) -> None:
        try:
            self.evtchn.send_global_virq(domid, virq)
        except GuestFault:
            pass

    def debug_virq(self) -> None:
        """The 'q' debug key: VIRQ_DEBUG to every vCPU of every domain."""
        for d in self.core.list_domains():
            for v in d.vcpus:
                if v is not None:
                    self._virq(d, v, e.VIRQ_DEBUG)

    def _domain_event(self, event: dict) -> None:
        domid = event["domid"]
        if event["kind"] == "destroyed":
            try:
                self.evtchn.remove_domain(domid)
            except GuestFault:
                pass
            self.gnttab.domain_destroyed(domid)
        # Xen raises VIRQ_DOM_EXC to the control domain on shutdown and death.
        self.send_global_virq(0, e.VIRQ_DOM_EXC)
