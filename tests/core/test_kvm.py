"""The same guests on the KVM engine (few and short: on kvm_pvm ring-0 code
is emulated by the host kernel, about 1000x slower than hardware)."""
import pytest

from xen_core.abi import sched as s

from .conftest import CoreProcess, console, start_guest, wait_shutdown


@pytest.fixture(scope="module")
def kvm_core():
    try:
        core = CoreProcess("kvm")
    except RuntimeError as e:
        pytest.skip(str(e))
    yield core
    core.stop()


@pytest.mark.parametrize("name, cmdline, reason, text", [
    ("hello", "", s.SHUTDOWN_poweroff, "hello: bye"),
    ("crash", "", s.SHUTDOWN_reboot, "crash:"),        # triple fault: Xen resets
    ("badcall", "", s.SHUTDOWN_poweroff, " 0 failed"),
    ("hypercall-loop", "loops=200", s.SHUTDOWN_poweroff, "200 calls"),
])
def test_guest_on_kvm(kvm_core, name, cmdline, reason, text):
    """Each guest next to a spinning one, which is destroyed while it runs."""
    pc, events = kvm_core.privcmd(), kvm_core.privcmd()
    try:
        events.subscribe_dom_exc()
        bystander = start_guest(pc, "spin")
        pc.domain_unpause(bystander)
        d = start_guest(pc, name, cmdline=cmdline)
        pc.domain_unpause(d)
        wait_shutdown(events, [d])
        info = pc.domain_info(d)
        assert info["shutdown_reason"] == reason
        assert text in console(pc, d)
        assert "FAIL" not in console(pc, d)
        assert pc.domain_info(bystander)["state"] == "running"
        pc.domain_destroy(d)
        pc.domain_destroy(bystander)
    finally:
        pc.close()
        events.close()
