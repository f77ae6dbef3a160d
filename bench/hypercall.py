"""Null hypercall round trips from inside a guest, per engine, next to that
engine's raw `out` trap answered in C with no Python (measured in this run).

The guest is `guests/build/hypercall-loop.elf`: `xen_version(XENVER_version)`
in a loop, timed by the guest itself with pvclock. Our figure includes the
whole path: hypercall-page stub -> engine exit -> Python ExitHandler ->
dispatch -> handler -> back. Best of a few runs (2 noisy cores).

    python bench/hypercall.py [--engines emu,kvm]
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from toolstack.builder.pvh import build_pvh  # noqa: E402
from xen_core.hypervisor import Hypervisor  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUEST = os.path.join(ROOT, "guests", "build", "hypercall-loop.elf")
REPEAT = 3
LOOPS = {"emu": 100_000, "kvm": 3_000}   # kvm_pvm emulates ring 0: keep it short
RAW_N = {"emu": 500_000, "kvm": 20_000}


def engine(name: str):
    if name == "emu":
        from xen_core.accel import emu as mod
        return mod.EmuAccelerator(), mod
    from xen_core.accel import kvm as mod
    return mod.KvmAccelerator(), mod


def guest_ns_per_call(accel, loops: int) -> float:
    """Boot hypercall-loop in an in-process core; the guest's own ns/call."""
    core = Hypervisor(accel)
    try:
        img = build_pvh(GUEST, 16 << 20, cmdline=f"loops={loops}")
        d = core.create_domain(max_memory=16 << 20)
        d.memory.populate(range(4096))
        for gpa, data in img.segments:
            d.memory.write_phys(gpa, data)
        d.set_boot_state(0, img.boot_state)
        done = threading.Event()
        core.subscribe(lambda ev: done.set())
        d.unpause()
        done.wait()
        out = bytes(d.console).decode(errors="replace")
        m = re.search(r"(\d+) ns, (\d+) ns per call", out)
        if d.shutdown_reason != 0 or not m:
            raise RuntimeError(f"hypercall-loop did not finish cleanly:\n{out}")
        return int(m.group(1)) / loops
    finally:
        core.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="emu,kvm")
    args = p.parse_args()
    if not os.path.exists(GUEST):
        print(f"{GUEST} missing: run make -C guests")
        return 1
    rows = []
    for name in args.engines.split(","):
        try:
            accel, mod = engine(name)
            ok, why = accel.usable()
        except Exception as e:  # not built
            ok, why = False, str(e)
        if not ok:
            rows.append((name, None, None, why))
            continue
        ours = min(guest_ns_per_call(accel, LOOPS[name]) for _ in range(REPEAT))
        raw = min(mod.raw_out_trap_ns(RAW_N[name]) for _ in range(REPEAT))
        rows.append((name, ours, raw, ""))

    print(f"{'engine':<6} {'guest null hypercall':>22} {'calls/s':>10} "
          f"{'raw out trap (C only)':>22} {'calls/s':>11} {'ratio':>7}")
    for name, ours, raw, why in rows:
        if ours is None:
            print(f"{name:<6} skipped: {why}")
            continue
        print(f"{name:<6} {ours / 1000:>19.2f} us {1e9 / ours:>10,.0f} "
              f"{raw / 1000:>19.3f} us {1e9 / raw:>11,.0f} {ours / raw:>6.1f}x")
    print("""
Goal: within 2x of the raw trap. Every call now crosses into Python (the cffi
callback, the ExitHandler, dispatch, the handler: about 1 us of Python each
on this machine). Getting within 2x means answering hot hypercalls without
Python: a C table in the engine's run loop for calls whose answer needs no
Python state (xen_version version/pagesize, the poll/yield fast paths,
evtchn send to a bound port) that reads the same domain state the Python
reference keeps (shared-info page, event-channel bitmaps in guest memory),
with Python staying the reference implementation and handling the rest.""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
