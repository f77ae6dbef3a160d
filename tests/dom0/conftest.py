"""A private dom0 per test: XEN_RUN_DIR in a fresh temporary directory,
services started by `xl` itself (or xencommons), and everything killed at
the end, pass or fail: the services' process group, then every monitor."""
import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST_DIR = os.path.join(ROOT, "guests", "build")
# Bounds for waiting on an event that should happen (never a speed limit).
EVENT_WAIT_S = 300


def guest(name: str) -> str:
    path = os.path.join(GUEST_DIR, f"{name}.elf")
    if not os.path.exists(path):
        pytest.skip(f"{path} not built (make -C guests)")
    return path


def wait_for(cond, what: str, timeout: float = EVENT_WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


class Dom0:
    def __init__(self):
        # Short path: Unix socket names are limited to 108 bytes.
        self.dir = tempfile.mkdtemp(prefix="pyxen-d0-")
        self.env = dict(os.environ, XEN_RUN_DIR=self.dir,
                        XENSTORED_PATH=os.path.join(self.dir, "xenstored", "socket"),
                        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def xl(self, *args, check=True, input=None, timeout=EVENT_WAIT_S):
        p = subprocess.run([sys.executable, "-m", "toolstack.xl", *args], env=self.env,
                           cwd=ROOT, capture_output=True, text=True, input=input,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"xl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p

    def xl_popen(self, *args):
        return subprocess.Popen([sys.executable, "-m", "toolstack.xl", *args], env=self.env,
                                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)

    def xencommons(self, *args):
        return subprocess.run([sys.executable, "-m", "dom0.xencommons", *args], env=self.env,
                              cwd=ROOT, capture_output=True, text=True, timeout=EVENT_WAIT_S)

    def pid(self, name: str) -> int | None:
        try:
            with open(os.path.join(self.dir, f"{name}.pid")) as f:
                return int(f.read())
        except (OSError, ValueError):
            return None

    def monitor_pids(self) -> list[int]:
        pids = []
        for path in glob.glob(os.path.join(self.dir, "xl-monitor-*.pid")):
            try:
                with open(path) as f:
                    pids.append(int(f.read()))
            except (OSError, ValueError):
                pass
        return pids

    def domains(self) -> dict[str, tuple[int, str]]:
        """name -> (domid, state flags) from `xl list`."""
        out = {}
        for line in self.xl("list").stdout.splitlines()[1:]:
            f = line.split()
            out[f[0]] = (int(f[1]), f[4])
        return out

    def console_log(self, name: str) -> str:
        try:
            with open(os.path.join(self.dir, "console", f"guest-{name}.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def kill_all(self):
        try:
            with open(os.path.join(self.dir, "xencommons.pgid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        for pid in self.monitor_pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def dom0():
    d = Dom0()
    try:
        yield d
    finally:
        d.kill_all()
