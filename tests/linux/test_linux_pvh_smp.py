"""Debian's kernel as a PVH domU with two vCPUs (issue 9): Linux brings the
second vCPU up the native way (INIT, STARTUP, STARTUP through the local
APIC's ICR; real mode at the STARTUP vector), both CPUs are online in
the guest; `xl reboot` restarts it (a new domid, Linux boots again) and
a power-off stops the second CPU (REBOOT_VECTOR through the ICR) before
the domain powers off cleanly. One `xl create`, then its reboot."""
import re

import pytest

from tests.dom0.conftest import Dom0, wait_for

from .helpers import console_shell, linux_assets, xl_create_linux

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
NAME = "linux-smp"
BOOT_WAIT = 900     # a bound for what must happen (about 20 s here)


@pytest.fixture(scope="module")
def smp():
    d = Dom0()
    try:
        xl_create_linux(d, f'name="{NAME}"', "vcpus=2")
        yield d
    finally:
        d.kill_all()


def console(d) -> str:
    return d.console_log(NAME)


STALL = "rcu: INFO: rcu_preempt detected stalls"


def no_stall(d) -> None:
    """Fail at once, naming it, when Linux reports that a CPU stopped
    answering (a vCPU that is never woken) instead of waiting out the bound."""
    log = console(d)
    assert STALL not in log, "Linux reports an RCU stall: " + log[log.index(STALL):][:1500]


def shell(d, command: str) -> str:
    """`command`'s output through the guest's console pty (as xl console);
    an RCU stall Linux reports meanwhile fails it at once."""
    return console_shell(d, NAME, command, BOOT_WAIT, idle=lambda: no_stall(d))


def test_second_cpu_comes_up(smp):
    assert wait_for(lambda: "PYXEN-SHELL" in console(smp) or STALL in console(smp),
                    "the /init shell", BOOT_WAIT)
    no_stall(smp)
    log = console(smp)
    assert "smp: Brought up 1 node, 2 CPUs" in log, log[-3000:]
    assert "do_boot_cpu failed" not in log
    assert "cpu 1 spinlock event irq" in log        # Xen's per-CPU IPI ports bound


def test_guest_sees_two_online_cpus(smp):
    assert wait_for(lambda: "PYXEN-SHELL" in console(smp), "the /init shell", BOOT_WAIT)
    out = shell(smp, "cat /sys/devices/system/cpu/online; grep -c ^processor /proc/cpuinfo")
    assert re.search(r"^0-1\s*$", out, re.M), out
    assert re.search(r"^2\s*$", out, re.M), out
    # Both vCPUs exist in the core, each with its own run time.
    vcpus = smp.xl("vcpu-list", NAME).stdout
    rows = [line.split() for line in vcpus.splitlines()[1:] if line.strip()]
    assert [r[2] for r in rows] == ["0", "1"], vcpus


def test_work_runs_on_the_second_cpu(smp):
    """A task pinned to CPU 1 runs there (the scheduler's IPIs are event
    channels bound with bind_ipi on each vCPU)."""
    out = shell(smp, "taskset -c 1 cat /proc/self/stat")
    fields = out.strip().splitlines()[-1].split(")")[-1].split()
    assert fields[36] == "1", out                    # field 39, `processor`


def test_xl_reboot_restarts_linux(smp):
    """`xl reboot`: Linux stops its other CPU and asks Xen for
    SHUTDOWN_reboot; on_reboot="restart" builds it again under a new domid
    and Linux boots to its /init shell a second time, with both CPUs."""
    old = smp.domains()[NAME][0]
    smp.xl("reboot", NAME)
    wait_for(lambda: console(smp).count("PYXEN-SHELL") >= 2 or STALL in console(smp),
             "the second /init shell", BOOT_WAIT)
    no_stall(smp)
    new = smp.domains()[NAME][0]
    assert new != old
    log = console(smp)
    assert "reboot: Restarting system" in log
    assert log.count("PYXEN-INIT-OK") == 2
    assert log.count("smp: Brought up 1 node, 2 CPUs") == 2, log[-3000:]
    assert re.search(rf"d{old} shut down: reboot", smp.xl("dmesg").stdout)


def test_shutdown_powers_off_both_cpus(smp):
    smp.xl("shutdown", "-w", NAME)
    assert NAME not in smp.domains()
    log = console(smp)
    assert "reboot: System halted" in log, log[-2000:]
    dmesg = smp.xl("dmesg").stdout
    assert re.search(r"d\d+ shut down: poweroff", dmesg), dmesg[-1000:]
