"""QEMU run and driven over QMP: firmware boots, life cycle, supervision.

Guests: the project's boot sector (prints a marker on COM1, powers off via
ACPI), SeaBIOS with nothing to boot (stays up, idle), and every option xl
can produce, started paused to prove QEMU accepts the command line.
Waits are bounded so a broken guest fails instead of hanging; no test
asserts on speed.
"""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from toolstack.devicemodel import (DeviceModel, DeviceModelError,
                                   DeviceModelGone, qemu_argv)
from toolstack.devicemodel.accel import kvm_device_works
from toolstack.devicemodel.controller import qmp_execute, vcpu_cpu_time, xl_state

from .helpers import BOOTSECTOR, PANIC_BOOTSECTOR, QEMU, QEMU_IMG, ROOT, cfg

pytestmark = pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not "
                                "installed (Debian qemu-system-x86; make deps)")
need_bootsector = pytest.mark.skipif(not os.path.exists(BOOTSECTOR),
                                     reason="boot sector not built (make linux-assets)")
MARKER = rb"PYXEN-BOOTSECTOR-OK"


def gone(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:           # a zombie counts as gone
        return f.read().rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def launch(tmp_path):
    """launch(text, domid=..., accel=..., paused=...) -> started DeviceModel;
    every one is destroyed at the end."""
    started = []

    def _launch(text, domid=1, accel="tcg", paused=False, privileged=False):
        spec = qemu_argv(cfg(text), domid=domid, run_dir=str(tmp_path / f"d{domid}"),
                         accel=accel, privileged=privileged)
        events = []
        dm = DeviceModel(spec, domid=domid, on_event=events.append)
        dm.seen = events
        started.append(dm)
        return dm.start(paused=paused)

    yield _launch
    for dm in started:
        dm.close()
        assert dm.proc is None or dm.proc.poll() is not None


BOOT_DISK = f"disk = [ 'format=raw, vdev=hda, access=rw, target={BOOTSECTOR}' ]\nboot = \"c\"\n"
IDLE = 'boot = "c"\n'          # SeaBIOS finds nothing to boot and waits


@need_bootsector
def test_firmware_boot_tcg(launch):
    dm = launch(BOOT_DISK + "memory = 32")
    assert dm.wait_for_console(MARKER, 60)
    assert dm.wait(60) == 0                  # powered off through ACPI
    kinds = [(e.kind, e.guest, e.reason) for e in dm.seen]
    assert ("shutdown", True, "guest-shutdown") in kinds
    assert kinds[-1] == ("exited", True, "guest-shutdown")
    assert dm.status() == "s"


@need_bootsector
@pytest.mark.skipif(not kvm_device_works()[0], reason="/dev/kvm not usable")
def test_firmware_boot_kvm(launch):
    # kvm_pvm emulates real mode instruction by instruction: a generous wait
    dm = launch(BOOT_DISK + "memory = 32", accel="kvm")
    assert "pc,accel=kvm" in dm.spec.argv
    assert dm.wait_for_console(MARKER, 180)
    assert dm.wait(60) == 0


@need_bootsector
def test_poweroff_preserved(launch):
    dm = launch(BOOT_DISK + 'memory = 32\non_poweroff = "preserve"')
    assert dm.wait_for_console(MARKER, 60)
    assert wait_until(lambda: any(e.kind == "shutdown" for e in dm.seen), 30)
    assert dm.alive and dm.status() == "s"      # -no-shutdown keeps it
    assert dm.query_status()["status"] == "shutdown"
    dm.destroy()
    assert not dm.alive and dm.status() == "d"


PANIC_DISK = (f"disk = [ 'format=raw, vdev=hda, access=rw, target={PANIC_BOOTSECTOR}' ]\n"
              'boot = "c"\nmemory = 32\n')
need_panic = pytest.mark.skipif(not os.path.exists(PANIC_BOOTSECTOR),
                                reason="panic boot sector not built (make linux-assets)")


@need_panic
def test_guest_panic_is_a_crash(launch):
    """pvpanic from the guest: QEMU powers off (panic=shutdown), and the
    domain is crashed, not shut down."""
    dm = launch(PANIC_DISK)
    assert dm.wait(60) is not None
    kinds = [(e.kind, e.reason) for e in dm.seen]
    assert ("panicked", "poweroff") in kinds
    assert ("shutdown", "guest-panic") in kinds
    assert dm.seen[-1].kind == "crashed" and dm.seen[-1].reason == "guest-panic"
    assert dm.status() == "c"


@need_panic
def test_guest_panic_preserved(launch):
    dm = launch(PANIC_DISK + 'on_crash = "preserve"')
    assert wait_until(lambda: any(e.kind == "panicked" for e in dm.seen), 60)
    assert dm.alive and dm.status() == "c"
    dm.destroy()
    assert dm.status() == "d"


def test_pause_unpause(launch):
    dm = launch(IDLE)
    assert dm.status() in "rb"
    dm.pause()
    assert dm.status() == "p"
    dm.unpause()
    assert dm.status() in "rb"
    kinds = [e.kind for e in dm.seen]
    assert kinds.index("stop") < len(kinds) - 1 - kinds[::-1].index("resume")


def test_second_monitor_for_other_xl_processes(launch):
    """xl pause/unpause/list from another process: one-shot QMP on the
    second socket; the supervising controller sees the events."""
    dm = launch(IDLE)
    aux = dm.spec.qmp_aux_path
    assert qmp_execute(aux, "query-status")["status"] == "running"
    qmp_execute(aux, "stop")
    assert xl_state(qmp_execute(aux, "query-status")["status"], dm.pid) == "p"
    assert wait_until(lambda: any(e.kind == "stop" for e in dm.seen), 30)
    assert dm.status() == "p"
    qmp_execute(aux, "cont")
    assert dm.status() in "rb"
    assert vcpu_cpu_time(dm.pid) >= 0.0
    with pytest.raises(DeviceModelError, match="QMP no-such-command"):
        qmp_execute(aux, "no-such-command")
    dm.destroy()
    with pytest.raises(DeviceModelGone):
        qmp_execute(aux, "query-status")
    assert vcpu_cpu_time(dm.pid) is None


def test_callback_cannot_deadlock_the_controller(tmp_path):
    spec = qemu_argv(cfg(IDLE), domid=1, run_dir=str(tmp_path))
    errors = []

    def cb(ev):
        try:
            dm.status()
        except DeviceModelError as e:
            errors.append(str(e))

    dm = DeviceModel(spec, domid=1, on_event=cb)
    try:
        dm.start()
        dm.pause()
        assert wait_until(lambda: len(errors) >= 2, 30)    # resume, stop
        assert "own event callback" in errors[0]
        assert dm.status() == "p"
    finally:
        dm.close()


def test_created_paused(launch):
    dm = launch(IDLE, paused=True)
    assert dm.status() == "p"
    assert dm.query_status()["status"] == "prelaunch"
    dm.unpause()
    assert dm.status() in "rb"


def test_destroy_ends_qemu(launch):
    dm = launch(IDLE)
    pid, qmp = dm.pid, dm.spec.qmp_path
    assert os.path.exists(qmp)
    dm.destroy()
    assert gone(pid)
    assert not os.path.exists(qmp)
    assert dm.status() == "d"
    assert dm.seen[-1].kind == "exited" and dm.seen[-1].reason == "host-quit"
    with pytest.raises(DeviceModelGone):
        dm.pause()


def test_killed_qemu_is_crashed(launch):
    dm = launch(IDLE)
    os.kill(dm.pid, signal.SIGKILL)
    assert wait_until(lambda: dm.seen and dm.seen[-1].kind == "crashed", 30)
    assert dm.seen[-1].reason == "killed by signal 9"
    assert dm.status() == "c"
    assert not os.path.exists(dm.spec.qmp_path)     # stale sockets removed
    assert not os.path.exists(dm.spec.qmp_aux_path)
    with pytest.raises(DeviceModelGone):
        dm.unpause()


def test_reset_event(launch):
    dm = launch(IDLE)
    dm.reboot()
    assert wait_until(lambda: any(e.kind == "reset" for e in dm.seen), 30)
    ev = next(e for e in dm.seen if e.kind == "reset")
    assert (ev.guest, ev.reason) == (False, "host-qmp-system-reset")


def test_shutdown_falls_back_to_quit(launch):
    # Nothing in the guest answers the power button: after the bounded
    # wait, quit.
    dm = launch(IDLE)
    assert dm.shutdown(timeout=1.5, retry=0.5) is False
    assert not dm.alive and dm.status() == "d"


def test_cpu_time_and_pty(launch):
    dm = launch(IDLE)
    assert dm.serial_pty().startswith("/dev/pts/")
    assert os.path.exists(dm.serial_pty())
    assert dm.cpu_time() >= 0.0
    # SeaBIOS burns some CPU while it probes; the counter comes from /proc
    assert wait_until(lambda: dm.cpu_time() > 0.0, 60)


def test_qemu_refusing_the_config_is_reported(launch, tmp_path):
    with pytest.raises(DeviceModelError, match="QEMU exited"):
        launch(f"disk = [ 'vdev=hda, target={tmp_path}/missing.img' ]")


def test_missing_binary(tmp_path):
    spec = qemu_argv(cfg(IDLE), domid=1, run_dir=str(tmp_path), qemu="/nonexistent/qemu")
    with pytest.raises(DeviceModelError, match="cannot run /nonexistent/qemu"):
        DeviceModel(spec, domid=1).start()


@pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed (qemu-utils)")
def test_every_xl_option_accepted_by_qemu(launch, tmp_path):
    """The full range of what qemu_argv emits, in one machine QEMU must
    accept (started paused, never run)."""
    q = tmp_path / "a.qcow2"
    subprocess.run([QEMU_IMG, "create", "-q", "-f", "qcow2", str(q), "16M"], check=True)
    raw = tmp_path / "b.img"
    raw.write_bytes(b"\0" * (1 << 20))
    iso = tmp_path / "c.iso"
    iso.write_bytes(b"\0" * (1 << 20))
    text = textwrap.dedent(f"""\
        memory = 128
        vcpus = 2
        maxvcpus = 3
        hdtype = "ahci"
        disk = [ 'format=qcow2, vdev=hda, target={q}',
                 'format=raw, vdev=sdb, access=ro, target={raw}',
                 'format=raw, vdev=hdc, devtype=cdrom, target={iso}',
                 ',raw,hdd:cdrom,r' ]
        vif = [ 'model=e1000', 'model=rtl8139' ]
        stdvga = 1
        videoram = 16
        usb = 1
        usbdevice = "tablet"
        localtime = 1
        soundhw = "hda"
        acpi = 1
        boot = "dc"
        serial = [ "pty", "null" ]
        on_poweroff = "preserve"
        device_model_args = [ "-msg", "timestamp=on" ]
        """)
    dm = launch(text, paused=True)
    assert dm.status() == "p"
    assert set(dm.ptys) == {"serial0"}
    blocks = dm._call(dm._execute("query-block"), 10)
    assert {b["device"] for b in blocks} >= {"ide-5632", "ide-5696"}
    dm.destroy()


@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/net/tun"),
                    reason="TAP devices need root and /dev/net/tun")
def test_tap_enslaved_to_bridge(launch):
    br = f"pyxbr{os.getpid() % 100000}"
    subprocess.run(["ip", "link", "add", br, "type", "bridge"], check=True)
    try:
        dm = launch(IDLE + f"vif = [ 'bridge={br}, model=e1000' ]", domid=77,
                    privileged=True)
        assert dm.spec.taps == [("vif77.0-emu", br)]
        master = os.path.realpath("/sys/class/net/vif77.0-emu/master")
        assert os.path.basename(master) == br
        dm.destroy()
        assert wait_until(lambda: not os.path.exists("/sys/class/net/vif77.0-emu"), 10)
    finally:
        subprocess.run(["ip", "link", "del", br], check=False)


def test_missing_bridge_is_an_error_and_leaves_nothing(launch):
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        pytest.skip("TAP devices need root and /dev/net/tun")
    with pytest.raises(DeviceModelError, match="Could not find bridge device nosuchbr0"):
        launch(IDLE + "vif = [ 'bridge=nosuchbr0' ]", domid=78, privileged=True)
    assert not os.path.exists("/sys/class/net/vif78.0-emu")


def test_qemu_dies_with_the_toolstack(tmp_path):
    """A toolstack killed outright must not leave QEMU behind (PDEATHSIG)."""
    script = textwrap.dedent(f"""\
        import os, signal, sys
        sys.path.insert(0, {ROOT!r})
        from tests.hvm.helpers import cfg
        from toolstack.devicemodel import DeviceModel, qemu_argv
        spec = qemu_argv(cfg('boot = "c"'), domid=1, run_dir={str(tmp_path)!r})
        dm = DeviceModel(spec, domid=1).start()
        print(dm.pid, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
        """)
    p = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    pid = int(p.stdout.split()[0])
    assert wait_until(lambda: gone(pid), 30)
