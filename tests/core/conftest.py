import pytest


def engine_or_skip(name: str):
    """The accelerator `name`, or skip with the engine's own reason."""
    try:
        if name == "emu":
            from xen_core.accel.emu import EmuAccelerator as A
        else:
            from xen_core.accel.kvm import KvmAccelerator as A
    except ImportError as e:
        pytest.skip(f"{name} engine not importable: {e}")
    accel = A()
    ok, why = accel.usable()
    if not ok:
        pytest.skip(f"{name} engine unusable: {why}")
    return accel


import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUEST_DIR = os.path.join(ROOT, "guests", "build")
# A guest that never shuts down would hang the run: this bounds a wait for
# an event (not a performance limit).
EVENT_WAIT_S = 600


def guest(name: str) -> str:
    path = os.path.join(GUEST_DIR, f"{name}.elf")
    if not os.path.exists(path):
        pytest.skip(f"{path} not built (make -C guests)")
    return path


class CoreProcess:
    """A xen-core daemon in a private run directory."""

    def __init__(self, accel: str):
        """Raises RuntimeError with xen-core's own message if it cannot start
        (an unusable engine, for one)."""
        self.run_dir = tempfile.mkdtemp(prefix="pyxen-test-")
        self.log = os.path.join(self.run_dir, "xen-core.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xen_core.daemon", "-N", "--run-dir", self.run_dir,
             "--accel", accel, "--log", self.log],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        self.socket = os.path.join(self.run_dir, "privcmd.sock")
        while not os.path.exists(self.socket):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode().strip()
                self.proc.stderr.close()
                raise RuntimeError(err or f"xen-core exited with {self.proc.returncode}")
            time.sleep(0.01)
        self.pid = self.proc.pid

    def privcmd(self):
        from dom0.privcmd import Privcmd
        pc = Privcmd(self.run_dir)
        pc.sock.settimeout(EVENT_WAIT_S)
        return pc

    def alive(self) -> bool:
        return self.proc.poll() is None

    def fds(self) -> list[str]:
        out = []
        for fd in os.listdir(f"/proc/{self.pid}/fd"):
            try:
                out.append(os.readlink(f"/proc/{self.pid}/fd/{fd}"))
            except OSError:
                pass
        return out

    def threads(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stderr.close()
        import shutil
        shutil.rmtree(self.run_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def emu_core():
    try:
        core = CoreProcess("emu")
    except RuntimeError as e:
        pytest.skip(str(e))
    yield core
    core.stop()


def start_guest(pc, name: str, memory_mib: int = 16, cmdline: str = "") -> int:
    from toolstack.boot import create_pvh_domain
    return create_pvh_domain(pc, guest(name), memory_mib << 20, cmdline)


def wait_shutdown(events, domids) -> dict:
    """Wait for dom_exc shutdown events of every domid; {domid: event}."""
    want, got = set(domids), {}
    while want - set(got):
        ev = events.next_event()
        if ev["event"] == "dom_exc" and ev["kind"] == "shutdown" and ev["domid"] in want:
            got[ev["domid"]] = ev
    return got


def console(pc, domid: int) -> str:
    return pc.console_read(domid)[0].decode(errors="replace")


# -- shared by the guest tests of tests/core, tests/evtchn and tests/gnttab
# (import them by name; each module gives its own `core` fixture) ----------
WAIT_S = 600   # bounds a wait for a guest's output, not a performance limit


@pytest.fixture
def pc(core):
    p = core.privcmd()
    yield p
    p.close()


@pytest.fixture
def events(core):
    """A privcmd connection subscribed to dom_exc (shutdown events)."""
    p = core.privcmd()
    p.subscribe_dom_exc()
    yield p
    p.close()


def wait_console(pc, domid, pattern):
    """The first match of `pattern` in domain `domid`'s console."""
    import re
    import time
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        m = re.search(pattern, console(pc, domid))
        if m:
            return m
        time.sleep(0.005)
    raise AssertionError(f"d{domid} never printed {pattern!r}: {console(pc, domid)}")
