"""blk-test, a real guest with the C blkfront, against xen-backendd: the
pattern it writes is in the image file on the host, the host's data is what
it reads, and read-only and cdrom disks refuse its writes."""
import os
import re
import struct

import pytest

from tests.dom0.conftest import ROOT, Dom0, guest, wait_for

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
