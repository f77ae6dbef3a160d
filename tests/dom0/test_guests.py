"""Guests that use their xenstore and PV console rings, booted by xl."""
import os
import shutil
import subprocess

import pytest

from .conftest import ROOT, guest, wait_for

XS_TEST = os.path.join(ROOT, "examples", "xs-test.cfg")
PV_SHUTDOWN = os.path.join(ROOT, "examples", "pv-shutdown.cfg")


def test_xs_test_over_its_store_ring(dom0):
    guest("xs-test")
    p = dom0.xl("create", "-c", XS_TEST, 'on_poweroff="preserve"', input="")
    out = p.stdout
    assert "xs-test: domid 1 name xs-test" in out
    assert 'xs-test: data/xs-test = "written by domain 1"' in out
    assert "xs-test: writing name: refused (-13)" in out         # EACCES: dom0's node
    assert "xs-test: watch fired: data/watched (xs-test-token)" in out
    assert "xs-test: PASS" in out
    # What the guest wrote is in the store, under its home (preserved domain).
    exe = shutil.which("xenstore-read")
    if exe:
        v = subprocess.run([exe, "/local/domain/1/data/xs-test"], env=dom0.env,
                           capture_output=True, text=True, timeout=60)
        assert v.stdout.strip() == "written by domain 1"
    name = wait_for(lambda: [n for n in dom0.domains() if n.startswith("xs-test-")],
                    "the preserved domain")[0]
    assert dom0.domains()[name][1] == "---s--"        # shut down, reason poweroff
    dom0.xl("destroy", name)


def test_pv_shutdown_reboot_then_poweroff(dom0):
    guest("pv-shutdown")
    dom0.xl("create", PV_SHUTDOWN)
    wait_for(lambda: "pv-shutdown ready" in dom0.console_log("pv-shutdown"), "the guest's watch")
    old = dom0.domains()["pv-shutdown"][0]
    p = dom0.xl("reboot", "-w", "pv-shutdown")
    assert f"Domain {old} has been rebooted" in p.stderr
    log = dom0.console_log("pv-shutdown")
    assert "pv-shutdown: reboot requested" in log
    new = wait_for(lambda: dom0.domains().get("pv-shutdown", (old,))[0] != old
                   and dom0.domains()["pv-shutdown"][0], "on_reboot=restart")
    wait_for(lambda: dom0.console_log("pv-shutdown").count("ready") == 2, "the new boot's watch")
    dom0.xl("shutdown", "-w", "pv-shutdown")
    assert "pv-shutdown: poweroff requested" in dom0.console_log("pv-shutdown")
    wait_for(lambda: "pv-shutdown" not in dom0.domains(), "on_poweroff=destroy")
    assert new != old


def test_shutdown_all(dom0):
    guest("pv-shutdown")
    for i in range(3):
        dom0.xl("create", PV_SHUTDOWN, f'name="pv{i}"')
    for i in range(3):
        wait_for(lambda: "ready" in dom0.console_log(f"pv{i}"), "watches set")
    dom0.xl("shutdown", "-a", "-w")
    wait_for(lambda: list(dom0.domains()) == ["Domain-0"], "all domains gone")
