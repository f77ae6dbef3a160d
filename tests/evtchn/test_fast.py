"""The event-channel fast path (xen_core/evtchn_fast.py, accel/evtchn_fast.c):
dom0's port state in C behaves as the Python one, the cache is filled only
by a send the Python engine answered and emptied whenever either end
changes, and every misuse still gets the slow path's errno."""
import os

import pytest
from hypothesis import given, settings, strategies as st

from xen_core import evtchn_fast
from xen_core.abi import event_channel as e
from xen_core.abi import xen as x
from xen_core.evtchn import PortFlags

pytestmark = pytest.mark.skipif(not evtchn_fast.available(),
                                reason="xen_core.accel._emu_c not built (make venv)")

PAGE = 4096
BUF = 0x8000


def test_c_reads_the_handle_records_privif_defines():
    from xen_core.abi import privif
    from xen_core.evtchn_fast import lib
    assert (lib.EVF_CMD_UNMASK, lib.EVF_CMD_NOTIFY) == \
        (privif.EVTCHN_CMD_UNMASK, privif.EVTCHN_CMD_NOTIFY)
    assert privif.EVTCHN_CMD.size == 8      # two u32, as evf_serve parses them


def _apply(flags, ops):
    out = []
    for op, port in ops:
        if op == "mark":
            out.append(flags.mark(port))
        elif op == "unmask":
            out.append(flags.unmask(port))
        elif op == "unmark":
            flags.unmark(port)
        else:
            flags.clear(port)
        out.append((flags.masked(port), flags.latched(port)))
    return out


@settings(deadline=None)   # no timing limits in tests (shared, busy cores)
@given(st.lists(st.tuples(st.sampled_from(["mark", "unmask", "unmark", "clear"]),
                          st.sampled_from([1, 2, 4095])), max_size=40))
def test_dom0_state_in_c_is_the_python_one(ops):
    assert _apply(evtchn_fast.Dom0PortState(), ops) == _apply(PortFlags(), ops)


def test_dom0_state_device_semantics():
    s = evtchn_fast.Dom0PortState()
    assert s.mark(5) and s.masked(5) and not s.latched(5)
    assert not s.mark(5) and s.latched(5)          # came while masked: latched
    assert s.unmask(5) and not s.masked(5)         # delivered again by the caller
    assert not s.unmask(5)                         # not masked: nothing
    assert not s.mark(4096) and not s.masked(4096)  # beyond the 2-level limit: ignored


def test_cached_send_writes_the_peer_port_once_until_unmask():
    dom0 = evtchn_fast.Dom0PortState()
    t = evtchn_fast.FastPorts(dom0)
    b, a = os.pipe()                               # a handle's report pipe
    os.set_blocking(b, False)
    try:
        assert not t.send(3)                       # not cached: the slow path's
        t.cache(3, a, 7)
        assert t.send(3) and os.read(b, 16) == (7).to_bytes(4, "little")
        assert t.send(3) and t.fast_sends == 2
        with pytest.raises(BlockingIOError):       # masked: latched, not written
            os.read(b, 16)
        assert dom0.latched(7) and dom0.unmask(7)
        t.uncache(3)
        assert not t.send(3) and not t.cached(3)
        t.cache(3, a, 7)
        t.uncache_fd(a)
        assert not t.cached(3)
        assert not t.send(1 << 20) and not t.send(4096)
    finally:
        os.close(a)
        os.close(b)


def test_full_report_pipe_loses_the_event_never_blocks():
    dom0 = evtchn_fast.Dom0PortState()
    t = evtchn_fast.FastPorts(dom0)
    b, a = os.pipe()
    try:
        os.set_blocking(a, False)                  # as a handle's writer is
        while True:                                # fill the pipe
            try:
                os.write(a, bytes(4096))
            except BlockingIOError:
                break
        t.cache(3, a, 7)
        assert t.send(3)                           # returns at once
        assert dom0.lost >= 1
    finally:
        os.close(a)
        os.close(b)


# -- against a real core (emu engine, the guest's vCPU not started) -------------

@pytest.fixture
def world():
    from tests.core.conftest import engine_or_skip
    from xen_core import events
    from xen_core.dom0_ops import EvtchnHandle
    from xen_core.hypervisor import Hypervisor
    from xen_core.memory import CR0_PE, PagingState
    core = Hypervisor(engine_or_skip("emu"))
    d = core.create_domain(max_vcpus=1, max_memory=64 * PAGE)
    d.memory.populate(range(64))
    d.vcpus[0].paging_state = lambda: PagingState(cr0=CR0_PE, cr3=0, cr4=0, efer=0)
    ec = events.of(core)
    h = EvtchnHandle(core, 1)
    os.set_blocking(h.peer_fds[0], False)   # the process's report end
    yield core, d, ec, h
    h.close()
    core.close()


def test_ipi_send_drops_the_target_vcpus_translations(world):
    """Linux syncs CPUs with an IPI after each step of rewriting kernel text;
    on emu every vCPU translates code apart, so an IPI to another vCPU makes
    it drop its translations first (emu_flush_code), an IPI to itself not."""
    from xen_core.hypercalls import dispatch
    from xen_core.memory import CR0_PE, PagingState
    core, _, ec, _ = world
    d = core.create_domain(max_vcpus=2, max_memory=64 * PAGE)
    d.memory.populate(range(64))
    v0, v1 = d.vcpus[0], d.ensure_vcpu(1)
    v0.paging_state = lambda: PagingState(cr0=CR0_PE, cr3=0, cr4=0, efer=0)
    flushed = []
    for v in (v0, v1):
        real = v.engine.flush_code
        v.engine.flush_code = lambda v=v, real=real: (flushed.append(v.id), real())

    def op(cmd, body):
        d.memory.write_phys(BUF, body)
        return dispatch(v0, x.HYPERVISOR_event_channel_op, (cmd, BUF))
    ports = []
    for target in (1, 0):
        assert op(e.EVTCHNOP_bind_ipi, e.BIND_IPI.pack(target, 0)) == 0
        ports.append(e.BIND_IPI.unpack(d.memory.read_phys(BUF, e.BIND_IPI.size))[1])
    assert op(e.EVTCHNOP_send, e.PORT.pack(ports[0])) == 0
    assert flushed == [1] and ec.evtchn.is_pending(d.domid, ports[0])
    assert op(e.EVTCHNOP_send, e.PORT.pack(ports[1])) == 0
    assert flushed == [1] and ec.evtchn.is_pending(d.domid, ports[1])


def guest_op(d, cmd, body: bytes):
    from xen_core.hypercalls import dispatch
    d.memory.write_phys(BUF, body)
    return dispatch(d.vcpus[0], x.HYPERVISOR_event_channel_op, (cmd, BUF))


def guest_send(d, port):
    return guest_op(d, e.EVTCHNOP_send, e.PORT.pack(port))


def connect(d, ec, h, eventfd=False):
    """A guest port unbound for dom0, bound by the handle: (guest port, dom0 port)."""
    assert guest_op(d, e.EVTCHNOP_alloc_unbound, e.ALLOC_UNBOUND.pack(x.DOMID_SELF, 0, 0)) == 0
    gport = e.ALLOC_UNBOUND.unpack(d.memory.read_phys(BUF, e.ALLOC_UNBOUND.size))[2]
    lp, efd = h.bind(lambda o: ec.evtchn.bind_interdomain(0, d.domid, gport, owner=o), eventfd)
    if efd is None:
        assert read_ports(h) == [lp]               # Xen marks a fresh binding pending
        ec.evtchn.unmask(0, lp)
    return gport, lp, efd


def read_ports(h):
    try:
        data = os.read(h.peer_fds[0], 4096)
    except BlockingIOError:
        return []
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def test_first_send_is_answered_in_python_then_cached(world):
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    fast = ec.evtchn.domains[d.domid].fast
    assert not fast.cached(gport)
    assert guest_send(d, gport) == 0 and read_ports(h) == [lp]
    assert fast.cached(gport)
    assert fast.send(gport) and read_ports(h) == []          # masked: latched
    ec.evtchn.unmask(0, lp)                                  # the device's unmask
    assert read_ports(h) == [lp]                             # ... fires it again
    ec.evtchn.unmask(0, lp)
    assert fast.send(gport) and read_ports(h) == [lp]


def test_dom0_unbind_empties_the_cache_and_sends_are_dropped(world):
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    fast = ec.evtchn.domains[d.domid].fast
    assert guest_send(d, gport) == 0 and fast.cached(gport)
    read_ports(h)
    h.unbind(lp)
    assert not fast.cached(gport) and not fast.send(gport)
    assert guest_send(d, gport) == 0                         # unbound again: Xen drops it
    assert read_ports(h) == []


def test_send_after_guest_close_and_on_foreign_ports_is_einval(world):
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    fast = ec.evtchn.domains[d.domid].fast
    assert guest_send(d, gport) == 0 and fast.cached(gport)
    assert guest_op(d, e.EVTCHNOP_close, e.PORT.pack(gport)) == 0
    assert not fast.send(gport)
    assert guest_send(d, gport) == -x.EINVAL                 # closed: as without the cache
    assert guest_send(d, 4000) == -x.EINVAL                  # never bound (past the bucket)
    assert guest_send(d, 5) == -x.EINVAL                     # free port in a valid bucket
    assert guest_send(d, 1 << 20) == -x.EINVAL


def test_eventfd_ports_are_never_cached(world):
    core, d, ec, h = world
    gport, lp, efd = connect(d, ec, h, eventfd=True)
    fast = ec.evtchn.domains[d.domid].fast
    os.eventfd_read(efd)                                     # the binding's own event
    for _ in range(3):
        assert guest_send(d, gport) == 0
    assert not fast.cached(gport) and os.eventfd_read(efd) == 3


def test_handle_close_and_domain_destroy_empty_the_cache(world):
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    fast = ec.evtchn.domains[d.domid].fast
    assert guest_send(d, gport) == 0 and fast.cached(gport)
    h.close()
    assert not fast.cached(gport)
    assert guest_send(d, gport) == 0                         # unbound again
    from xen_core.dom0_ops import EvtchnHandle
    h2 = EvtchnHandle(core, 2)
    os.set_blocking(h2.peer_fds[0], False)   # the process's report end
    try:
        gport2, lp2, _ = connect(d, ec, h2)
        assert guest_send(d, gport2) == 0 and fast.cached(gport2)
        core.destroy_domain(d.domid)
        assert not fast.cached(gport2)
        assert d.domid not in ec.evtchn.domains
    finally:
        h2.close()


@settings(deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["send", "mask", "unmask", "ack"]),
                          st.sampled_from([1, 63, 64, 130, 4095])), max_size=30),
       st.booleans())
def test_2l_set_pending_in_one_call_is_the_four_steps(ops, has_info):
    """TwoLevel over SharedBits with and without set_pending_2l: same bits,
    same upcalls, same pollers."""
    from xen_core.abi import shared_info as si
    from xen_core.evtchn import TwoLevel
    from tests.evtchn.test_engine import Bits

    class Combined(Bits):
        def set_pending_2l(self, pending, mask, info, port):
            base = int(evtchn_fast.ffi.cast("uintptr_t", evtchn_fast.ffi.from_buffer(self.mem)))
            sel = 0 if info is None else base + info + si.VCPU_INFO_PENDING_SEL
            up = 0 if info is None else base + info + si.VCPU_INFO_UPCALL_PENDING
            return evtchn_fast.set_pending_2l(base + pending, base + mask, sel, up, port)

    results = []
    for bits in (Bits(), Combined()):
        calls = []
        two = TwoLevel(bits, 0, lambda v: 0 if has_info else None,
                       lambda v: calls.append(("upcall", v)), lambda p: calls.append(("poll", p)))
        for op, port in ops:
            word, bit = 8 * (port // 64), port % 64
            if op == "send":
                two.set_pending(0, port)
            elif op == "mask":
                bits.test_and_set_bit(si.SHARED_INFO_EVTCHN_MASK + word, bit)
            elif op == "unmask":
                two.unmask(0, port)
            else:   # the guest's upcall handler: clear upcall_pending, sel, the bit
                bits.set_byte(si.VCPU_INFO_UPCALL_PENDING, 0)
                bits.mem[si.VCPU_INFO_PENDING_SEL:si.VCPU_INFO_PENDING_SEL + 8] = bytes(8)
                bits.test_and_clear_bit(si.SHARED_INFO_EVTCHN_PENDING + word, bit)
        results.append((bytes(bits.mem), calls))
    assert results[0] == results[1]


# -- dom0 -> guest: a handle's commands served in C -------------------------------

def command(h, cmd, port):
    from xen_core.abi.privif import EVTCHN_CMD
    os.write(h.peer_fds[1], EVTCHN_CMD.pack(cmd, port))


def wait_until(cond, what):
    import time
    for _ in range(100000):     # bounded: a lost event must fail, not hang
        if cond():
            return
        time.sleep(0.001)
    raise AssertionError(what)


def guest_pending(d, port):
    from xen_core.abi import shared_info as si
    from xen_core.memory import SHARED_INFO_XENHEAP_INDEX
    base = d.memory.xenheap_frame(SHARED_INFO_XENHEAP_INDEX) << 12
    word = int.from_bytes(d.memory.mm[base + si.SHARED_INFO_EVTCHN_PENDING + 8 * (port // 64):][:8],
                          "little")
    return bool(word >> (port % 64) & 1)


def guest_ack(d, port):
    """What the guest's upcall handler does: upcall_pending, sel, the bit."""
    from xen_core.abi import shared_info as si
    from xen_core.memory import SHARED_INFO_XENHEAP_INDEX
    base = d.memory.xenheap_frame(SHARED_INFO_XENHEAP_INDEX) << 12
    mm = d.memory.mm
    mm[base + si.VCPU_INFO_UPCALL_PENDING] = 0
    mm[base + si.VCPU_INFO_PENDING_SEL:base + si.VCPU_INFO_PENDING_SEL + 8] = bytes(8)
    off = base + si.SHARED_INFO_EVTCHN_PENDING + 8 * (port // 64)
    word = int.from_bytes(mm[off:off + 8], "little") & ~(1 << (port % 64))
    mm[off:off + 8] = word.to_bytes(8, "little")


def test_notify_is_cached_after_python_answers_it_and_kicks_a_vcpu_in_python(world):
    from xen_core.abi.privif import EVTCHN_CMD_NOTIFY, EVTCHN_CMD_UNMASK
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    guest_ack(d, gport)
    state = ec.dom0_state
    before = state.fast_commands
    command(h, EVTCHN_CMD_NOTIFY, lp)                 # first: Python, which caches it
    wait_until(lambda: guest_pending(d, gport), "the first notify")
    # Python caches the channel after it has delivered: wait for that too.
    wait_until(lambda: state.notify_cached(lp) and ec.evtchn.domains[d.domid].fast.is_ready(0),
               "caching")
    guest_ack(d, gport)
    v = d.vcpus[0]
    with d.lock:
        v.kicked = False
    command(h, EVTCHN_CMD_NOTIFY, lp)                 # then C; this vCPU is not in
    wait_until(lambda: guest_pending(d, gport) and v.kicked, "the cached notify")
    assert state.fast_commands > before               # guest code: Python kicks it
    n = state.fast_commands
    command(h, EVTCHN_CMD_UNMASK, lp)                 # unmask of a held port: C too
    wait_until(lambda: state.fast_commands > n, "the unmask")


def test_notify_misuse_is_ignored_as_by_the_device(world):
    from xen_core.abi.privif import EVTCHN_CMD_NOTIFY
    from xen_core.dom0_ops import EvtchnHandle
    core, d, ec, h = world
    other = EvtchnHandle(core, 2)
    os.set_blocking(other.peer_fds[0], False)   # the process's report end
    try:
        gport, lp, _ = connect(d, ec, h)
        # Each handle's records are served in order: a good notify after the
        # bad ones, once seen, means they were all answered.
        sentinels = [(hh, *connect(d, ec, hh)[:2]) for hh in (h, other)]
        command(h, EVTCHN_CMD_NOTIFY, lp)
        wait_until(lambda: ec.dom0_state.notify_cached(lp), "caching")
        guest_ack(d, gport)
        command(other, EVTCHN_CMD_NOTIFY, lp)         # a port it does not hold: ignored
        command(other, EVTCHN_CMD_NOTIFY, 4000)
        command(h, EVTCHN_CMD_NOTIFY, 4000)
        command(h, 77, lp)                            # an unknown command: ignored
        assert guest_op(d, e.EVTCHNOP_close, e.PORT.pack(gport)) == 0
        assert not ec.dom0_state.notify_cached(lp)    # the guest end changed
        command(h, EVTCHN_CMD_NOTIFY, lp)             # unbound now: dropped, as Xen does
        h.unbind(lp)
        command(h, EVTCHN_CMD_NOTIFY, lp)             # no longer held
        for hh, g2, l2 in sentinels:
            guest_ack(d, g2)
            command(hh, EVTCHN_CMD_NOTIFY, l2)
            wait_until(lambda: guest_pending(d, g2), "the sentinel notify")
        assert not guest_pending(d, gport)
    finally:
        other.close()


def test_guest_changes_flush_c_delivery(world):
    from xen_core.abi import hvm as hv
    from xen_core.abi.privif import EVTCHN_CMD_NOTIFY
    core, d, ec, h = world
    gport, lp, _ = connect(d, ec, h)
    command(h, EVTCHN_CMD_NOTIFY, lp)
    fast = ec.evtchn.domains[d.domid].fast
    wait_until(lambda: fast.is_ready(0), "caching")
    body = hv.HVM_PARAM.pack(x.DOMID_SELF, hv.HVM_PARAM_CALLBACK_IRQ,
                         (hv.HVM_PARAM_CALLBACK_TYPE_VECTOR << hv.HVM_PARAM_CALLBACK_IRQ_TYPE_SHIFT)
                         | 0xF3)
    from xen_core.hypercalls import dispatch
    d.memory.write_phys(BUF, body)
    assert dispatch(d.vcpus[0], x.HYPERVISOR_hvm_op, (hv.HVMOP_set_param, BUF)) == 0
    assert not fast.is_ready(0)                       # refilled by the next slow notify
    guest_ack(d, gport)
    command(h, EVTCHN_CMD_NOTIFY, lp)
    wait_until(lambda: fast.is_ready(0) and fast.cdata.vector == 0xF3, "refilled")
    core.destroy_domain(d.domid)                      # nothing of it is used again
    assert not fast.cdata.live and not ec.dom0_state.notify_cached(lp)


def test_dom0_to_dom0_notify_cached_after_python(world):
    from xen_core.abi.privif import EVTCHN_CMD_NOTIFY
    from xen_core.dom0_ops import EvtchnHandle
    core, d, ec, a = world
    b = EvtchnHandle(core, 2)
    os.set_blocking(b.peer_fds[0], False)   # the process's report end
    try:
        pa, _ = a.bind(lambda o: ec.evtchn.alloc_unbound(0, x.DOMID_SELF, 0, owner=o), False)
        pb, _ = b.bind(lambda o: ec.evtchn.bind_interdomain(0, 0, pa, owner=o), False)
        assert read_ports(b) == [pb]
        ec.evtchn.unmask(0, pb)
        command(a, EVTCHN_CMD_NOTIFY, pa)                 # Python, which caches it
        wait_until(lambda: ec.dom0_state.masked(pb), "delivery to b")
        assert read_ports(b) == [pb] and ec.dom0_state.notify_cached(pa)
        n = ec.dom0_state.fast_commands
        command(a, EVTCHN_CMD_NOTIFY, pa)                 # masked: latched, in C
        wait_until(lambda: ec.dom0_state.fast_commands > n, "the cached notify")
        assert read_ports(b) == [] and ec.dom0_state.latched(pb)
        ec.evtchn.unmask(0, pb)                           # b's unmask fires it again
        assert read_ports(b) == [pb]
        b.unbind(pb)                                      # b's end changed
        assert not ec.dom0_state.notify_cached(pa)
        command(a, EVTCHN_CMD_NOTIFY, pa)                 # unbound now: dropped
        pb2, _ = b.bind(lambda o: ec.evtchn.alloc_unbound(0, x.DOMID_SELF, 0, owner=o), False)
        assert pb2 == pb and not ec.dom0_state.masked(pb)
        gport, lp, _ = connect(d, ec, a)                  # a sentinel on a's stream
        guest_ack(d, gport)
        command(a, EVTCHN_CMD_NOTIFY, lp)
        wait_until(lambda: guest_pending(d, gport), "the sentinel")
        assert read_ports(b) == []                        # nothing reached the reused port
    finally:
        b.close()


def test_guest_to_guest_send_in_c_and_its_misuse(world):
    core, d, ec, h = world
    from xen_core.memory import CR0_PE, PagingState
    d2 = core.create_domain(max_vcpus=1, max_memory=64 * PAGE)
    d2.memory.populate(range(64))
    d2.vcpus[0].paging_state = lambda: PagingState(cr0=CR0_PE, cr3=0, cr4=0, efer=0)
    assert guest_op(d2, e.EVTCHNOP_alloc_unbound, e.ALLOC_UNBOUND.pack(x.DOMID_SELF, d.domid, 0)) == 0
    p2 = e.ALLOC_UNBOUND.unpack(d2.memory.read_phys(BUF, e.ALLOC_UNBOUND.size))[2]
    assert guest_op(d, e.EVTCHNOP_bind_interdomain, e.BIND_INTERDOMAIN.pack(d2.domid, p2, 0)) == 0
    p1 = e.BIND_INTERDOMAIN.unpack(d.memory.read_phys(BUF, e.BIND_INTERDOMAIN.size))[2]
    fast = ec.evtchn.domains[d.domid].fast
    guest_ack(d2, p2)
    assert guest_send(d, p1) == 0 and guest_pending(d2, p2)   # Python, which caches it
    assert fast.guest_cached(p1)
    guest_ack(d2, p2)
    v = d2.vcpus[0]
    with d2.lock:
        v.kicked = False
    n = fast.fast_sends
    assert fast.send(p1)                                   # C; d2's vCPU is not in guest
    assert guest_pending(d2, p2) and v.kicked and fast.fast_sends == n + 1   # code: kicked
    assert guest_send(d2, 5) == -x.EINVAL                  # misuse stays Python's
    assert guest_op(d2, e.EVTCHNOP_close, e.PORT.pack(p2)) == 0
    assert not fast.guest_cached(p1) and not fast.send(p1)
    guest_ack(d2, p2)
    assert guest_send(d, p1) == 0 and not guest_pending(d2, p2)   # unbound: dropped
    assert guest_send(d2, p2) == -x.EINVAL                 # closed
    core.destroy_domain(d2.domid)
