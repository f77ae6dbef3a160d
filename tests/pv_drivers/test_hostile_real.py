"""A hostile blkfront through the real path: a running domain (grant-share)
grants a page to dom0; this test, in dom0, lays a blkif ring out in that
page, gives xen-backendd the gref and an event channel of that domain
(allocated by the toolstack through the core), and then misbehaves: bad
grefs, oversize segment counts, sectors past the end, a flood of requests,
and finally a garbage ring index. xen-backendd maps the ring and the data
through gntdev and binds the channel through the core, as for any guest.
Each bad request is answered BLKIF_RSP_ERROR alone, the garbage index moves
only that device to Closing, a blk-test guest using its own disk at the
same time passes, and nothing outside the one good request's sectors is
written to the hostile device's image.

The frontend cannot kick the backend (only the granting domain could send
on its port): the backend finds the requests on its idle wake-up, which is
the path a frontend that never notifies gets anyway."""
import os
import re

import pytest

from xen_core.abi import blkif
from xen_core.abi.blkif import BLKIF_OP_WRITE, BLKIF_RSP_EOPNOTSUPP, BLKIF_RSP_ERROR, BLKIF_RSP_OKAY

from tests.dom0.conftest import ROOT, Dom0, guest, wait_for
from tests.dom0.test_xl import xs
from .doubles import indirect_request, responses, rw_request

CFG = os.path.join(ROOT, "examples", "blk-test.cfg")
SECTORS = 2048          # the hostile device's image: 1 MiB


@pytest.fixture
def dom0():
    d = Dom0()
    d.env["XEN_BACKENDD_SWITCH_ONLY"] = "1"
    try:
        yield d
    finally:
        d.kill_all()


def read(dom0, path):
    p = xs(dom0, "xenstore-read", path, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


def write(dom0, path, value):
    xs(dom0, "xenstore-write", path, str(value))


def answered(front, n):
    got = []
    wait_for(lambda: got.extend(responses(front)) or len(got) >= n, f"{n} responses")
    return got


@pytest.mark.parametrize("persistent", [1, 0])
def test_hostile_frontend_over_real_grants_and_event_channel(dom0, tmp_path, persistent):
    from dom0.gntdev import Gntdev
    from dom0.privcmd import Privcmd
    from pv_drivers.ring import FrontRing, SharedRing

    cfg = tmp_path / "hostile.cfg"
    cfg.write_text(f'name = "hostile"\ntype = "pvh"\nkernel = "{guest("grant-share")}"\n'
                   'memory = 32\nvcpus = 1\non_poweroff = "destroy"\n')
    dom0.xl("create", str(cfg))
    dom = dom0.domains()["hostile"][0]
    ref = int(wait_for(lambda: re.search(rf"\(d{dom}\) grant-share: gref (\d+) frame",
                                         dom0.xl("dmesg").stdout),
                       "grant-share's gref (xl dmesg)").group(1))
    img = tmp_path / "hostile.img"
    img.write_bytes(bytes(range(256)) * (SECTORS * 2))
    before = img.read_bytes()
    dom0.xl("block-attach", "hostile", f"format=raw, vdev=xvda, access=rw, target={img}")
    bpath = f"/local/domain/0/backend/vbd/{dom}/51712"
    fpath = f"/local/domain/{dom}/device/vbd/51712"
    wait_for(lambda: read(dom0, f"{bpath}/state") == "2", "backend InitWait")

    pc = Privcmd(dom0.dir)
    gd = Gntdev(pc)
    m = gd.map(dom, [ref])
    sring = SharedRing(m.page(0), blkif.ENTRY_SIZE)
    try:
        sring.init()                                 # before the backend looks at it
        front = FrontRing(sring)
        port = pc.call("evtchn_alloc_unbound", domid=dom, remote_domid=0)[0]["port"]
        for key, value in [("ring-ref", ref), ("event-channel", port),
                           ("protocol", "x86_64-abi"), ("feature-persistent", persistent),
                           ("state", 3)]:
            write(dom0, f"{fpath}/{key}", value)
        wait_for(lambda: read(dom0, f"{bpath}/state") == "4", "backend Connected")

        # A blk-test guest with its own disk, running while we misbehave.
        good = tmp_path / "victim.img"
        good.write_bytes(bytes(8 << 20))
        dom0.xl("create", CFG, f'kernel="{guest("blk-test")}"', 'name="victim"',
                'cmdline="console=hvc0 mb=4 iops=3000"',
                f"disk=['format=raw, vdev=xvda, access=rw, target={good}']")

        oversize = bytearray(rw_request(BLKIF_OP_WRITE, 3, 0, [(ref, 0, 7)]))
        oversize[1] = blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST + 1
        for req in [rw_request(BLKIF_OP_WRITE, 1, 8, [(ref, 0, 7)]),         # the good one
                    rw_request(BLKIF_OP_WRITE, 2, 0, [(ref + 1000, 0, 7)]),  # never granted
                    bytes(oversize),                                          # 12 segments
                    indirect_request(BLKIF_OP_WRITE, 4, 0, 257, [ref]),      # > 256 indirect
                    rw_request(BLKIF_OP_WRITE, 5, SECTORS - 4, [(ref, 0, 7)]),  # past the end
                    rw_request(BLKIF_OP_WRITE, 6, 0, [(ref, 5, 2)]),         # last < first
                    rw_request(99, 7, 0, [])]:                                # unknown op
            front.put_request(req)
        front.push_requests_and_check_notify()
        got = answered(front, 7)
        assert [(r[0], r[2]) for r in got] == [(1, BLKIF_RSP_OKAY)] + \
            [(i, BLKIF_RSP_ERROR) for i in range(2, 7)] + [(7, BLKIF_RSP_EOPNOTSUPP)]

        # A flood: the ring refilled as fast as it drains, every request bad.
        for rnd in range(4):
            for i in range(front.free_requests()):
                front.put_request(rw_request(BLKIF_OP_WRITE, 100 + i, SECTORS + i,
                                             [(ref + 1000 + i, 0, 7)]))
            n = (front.req_prod_pvt - front.rsp_cons) & 0xFFFFFFFF
            front.push_requests_and_check_notify()
            got = answered(front, n)
            assert {r[2] for r in got} == {BLKIF_RSP_ERROR}
        assert read(dom0, f"{bpath}/state") == "4"

        # A garbage index: more requests than the ring holds.
        sring.req_prod = sring.rsp_prod + 1000
        wait_for(lambda: read(dom0, f"{bpath}/state") == "5", "backend Closing")
        err = read(dom0, f"/local/domain/0/error/backend/vbd/{dom}/51712/error")
        assert err and "bogus ring requests" in err

        out = wait_for(lambda: re.search(r"blk-test: (PASS|FAIL.*)", dom0.console_log("victim"))
                       and dom0.console_log("victim"), "the victim guest to finish")
        assert "blk-test: PASS" in out, out
        assert dom0.pid("xen-backendd") is not None
        os.kill(dom0.pid("xen-backendd"), 0)            # still running
    finally:
        sring.release()
        m.unmap()
        gd.close()
        pc.close()
    after = img.read_bytes()
    assert after[:8 * 512] == before[:8 * 512]
    assert after[16 * 512:] == before[16 * 512:]
