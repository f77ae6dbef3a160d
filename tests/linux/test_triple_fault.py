"""A triple fault takes the action in HVM_PARAM_TRIPLE_FAULT_REASON, as
Xen's hvm_triple_fault does: SHUTDOWN_reboot unless the toolstack chose
another (Xen's hvm_domain_initialise default; XenServer sets
SHUTDOWN_crash). The guest is `crash` in its default mode: an empty IDT,
then ud2 (#UD -> #GP -> #DF -> shutdown)."""
import os
import re

import pytest

from tests.core.conftest import console, emu_core, guest, start_guest, wait_shutdown  # noqa: F401
from tests.dom0.conftest import Dom0, wait_for
from xen_core.abi import hvm as h
from xen_core.abi import sched as s

from .helpers import ROOT

DEMO = os.path.join(ROOT, "examples", "demo.cfg")


@pytest.fixture
def core(emu_core):  # noqa: F811
    pc, events = emu_core.privcmd(), emu_core.privcmd()
    events.subscribe_dom_exc()
    yield pc, events
    pc.close()
    events.close()


def test_default_reason_is_reboot(core):
    pc, _ = core
    d = start_guest(pc, "spin")
    try:
        assert pc.hvm_param_get(d, h.HVM_PARAM_TRIPLE_FAULT_REASON) == s.SHUTDOWN_reboot
    finally:
        pc.domain_destroy(d)


@pytest.mark.parametrize("reason, state", [(None, "shutdown"),
                                           (s.SHUTDOWN_crash, "crashed"),
                                           (s.SHUTDOWN_poweroff, "shutdown")])
def test_triple_fault_takes_the_parameter_action(core, reason, state):
    pc, events = core
    d = start_guest(pc, "crash")
    try:
        if reason is not None:
            pc.hvm_param_set(d, h.HVM_PARAM_TRIPLE_FAULT_REASON, reason)
        want = s.SHUTDOWN_reboot if reason is None else reason
        pc.xen_dmesg(clear=True)
        pc.domain_unpause(d)
        ev = wait_shutdown(events, [d])[d]
        info = pc.domain_info(d)
        assert ev["shutdown_reason"] == want and info["shutdown_reason"] == want
        assert info["state"] == state
        assert "triple fault" in info["crash_detail"]
        assert "executing ud2" in console(pc, d)
        dmesg = pc.xen_dmesg().decode()
        assert f"d{d}v0 Triple fault - invoking HVM shutdown action {want}" in dmesg, dmesg
    finally:
        pc.domain_destroy(d)


def test_xl_restarts_a_triple_faulting_guest():
    """Through xl with on_reboot="restart": built again under a new domid,
    as libxl does for SHUTDOWN_reboot (the guest faults again each time)."""
    d = Dom0()
    try:
        d.xl("create", DEMO, f'kernel="{guest("crash")}"', 'name="tf"', 'on_reboot="restart"')
        wait_for(lambda: d.console_log("tf").count("executing ud2") >= 2, "a second boot")
        dmesg = d.xl("dmesg").stdout
        created = re.findall(r"created d(\d+)", dmesg)
        assert len(set(created)) >= 2, dmesg
        assert re.search(rf"d{created[0]}v0 Triple fault - invoking HVM shutdown action 1", dmesg)
        assert re.search(rf"d{created[0]} shut down: reboot", dmesg), dmesg

        def gone():
            d.xl("destroy", "tf", check=False)
            return "tf" not in d.domains()
        wait_for(gone, "the looping domain destroyed")
    finally:
        d.kill_all()
