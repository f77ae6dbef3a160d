"""Debian's kernel + the project's initramfs: domain create -> /init marker
as a PVH domU on our hypervisor (software CPU), next to the same kernel and
initramfs as an HVM guest under QEMU TCG, in the same run.

- ours: a running xen-core (--accel emu, started before timing, as
  xencommons would have it); timed from building the domain (bzImage
  payload, ACPI tables, memory populated and loaded, vCPU set, unpause)
  until PYXEN-INIT-OK is on console_io. Split into the domain build
  (create_pvh_domain) and unpause -> marker.
- reference: `qemu_argv()` + `DeviceModel.start()` with `-machine
  pc,accel=tcg` (SeaBIOS, direct kernel boot) until the same marker is in
  the serial log.

Like with like: both kernels boot `quiet`. The reference prints to ttyS0
with `console=ttyS0 quiet`, where /init's echo lands directly. Ours has no
serial port and no hvc console drained here, so the kernel log reaches
console_io through the Xen boot console (`earlyprintk=xen keep_bootcon`)
and /init copies its marker into the log through /dev/kmsg, at the default
message level 4 (warning): `quiet` alone (console_loglevel 4) would hide it,
so ours adds `loglevel=5` (warnings and worse reach the console).

The decompressed bzImage payload is cached (toolstack/builder/
payload_cache.py) in a fresh directory for this run: the first create is
cold (it decompresses), later ones are warm, as a repeated `xl create` of
the same kernel. The first pair is printed apart from the warm runs.
Runs alternate ours/reference; medians, ranges and all runs are printed,
with the ratio (below 1: ours is faster).

    python bench/linux_pvh_boot.py [--runs 4] [--pvh-cmdline "..."]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.hvm.helpers import QEMU, cfg  # noqa: E402
from tests.linux.helpers import LinuxPvh, linux_assets  # noqa: E402
from toolstack.builder.payload_cache import cache_dir  # noqa: E402
from toolstack.devicemodel import DeviceModel, qemu_argv  # noqa: E402

WAIT = 900
MARKER = rb"PYXEN-INIT-OK"
PVH_CMDLINE = "earlyprintk=xen keep_bootcon quiet loglevel=5"
HVM_CMDLINE = "console=ttyS0 quiet"


def pvh_once(assets, cmdline: str) -> dict | None:
    """{'total', 'build', 'boot', 'lines'} in seconds, or None without a marker."""
    g = LinuxPvh(assets, cmdline=cmdline)   # the core starts here, outside the timing
    try:
        g.start()                     # t_create: just before building the domain
        t_built = time.perf_counter()  # built and paused; the console thread unpauses
        m = g.wait_for(MARKER, WAIT)
        t_marker = time.perf_counter()
        if not m:
            return None
        return {"total": t_marker - g.t_create, "build": t_built - g.t_create,
                "boot": t_marker - t_built, "lines": bytes(g.sink.data[:m.end()]).count(b"\n")}
    finally:
        g.close()


def hvm_once(assets, run_dir) -> float | None:
    config = cfg(f"""
memory = 256
vga = "none"
kernel = "{assets['kernel']}"
ramdisk = "{assets['ramdisk']}"
cmdline = "{HVM_CMDLINE}"
""")
    spec = qemu_argv(config, domid=1, run_dir=run_dir, accel="tcg")
    t0 = time.perf_counter()
    dm = DeviceModel(spec, domid=1).start()
    rx = re.compile(MARKER)
    ok = False
    try:
        while time.perf_counter() < t0 + WAIT:
            try:
                with open(spec.serial_logs[0], "rb") as f:
                    if rx.search(f.read()):
                        ok = True
                        break
            except FileNotFoundError:
                pass
            time.sleep(0.005)
        return time.perf_counter() - t0 if ok else None
    finally:
        dm.destroy()
        dm.close()


def fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def row(name: str, first, warm: list) -> str:
    """first run, then median [min-max] and every warm run."""
    if warm and None not in warm:
        med = f"{statistics.median(warm):6.2f} [{min(warm):.2f}-{max(warm):.2f}]"
    else:
        med = "-"
    return f"{name:<44} {fmt(first):>7}  {med:<20} {' '.join(fmt(x) for x in warm)}"


def ratio(a, b) -> str:
    return "-" if a is None or b is None else f"{a / b:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=4,
                    help="pairs of runs: the first cold, the others warm (default 4)")
    ap.add_argument("--pvh-cmdline", default=PVH_CMDLINE,
                    help=f"our kernel's command line (default {PVH_CMDLINE!r}; it must "
                         f"let the marker reach console_io)")
    args = ap.parse_args()
    if args.runs < 2:
        sys.exit("--runs must be at least 2 (one cold, one warm)")
    assets = linux_assets()
    if assets is None:
        sys.exit("Linux guest assets not built (make linux-assets)")
    if QEMU is None:
        sys.exit("qemu-system-x86_64 not installed: no reference")
    ours, ref = [], []
    with tempfile.TemporaryDirectory(prefix="pvhbench-") as tmp:
        # A fresh payload cache: the first create is cold whatever the
        # user's cache holds, and the bench leaves nothing behind.
        os.environ["XDG_CACHE_HOME"] = os.path.join(tmp, "cache")
        cached = cache_dir() is not None
        for i in range(args.runs):
            ours.append(pvh_once(assets, args.pvh_cmdline))
            ref.append(hvm_once(assets, os.path.join(tmp, f"h{i}")))
            print(f"run {i + 1}/{args.runs}: ours {fmt(ours[-1] and ours[-1]['total'])} s, "
                  f"reference {fmt(ref[-1])} s", file=sys.stderr, flush=True)

    def col(key):
        return [None if r is None else r[key] for r in ours]

    total, build, boot = col("total"), col("build"), col("boot")
    print(f"Linux {assets['kernel_release']}: create -> /init marker (s); runs alternate "
          f"ours/reference; first run, then median [range] and all of runs 2..{args.runs}")
    print(f"ours: cmdline \"{args.pvh_cmdline}\", payload cache "
          f"{'fresh for this run' if cached else 'off (PYXEN_KERNEL_CACHE=0)'}; "
          f"reference: cmdline \"{HVM_CMDLINE}\"")
    print(f"{'path':<44} {'first':>7}  {'warm median [range]':<20} warm runs")
    print(row("ours: PVH domU, software CPU (emu)", total[0], total[1:]))
    print(row("  domain build (payload, ACPI, load)", build[0], build[1:]))
    print(row("  unpause -> /init marker", boot[0], boot[1:]))
    print(row("reference: HVM under QEMU TCG (SeaBIOS)", ref[0], ref[1:]))
    warm_ok = None not in total[1:] and None not in ref[1:]
    print(f"ratio ours/reference: first {ratio(total[0], ref[0])}, warm medians "
          + (ratio(statistics.median(total[1:]), statistics.median(ref[1:])) if warm_ok else "-"))
    lines = [r["lines"] for r in ours if r is not None]
    if lines:
        print(f"console lines through console_io up to the marker (ours): {statistics.median(lines):.0f}")


if __name__ == "__main__":
    main()
