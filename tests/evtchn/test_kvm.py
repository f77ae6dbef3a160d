"""One short event-channel run on the KVM engine (skipped with the engine's
reason where /dev/kvm is unusable): evtchn-ping's self-test (VIRQ_TIMER,
IPI) and a few guest <-> dom0 round trips."""
import re
import time

import pytest

from dom0.evtchn import Evtchn
from tests.core.conftest import CoreProcess, console, start_guest, wait_shutdown

WAIT_S = 600


@pytest.fixture(scope="module")
def kvm_core():
    try:
        c = CoreProcess("kvm")
    except RuntimeError as e:
        pytest.skip(f"KVM engine unusable: {e}")
    yield c
    c.stop()


def test_kvm_ping_pong(kvm_core):
    pc = kvm_core.privcmd()
    events = kvm_core.privcmd()
    events.subscribe_dom_exc()
    dom = start_guest(pc, "evtchn-ping", cmdline="peer=0 count=3")
    pc.domain_unpause(dom)
    deadline = time.monotonic() + WAIT_S
    while not re.search(r"port (\d+) for domain 0", console(pc, dom)):
        assert time.monotonic() < deadline, console(pc, dom)
        time.sleep(0.01)
    gport = int(re.search(r"port (\d+) for domain 0", console(pc, dom)).group(1))
    xe = Evtchn(pc)
    lp = xe.bind_interdomain(dom, gport)
    assert xe.pending(WAIT_S) == lp
    xe.unmask(lp)
    for _ in range(3):
        xe.notify(lp)
        assert xe.pending(WAIT_S) == lp
        xe.unmask(lp)
    wait_shutdown(events, [dom])
    out = console(pc, dom)
    assert "IPI on port" in out and "evtchn-ping: 3 events" in out, out
    pc.domain_destroy(dom)
    xe.close()
    pc.close()
    events.close()
