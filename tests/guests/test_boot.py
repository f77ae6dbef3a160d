"""Boot the test guests on each engine with the builder's PvhImage and the
MiniXen stand-in (minixen.py): PVH entry, long mode, Xen detection, the
hypercall page, console, pvclock, poll timeout, exceptions and shutdown."""
import re

import pytest

from toolstack.builder.pvh import build_pvh
from xen_core.accel.base import RunResult

from .minixen import MiniXen

MiB = 1 << 20


def _accel(name):
    try:
        if name == "emu":
            from xen_core.accel.emu import EmuAccelerator as A
        else:
            from xen_core.accel.kvm import KvmAccelerator as A
    except ImportError as e:
        pytest.skip(f"{name} engine not built: {e}")
    accel = A()
    ok, why = accel.usable()
    if not ok:
        pytest.skip(f"{name} engine unusable here: {why}")
    return accel


@pytest.fixture(params=["emu", "kvm"])
def boot(request, built_guests):
    accel = _accel(request.param)
    made = []

    def _boot(name, cmdline="", memory=32 * MiB, stop_on=None):
        x = MiniXen(accel, memory)
        made.append(x)
        x.load(build_pvh(str(built_guests[name]), memory, cmdline))
        x.stop_on = stop_on
        result = x.run()
        return x, result, x.console.decode(errors="replace")

    yield _boot
    for x in made:
        x.close()


def test_hello(boot):
    x, result, out = boot("hello", cmdline="greeting=1")
    assert result is RunResult.STOPPED, out
    assert x.shutdown_reason == 0, out                         # poweroff
    assert "Hello from a PVH guest on Xen 4.17-minixen" in out
    assert 'cmdline "greeting=1", ram 32 MiB' in out
    slept = int(re.search(r"slept (\d+) us", out).group(1))
    assert slept >= 10000
    assert x.polls and x.polls[0][0] > 0                        # an absolute timeout
    assert out.endswith("hello: bye\n")


def test_badcall_all_pass(boot):
    x, result, out = boot("badcall")
    assert "FAIL" not in out, out
    assert re.search(r"badcall: (\d+) passed, 0 failed", out), out
    assert x.shutdown_reason == 0


def test_hypercall_loop_counts(boot):
    x, result, out = boot("hypercall-loop", cmdline="loops=500")
    assert "hypercall-loop: 500 calls" in out, out
    assert x.shutdown_reason == 0
    assert x.hypercalls >= 500


def test_crash_triple_faults(boot):
    x, result, out = boot("crash")
    assert result is RunResult.TRIPLE_FAULT, out
    assert x.shutdown_reason is None
    assert "executing ud2" in out and "still alive" not in out


def test_crash_pagefault_is_reported_by_the_guest_idt(boot):
    x, result, out = boot("crash", cmdline="mode=pagefault")
    assert re.search(r"exception 14 \(#PF\) .* cr2 100000000", out), out
    assert x.shutdown_reason == 3                               # crash


def test_spin_runs_until_stopped(boot):
    x, result, out = boot("spin", stop_on=b"spinning")
    assert result is RunResult.STOPPED
    assert out == "spinning\n"
    assert x.shutdown_reason is None
