"""Debian's kernel + the project's initramfs: domain create -> /init marker
as a PVH domU on our hypervisor (software CPU), next to the same kernel and
initramfs as an HVM guest under QEMU TCG, in the same run.

- ours: a running xen-core (--accel emu, started before timing, as
  xencommons would have it); timed from building the domain (bzImage
  payload decompressed, ACPI tables, memory populated and loaded, vCPU set,
  unpause) until PYXEN-INIT-OK is on console_io;
- reference: `qemu_argv()` + `DeviceModel.start()` with `-machine
  pc,accel=tcg` (SeaBIOS, direct kernel boot, console=ttyS0) until the same
  marker is in the serial log.
Runs alternate ours/reference; medians are printed with their ratio
(below 1: ours is faster).

    python bench/linux_pvh_boot.py [--runs 3]
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
from toolstack.devicemodel import DeviceModel, qemu_argv  # noqa: E402

WAIT = 900
MARKER = rb"PYXEN-INIT-OK"


def pvh_once(assets) -> float | None:
    g = LinuxPvh(assets)      # the core starts here, outside the timing
    try:
        g.start()             # t_create: just before building the domain
        m = g.wait_for(MARKER, WAIT)
        return time.perf_counter() - g.t_create if m else None
    finally:
        g.close()


def hvm_once(assets, run_dir) -> float | None:
    config = cfg(f"""
memory = 256
vga = "none"
kernel = "{assets['kernel']}"
ramdisk = "{assets['ramdisk']}"
cmdline = "console=ttyS0 quiet"
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    assets = linux_assets()
    if assets is None:
        sys.exit("Linux guest assets not built (make linux-assets)")
    if QEMU is None:
        sys.exit("qemu-system-x86_64 not installed: no reference")
    ours, ref = [], []
    with tempfile.TemporaryDirectory(prefix="pvhbench-") as tmp:
        for i in range(args.runs):
            ours.append(pvh_once(assets))
            ref.append(hvm_once(assets, os.path.join(tmp, f"h{i}")))
    print(f"Linux {assets['kernel_release']} create -> /init marker, median of {args.runs}")
    print(f"{'path':<44} {'median (s)':>10}  runs")
    rows = [("ours: PVH domU, software CPU (emu)", ours),
            ("reference: HVM under QEMU TCG (SeaBIOS)", ref)]
    for name, xs in rows:
        ok = [x for x in xs if x is not None]
        med = f"{statistics.median(ok):10.2f}" if len(ok) == len(xs) else f"{'-':>10}"
        print(f"{name:<44} {med}  {' '.join('-' if x is None else f'{x:.2f}' for x in xs)}")
    if None not in ours and None not in ref:
        print(f"ratio ours/reference: {statistics.median(ours) / statistics.median(ref):.2f}")


if __name__ == "__main__":
    main()
