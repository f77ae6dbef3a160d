"""set_timer_op: the vCPU's singleshot timer (absolute Xen system time, ns)."""
from __future__ import annotations

from ..time import system_time_ns

# Xen's guard against wrapped deadlines: a negative one, or one more than
# 2^50 ns (about 13 days) ahead, fires in 100 ms instead.
HUGE_TIMEOUT_NS = 1 << 50
HUGE_TIMEOUT_FALLBACK_NS = 100_000_000


def do_set_timer_op(cur, timeout, *_):
    with cur.domain.lock:
        cur.timer_pending = False
    if timeout == 0:
        cur.timer.stop()
        return 0
    now = system_time_ns()
    if timeout & (1 << 63) or timeout - now >= HUGE_TIMEOUT_NS:
        cur.domain.log_once("huge timeout", f"huge timeout set: {timeout:#x}")
        timeout = now + HUGE_TIMEOUT_FALLBACK_NS
    cur.timer.set(timeout)   # a deadline already past fires at once
    return 0
