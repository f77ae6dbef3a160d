"""`xl reboot` of Debian's kernel as a PVH domU (issue 9): Linux restarts
(SHUTDOWN_reboot, on_reboot = "restart" in examples/linux-pvh.cfg) under
a new domid, as libxl does, and boots to its /init shell again; a kernel
panic afterwards still crashes the domain (on_crash = "destroy")."""
import re

import pytest

from tests.dom0.conftest import Dom0, wait_for

from .helpers import console_shell, linux_assets, xl_create_linux

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
NAME = "linux-rb"
BOOT_WAIT = 900     # a bound for what must happen (about 20 s here)


@pytest.fixture(scope="module")
def guest():
    d = Dom0()
    try:
        xl_create_linux(d, f'name="{NAME}"')
        yield d
    finally:
        d.kill_all()


def console(d) -> str:
    return d.console_log(NAME)


def test_xl_reboot_restarts_linux(guest):
    assert wait_for(lambda: "PYXEN-SHELL" in console(guest), "the /init shell", BOOT_WAIT)
    old = guest.domains()[NAME][0]
    guest.xl("reboot", NAME)
    wait_for(lambda: console(guest).count("PYXEN-SHELL") >= 2, "the second /init shell",
             BOOT_WAIT)
    new = guest.domains()[NAME][0]
    assert new != old
    log = console(guest)
    assert "reboot: Restarting system" in log, log[-3000:]
    assert len(re.findall(rf"PYXEN-INIT-OK {re.escape(ASSETS['kernel_release'])}\s", log)) == 2
    dmesg = guest.xl("dmesg").stdout
    assert re.search(rf"d{old} shut down: reboot", dmesg), dmesg[-2000:]
    assert re.search(rf"destroyed d{old}\b", dmesg)


def test_panic_after_reboot_still_crashes(guest):
    """sysrq 'c' in the restarted guest: SHUTDOWN_crash, not a reboot."""
    domid = guest.domains()[NAME][0]
    console_shell(guest, NAME, "echo c > /proc/sysrq-trigger", BOOT_WAIT, wait=False)
    wait_for(lambda: NAME not in guest.domains(), "the crashed domain destroyed", BOOT_WAIT)
    assert "Kernel panic" in console(guest)
    assert re.search(rf"d{domid} shut down: crash", guest.xl("dmesg").stdout)
