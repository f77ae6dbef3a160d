"""blk-test, a real guest with the C blkfront, against xen-backendd: the
pattern it writes is in the image file on the host, the host's data is what
it reads, and read-only and cdrom disks refuse its writes."""
import os
import re
import struct

import pytest

from tests.dom0.conftest import ROOT, Dom0, guest, wait_for
from tests.dom0.test_xl import xs

CFG = os.path.join(ROOT, "examples", "blk-test.cfg")


@pytest.fixture
def dom0():
    d = Dom0()
    d.env["XEN_BACKENDD_SWITCH_ONLY"] = "1"     # no bridges on the host
    try:
        yield d
    finally:
        d.kill_all()


def run(dom0, name, disk_spec, cmdline="mb=1 iops=50"):
    dom0.xl("create", CFG, f'kernel="{guest("blk-test")}"', f'name="{name}"',
            f"cmdline=\"console=hvc0 {cmdline}\"", f"disk=['{disk_spec}']")
    return wait_for(lambda: re.search(r"blk-test: (PASS|FAIL.*)", dom0.console_log(name)) and
                    dom0.console_log(name), f"{name} to finish")


def expected(sector):
    return b"".join(struct.pack("<Q", sector << 16 | i) for i in range(64))


@pytest.mark.parametrize("persistent", [1, 0])
def test_guest_writes_host_reads_and_back(dom0, tmp_path, persistent):
    """With feature-persistent on both ends (the backend keeps the guest's
    pool mapped) and without it (grant copy per request)."""
    img = tmp_path / "d.img"
    img.write_bytes(bytes(8 << 20))
    out = run(dom0, "blk1", f"format=raw, vdev=xvda, access=rw, target={img}",
              f"mb=1 start=2048 persistent={persistent}")
    assert "blk-test: PASS" in out, out
    assert "16384 sectors" in out and "max indirect segments 256" in out
    assert f"persistent {persistent}" in out
    data = img.read_bytes()
    for s in (2048, 2049, 2048 + 1000, 2048 + 2047):
        assert data[s * 512:(s + 1) * 512] == expected(s)
    assert data[:2048 * 512] == bytes(2048 * 512)          # nothing outside the range
    assert data[4096 * 512:] == bytes(len(data) - 4096 * 512)
    assert re.search(r"seq write \d+ MB/s, seq read \d+ MB/s", out)


@pytest.mark.parametrize("spec", ["access=ro", "devtype=cdrom"])
def test_read_only_and_cdrom_refuse_writes(dom0, tmp_path, spec):
    img = tmp_path / "ro.img"
    img.write_bytes(b"\xab\xcd\xef\x01" + bytes((1 << 20) - 4))
    out = run(dom0, "blkro", f"format=raw, vdev=xvda, {spec}, target={img}")
    assert "write on a read-only disk: -1" in out and "blk-test: PASS" in out, out
    assert "first bytes ab cd ef 01" in out
    assert img.read_bytes()[:4] == b"\xab\xcd\xef\x01"


def test_hot_attach_and_detach_with_a_connected_frontend(dom0, tmp_path):
    """xl block-attach to a running guest whose C blkfront then connects and
    does I/O; xl block-detach goes through Closing/Closed with it (no
    timeout), and the disk is gone from the guest's and the backend's view."""
    img = tmp_path / "hot.img"
    img.write_bytes(bytes(4 << 20))
    dom0.xl("create", CFG, f'kernel="{guest("blk-test")}"', 'name="hot"',
            'cmdline="console=hvc0 hotplug=1 vdev=51728 mb=1 start=16 iops=20"', "disk=[]")
    wait_for(lambda: "waiting for vbd 51728" in dom0.console_log("hot"), "blk-test to wait")
    domid = dom0.domains()["hot"][0]
    dom0.xl("block-attach", "hot", f"format=raw, vdev=xvdb, access=rw, target={img}")
    out = wait_for(lambda: re.search(r"waiting for detach|blk-test: FAIL.*",
                                     dom0.console_log("hot")) and dom0.console_log("hot"),
                   "I/O on the hot-attached disk")
    assert "FAIL" not in out, out
    assert [r.split()[:1] for r in dom0.xl("block-list", "hot").stdout.splitlines()[1:]] == \
        [["51728"]]
    data = img.read_bytes()
    assert data[16 * 512:17 * 512] == expected(16)
    assert data[(16 + 2047) * 512:(16 + 2048) * 512] == expected(16 + 2047)
    assert data[:16 * 512] == bytes(16 * 512)
    detach = dom0.xl("block-detach", "hot", "xvdb")
    assert "did not close in time" not in detach.stderr, detach.stderr
    out = wait_for(lambda: re.search(r"blk-test: (PASS|FAIL.*)", dom0.console_log("hot")) and
                   dom0.console_log("hot"), "blk-test to finish")
    assert "detached (Closing, Closed)" in out and "blk-test: PASS" in out, out
    for path in (f"/local/domain/0/backend/vbd/{domid}/51728",
                 f"/local/domain/{domid}/device/vbd/51728"):
        assert xs(dom0, "xenstore-read", f"{path}/state", check=False).returncode != 0
