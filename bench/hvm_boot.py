"""HVM guest launch -> marker on the serial console, through the device-model
controller, next to the same QEMU command started by hand.

- ours: `qemu_argv()` + `DeviceModel.start()` (spawn, QMP connect retry loop,
  query-chardev, cont) until the marker is in the serial log;
- reference, in the same run: `qemu-system-x86_64` with the same options
  (less `-S`, since nobody is there to `cont`), spawned directly, the same
  serial log polled for the same marker.
- xl: the whole toolstack path, `xl create` (core domain, xenstore home,
  monitor fork, QEMU, QMP, the accel xl picks) until the marker, next to
  QEMU by hand (services already up, outside the timing).
Guests: Debian's kernel + the project's initramfs (marker PYXEN-INIT-OK) and
the project's boot sector through SeaBIOS (PYXEN-BOOTSECTOR-OK).  TCG always;
KVM only where the CPU has vmx/svm (this fleet's software KVM backend gets
no Linux output within 120 s).  Runs alternate ours/reference.

    python bench/hvm_boot.py [--runs 3] [--guests linux,bootsector]
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.hvm.helpers import BOOTSECTOR, cfg, linux_assets  # noqa: E402
from toolstack.devicemodel import DeviceModel, qemu_argv  # noqa: E402
from toolstack.devicemodel.accel import cpu_has_hardware_virt, kvm_device_works  # noqa: E402

WAIT = 300


TEXTS = {}     # guest -> its xl.cfg text (the `xl create` row)


def guest_configs():
    out = {}
    a = linux_assets()
    if a:
        disk = os.path.join(tempfile.mkdtemp(prefix="hvmbench-"), "disk.img")
        with open(disk, "wb") as f:
            f.truncate(8 << 20)
        TEXTS["linux"] = f"""
memory = 256
vga = "none"
kernel = "{a['kernel']}"
ramdisk = "{a['ramdisk']}"
cmdline = "console=ttyS0 quiet pyxen.disk=sda"
disk = [ 'format=raw, vdev=hda, access=rw, target={disk}' ]
"""
        out["linux"] = (cfg(TEXTS["linux"]), rb"PYXEN-INIT-OK")
    if os.path.exists(BOOTSECTOR):
        TEXTS["bootsector"] = f"""
memory = 32
boot = "c"
on_poweroff = "preserve"
disk = [ 'format=raw, vdev=hda, access=rw, target={BOOTSECTOR}' ]
"""
        out["bootsector"] = (cfg(TEXTS["bootsector"]), rb"PYXEN-BOOTSECTOR-OK")
    return out


def wait_log(path, rx, deadline):
    while time.perf_counter() < deadline:
        try:
            with open(path, "rb") as f:
                if rx.search(f.read()):
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.005)
    return False


def ours(config, marker, accel, run_dir):
    spec = qemu_argv(config, domid=1, run_dir=run_dir, accel=accel)
    t0 = time.perf_counter()
    dm = DeviceModel(spec, domid=1).start()
    ok = wait_log(spec.serial_logs[0], re.compile(marker), t0 + WAIT)
    t = time.perf_counter() - t0
    dm.destroy()
    dm.close()
    return t if ok else None


def by_hand(config, marker, accel, run_dir):
    spec = qemu_argv(config, domid=1, run_dir=run_dir, accel=accel)
    argv = [a for a in spec.argv if a != "-S"]
    os.makedirs(run_dir, exist_ok=True)
    for p in (spec.serial_logs[0], spec.qmp_path):
        if os.path.exists(p):
            os.unlink(p)
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    ok = wait_log(spec.serial_logs[0], re.compile(marker), t0 + WAIT)
    t = time.perf_counter() - t0
    p.kill()
    p.wait()
    return t if ok else None


class XlDom0:
    """A private run dir whose services `xl` starts once (outside timing)."""

    def __init__(self, tmp):
        self.dir = tempfile.mkdtemp(prefix="hvx-")       # short: socket paths
        self.env = dict(os.environ, XEN_RUN_DIR=self.dir,
                        XENSTORED_PATH=os.path.join(self.dir, "xenstored", "socket"),
                        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.tmp = tmp
        self.n = 0
        self.xl("list")

    def xl(self, *args):
        return subprocess.run([sys.executable, "-m", "toolstack.xl", *args], env=self.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=WAIT)

    def create(self, text, marker):
        """`xl create` -> marker in the domain's serial log, seconds."""
        self.n += 1
        name = f"bench{self.n}"
        path = os.path.join(self.tmp, f"{name}.cfg")
        with open(path, "w") as f:
            f.write(f'name = "{name}"\ntype = "hvm"\non_poweroff = "preserve"\n{text}')
        t0 = time.perf_counter()
        p = self.xl("create", path)
        if p.returncode:
            raise RuntimeError(p.stderr)
        domid = next(int(line.split()[1]) for line in self.xl("list").stdout.splitlines()
                     if line.split()[0] == name
                     or line.split()[0].startswith(f"{name}-"))    # preserved
        ok = wait_log(os.path.join(self.dir, f"qemu-dm-{domid}", "serial0.log"),
                      re.compile(marker), t0 + WAIT)
        t = time.perf_counter() - t0
        self.xl("destroy", str(domid))
        return t if ok else None

    def close(self):
        import shutil
        import signal
        try:
            with open(os.path.join(self.dir, "xencommons.pgid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--guests", default="linux,bootsector")
    args = ap.parse_args()
    guests = guest_configs()
    accels = ["tcg"]
    if cpu_has_hardware_virt() and kvm_device_works()[0]:
        accels.append("kvm")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hvmbench-") as tmp:
        for g in args.guests.split(","):
            if g not in guests:
                rows.append((g, "-", None, None, "assets missing (make linux-assets)"))
                continue
            config, marker = guests[g]
            for accel in accels:
                a, b = [], []
                for i in range(args.runs):
                    a.append(ours(config, marker, accel, os.path.join(tmp, f"o{i}")))
                    b.append(by_hand(config, marker, accel, os.path.join(tmp, f"h{i}")))
                if None in a or None in b:
                    rows.append((g, accel, None, None, f"no marker within {WAIT} s"))
                    continue
                rows.append((g, accel, statistics.median(a), statistics.median(b), ""))
            # The whole toolstack path: xl create (core domain, xenstore home,
            # monitor fork, QEMU, QMP) against QEMU by hand; accel as xl picks.
            xd = XlDom0(tmp)
            try:
                a, b = [], []
                for i in range(args.runs):
                    a.append(xd.create(TEXTS[g], marker))
                    b.append(by_hand(config, marker, accels[-1], os.path.join(tmp, f"x{i}")))
            finally:
                xd.close()
            if None in a or None in b:
                rows.append((g, "xl", None, None, f"no marker within {WAIT} s"))
            else:
                rows.append((g, "xl", statistics.median(a), statistics.median(b),
                             "xl create (auto accel)"))
        if "kvm" not in accels:
            rows.append(("*", "kvm", None, None, "skipped: no vmx/svm (software KVM)"))
    print(f"HVM launch -> serial marker, median of {args.runs} (ours = qemu_argv + "
          f"DeviceModel over QMP; reference = same QEMU options by hand)")
    print(f"{'guest':<11} {'accel':<5} {'ours (s)':>9} {'by hand (s)':>12} {'ratio':>6}  note")
    for g, accel, o, r, note in rows:
        if o is None:
            print(f"{g:<11} {accel:<5} {'-':>9} {'-':>12} {'-':>6}  {note}")
        else:
            print(f"{g:<11} {accel:<5} {o:9.3f} {r:12.3f} {o / r:6.2f}  {note}")


if __name__ == "__main__":
    main()
