"""format=qcow2 through qemu-nbd: blkback writes land in the qcow2 image
(read back with qemu-img), and read-only exports refuse writes."""
import os
import shutil
import subprocess

import pytest

from pv_drivers.blkback import BlkBackend
from pv_drivers.image import ImageError
from pv_drivers.nbd import NbdImage
from pv_drivers.ring import BackRing, SharedRing
from xen_core.abi import blkif

from .doubles import PageGrants, new_front, responses, rw_request

pytestmark = pytest.mark.skipif(not shutil.which("qemu-nbd") or not shutil.which("qemu-img"),
                                reason="qemu-nbd/qemu-img (Debian qemu-utils) not installed")


@pytest.fixture
def qcow2(tmp_path):
    path = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "4M"], check=True)
    return path


def test_qcow2_write_read_and_host_sees_it(qcow2, tmp_path):
    image = NbdImage(str(qcow2), "qcow2")
    try:
        assert image.sectors == 8192
        buf, front = new_front(blkif.ENTRY_SIZE)
        grants = PageGrants()
        back = BlkBackend(BackRing(SharedRing(buf, blkif.ENTRY_SIZE)), grants, image)
        data = os.urandom(4096 * 3)
        refs = [grants.grant(bytearray(data[i * 4096:(i + 1) * 4096]), readonly=True)
                for i in range(3)]
        dst = grants.grant()
        for r in [rw_request(blkif.BLKIF_OP_WRITE, 1, 2048, [(g, 0, 7) for g in refs]),
                  rw_request(blkif.BLKIF_OP_FLUSH_DISKCACHE, 2, 0, []),
                  rw_request(blkif.BLKIF_OP_READ, 3, 2056, [(dst, 0, 7)]),
                  rw_request(blkif.BLKIF_OP_READ, 4, 8190, [(dst, 0, 7)])]:
            front.put_request(r)
        front.push_requests_and_check_notify()
        back.process()
        assert [r[2] for r in responses(front)] == [0, 0, 0, blkif.BLKIF_RSP_ERROR]
        assert bytes(grants.pages[dst]) == data[4096:8192]
    finally:
        image.close()
    raw = tmp_path / "out.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(qcow2), str(raw)],
                   check=True)
    assert raw.read_bytes()[2048 * 512:2048 * 512 + len(data)] == data


def test_read_only_export_and_errors(qcow2, tmp_path):
    image = NbdImage(str(qcow2), "qcow2", read_only=True)
    try:
        assert image.read_only
        with pytest.raises(OSError):
            image.pwrite(0, b"x" * 512)            # the server refuses too (EPERM)
        assert image.pread(0, 512) == bytes(512)
    finally:
        image.close()
    bad = tmp_path / "bad.qcow2"
    bad.write_bytes(b"not a qcow2 image" * 100)
    with pytest.raises(ImageError, match="qemu-nbd"):
        NbdImage(str(bad), "qcow2")
    with pytest.raises(ImageError, match="No such file"):
        NbdImage(str(tmp_path / "missing.qcow2"), "qcow2")
