"""dom0's gntdev handle on its own channel: batch map/unmap of grants
(libxengnttab's map_grant_refs), one mapping per granting domain (no fd and
no mmap per map), read-only grants read-only in dom0, batch grant copy.
Real grant-share guests on the software CPU."""
import os
import socket
import time

import pytest

from dom0.gntdev import Gntdev, GrantStatusError
from dom0.privcmd import XenError
from xen_core.abi import grant_table as g
from xen_core.abi import privif as pv

from tests.core.conftest import (  # noqa: F401 (pc, events: fixtures)
    CoreProcess, WAIT_S, console, events, pc, start_guest, wait_console as wait_for,
    wait_shutdown)

@pytest.fixture(scope="module")
def core():
    try:
        c = CoreProcess("emu")
    except RuntimeError as e:
        pytest.skip(str(e))
    yield c
    c.stop()


def grant_guest(pc, cmdline=""):
    dom = start_guest(pc, "grant-share", cmdline=cmdline)
    pc.domain_unpause(dom)
    ref = int(wait_for(pc, dom, r"gref (\d+) frame").group(1))
    return dom, ref


def finish(pc, events, domid):
    wait_shutdown(events, [domid])
    out = console(pc, domid)
    pc.domain_destroy(domid)
    return out


def memfd_maps(dom):
    """Permissions of this process's mappings of domain `dom`'s memfd."""
    with open("/proc/self/maps") as f:
        return sorted(line.split()[1] for line in f if f"memfd:dom{dom} " in line + " ")


def my_fds():
    return len(os.listdir("/proc/self/fd"))


def test_batch_map_per_entry_errors_and_one_mapping_per_domain(pc, events):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    out = gd.map_grant_refs([(dom, ref, False), (dom, 1024, False), (dom, 0, False),
                             (9999, ref, False), (dom, ref, True), (dom, ref, False)])
    errs = [(r.status if isinstance(r, GrantStatusError) else None) for r in out]
    assert errs == [None, g.GNTST_bad_gntref, g.GNTST_general_error, g.GNTST_bad_domain,
                    None, None]
    (h1, p1), (h2, p2), (h3, p3) = out[0], out[4], out[5]
    assert len({h1, h2, h3}) == 3
    assert bytes(p1[:19]) == bytes(p2[:19]) == b"grant-share:pattern"
    assert memfd_maps(dom) == ["r--s", "rw-s"]          # whole memfd, once per protection
    # further maps pass no fd and add no mapping
    fds = my_fds()
    for _ in range(5):
        h, _ = gd.map_grant_ref(dom, ref)
        assert gd.unmap_grant_refs([h]) == [g.GNTST_okay]
    assert my_fds() == fds and memfd_maps(dom) == ["r--s", "rw-s"]
    # a read-only page: Python refuses the store, and the mapping is PROT_READ
    with pytest.raises(TypeError):
        p2[0] = 0x41
    p3[:15] = b"peer:from dom0\0"
    assert bytes(p1[:15]) == bytes(p2[:15]) == b"peer:from dom0\0"
    wait_for(pc, dom, r"revoke refused while mapped \(flags 0x19\)")   # permit|reading|writing
    assert gd.unmap_grant_refs([h1, h3, h3, 1 << 40, -1]) == [
        g.GNTST_okay, g.GNTST_okay, g.GNTST_bad_handle, g.GNTST_bad_handle, g.GNTST_bad_handle]
    with pytest.raises(ValueError):                      # the view went with the unmap
        p1[0]
    time.sleep(0.05)
    assert "revoked" not in console(pc, dom)             # h2 (read-only) still pins it
    assert gd.unmap_grant_refs([h2]) == [g.GNTST_okay]
    out = finish(pc, events, dom)
    assert "grant-share: revoked (0), flags now 0x0" in out, out
    gd.unmap_grant_refs([h2])                            # a call after the death: dropped
    assert memfd_maps(dom) == []
    gd.close()


def test_readonly_grant_refuses_writable_map(pc, events):
    dom, ref = grant_guest(pc, "readonly=1")
    gd = Gntdev(pc)
    (bad, (h, page)) = gd.map_grant_refs([(dom, ref, False), (dom, ref, True)])
    assert bad.status == g.GNTST_general_error and "GNTST_general_error" in str(bad)
    with pytest.raises(GrantStatusError):
        gd.map_grant_ref(dom, ref)
    assert bytes(page[:19]) == b"grant-share:pattern"
    assert memfd_maps(dom) == ["r--s"]                   # no writable mapping at all
    assert gd.unmap_grant_refs([h]) == [g.GNTST_okay]
    pc.domain_destroy(dom)
    gd.close()
    assert memfd_maps(dom) == []


def test_destroy_while_batch_mapped(pc, core):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    (h1, p1), (h2, p2) = gd.map_grant_refs([(dom, ref, False), (dom, ref, True)])
    pc.domain_destroy(dom)
    assert bytes(p2[:19]) == b"grant-share:pattern"    # the memory lives on
    p1[:4] = b"live"
    assert bytes(p2[:4]) == b"live"
    assert gd.unmap_grant_refs([h1]) == [g.GNTST_okay]
    assert memfd_maps(dom) == ["r--s", "rw-s"]          # h2 still holds it
    assert gd.unmap_grant_refs([h2]) == [g.GNTST_okay]
    assert memfd_maps(dom) == []                         # dropped with the last page
    deadline = time.monotonic() + WAIT_S
    while [f for f in core.fds() if f"memfd:dom{dom} " in f + " "]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    gd.close()


def test_batch_copy_keeps_no_pin_and_reports_each(pc, events):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    src = {"ref": ref, "domid": dom, "offset": 0}
    segs = [{"source": src, "dest": {"buf": i * 4096}, "len": 4096} for i in range(8)]
    segs[3] = {"source": dict(src, offset=4000), "dest": {"buf": 0}, "len": 200}
    segs[5] = {"source": {"ref": 1024, "domid": dom, "offset": 0}, "dest": {"buf": 0}, "len": 8}
    st = gd.copy(segs)
    assert st == [0, 0, 0, g.GNTST_bad_copy_arg, 0, g.GNTST_bad_gntref, 0, 0]
    for i in (0, 1, 2, 4, 6, 7):
        assert bytes(gd.buf[i * 4096:i * 4096 + 19]) == b"grant-share:pattern"
    gd.buf[0:16] = b"peer:copied in\0\0"
    assert gd.copy([{"source": {"buf": 0}, "dest": src, "len": 16}]) == [0]
    out = finish(pc, events, dom)
    assert 'peer wrote "peer:copied in"' in out
    assert "revoked (0)" in out                          # no pin survived the batches
    with pytest.raises(XenError):
        gd.copy([{"source": {"buf": 1 << 30}, "dest": src, "len": 1}])
    gd.close()


def test_channel_refuses_malformed_requests_and_keeps_serving(pc):
    gd = Gntdev(pc)
    chan = gd._chan
    for req in (b"", b"\x01", pv.GNTDEV_REQ.pack(9, 1) + b"\0" * 8,
                pv.GNTDEV_REQ.pack(pv.GNTDEV_CMD_MAP, 2) + b"\0" * 8,        # short
                pv.GNTDEV_REQ.pack(pv.GNTDEV_CMD_UNMAP, 0),
                pv.GNTDEV_REQ.pack(pv.GNTDEV_CMD_COPY, pv.GNTDEV_MAX_RECORDS + 1)):
        if not req:
            continue
        chan.sendall(req)
        rep = chan.recv(1 << 16)
        assert pv.GNTDEV_REP.unpack_from(rep) == (-22, 0), req
    assert gd.unmap_grant_refs([7]) == [g.GNTST_bad_handle]
    with pytest.raises(XenError):
        gd.map_grant_refs([(1 << 16, 1, False)])
    gd.close()


def test_closing_the_channel_releases_the_handle(pc, core, events):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    gd.map_grant_refs([(dom, ref, False)])
    gd._chan.shutdown(socket.SHUT_RDWR)                 # the process drops the device
    fm = Gntdev(pc)
    (h, page), = fm.map_grant_refs([(dom, ref, False)])
    page[:6] = b"peer:\0"
    fm.unmap_grant_refs([h])
    out = finish(pc, events, dom)
    assert "revoked (0)" in out                          # the first handle's map went too
    fm.close()
    gd.close()
