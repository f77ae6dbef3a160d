"""Two net-test guests (C netfront) ping each other through xen-backendd's
built-in switch: ARP, ICMP echo, round trips printed by the guest."""
import os
import re

import pytest

from tests.dom0.conftest import ROOT, Dom0, guest, wait_for

CFG = os.path.join(ROOT, "examples", "net-test.cfg")


@pytest.fixture
def dom0():
    d = Dom0()
    d.env["XEN_BACKENDD_SWITCH_ONLY"] = "1"     # no bridges on the host
    try:
        yield d
    finally:
        d.kill_all()


def test_two_guests_ping_through_the_switch(dom0):
    kernel = guest("net-test")
    dom0.xl("create", CFG, f'kernel="{kernel}"', 'name="net-a"', 'cmdline="ip=10.0.0.1"',
            "vif=['mac=00:16:3e:00:00:a1, bridge=testsw0']")
    wait_for(lambda: "up" in dom0.console_log("net-a"), "net-a up")
    dom0.xl("create", CFG, f'kernel="{kernel}"', 'name="net-b"',
            'cmdline="ip=10.0.0.2 peer=10.0.0.1 count=5"',
            "vif=['mac=00:16:3e:00:00:b2, bridge=testsw0']")
    out = wait_for(lambda: re.search(r"net-test: (PASS|FAIL.*)", dom0.console_log("net-b")) and
                   dom0.console_log("net-b"), "net-b to finish")
    assert "net-test: PASS" in out, out + dom0.console_log("net-a")
    assert "peer 10.0.0.1 is at 00:16:3e:00:00:a1" in out
    assert "5/5 replies" in out
    dom0.xl("destroy", "net-a")


def _netns_ok() -> bool:
    import shutil
    import subprocess
    if not (shutil.which("unshare") and shutil.which("ip")
            and os.path.exists("/dev/net/tun")):
        return False
    return subprocess.run(["unshare", "-n", "ip", "link", "add", "name", "probe0", "type",
                           "bridge"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _netns_ok(), reason="no network namespaces, bridges or /dev/net/tun")
def test_guest_answers_host_ping_through_tap_in_a_netns():
    import subprocess
    import sys
    kernel = guest("net-test")
    d = Dom0()                      # its own run dir; the netns keeps bridges off the host
    try:
        env = dict(d.env, PYTHON=sys.executable)
        r = subprocess.run(["unshare", "-n", "sh", os.path.join(ROOT, "tests", "pv_drivers",
                                                                "netns_ping.sh"), kernel],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0 and "NETNS-PING-OK" in r.stdout, r.stdout + r.stderr
        assert "3 received" in r.stdout and "vif" in r.stdout
    finally:
        d.kill_all()
