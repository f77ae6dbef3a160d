"""type = "hvm" domains through the xl CLI, in a private run dir: the
boot-sector firmware guest and the Linux guest under QEMU (TCG where there is
no hardware virtualization), supervised by xl's per-domain monitor."""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from .helpers import BOOTSECTOR, QEMU, ROOT, linux_assets

pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed "
                                                     "(apt-get install qemu-system-x86)")
# Bounds on events that should happen (never speed limits).
EVENT_WAIT_S = 300


def wait_for(cond, what, timeout=EVENT_WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


class Dom0:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="pyxen-hv-")     # short: socket paths
        self.env = dict(os.environ, XEN_RUN_DIR=self.dir,
                        XENSTORED_PATH=os.path.join(self.dir, "xenstored", "socket"),
                        PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))

    def xl(self, *args, check=True):
        p = subprocess.run([sys.executable, "-m", "toolstack.xl", *args], env=self.env,
                           cwd=ROOT, capture_output=True, text=True, timeout=EVENT_WAIT_S)
        if check and p.returncode != 0:
            raise AssertionError(f"xl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}"
                                 f"\n{self.logs()}")
        return p

    def logs(self):
        out = []
        for n in sorted(os.listdir(self.dir)):
            if n.startswith(("xl-", "qemu-dm-")) and n.endswith(".log"):
                with open(os.path.join(self.dir, n), errors="replace") as f:
                    out.append(f"--- {n}\n{f.read()[-3000:]}")
        return "\n".join(out)

    def domains(self):
        """name -> (domid, mem, vcpus, state, time) from `xl list`."""
        out = {}
        for line in self.xl("list").stdout.splitlines()[1:]:
            f = line.split()
            out[f[0]] = (int(f[1]), int(f[2]), int(f[3]), f[4], float(f[5]))
        return out

    def serial_log(self, domid):
        try:
            with open(os.path.join(self.dir, f"qemu-dm-{domid}", "serial0.log"), "rb") as f:
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def qemu_pids(self, domid):
        """QEMU processes whose command line names this domain's run dir."""
        key = os.path.join(self.dir, f"qemu-dm-{domid}").encode()
        pids = []
        for p in os.listdir("/proc"):
            if not p.isdigit():
                continue
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read()
                with open(f"/proc/{p}/stat") as f:
                    zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except OSError:
                continue
            if b"qemu-system" in cmd and key in cmd and not zombie:
                pids.append(int(p))
        return pids

    def store(self):
        """A xenstore connection to this run dir's xenstored."""
        from toolstack.xs import Xs
        old = os.environ.get("XENSTORED_PATH")
        os.environ["XENSTORED_PATH"] = self.env["XENSTORED_PATH"]
        try:
            return Xs(self.dir)
        finally:
            if old is None:
                del os.environ["XENSTORED_PATH"]
            else:
                os.environ["XENSTORED_PATH"] = old

    def kill_all(self):
        # The monitors first: their QEMUs die with them (PR_SET_PDEATHSIG).
        for n in os.listdir(self.dir):
            if n.startswith("xl-monitor-") and n.endswith(".pid"):
                try:
                    with open(os.path.join(self.dir, n)) as f:
                        os.kill(int(f.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
        try:
            with open(os.path.join(self.dir, "xencommons.pgid")) as f:
                os.killpg(int(f.read()), signal.SIGKILL)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def dom0():
    d = Dom0()
    try:
        yield d
    finally:
        d.kill_all()


def write_cfg(tmp, name, text):
    path = os.path.join(tmp, f"{name}.cfg")
    with open(path, "w") as f:
        f.write(text)
    return path


def bootsector_cfg(tmp, name, extra=""):
    if not os.path.isfile(BOOTSECTOR):
        pytest.skip(f"{BOOTSECTOR} not built (make linux-assets)")
    with open(os.path.join(ROOT, "examples", "bootsector-hvm.cfg")) as f:
        text = f.read()
    text = re.sub(r'^name = .*$', f'name = "{name}"', text, flags=re.M)
    # A private copy: QEMU write-locks its disk, and other runs may boot it.
    disk = os.path.join(tmp, f"{name}.img")
    shutil.copyfile(BOOTSECTOR, disk)
    text = text.replace("guests/build/bootsector/disk.img", disk)
    assert disk in text
    return write_cfg(tmp, name, text + extra)


def created_domid(dom0, name):
    return dom0.domains()[name][0]


# -- the firmware guest ------------------------------------------------------------
def test_bootsector_boots_and_powers_off(dom0, tmp_path):
    dom0.xl("create", bootsector_cfg(str(tmp_path), "bs-off"))
    log = os.path.join(dom0.dir, "xl-bs-off.log")
    wait_for(lambda: os.path.exists(log) and "Done. Exiting now" in open(log).read(),
             "the monitor to destroy the powered-off domain")
    assert "reason code 0 0x0" in open(log).read()
    assert "bs-off" not in dom0.domains()
    domid = int(re.search(r"Domain (\d+) has shut down", open(log).read()).group(1))
    assert "PYXEN-BOOTSECTOR-OK" in dom0.serial_log(domid)
    assert dom0.qemu_pids(domid) == []


def test_paused_create_then_destroy_ends_qemu(dom0, tmp_path):
    dom0.xl("create", "-p", bootsector_cfg(str(tmp_path), "bs-destroy"))
    domid, mem, vcpus, state, _ = dom0.domains()["bs-destroy"]
    assert (mem, vcpus) == (32, 1)
    assert "p" in state
    assert len(dom0.qemu_pids(domid)) == 1
    assert "PYXEN-BOOTSECTOR-OK" not in dom0.serial_log(domid)     # never ran
    xs = dom0.store()
    try:
        home = f"/local/domain/{domid}"
        assert xs.read(f"{home}/name") == "bs-destroy"
        assert xs.read(f"{home}/domid") == str(domid)
        vm = xs.read(f"{home}/vm")
        assert xs.read(f"{vm}/name") == "bs-destroy"
        assert xs.read(f"/local/domain/0/device-model/{domid}/state") == "running"
        assert xs.read(f"{home}/serial/0/tty").startswith("/dev/pts/")
        assert int(xs.read(f"{home}/image/device-model-pid")) == dom0.qemu_pids(domid)[0]
        dom0.xl("destroy", "bs-destroy")
        for path in (home, vm, f"/local/domain/0/device-model/{domid}", f"/libxl/{domid}"):
            assert xs.read(path) is None, path
    finally:
        xs.close()
    assert "bs-destroy" not in dom0.domains()
    assert dom0.qemu_pids(domid) == []
    # The name is free again: the xenstore home went with the domain.
    p = dom0.xl("domid", "bs-destroy", check=False)
    assert p.returncode != 0


def test_reboot_restart_gives_a_new_domid(dom0, tmp_path):
    # The restarted domain boots, powers itself off and is kept (preserve).
    cfg = bootsector_cfg(str(tmp_path), "bs-reboot",
                         '\non_reboot = "restart"\non_poweroff = "preserve"\n')
    dom0.xl("create", "-p", cfg)
    old = created_domid(dom0, "bs-reboot")
    p = dom0.xl("reboot", "bs-reboot", check=False)
    assert p.returncode != 0 and "-F" in p.stderr          # no PV drivers under QEMU
    dom0.xl("reboot", "-F", "bs-reboot")

    def preserved():
        return [(n, v) for n, v in dom0.domains().items() if n.startswith("bs-reboot-")]
    (name, (new, _m, _v, state, _t)), = wait_for(preserved, "the restarted domain to be "
                                                 "preserved after its power-off")
    assert new != old
    assert "s" in state
    assert "PYXEN-BOOTSECTOR-OK" in dom0.serial_log(new)
    assert dom0.qemu_pids(old) == []
    dom0.xl("destroy", str(new))
    assert dom0.qemu_pids(new) == []


def test_bad_domain_and_missing_dm(dom0):
    p = dom0.xl("pause", "no-such-guest", check=False)
    assert p.returncode != 0 and "invalid domain identifier" in p.stderr


# -- Linux -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def linux(dom0, tmp_path_factory):
    if linux_assets() is None:
        pytest.skip("Linux assets not built (make linux-assets)")
    tmp = str(tmp_path_factory.mktemp("xlhvm"))
    disk = os.path.join(tmp, "disk.img")
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
    with open(os.path.join(ROOT, "examples", "linux-hvm.cfg")) as f:
        text = f.read().replace("/tmp/linux-hvm.img", disk)
    dom0.xl("create", write_cfg(tmp, "linux-hvm", text))
    domid = created_domid(dom0, "linux-hvm")
    wait_for(lambda: "PYXEN-SHELL" in dom0.serial_log(domid), "Linux's /init shell")
    return domid


def test_linux_marker_on_the_serial_console(dom0, linux):
    log = dom0.serial_log(linux)
    assert "PYXEN-INIT-OK" in log
    assert f"PYXEN-DISK sda {64 << 20}" in log


def test_xl_console_is_the_serial_pty(dom0, linux):
    p = subprocess.Popen([sys.executable, "-m", "toolstack.xl", "console", "linux-hvm"],
                         env=dom0.env, cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        time.sleep(0.5)
        p.stdin.write(b"echo PYXEN-XLCON-$((6*7))\n")
        p.stdin.flush()
        wait_for(lambda: "PYXEN-XLCON-42" in dom0.serial_log(linux), "the shell's answer")
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_list_pause_unpause(dom0, linux):
    _d, mem, vcpus, state, _t = dom0.domains()["linux-hvm"]
    assert (mem, vcpus) == (256, 1)
    assert "p" not in state and state[0] in "rb"
    dom0.xl("pause", "linux-hvm")
    assert "p" in dom0.domains()["linux-hvm"][3]
    t0 = dom0.domains()["linux-hvm"][4]
    dom0.xl("unpause", "linux-hvm")
    assert "p" not in dom0.domains()["linux-hvm"][3]
    assert t0 > 0                     # QEMU's vCPU threads did run


def test_shutdown_powers_linux_off(dom0, linux):
    p = dom0.xl("shutdown", "linux-hvm", check=False)
    assert p.returncode != 0 and "ACPI" in p.stderr
    dom0.xl("shutdown", "-F", "-w", "linux-hvm")        # ACPI power button
    wait_for(lambda: "linux-hvm" not in dom0.domains(), "the powered-off domain to go")
    assert "reason code 0 0x0" in open(os.path.join(dom0.dir, "xl-linux-hvm.log")).read()
    wait_for(lambda: dom0.qemu_pids(linux) == [], "QEMU to end", 30)


def test_qemu_death_crashes_the_domain(dom0, tmp_path):
    cfg = bootsector_cfg(str(tmp_path), "bs-crash", '\non_crash = "preserve"\n')
    dom0.xl("create", "-p", cfg)
    domid = created_domid(dom0, "bs-crash")
    pid, = dom0.qemu_pids(domid)
    os.kill(pid, signal.SIGKILL)        # the device model dies under the guest

    def crashed():
        return [v for n, v in dom0.domains().items()
                if n.startswith("bs-crash-") and v[0] == domid]
    (_d, _m, _v, state, _t), = wait_for(crashed, "the domain to be crashed and preserved")
    assert state[4] == "c"
    assert "reason code 3 0x3" in open(os.path.join(dom0.dir, "xl-bs-crash.log")).read()
    dom0.xl("destroy", str(domid))
    assert domid not in [v[0] for v in dom0.domains().values()]


def test_device_model_failure_is_one_line_and_leaves_nothing(dom0, tmp_path):
    cfg = write_cfg(str(tmp_path), "bs-bad", 'name = "bs-bad"\ntype = "hvm"\nmemory = 32\n'
                    "disk = [ 'format=raw, vdev=hda, target=/nonexistent/pyxen.img' ]\n")
    before = dom0.domains()
    p = dom0.xl("create", cfg, check=False)
    assert p.returncode != 0
    last = p.stderr.splitlines()[-1]
    assert "device model failed to start" in last and "/nonexistent/pyxen.img" in last, last
    after = dom0.domains()
    assert "bs-bad" not in after
    assert {v[0] for v in after.values()} <= {v[0] for v in before.values()}
