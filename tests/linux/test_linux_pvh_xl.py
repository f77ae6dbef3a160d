"""Debian's kernel as a PVH domU through `xl create` (issue 9, stage B):
hvc0 on the PV console ring drained by xenconsoled, Linux's xenbus talking
to xenstored through the store ring, `xl shutdown` -> clean power-off.
One boot (examples/linux-pvh.cfg) serves the ordered checks below."""
import os
import re

import pyxs
import pytest

from tests.dom0.conftest import Dom0, wait_for

from .helpers import ROOT, linux_assets

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
CONFIG = os.path.join(ROOT, "examples", "linux-pvh.cfg")
NAME = "linux-pvh"
BOOT_WAIT = 900     # a bound for what must happen (about 20 s here)


@pytest.fixture(scope="module")
def booted():
    d = Dom0()
    try:
        r = d.xl("create", CONFIG, check=False)
        if r.returncode != 0 and "accel emu" in r.stderr:
            pytest.skip(r.stderr.strip())
        assert r.returncode == 0, r.stderr
        yield d
    finally:
        d.kill_all()


def console(d) -> str:
    return d.console_log(NAME)


def test_hvc0_console_reaches_init_marker(booted):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell",
                    BOOT_WAIT)
    log = console(booted)
    m = re.search(r"PYXEN-INIT-OK (\S+)", log)
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


def test_xl_shutdown_powers_off_cleanly(booted):
    assert wait_for(lambda: "PYXEN-SHELL" in console(booted), "the /init shell", BOOT_WAIT)
    booted.xl("shutdown", "-w", NAME)
    assert NAME not in booted.domains()          # on_poweroff = "destroy"
    assert "reboot: System halted" in console(booted)
    dmesg = booted.xl("dmesg").stdout
    assert re.search(r"d\d+ shut down: poweroff", dmesg), dmesg[-1000:]
