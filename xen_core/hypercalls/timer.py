"""set_timer_op: the vCPU's singleshot timer (absolute Xen system time, ns)."""
from __future__ import annotations

from ..time import system_time_ns


def arm(v, timeout: int) -> None:
    """Arm v's singleshot timer; a time already past fires it at once, as
    Xen does, and so does a deadline absurdly far ahead (2^50 ns)."""
    now = system_time_ns()
    if timeout - now > 1 << 50:
        timeout = now
    v.timer.set(timeout)


def do_set_timer_op(cur, timeout, *_):
    v = cur
    with v.domain.lock:
        v.timer_pending = False
    if timeout == 0:
        v.timer.stop()
    elif timeout & (1 << 63):  # negative s_time_t
        v.timer.set(system_time_ns())
    else:
        arm(v, timeout)
    return 0
