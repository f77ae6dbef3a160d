"""sched_op: yield, block, shutdown, poll, remote_shutdown, shutdown_code."""
from __future__ import annotations

import os
import struct

from ..abi import sched as s
from ..abi import shared_info as si
from ..abi import xen as x
from ..time import system_time_ns
from .call import s32


def event_pending(domain, port: int) -> bool:
    """Is `port` pending in the 2-level bitmap of the domain's shared info?"""
    if domain.shared_info_gfn is None:
        return False
    word = domain.memory.read_u64((domain.shared_info_gfn << 12)
                                  + si.SHARED_INFO_EVTCHN_PENDING + 8 * (port // 64))
    return bool(word >> (port % 64) & 1)


def _block(cur) -> int:
    v = cur
    # SCHEDOP_block re-enables event delivery, then blocks unless one is pending.
    v.set_vcpu_info_byte(si.VCPU_INFO_UPCALL_MASK, 0)
    if not v.vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING):
        v.block(wake_check=lambda: v.vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING) != 0)
    v.update_time()
    return 0


def _poll(cur, arg) -> int:
    v, d = cur, cur.domain
    ports_gva, nr_ports, timeout = s.SCHED_POLL.unpack(cur.copy_from(arg, s.SCHED_POLL.size))
    if nr_ports > s.SCHED_POLL_MAX_PORTS:
        return -x.EINVAL
    if v.vcpu_info_byte(si.VCPU_INFO_UPCALL_PENDING) and not v.vcpu_info_byte(si.VCPU_INFO_UPCALL_MASK):
        return 0   # an event would be delivered now (Xen's local_events_need_delivery)
    raw = cur.copy_from(ports_gva, 4 * nr_ports) if nr_ports else b""
    ports = list(struct.unpack(f"<{nr_ports}I", raw))
    for port in ports:
        if port >= si.EVTCHN_2L_NR_CHANNELS:
            return -x.EINVAL
        if event_pending(d, port):
            return 0
    v.poll_ports = ports
    try:
        v.block(deadline_ns=timeout or None,
                wake_check=lambda: any(event_pending(d, p) for p in ports))
    finally:
        v.poll_ports = None
    v.update_time()
    return 0


def _reason(cur, arg) -> int:
    (reason,) = s.SCHED_SHUTDOWN.unpack(cur.copy_from(arg, s.SCHED_SHUTDOWN.size))
    return reason & 0xFF   # Xen keeps the reason as a u8


def do_sched_op(cur, cmd, arg, *_):
    cmd = s32(cmd)
    d = cur.domain
    if cmd == s.SCHEDOP_yield:
        os.sched_yield()
        return 0
    if cmd == s.SCHEDOP_block:
        return _block(cur)
    if cmd == s.SCHEDOP_shutdown:
        reason = _reason(cur, arg)
        d.shutdown(reason)
        cur.engine.request_stop()
        return 0
    if cmd == s.SCHEDOP_shutdown_code:
        reason = _reason(cur, arg)
        with d.lock:
            d.shutdown_code = reason
        return 0
    if cmd == s.SCHEDOP_poll:
        return _poll(cur, arg)
    if cmd == s.SCHEDOP_remote_shutdown:
        domid, reason = s.SCHED_REMOTE_SHUTDOWN.unpack(
            cur.copy_from(arg, s.SCHED_REMOTE_SHUTDOWN.size))
        target = cur.core.domains.get(domid)
        if target is None:
            return -x.ESRCH
        if not d.privileged:
            return -x.EPERM
        target.shutdown(reason & 0xFF)
        return 0
    if cmd == s.SCHEDOP_watchdog:
        wd_id, timeout = s.SCHED_WATCHDOG.unpack(cur.copy_from(arg, s.SCHED_WATCHDOG.size))
        return _watchdog(d, wd_id, timeout)
    return cur.unknown("sched_op", cmd)


def _watchdog(d, wd_id: int, timeout_s: int) -> int:
    """Id 0 claims a free watchdog (its id is the result); a known id is
    re-armed, or released with timeout 0. Expiry shuts the domain down with
    SHUTDOWN_watchdog."""
    now = system_time_ns()
    with d.lock:
        if wd_id == 0:
            for i, t in enumerate(d.watchdogs):
                if t is None:
                    t = d.watchdogs[i] = d.core.timers.timer(
                        lambda i=i: d.watchdog_fired(i + 1))
                    t.set(now + timeout_s * 1_000_000_000)
                    return i + 1
            return -x.ENOSPC
        if not 1 <= wd_id <= s.NR_DOMAIN_WATCHDOG_TIMERS or d.watchdogs[wd_id - 1] is None:
            return -x.EINVAL
        t = d.watchdogs[wd_id - 1]
        if timeout_s == 0:
            t.stop()
            d.watchdogs[wd_id - 1] = None
        else:
            t.set(now + timeout_s * 1_000_000_000)
        return 0
