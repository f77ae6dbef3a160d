"""xl create with disk= and vif=, block-/network-attach/-list/-detach on a
running guest, through xencommons' xen-backendd and libxl's keys. The
guest (spin) has no frontends, so devices wait in InitWait and detach
finishes without a frontend, as libxl's does for a silent guest."""
import subprocess

import pytest

from tests.dom0.conftest import Dom0, guest, wait_for
from tests.dom0.test_xl import DEMO, xs


@pytest.fixture
def dom0():
    d = Dom0()
    d.env["XEN_BACKENDD_SWITCH_ONLY"] = "1"     # no bridges on the host
    try:
        yield d
    finally:
        d.kill_all()


def read(dom0, path):
    return xs(dom0, "xenstore-read", path, check=False).stdout.strip()


def test_devices_on_create_attach_list_detach(dom0, tmp_path):
    disk = tmp_path / "d.img"
    disk.write_bytes(bytes(1 << 20))
    qcow = tmp_path / "c.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(qcow), "2M"], check=True)
    dom0.xl("create", DEMO, f'kernel="{guest("spin")}"', 'name="dev1"',
            f"disk=['format=raw, vdev=xvda, access=rw, target={disk}']",
            "vif=['mac=00:16:3e:01:02:03, bridge=testbr0']")
    domid = dom0.domains()["dev1"][0]
    b = f"/local/domain/0/backend/vbd/{domid}/51712"
    f = f"/local/domain/{domid}/device/vbd/51712"
    assert read(dom0, f"{b}/params") == str(disk)
    assert read(dom0, f"{f}/backend") == b and read(dom0, f"{f}/virtual-device") == "51712"
    perms = xs(dom0, "xenstore-ls", "-p", f"/local/domain/0/backend/vbd/{domid}").stdout
    assert f"(n0,r{domid})" in perms
    assert f"(n{domid},r0)" in xs(dom0, "xenstore-ls", "-p", f"/local/domain/{domid}/device").stdout
    wait_for(lambda: read(dom0, f"{b}/state") == "2", "vbd InitWait from xen-backendd")
    assert read(dom0, f"{b}/sectors") == "2048"
    vb = f"/local/domain/0/backend/vif/{domid}/0"
    wait_for(lambda: read(dom0, f"{vb}/state") == "2", "vif InitWait")
    assert read(dom0, f"{vb}/mac") == "00:16:3e:01:02:03"

    dom0.xl("block-attach", "dev1", f"format=qcow2, vdev=xvdb, access=ro, target={qcow}")
    qb = f"/local/domain/0/backend/vbd/{domid}/51728"
    assert read(dom0, f"{qb}/params") == f"qcow2:{qcow}"
    wait_for(lambda: read(dom0, f"{qb}/state") == "2", "qcow2 vbd InitWait")
    assert read(dom0, f"{qb}/sectors") == "4096" and read(dom0, f"{qb}/info") == "4"
    listing = dom0.xl("block-list", "dev1").stdout.splitlines()
    assert listing[0].split()[:3] == ["Vdev", "BE", "handle"]
    assert [r.split()[0] for r in listing[1:]] == ["51712", "51728"]

    dom0.xl("network-attach", "dev1", "bridge=testbr0")
    assert [r.split()[0] for r in dom0.xl("network-list", "dev1").stdout.splitlines()[1:]] == \
        ["0", "1"]
    dom0.xl("network-detach", "dev1", "00:16:3e:01:02:03")
    assert [r.split()[0] for r in dom0.xl("network-list", "dev1").stdout.splitlines()[1:]] == ["1"]
    dom0.xl("block-detach", "dev1", "xvdb")
    assert read(dom0, f"{qb}/state") == ""
    assert [r.split()[0] for r in dom0.xl("block-list", "dev1").stdout.splitlines()[1:]] == \
        ["51712"]

    bad = dom0.xl("block-attach", "dev1", "vdev=xvdc, target=/nonexistent.img", check=False)
    assert bad.returncode != 0 and "failed to stat: /nonexistent.img" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    bad = dom0.xl("block-detach", "dev1", "xvdq", check=False)
    assert bad.returncode != 0 and "no vbd" in bad.stderr
    assert dom0.pid("xen-backendd") is not None
    dom0.xl("destroy", "dev1")
    for kind in ("vbd", "vif"):     # libxl_domain_destroy removes the backends too
        assert xs(dom0, "xenstore-ls", f"/local/domain/0/backend/{kind}/{domid}",
                  check=False).returncode != 0
