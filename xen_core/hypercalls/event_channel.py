"""event_channel_op (32) and its legacy multiplexed form (16).

Each sub-op reads its struct, calls the event-channel engine, and writes the
OUT fields back, as Xen's do_event_channel_op does.
"""
from __future__ import annotations

from .. import events
from ..abi import event_channel as e
from ..abi import xen as x
from .call import s32


def _ev(cur):
    return events.of(cur.core).evtchn


def _alloc_unbound(cur, raw):
    dom, remote_dom, _ = e.ALLOC_UNBOUND.unpack(raw)
    port = _ev(cur).alloc_unbound(cur.domain.domid, dom, remote_dom)
    return 0, e.ALLOC_UNBOUND.pack(dom, remote_dom, port)


def _bind_interdomain(cur, raw):
    remote_dom, remote_port, _ = e.BIND_INTERDOMAIN.unpack(raw)
    port = _ev(cur).bind_interdomain(cur.domain.domid, remote_dom, remote_port)
    return 0, e.BIND_INTERDOMAIN.pack(remote_dom, remote_port, port)


def _bind_virq(cur, raw):
    virq, vcpu, _ = e.BIND_VIRQ.unpack(raw)
    port = _ev(cur).bind_virq(cur.domain.domid, s32(virq), s32(vcpu))
    return 0, e.BIND_VIRQ.pack(virq, vcpu, port)


def _bind_ipi(cur, raw):
    vcpu, _ = e.BIND_IPI.unpack(raw)
    port = _ev(cur).bind_ipi(cur.domain.domid, s32(vcpu))
    return 0, e.BIND_IPI.pack(vcpu, port)


def _close(cur, raw):
    (port,) = e.PORT.unpack(raw)
    _ev(cur).close(cur.domain.domid, port)
    return 0, None


def _send_port(cur, port: int) -> None:
    ev = _ev(cur)
    target = ev.ipi_target(cur.domain.domid, port)
    if target is not None and target != cur.id:
        # Linux syncs the other CPUs with an IPI after each step of rewriting
        # kernel text; on an engine whose vCPUs translate code separately
        # (emu), the target must drop its translations before it takes it.
        v = cur.domain.vcpus[target] if target < len(cur.domain.vcpus) else None
        flush = getattr(v.engine, "flush_code", None) if v is not None else None
        if flush is not None:
            flush()
    ev.send(cur.domain.domid, port)


def _send(cur, raw):
    (port,) = e.PORT.unpack(raw)
    _send_port(cur, port)
    return 0, None


def _status(cur, raw):
    dom, port, _, _, _ = e.STATUS.unpack(raw)
    status, vcpu, a, b = _ev(cur).status(cur.domain.domid, dom, port)
    u = (a.to_bytes(2, "little") + bytes(2) + b.to_bytes(4, "little")
         if status in (e.EVTCHNSTAT_unbound, e.EVTCHNSTAT_interdomain)
         else a.to_bytes(4, "little") + bytes(4))
    return 0, e.STATUS.pack(dom, port, status, vcpu, u)


def _bind_vcpu(cur, raw):
    port, vcpu = e.BIND_VCPU.unpack(raw)
    _ev(cur).bind_vcpu(cur.domain.domid, port, vcpu)
    return 0, None


def _unmask(cur, raw):
    (port,) = e.PORT.unpack(raw)
    _ev(cur).unmask(cur.domain.domid, port)
    return 0, None


def _reset(cur, raw):
    (dom,) = e.RESET.unpack(raw)
    target = cur.core.domains.get(dom)
    paused = target is not None and target.pause_count > 0
    _ev(cur).reset(cur.domain.domid, dom, target_paused=paused)
    return 0, None


def _bind_pirq(cur, raw):
    # No physical IRQs are routed to PVH/HVM guests here (nr_pirqs = 0):
    # every pirq is out of range.
    return -x.EINVAL, None


# sub-op -> (struct size, handler); the handler returns (rc, bytes to write back)
OPS = {
    e.EVTCHNOP_alloc_unbound: (e.ALLOC_UNBOUND.size, _alloc_unbound),
    e.EVTCHNOP_bind_interdomain: (e.BIND_INTERDOMAIN.size, _bind_interdomain),
    e.EVTCHNOP_bind_virq: (e.BIND_VIRQ.size, _bind_virq),
    e.EVTCHNOP_bind_ipi: (e.BIND_IPI.size, _bind_ipi),
    e.EVTCHNOP_bind_pirq: (12, _bind_pirq),
    e.EVTCHNOP_close: (e.PORT.size, _close),
    e.EVTCHNOP_send: (e.PORT.size, _send),
    e.EVTCHNOP_status: (e.STATUS.size, _status),
    e.EVTCHNOP_bind_vcpu: (e.BIND_VCPU.size, _bind_vcpu),
    e.EVTCHNOP_unmask: (e.PORT.size, _unmask),
    e.EVTCHNOP_reset: (e.RESET.size, _reset),
}
# FIFO-based event channels are not offered: a guest falls back to 2-level.
NOT_OFFERED = (e.EVTCHNOP_init_control, e.EVTCHNOP_expand_array, e.EVTCHNOP_set_priority,
               e.EVTCHNOP_reset_cont)


def do_event_channel_op(cur, cmd, arg, *_):
    cmd = s32(cmd)
    if cmd == e.EVTCHNOP_send:   # the hot one
        (port,) = e.PORT.unpack(cur.copy_from(arg, 4))
        _send_port(cur, port)
        return 0
    if cmd in NOT_OFFERED:
        return -x.ENOSYS
    entry = OPS.get(cmd)
    if entry is None:
        return cur.unknown("event_channel_op", cmd)
    size, fn = entry
    rc, out = fn(cur, cur.copy_from(arg, size))
    if out is not None:
        cur.copy_to(arg, out)
    return rc


def do_event_channel_op_compat(cur, arg, *_):
    """Hypercall 16: `struct evtchn_op { uint32_t cmd; union u; }`. Xen 4.17
    keeps it for PV guests only (hypercall-defs.c); PVH/HVM get -ENOSYS."""
    if not getattr(cur.domain, "pv", False):
        return -x.ENOSYS
    raw = cur.copy_from(arg, e.COMPAT_SIZE)
    (cmd,) = e.COMPAT_HEADER.unpack_from(raw)
    cmd = s32(cmd)
    if cmd in NOT_OFFERED:
        return -x.ENOSYS
    entry = OPS.get(cmd)
    if entry is None:
        return cur.unknown("event_channel_op_compat", cmd)
    size, fn = entry
    rc, out = fn(cur, raw[4:4 + size])
    if out is not None:
        cur.copy_to(arg + 4, out)
    return rc
