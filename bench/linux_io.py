"""Debian Linux as a PVH domU: disk and network figures from inside the
guest, each next to a reference measured on the host in the same run.

- xvda: busybox `dd` with O_DIRECT inside Linux (blkfront -> our vbd
  backend -> the raw image), write (`of=/dev/xvda oflag=direct`) and read
  back (`iflag=direct`); reference: the same busybox binary's `dd` with the
  same flags on the host, on the same image file. MB/s from dd's own
  "N bytes ... copied, T seconds" (the guest's clock is pvclock).
- eth0: busybox `ping` round trip guest -> host through the vif (netfront
  -> our netback -> TAP on a bridge) and host -> guest; reference: the
  same ping binary on the host to 127.0.0.1.
Medians over --runs; ratio = ours / reference (throughput: above 1 is
faster; round trip: below 1 is faster).

    python bench/linux_io.py [--mb 32] [--runs 3] [--pings 20]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.dom0.conftest import Dom0, wait_for  # noqa: E402
from tests.linux.helpers import console_shell, linux_assets, make_disk  # noqa: E402

CONFIG = os.path.join(ROOT, "examples", "linux-pvh.cfg")
BUSYBOX = os.path.join(ROOT, "guests", "build", "linux", "busybox", "bin", "busybox")
NAME = "linux-io"
WAIT = 1800        # boot and shutdown bounds
CMD_WAIT = 600     # one command in the guest (a stalled one ends the run)
_NET = f"10.214.{os.getpid() % 250}"
HOST_IP, GUEST_IP = f"{_NET}.1", f"{_NET}.2"

# Debian's busybox dd prints no rate and its date has no %N: the guest
# times dd with ktime_get() ("now at N nsecs", the head of /proc/timer_list).
NS = "$(head -n 3 /proc/timer_list | sed -n 's/^now at \\([0-9]*\\) nsecs$/\\1/p')"
NS_RX = re.compile(r"PYXEN-NS (\d+)")
# busybox ping: "round-trip min/avg/max = 0.123/0.456/0.789 ms"
PING_RX = re.compile(r"round-trip min/avg/max = ([\d.]+)/([\d.]+)/([\d.]+) ms")


def guest_dd_mb_s(d, mb: int, dd_args: str, what: str) -> float:
    out = console_shell(d, NAME, f"a={NS}; dd {dd_args} 2>/dev/null && "
                                 f"echo PYXEN-NS $(({NS} - a))", CMD_WAIT)
    m = NS_RX.search(out)
    if not m or int(m.group(1)) <= 0:
        raise SystemExit(f"{what}: no timing in {out[-500:]!r}")
    return (mb << 20) / (int(m.group(1)) / 1e9) / 1e6


def host_dd_mb_s(mb: int, *dd_args: str) -> float:
    t0 = time.perf_counter()
    host("dd", *dd_args)
    return (mb << 20) / (time.perf_counter() - t0) / 1e6


def ping_avg_ms(out: str, what: str) -> float:
    m = PING_RX.search(out)
    if not m:
        raise SystemExit(f"{what}: no ping summary in {out[-500:]!r}")
    return float(m.group(2))


def host(*argv: str) -> str:
    r = subprocess.run([BUSYBOX, *argv], capture_output=True, text=True)
    if r.returncode:
        raise SystemExit(f"host busybox {' '.join(argv)}: {r.stderr.strip()}")
    return r.stdout + r.stderr


def make_bridge() -> str | None:
    ip = shutil.which("ip")
    if ip is None or os.geteuid() != 0:
        return None
    name = f"pyxiobr{os.getpid() % 10000}"
    for c in ([ip, "link", "add", name, "type", "bridge"],
              [ip, "addr", "add", f"{HOST_IP}/24", "dev", name],
              [ip, "link", "set", name, "up"]):
        if subprocess.run(c, capture_output=True).returncode:
            subprocess.run([ip, "link", "del", name], capture_output=True)
            return None
    return name


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=32, help="MiB per dd")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--pings", type=int, default=20)
    args = ap.parse_args()
    assets = linux_assets()
    if assets is None:
        sys.exit("Linux guest assets not built (make linux-assets)")
    tmp = tempfile.mkdtemp(prefix="pyxen-linux-io-", dir="/var/tmp")
    img = make_disk(os.path.join(tmp, "xvda.img"), b"PYXEN-LINUX-IO", (args.mb + 1) << 20)
    # Allocate every block first, so no figure pays for first writes.
    host("dd", "if=/dev/zero", f"of={img}", "bs=1M", f"count={args.mb}", "seek=1",
         "conv=notrunc,fsync")
    bridge = make_bridge()
    d = Dom0()
    rows = {k: [] for k in ("gw", "hw", "gr", "hr", "g2h", "h2g", "lo")}
    features = ""
    try:
        extra = [f"vif=['bridge={bridge}']"] if bridge else []
        d.xl("create", CONFIG, f'name="{NAME}"',
             f"disk=['format=raw, vdev=xvda, access=rw, target={img}']",
             'cmdline="console=hvc0 pyxen.disk=xvda"', *extra, timeout=WAIT)
        wait_for(lambda: "PYXEN-SHELL" in d.console_log(NAME), "the /init shell", WAIT)
        # What blkfront negotiated with our backend (persistent grants, ...).
        m = re.search(r"blkfront: xvda: (.*?)\s*$", d.console_log(NAME), re.M)
        features = m.group(1) if m else "(blkfront line not found)"
        n = f"bs=1M count={args.mb}"
        for _ in range(args.runs):
            rows["gw"].append(guest_dd_mb_s(d, args.mb, f"if=/dev/zero of=/dev/xvda {n} seek=1 "
                                                        "oflag=direct", "guest write"))
            rows["hw"].append(host_dd_mb_s(args.mb, "if=/dev/zero", f"of={img}", *n.split(),
                                           "seek=1", "oflag=direct", "conv=notrunc"))
            rows["gr"].append(guest_dd_mb_s(d, args.mb, f"if=/dev/xvda of=/dev/null {n} skip=1 "
                                                        "iflag=direct", "guest read"))
            rows["hr"].append(host_dd_mb_s(args.mb, f"if={img}", "of=/dev/null", *n.split(),
                                           "skip=1", "iflag=direct"))
        if bridge:
            console_shell(d, NAME, f"ip link set eth0 up; ip addr add {GUEST_IP}/24 dev eth0",
                          WAIT)
            # The first packets resolve ARP and warm both paths: not counted.
            console_shell(d, NAME, f"ping -c 2 -W 10 {HOST_IP}", WAIT)
            n = str(args.pings)
            for _ in range(args.runs):
                rows["g2h"].append(ping_avg_ms(console_shell(
                    d, NAME, f"ping -c {n} -i 0.2 {HOST_IP}", CMD_WAIT), "guest ping"))
                rows["h2g"].append(ping_avg_ms(host("ping", "-c", n, "-i", "0.2", GUEST_IP),
                                               "host -> guest ping"))
                rows["lo"].append(ping_avg_ms(host("ping", "-c", n, "-i", "0.2", "127.0.0.1"),
                                              "loopback ping"))
        d.xl("shutdown", "-w", NAME, timeout=WAIT)
    finally:
        d.kill_all()
        if bridge:
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    med = {k: statistics.median(v) if v else None for k, v in rows.items()}
    print(f"Linux {assets['kernel_release']} PVH domU (software CPU): xvda {args.mb} MiB "
          f"O_DIRECT dd, median of {args.runs}")
    print(f"blkfront: {features}")
    print(f"{'figure':<34} {'ours':>10} {'reference':>10} {'ratio':>7}  reference is")
    table = [("xvda write MB/s (dd oflag=direct)", "gw", "hw", "host dd, same image"),
             ("xvda read MB/s (dd iflag=direct)", "gr", "hr", "host dd, same image")]
    if bridge:
        table += [("ping guest->host avg ms (vif)", "g2h", "lo", "host ping 127.0.0.1"),
                  ("ping host->guest avg ms (vif)", "h2g", "lo", "host ping 127.0.0.1")]
    for label, a, b, ref in table:
        print(f"{label:<34} {med[a]:10.3f} {med[b]:10.3f} {med[a] / med[b]:7.3f}  {ref}")
    if not bridge:
        print("ping rows skipped: no Linux bridge here (needs root and iproute2)")


if __name__ == "__main__":
    main()
