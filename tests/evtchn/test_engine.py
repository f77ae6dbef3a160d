"""The event-channel engine alone: Xen's rules and errno for every misuse,
and the 2-level bits it writes, on a bytearray standing in for shared info."""
import pytest

from xen_core.abi import event_channel as e
from xen_core.abi import shared_info as si
from xen_core.abi.xen import DOMID_SELF, EEXIST, EINVAL, ENOENT, ENOSPC, EPERM, ESRCH
from xen_core.evtchn import EventChannels, EvtchnDomain, TwoLevel, UserPorts
from xen_core.vcpu import XenError


class Bits:
    """SharedBits over a bytearray (the engine's only window on memory)."""

    def __init__(self, size=8192):
        self.mem = bytearray(size)

    def _word(self, off):
        return int.from_bytes(self.mem[off:off + 8], "little")

    def _put(self, off, v):
        self.mem[off:off + 8] = v.to_bytes(8, "little")

    def test_and_set_bit(self, off, bit):
        w = self._word(off)
        self._put(off, w | 1 << bit)
        return bool(w >> bit & 1)

    def test_and_clear_bit(self, off, bit):
        w = self._word(off)
        self._put(off, w & ~(1 << bit))
        return bool(w >> bit & 1)

    def test_bit(self, off, bit):
        return bool(self._word(off) >> bit & 1)

    def set_byte(self, off, v):
        old = self.mem[off]
        self.mem[off] = v
        return old


class Guest:
    def __init__(self, ev, domid, nr_vcpus=2, privileged=False):
        self.bits = Bits()
        self.upcalls, self.polled = [], []
        self.d = ev.add_domain(EvtchnDomain(
            domid, nr_vcpus, TwoLevel(self.bits, 0, lambda v: v * si.VCPU_INFO_SIZE,
                                      self.upcalls.append, self.polled.append),
            privileged=privileged))

    def pending(self, port):
        return self.bits.test_bit(si.SHARED_INFO_EVTCHN_PENDING + 8 * (port // 64), port % 64)

    def mask(self, port):
        self.bits.test_and_set_bit(si.SHARED_INFO_EVTCHN_MASK + 8 * (port // 64), port % 64)

    def ack(self, vcpu=0):
        """What a guest's upcall handler does before scanning."""
        base = vcpu * si.VCPU_INFO_SIZE
        self.bits.mem[base + si.VCPU_INFO_UPCALL_PENDING] = 0
        self.bits.mem[base + si.VCPU_INFO_PENDING_SEL:base + 16] = bytes(8)

    def sel(self, vcpu=0):
        return self.bits._word(vcpu * si.VCPU_INFO_SIZE + si.VCPU_INFO_PENDING_SEL)


@pytest.fixture
def world():
    ev = EventChannels()
    delivered = []
    dom0 = ev.add_domain(EvtchnDomain(0, 1, UserPorts(delivered.append), privileged=True))
    return ev, Guest(ev, 1), Guest(ev, 2), dom0, delivered


def err(fn, *a, **k):
    with pytest.raises(XenError) as ei:
        fn(*a, **k)
    return ei.value.errno


def test_interdomain_send_sets_2l_bits_and_upcalls_once(world):
    ev, a, b, _, _ = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 2)
    assert pa == 1                                 # port 0 is reserved
    pb = ev.bind_interdomain(2, 1, pa)
    assert b.pending(pb) and b.upcalls == [0]      # bind marks the local port pending
    ev.send(2, pb)
    assert a.pending(pa) and a.upcalls == [0] and a.sel() == 1
    ev.send(2, pb)                                 # still pending: no second upcall
    assert a.upcalls == [0]
    assert ev.status(1, DOMID_SELF, pa) == (e.EVTCHNSTAT_interdomain, 0, 2, pb)


def test_masked_port_latches_and_unmask_delivers(world):
    ev, a, b, _, _ = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 2)
    pb = ev.bind_interdomain(2, 1, pa)
    a.mask(pa)
    ev.send(2, pb)
    assert a.pending(pa) and a.upcalls == []
    ev.unmask(1, pa)
    assert a.upcalls == [0] and a.sel() == 1


def test_ipi_and_bind_vcpu_route_to_the_vcpu(world):
    ev, a, _, _, _ = world
    p = ev.bind_ipi(1, 1)
    ev.send(1, p)
    assert a.upcalls == [1] and a.sel(1) == 1
    pu = ev.alloc_unbound(1, DOMID_SELF, 0)
    ev.bind_vcpu(1, pu, 1)
    assert ev.status(1, DOMID_SELF, pu)[1] == 1
    assert err(ev.bind_vcpu, 1, p, 0) == EINVAL     # an IPI cannot move
    assert err(ev.bind_vcpu, 1, pu, 7) == ENOENT


def test_virq_rules(world):
    ev, a, _, _, _ = world
    p = ev.bind_virq(1, e.VIRQ_TIMER, 1)
    assert err(ev.bind_virq, 1, e.VIRQ_TIMER, 1) == EEXIST
    assert ev.bind_virq(1, e.VIRQ_TIMER, 0) != p    # per vCPU
    assert err(ev.bind_virq, 1, e.VIRQ_DOM_EXC, 1) == EINVAL   # global: vcpu 0 only
    assert err(ev.bind_virq, 1, e.NR_VIRQS, 0) == EINVAL
    assert err(ev.bind_virq, 1, e.VIRQ_DEBUG, 5) == ENOENT
    assert ev.send_virq(1, 1, e.VIRQ_TIMER) and a.upcalls == [1]
    assert not ev.send_virq(1, 1, e.VIRQ_DEBUG)
    assert err(ev.send, 1, p) == EINVAL               # cannot send on a VIRQ
    assert err(ev.bind_vcpu, 1, p, 0) == EINVAL       # a per-vCPU VIRQ cannot move
    g = ev.bind_virq(1, e.VIRQ_CONSOLE, 0)
    ev.bind_vcpu(1, g, 1)
    a.upcalls.clear()
    a.ack(1)
    assert ev.send_global_virq(1, e.VIRQ_CONSOLE) and a.upcalls == [1]
    ev.close(1, p)
    assert ev.bind_virq(1, e.VIRQ_TIMER, 1) == p      # freed, rebindable


def test_misuse_codes(world):
    ev, a, b, _, _ = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 2)
    assert err(ev.send, 1, 7) == EINVAL               # free port
    assert err(ev.send, 1, 0) == EINVAL               # reserved port
    assert err(ev.send, 1, 5000) == EINVAL            # beyond the table
    assert err(ev.close, 1, 9) == EINVAL
    assert err(ev.close, 1, 0) == EINVAL
    ev.send(1, pa)                                    # unbound: silently dropped
    assert not a.pending(pa)
    assert err(ev.bind_interdomain, 1, 2, 1) == EINVAL     # b has no such port
    assert err(ev.bind_interdomain, 1, 9, 1) == ESRCH
    pb = ev.bind_interdomain(2, 1, pa)
    assert err(ev.bind_interdomain, 2, 1, pa) == EINVAL    # bind twice
    pu = ev.alloc_unbound(1, DOMID_SELF, 3)                # for someone else
    assert err(ev.bind_interdomain, 2, 1, pu) == EINVAL
    assert err(ev.alloc_unbound, 1, 2, 1) == EPERM         # not privileged
    assert err(ev.status, 1, 2, pb) == EPERM
    assert err(ev.status, 1, 99, 1) == ESRCH
    assert err(ev.unmask, 1, 4096) == EINVAL
    ev.unmask(1, 30)                                  # a valid free port: 0, as Xen
    assert err(ev.reset, 1, 2) == EPERM
    assert ev.status(1, DOMID_SELF, 30)[0] == e.EVTCHNSTAT_closed


def test_close_makes_peer_unbound_and_clears_pending(world):
    ev, a, b, _, _ = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 2)
    pb = ev.bind_interdomain(2, 1, pa)
    ev.send(1, pa)
    assert b.pending(pb)
    ev.close(2, pb)
    assert not b.pending(pb)
    assert ev.status(1, DOMID_SELF, pa)[:3] == (e.EVTCHNSTAT_unbound, 0, 2)
    ev.send(1, pa)                                    # dropped now
    assert ev.bind_interdomain(2, 1, pa) == pb        # and bindable again


def test_port_limit_and_buckets(world):
    ev, a, _, _, _ = world
    ports = [ev.alloc_unbound(1, DOMID_SELF, 0) for _ in range(4095)]
    assert ports == list(range(1, 4096))
    assert err(ev.alloc_unbound, 1, DOMID_SELF, 0) == ENOSPC
    ev.close(1, 77)
    assert ev.alloc_unbound(1, DOMID_SELF, 0) == 77


def test_domain_removal_unbinds_peers(world):
    ev, a, b, _, _ = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 2)
    pb = ev.bind_interdomain(2, 1, pa)
    ev.remove_domain(1)
    assert ev.status(2, DOMID_SELF, pb)[:3] == (e.EVTCHNSTAT_unbound, 0, 1)
    assert err(ev.send, 1, pa) == ESRCH


def test_dom0_user_ports_mask_until_unmask(world):
    ev, a, _, dom0, delivered = world
    pa = ev.alloc_unbound(1, DOMID_SELF, 0)
    p0 = ev.bind_interdomain(0, 1, pa)
    assert delivered == [p0]                          # the conservative first event
    ev.send(1, pa)
    ev.send(1, pa)
    assert delivered == [p0]                          # masked: latched once
    ev.unmask(0, p0)
    assert delivered == [p0, p0]
    ev.unmask(0, p0)
    ev.send(1, pa)
    assert delivered == [p0, p0, p0]
    # privileged: may allocate in and query another domain
    q = ev.alloc_unbound(0, 1, 0)
    assert ev.status(0, 1, q)[0] == e.EVTCHNSTAT_unbound
    ev.reset(0, 1, target_paused=True)
    assert ev.status(0, 1, pa)[0] == e.EVTCHNSTAT_closed
    assert ev.status(0, DOMID_SELF, p0)[:3] == (e.EVTCHNSTAT_unbound, 0, 1)
    assert err(ev.reset, 0, 1, target_paused=False) == EINVAL


def test_dom0_counting_consumer_is_never_masked():
    ev = EventChannels()
    seen = []

    def count(port):
        seen.append(port)
        return False                                  # an eventfd: counted, not queued
    ev.add_domain(EvtchnDomain(0, 1, UserPorts(count), privileged=True))
    a = Guest(ev, 1)
    pa = ev.alloc_unbound(1, DOMID_SELF, 0)
    p0 = ev.bind_interdomain(0, 1, pa)
    ev.send(1, pa)
    ev.send(1, pa)
    assert seen == [p0, p0, p0] and a.upcalls == []


class GuardedBits(Bits):
    """Bits that insist every write happens inside the TwoLevel guard (the
    emu engine's EmuMachine.paused: issue 9), and callbacks outside it."""

    def __init__(self):
        super().__init__()
        self.inside = False
        self.writes = 0

    def _put(self, off, v):
        assert self.inside, "bitmap written outside the guard"
        self.writes += 1
        super()._put(off, v)

    def set_byte(self, off, v):
        assert self.inside, "vcpu_info written outside the guard"
        return super().set_byte(off, v)


def test_two_level_writes_only_inside_its_guard():
    import contextlib
    bits = GuardedBits()

    @contextlib.contextmanager
    def guard():
        bits.inside = True
        try:
            yield
        finally:
            bits.inside = False
    upcalls = []

    def upcall(vcpu):
        assert not bits.inside       # kicks and vectors: never under the CPU lock
        upcalls.append(vcpu)
    two = TwoLevel(bits, 0, lambda v: v * si.VCPU_INFO_SIZE, upcall, lambda p: None, guard)
    mask = si.SHARED_INFO_EVTCHN_MASK
    with guard():
        bits.test_and_set_bit(mask, 5)
    two.set_pending(1, 5)            # masked: pending only
    assert upcalls == []
    two.unmask(1, 5)                 # unmask of a pending port: sel, upcall
    assert upcalls == [1]
    two.clear_pending(5)
    two.set_pending(0, 7)
    assert upcalls == [1, 0] and bits.writes >= 5
