"""vif throughput: guest to guest through xen-backendd's built-in switch
(net-test blast mode: N raw Ethernet frames one way, counted by the peer)
next to a host loopback UDP stream of the same payload size in the same
run. Prints frames/s and MB/s with the ratio.

    python bench/net.py [--frames 20000] [--size 1400]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NET_TEST = os.path.join(ROOT, "guests", "build", "net-test.elf")
CFG = os.path.join(ROOT, "examples", "net-test.cfg")


def wait_log(path: str, pattern: str) -> re.Match:
    while True:
        text = open(path, errors="replace").read() if os.path.exists(path) else ""
        m = re.search(pattern, text)
        if m:
            return m
        if "net-test: FAIL" in text:
            raise SystemExit(text)
        time.sleep(0.1)


def guest_stream(frames: int, size: int) -> tuple[float, float, int]:
    rdir = tempfile.mkdtemp(prefix="pyxen-bench-")
    env = dict(os.environ, XEN_RUN_DIR=rdir, XEN_BACKENDD_SWITCH_ONLY="1",
               XENSTORED_PATH=os.path.join(rdir, "xenstored", "socket"), PYTHONPATH=ROOT)

    def xl(*args):
        r = subprocess.run([sys.executable, "-m", "toolstack.xl", *args], env=env, cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(f"xl {args[0]} failed:\n{r.stderr}")
    try:
        xl("create", CFG, f'kernel="{NET_TEST}"', 'name="rx"', 'cmdline="ip=10.0.0.1"',
           "vif=['bridge=benchsw']")
        wait_log(os.path.join(rdir, "console", "guest-rx.log"), r"net-test: eth0")
        xl("create", CFG, f'kernel="{NET_TEST}"', 'name="tx"',
           f'cmdline="ip=10.0.0.2 peer=10.0.0.1 count=1 blast={frames} size={size}"',
           "vif=['bridge=benchsw']")
        m = wait_log(os.path.join(rdir, "console", "guest-rx.log"),
                     r"received (\d+) frames, (\d+) bytes in (\d+) us")
        n, nbytes, us = map(int, m.groups())
        return n / (us / 1e6), nbytes / us, n
    finally:
        subprocess.run([sys.executable, "-m", "dom0.xencommons", "--run-dir", rdir, "stop"],
                       env=env, cwd=ROOT, capture_output=True)
        try:
            with open(os.path.join(rdir, "xencommons.pgid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(rdir, ignore_errors=True)


def host_udp(frames: int, size: int) -> tuple[float, float, int]:
    payload = size - 42                     # Ethernet + IPv4 + UDP headers
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    got = {"n": 0, "t0": 0.0, "t1": 0.0}

    def receive():
        try:
            while True:
                data = rx.recv(65536)
                if data[:1] == b"\xff":
                    return
                got["t1"] = time.perf_counter()
                if not got["n"]:
                    got["t0"] = got["t1"]
                got["n"] += 1
        except socket.timeout:
            return
    t = threading.Thread(target=receive)
    t.start()
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    data = b"\x01" * payload
    for _ in range(frames):
        tx.sendto(data, rx.getsockname())
    for _ in range(5):
        tx.sendto(b"\xff", rx.getsockname())
        time.sleep(0.02)
    t.join()
    dt = max(got["t1"] - got["t0"], 1e-9)
    return got["n"] / dt, got["n"] * size / dt / 1e6, got["n"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=20000)
    p.add_argument("--size", type=int, default=1400)
    args = p.parse_args()
    if not os.path.exists(NET_TEST):
        raise SystemExit(f"{NET_TEST} not built (make -C guests build/net-test.elf)")
    gpps, gmb, gn = guest_stream(args.frames, args.size)
    hpps, hmb, hn = host_udp(args.frames, args.size)
    print(f"{str(args.size) + '-byte frames':<18} {'guest->guest':>14} {'host UDP lo':>14} {'ratio':>7}")
    print(f"{'frames/s':<18} {gpps:>14.0f} {hpps:>14.0f} {gpps / hpps:>7.3f}")
    print(f"{'MB/s':<18} {gmb:>14.1f} {hmb:>14.1f} {gmb / hmb:>7.3f}")
    print(f"{'delivered':<18} {gn:>8}/{args.frames:<5} {hn:>8}/{args.frames:<5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
