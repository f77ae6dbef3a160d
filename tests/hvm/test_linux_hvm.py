"""Debian's kernel with the project's busybox initramfs as an HVM guest.

One boot on TCG serves the ordered checks below (marker, disk, pause,
shell on the serial pty, reset, ACPI power-off of the rebooted guest): two
kernel boots in all.  (Guest crashes through pvpanic are covered with the
boot sector in test_qemu_dm.)  On
KVM only where the CPU has vmx/svm: this fleet's software KVM backend gets
no kernel output out of it within minutes.
"""
import os
import subprocess
import threading
import time
import tty

import pytest

from toolstack.devicemodel import DeviceModel, qemu_argv
from toolstack.devicemodel.accel import cpu_has_hardware_virt, kvm_device_works

from .helpers import QEMU, QEMU_IMG, cfg, linux_assets

ASSETS = linux_assets()
pytestmark = [
    pytest.mark.skipif(QEMU is None, reason="qemu-system-x86_64 not installed"),
    pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                       "(make linux-assets)"),
    pytest.mark.skipif(QEMU_IMG is None, reason="qemu-img not installed (qemu-utils)"),
]
BOOT_WAIT = 300        # bounded, far above the ~5 s TCG boot on an idle host
DISK_BYTES = 12 << 20
HEAD = b"PYXEN-HVM-DISK-7f3a"


def linux_config(disk, extra=""):
    return cfg(f"""
name = "linux-hvm"
memory = 256
vga = "none"
kernel = "{ASSETS['kernel']}"
ramdisk = "{ASSETS['ramdisk']}"
cmdline = "console=ttyS0 quiet pyxen.disk=sda"
disk = [ 'format=qcow2, vdev=hda, access=rw, target={disk}' ]
{extra}""")


def make_disk(tmp):
    raw = tmp / "disk.raw"
    with open(raw, "wb") as f:
        f.write(HEAD + b"\n")
        f.truncate(DISK_BYTES)
    q = tmp / "disk.qcow2"
    subprocess.run([QEMU_IMG, "convert", "-q", "-f", "raw", "-O", "qcow2",
                    str(raw), str(q)], check=True)
    return q


def boot(tmp, accel, domid, extra=""):
    spec = qemu_argv(linux_config(make_disk(tmp), extra), domid=domid,
                     run_dir=str(tmp / "run"), accel=accel)
    events = []
    dm = DeviceModel(spec, domid=domid, on_event=events.append).start()
    dm.seen = events
    return dm


@pytest.fixture(scope="module")
def guest(tmp_path_factory):
    dm = boot(tmp_path_factory.mktemp("linux"), "tcg", 11)
    yield dm
    dm.close()
    assert dm.proc.poll() is not None


def test_marker(guest):
    m = guest.wait_for_console(rb"PYXEN-INIT-OK (\S+)\s", BOOT_WAIT)
    assert m, guest.read_console()[-2000:]
    assert m.group(1).decode() == ASSETS["kernel_release"]


def test_disk_size_reported(guest):
    m = guest.wait_for_console(rb"PYXEN-DISK (\w+) (\d+)\s", 120)
    assert m, guest.read_console()[-2000:]
    assert m.group(1) == b"sda"                         # hda on ata_piix
    assert int(m.group(2)) == DISK_BYTES                # qcow2 virtual size
    m = guest.wait_for_console(rb"PYXEN-DISK-HEAD (\S+)\s", 30)
    assert m.group(1) == HEAD


def test_pause_unpause(guest):
    assert guest.status() in "rb"
    guest.pause()
    assert guest.status() == "p"
    t = guest.cpu_time()
    guest.unpause()
    assert guest.status() in "rb"
    assert t > 0.0                                      # it booted a kernel


def test_shell_on_the_serial_console(guest):
    """A command typed on the serial pty QEMU reported (what xl console -t
    serial opens) runs in the guest's shell."""
    assert guest.wait_for_console(rb"PYXEN-SHELL", 120)
    con = Console(guest.serial_pty())
    try:
        start = len(guest.read_console())
        con.send("echo PYXEN-ECHO-$((6*7))")
        assert guest.wait_for_console(rb"PYXEN-ECHO-42", 60, start=start), \
            guest.read_console()[start:]
    finally:
        con.close()


def test_reboot_reset_event(guest):
    assert guest.wait_for_console(rb"PYXEN-ACPID-OK", 120)
    guest.reboot()
    assert _wait(lambda: any(e.kind == "reset" for e in guest.seen), 60)
    resets = [e for e in guest.seen if e.kind == "reset"]
    assert (resets[0].guest, resets[0].reason) == (False, "host-qmp-system-reset")


def test_acpi_shutdown_retried_through_firmware(guest):
    """Pressed right after the reset, while SeaBIOS and then the kernel run
    (presses lost until the guest's acpid is up): the retries get through
    and the rebooted guest powers itself off."""
    assert guest.shutdown(timeout=BOOT_WAIT) is True
    assert guest.wait(30) == 0
    log = guest.read_console()
    assert log.count(b"PYXEN-INIT-OK") == 2, log[-2000:]   # the second boot
    assert b"Power down" in log.split(b"PYXEN-INIT-OK")[-1]
    shut = [e for e in guest.seen if e.kind == "shutdown"]
    assert (shut[-1].guest, shut[-1].reason) == (True, "guest-shutdown")
    assert guest.seen[-1].kind == "exited"
    assert guest.status() == "s"


class Console:
    """The serial pty QEMU reported in query-chardev, as `xl console` uses
    it: input written there, output drained (the serial log keeps it)."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.fd)
        self.t = threading.Thread(target=self._drain, daemon=True)
        self.t.start()

    def _drain(self):
        try:
            while os.read(self.fd, 4096):
                pass
        except OSError:
            pass

    def send(self, line):
        os.write(self.fd, line.encode() + b"\r")

    def close(self):
        os.close(self.fd)


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.skipif(not (cpu_has_hardware_virt() and kvm_device_works()[0]),
                    reason="no vmx/svm: software KVM runs this kernel ~1000x slower")
def test_linux_on_kvm(tmp_path):
    dm = boot(tmp_path, "kvm", 12)
    try:
        assert dm.wait_for_console(rb"PYXEN-INIT-OK", BOOT_WAIT)
        assert dm.wait_for_console(rb"PYXEN-ACPID-OK", 120)
        assert dm.shutdown(timeout=120) is True
    finally:
        dm.close()
