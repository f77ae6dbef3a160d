"""Debian's kernel as a PVH domU through `xl create` (issue 9, stages B
and C): hvc0 on the PV console ring drained by xenconsoled, Linux's xenbus
talking to xenstored through the store ring, xvda from blkfront on our
vbd backend (a dd pattern lands in the host image), commands through the
console pty, `xl shutdown` -> clean power-off. One boot
(examples/linux-pvh.cfg plus a disk) serves the ordered checks below."""
import os
import re
import shutil
import subprocess

import pyxs
import pytest

from tests.dom0.conftest import Dom0, wait_for

from .helpers import LINUX_CFG, console_shell, linux_assets, xl_create_linux

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
NAME = "linux-pvh"
BOOT_WAIT = 900     # a bound for what must happen (about 20 s here)
DISK_BYTES = 12 << 20
HEAD = b"PYXEN-PVH-DISK-5c1e"


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    path = tmp_path_factory.mktemp("linux-pvh") / "xvda.img"
    with open(path, "wb") as f:
        f.write(HEAD + b"\n")
        f.truncate(DISK_BYTES)
    return path


# A subnet of our own per run (a bridge left by a killed run keeps its).
_NET = f"10.213.{os.getpid() % 250}"
HOST_IP, GUEST_IP = f"{_NET}.1", f"{_NET}.2"


@pytest.fixture(scope="module")
def bridge():
    """A Linux bridge with the host's address on it: the vif's backend
    puts its TAP there (as vif-bridge does). None when that cannot be done
    here (not root, no `ip`): the network checks then skip."""
    ip = shutil.which("ip")
    if ip is None or os.geteuid() != 0:
        yield None
        return
    name = f"pyx9br{os.getpid() % 100000}"
    cmds = [[ip, "link", "add", name, "type", "bridge"],
            [ip, "addr", "add", f"{HOST_IP}/24", "dev", name],
            [ip, "link", "set", name, "up"]]
    try:
        for c in cmds:
            subprocess.run(c, check=True, capture_output=True)
    except subprocess.CalledProcessError:
        subprocess.run([ip, "link", "del", name], capture_output=True)
        yield None
        return
    try:
        yield name
    finally:
        subprocess.run([ip, "link", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def booted(disk, bridge):
    d = Dom0()
    try:
        extra = [f"vif=['bridge={bridge}']"] if bridge else []
        xl_create_linux(d,
                        f"disk=['format=raw, vdev=xvda, access=rw, target={disk}']",
                        'cmdline="console=hvc0 pyxen.disk=xvda"', *extra)
        yield d
    finally:
        d.kill_all()


def console(d) -> str:
    return d.console_log(NAME)


def test_hvc0_console_reaches_init_marker(booted):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell",
                    BOOT_WAIT)
    log = console(booted)
    m = re.search(r"PYXEN-INIT-OK (\S+)\s", log)
    assert m and m.group(1) == ASSETS["kernel_release"], log[-2000:]
    assert "printk: console [hvc0] enabled" in log


def test_xenbus_came_up(booted):
    """Linux's xenbus writes its control features once it talks to
    xenstored (drivers/xen/manage.c), through the ring xl introduced."""
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    domid = booted.domains()[NAME][0]
    with pyxs.Client(unix_socket_path=booted.env["XENSTORED_PATH"]) as c:
        feature = wait_for(
            lambda: _read(c, f"/local/domain/{domid}/control/feature-poweroff"),
            "control/feature-poweroff", BOOT_WAIT)
    assert feature == b"1"


def _read(c, path):
    try:
        return c.read(path.encode())
    except pyxs.PyXSError:
        return None


def shell(d, command: str, timeout: float = BOOT_WAIT, name: str = NAME,
          wait: bool = True) -> str:
    """Run `command` in the guest's shell through the console pty (as
    `xl console` would); its output up to a computed end marker."""
    return console_shell(d, name, command, timeout, wait)


def test_xvda_from_blkfront(booted):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    log = console(booted)
    assert f"PYXEN-DISK xvda {DISK_BYTES}" in log, log[-2000:]
    assert f"PYXEN-DISK-HEAD {HEAD.decode()}" in log
    parts = shell(booted, "cat /proc/partitions")
    m = re.search(r"^\s*202\s+0\s+(\d+)\s+xvda\s*$", parts, re.M)
    assert m and int(m.group(1)) == DISK_BYTES // 1024, parts


def test_software_cpu_is_not_affected_by_speculation_bugs(booted):
    """MSR_ARCH_CAPABILITIES reaches Linux: no page-table isolation, no
    retpolines or ITS thunks on a CPU that does not speculate."""
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    vuln = "/sys/devices/system/cpu/vulnerabilities"
    out = shell(booted, f"grep . {vuln}/meltdown {vuln}/spectre_v2 "
                        f"{vuln}/indirect_target_selection")
    assert f"{vuln}/meltdown:Not affected" in out, out
    assert f"{vuln}/indirect_target_selection:Not affected" in out, out
    assert "IBRS" in out and "Retpoline" not in out, out


def test_dd_pattern_reaches_the_host_image(booted, disk):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    shell(booted, "echo PYXEN-PATTERN-7d2b | dd of=/dev/xvda bs=512 seek=100 "
                  "conv=fsync 2>/dev/null")
    with open(disk, "rb") as f:
        f.seek(100 * 512)
        assert f.read(19) == b"PYXEN-PATTERN-7d2b\n"
        f.seek(0)
        assert f.read(len(HEAD)) == HEAD      # the rest untouched


def test_eth0_from_netfront_pings_the_host(booted, bridge):
    if bridge is None:
        pytest.skip("cannot make a Linux bridge here (needs root and iproute2)")
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    out = shell(booted, f"ip link set eth0 up; ip addr add {GUEST_IP}/24 dev eth0; "
                        f"cat /sys/class/net/eth0/address")
    assert re.search(r"00:16:3e(:[0-9a-f]{2}){3}", out), out   # libxl's Xen OUI
    out = shell(booted, f"ping -c 3 -W 10 {HOST_IP}")
    m = re.search(r"(\d+) packets transmitted, (\d+) packets received", out)
    assert m and int(m.group(2)) >= 1, out


def test_panic_crashes_only_that_domain(booted):
    """A second Linux domain panics (sysrq 'c'): Linux reports
    SHUTDOWN_crash, on_crash = "destroy" removes it, and the first domain
    keeps running."""
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    other = "linux-pvh-2"
    booted.xl("create", LINUX_CFG, f'name="{other}"')
    domid = booted.domains()[other][0]
    wait_for(lambda: "PYXEN-SHELL" in booted.console_log(other), "its shell", BOOT_WAIT)
    shell(booted, "echo c > /proc/sysrq-trigger", name=other, wait=False)
    wait_for(lambda: other not in booted.domains(), "the crashed domain destroyed", BOOT_WAIT)
    assert "Kernel panic" in booted.console_log(other)
    assert re.search(rf"d{domid} shut down: crash", booted.xl("dmesg").stdout)
    assert NAME in booted.domains()
    assert "PYXEN" not in shell(booted, "uname -r")       # still answers


def test_xl_destroy_mid_boot(booted):
    """`xl destroy` while the kernel is still booting: the domain goes,
    its backends with it, the other domain is untouched."""
    other = "linux-pvh-3"
    booted.xl("create", LINUX_CFG, f'name="{other}"')
    wait_for(lambda: "Booting kernel on Xen PVH" in booted.console_log(other),
             "the third guest booting", BOOT_WAIT)
    booted.xl("destroy", other)
    assert other not in booted.domains()
    assert NAME in booted.domains()
    assert "PYXEN" not in shell(booted, "uname -r")


def test_xl_shutdown_powers_off_cleanly(booted):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    booted.xl("shutdown", "-w", NAME)
    assert NAME not in booted.domains()          # on_poweroff = "destroy"
    assert "reboot: System halted" in console(booted)
    dmesg = booted.xl("dmesg").stdout
    assert re.search(r"d\d+ shut down: poweroff", dmesg), dmesg[-1000:]
