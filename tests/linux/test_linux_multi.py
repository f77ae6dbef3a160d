"""Three Debian Linux PVH domUs at once through `xl create`, each with its
own raw image (issue 9: "3 Linux guests at once, each with its own disk,
all shut down cleanly"): each boots to its /init shell and sees its own
disk, a pattern each writes to its xvda lands in its own image only, and
`xl shutdown -a -w` powers all three off with nothing left behind (no
domain, no xenstore home, no backend directory, no /vm or /libxl entry)."""
import os
import re

import pytest

from tests.dom0.conftest import Dom0, wait_for

from .helpers import console_shell, linux_assets, make_disk, xl_create_linux, xs_list

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
BOOT_WAIT = 1800     # a bound for what must happen (three boots share 2 cores)
DISK_BYTES = 8 << 20
NAMES = ("linux-m1", "linux-m2", "linux-m3")
PATTERN_SECTOR = 300


def head(i: int) -> bytes:
    return b"PYXEN-MULTI-DISK-%d-a93f" % i


def pattern(i: int) -> bytes:
    return b"PYXEN-MULTI-PATTERN-%d-77c1\n" % i


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linux-multi")
    disks = [make_disk(tmp / f"xvda-{i}.img", head(i), DISK_BYTES) for i in (1, 2, 3)]
    d = Dom0()
    try:
        for name, disk in zip(NAMES, disks):
            xl_create_linux(d, f'name="{name}"', "memory=128",
                            f"disk=['format=raw, vdev=xvda, access=rw, target={disk}']",
                            'cmdline="console=hvc0 pyxen.disk=xvda"')
        yield d, disks
    finally:
        d.kill_all()


def _all_at_shell(d) -> bool:
    return all("PYXEN-SHELL" in d.console_log(n) for n in NAMES)


def test_three_boot_to_init_with_their_own_disk(three):
    d, _ = three
    assert set(NAMES) <= set(d.domains())
    wait_for(lambda: _all_at_shell(d), "three /init shells", BOOT_WAIT)
    domids = {d.domains()[n][0] for n in NAMES}
    assert len(domids) == 3
    for i, name in enumerate(NAMES, 1):
        log = d.console_log(name)
        m = re.search(r"PYXEN-INIT-OK (\S+)\s", log)
        assert m and m.group(1) == ASSETS["kernel_release"], log[-2000:]
        assert f"PYXEN-DISK xvda {DISK_BYTES}" in log, log[-2000:]
        # Each reads the head of its own image, not another's.
        assert f"PYXEN-DISK-HEAD {head(i).decode()}" in log, log[-2000:]
        for j in {1, 2, 3} - {i}:
            assert head(j).decode() not in log


def test_each_pattern_lands_in_its_own_image_only(three):
    d, disks = three
    wait_for(lambda: _all_at_shell(d), "three /init shells", BOOT_WAIT)
    for i, name in enumerate(NAMES, 1):
        console_shell(d, name, f"echo {pattern(i).decode().strip()} | dd of=/dev/xvda "
                               f"bs=512 seek={PATTERN_SECTOR} conv=fsync 2>/dev/null",
                      BOOT_WAIT)
    for i, disk in enumerate(disks, 1):
        with open(disk, "rb") as f:
            data = f.read()
        assert data[PATTERN_SECTOR * 512:][:len(pattern(i))] == pattern(i)
        assert data.startswith(head(i) + b"\n")            # the rest untouched
        for j in {1, 2, 3} - {i}:
            assert pattern(j) not in data and head(j) not in data
    # And each guest reads back its own pattern (through its own blkfront).
    for i, name in enumerate(NAMES, 1):
        out = console_shell(d, name, f"dd if=/dev/xvda bs=512 skip={PATTERN_SECTOR} "
                                     f"count=1 iflag=direct 2>/dev/null | head -n 1",
                            BOOT_WAIT)
        assert pattern(i).decode().strip() in out, out


def _open_files(pid: int) -> set[str]:
    out = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return out
    for fd in fds:
        try:
            out.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return out


def test_xl_shutdown_all_and_nothing_left(three):
    d, disks = three
    wait_for(lambda: _all_at_shell(d), "three /init shells", BOOT_WAIT)
    domids = [d.domains()[n][0] for n in NAMES]
    d.xl("shutdown", "-a", "-w", timeout=BOOT_WAIT)
    wait_for(lambda: not set(NAMES) & set(d.domains()), "all three gone", BOOT_WAIT)
    assert [n for n in d.domains() if n != "Domain-0"] == []
    dmesg = d.xl("dmesg").stdout
    for domid, name in zip(domids, NAMES):
        assert "reboot: System halted" in d.console_log(name)
        assert re.search(rf"d{domid} shut down: poweroff", dmesg), dmesg[-2000:]
    # Nothing left in xenstore for any of them.
    for kind in ("vbd", "console", "vif"):
        left = xs_list(d, f"/local/domain/0/backend/{kind}") or []
        assert not set(left) & {str(x) for x in domids}, (kind, left)
    homes = xs_list(d, "/local/domain") or []
    assert not set(homes) & {str(x) for x in domids}, homes
    assert not set(xs_list(d, "/libxl") or []) & {str(x) for x in domids}
    assert (xs_list(d, "/vm") or []) == []
    # The block backend let go of every image (its vbds were torn down).
    backendd = d.pid("xen-backendd")
    assert backendd and os.path.exists(f"/proc/{backendd}"), "xen-backendd not running"
    wait_for(lambda: not _open_files(backendd) & {os.path.realpath(p) for p in disks},
             "xen-backendd closing the images", BOOT_WAIT)
