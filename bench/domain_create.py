"""`xl create` -> the guest's first console byte, and whether creating gets
slower as domains accumulate (LightVM's finding for xl + xenstore).

    python bench/domain_create.py [-n 100]

In a private run directory (services started before timing): each create
runs the real `xl create` CLI on examples/pv-shutdown.cfg (a guest that
reads its name over the store ring, sets a watch, prints on the PV console
ring, then sleeps), and the clock stops when xenconsoled has written the
first byte of that domain's console log. All N domains are kept running.

Reference measured in the same run: `xl create -n` on the same config (the
same Python start-up and config parsing, no domain), so the table shows
what the domain itself costs. LightVM (SOSP'17) reports 2.3 ms boots with
its own toolstack (quoted, not measured here).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFG = os.path.join(ROOT, "examples", "pv-shutdown.cfg")
LIGHTVM_MS = 2.3
WAIT_S = 120


def xl(env, *args, check=True):
    p = subprocess.run([sys.executable, "-m", "toolstack.xl", *args], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=WAIT_S)
    if check and p.returncode:
        sys.exit(f"xl {' '.join(args)}: {p.stderr.strip()}")
    return p


def create_to_first_byte(env, rdir, name) -> tuple[float, float]:
    """(seconds until xl create returned, seconds until the first console byte)."""
    log = os.path.join(rdir, "console", f"guest-{name}.log")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "create", "-q", CFG,
                             f'name="{name}"'], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    first = None
    deadline = time.monotonic() + WAIT_S
    while first is None:
        try:
            if os.path.getsize(log) > 0:
                first = time.perf_counter() - t0
        except OSError:
            pass
        if first is None:
            if time.monotonic() > deadline:
                proc.kill()
                sys.exit(f"{name}: no console output in {WAIT_S} s")
            time.sleep(0.0005)
    _, err = proc.communicate(timeout=WAIT_S)
    if proc.returncode:
        sys.exit(f"xl create {name}: {err.strip()}")
    return time.perf_counter() - t0, first


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=100, help="domains to create and keep (100)")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(ROOT, "guests", "build", "pv-shutdown.elf")):
        sys.exit("guests/build/pv-shutdown.elf missing: run make -C guests")
    rdir = tempfile.mkdtemp(prefix="pyxen-bench-")
    env = dict(os.environ, XEN_RUN_DIR=rdir,
               XENSTORED_PATH=os.path.join(rdir, "xenstored", "socket"))
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = ROOT
    try:
        subprocess.run([sys.executable, "-m", "dom0.xencommons", "start"], env=env, cwd=ROOT,
                       check=True, capture_output=True, timeout=WAIT_S)
        dry = []
        rows = []
        for i in range(1, args.n + 1):
            t = time.perf_counter()
            xl(env, "create", "-n", "-q", CFG, f'name="dry{i}"')
            dry.append(time.perf_counter() - t)
            rows.append(create_to_first_byte(env, rdir, f"b{i}"))
        running = len(xl(env, "list").stdout.splitlines()) - 2
        pick = [k for k in (1, 10, 100, args.n) if k <= args.n]
        pick = sorted(set(pick))
        print(f"xl create -> first console byte, {args.n} domains kept running "
              f"({running} listed at the end)")
        print(f"{'create #':>9} {'xl create (ms)':>15} {'first byte (ms)':>16} "
              f"{'ref: xl create -n (ms)':>23} {'ratio':>7}")
        for k in pick:
            c, f = rows[k - 1]
            print(f"{k:>9} {c * 1e3:>15.1f} {f * 1e3:>16.1f} {dry[k - 1] * 1e3:>23.1f} "
                  f"{f / dry[k - 1]:>7.2f}")
        med_first = statistics.median(f for _, f in rows)
        print(f"{'median':>9} {statistics.median(c for c, _ in rows) * 1e3:>15.1f} "
              f"{med_first * 1e3:>16.1f} {statistics.median(dry) * 1e3:>23.1f} "
              f"{med_first / statistics.median(dry):>7.2f}")
        first_1, first_n = rows[0][1], rows[-1][1]
        # Single samples are noisy on 2 cores: compare the first and last tenth too.
        tenth = max(1, args.n // 10)
        early = statistics.median(f for _, f in rows[:tenth])
        late = statistics.median(f for _, f in rows[-tenth:])
        print(f"flatness: create #{args.n} / #1 = {first_n / first_1:.2f}; "
              f"median of the last {tenth} / first {tenth} = {late / early:.2f} (goal <= 1.2)")
        print(f"anchor: LightVM 2.3 ms per boot (quoted); ours {med_first * 1e3:.1f} ms "
              f"= {med_first * 1e3 / LIGHTVM_MS:.0f}x")
    finally:
        try:
            with open(os.path.join(rdir, "xencommons.pgid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        for name in os.listdir(rdir):
            if name.startswith("xl-monitor-"):
                try:
                    with open(os.path.join(rdir, name)) as f:
                        os.kill(int(f.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        shutil.rmtree(rdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
