"""A guest's own GNTTABOP_map_grant_ref, as Xen gives HVM/PVH guests: the
granted frame goes into the mapper's p2m at host_addr (what was there
leaves), unmap leaves the gfn empty. Two (or three) real grant-share guests:
the granter, and the mapper in its map= mode; misuse answers the GNTST_*
codes; destruction of either side while mapped keeps memory alive until the
last mapping and leaks nothing."""
import time

import pytest

from dom0.foreignmemory import ForeignMapping
from toolstack.boot import boot_state_json
from toolstack.builder.pvh import build_pvh

from tests.core.conftest import (  # noqa: F401 (pc, events: fixtures)
    CoreProcess, WAIT_S, console, events, guest, pc, start_guest, wait_console as wait_for,
    wait_shutdown)

WAIT_S = 600   # bounds a wait for a guest's output, not a performance limit
MIB = 16
SHUTDOWN_poweroff, SHUTDOWN_crash = 0, 3


def engine_core(accel):
    try:
        return CoreProcess(accel)
    except RuntimeError as e:
        pytest.skip(f"{accel} engine unusable: {e}")


@pytest.fixture(scope="module", params=["emu", "kvm"])
def core(request):
    c = engine_core(request.param)
    c.accel = request.param
    yield c
    c.stop()


def free_domid(pc) -> int:
    return max([d["domid"] for d in pc.domain_list()] + [0]) + 7


def start_at(pc, domid: int, cmdline: str) -> int:
    """A paused grant-share domain with a chosen domid (its peer names it
    on its command line before it exists)."""
    image = build_pvh(guest("grant-share"), MIB << 20, cmdline=cmdline)
    dom = pc.domain_create(max_memory=MIB << 20, domid=domid)
    try:
        pc.populate_physmap(dom, [(0, (MIB << 20) // 4096)])
        pc.set_memory_map(dom, image.memmap)
        for gpa, data in image.segments:
            first, last = gpa // 4096, (gpa + max(len(data), 1) - 1) // 4096
            with ForeignMapping(pc, dom, list(range(first, last + 1))) as m:
                m.write(gpa, data)
        pc.vcpu_setcontext(dom, 0, boot_state_json(image.boot_state))
    except BaseException:
        pc.domain_destroy(dom)
        raise
    return dom


def granter(pc, peer: int, extra: str = ""):
    dom = start_guest(pc, "grant-share", cmdline=f"peer={peer} {extra}")
    pc.domain_unpause(dom)
    m = wait_for(pc, dom, r"gref (\d+) frame (0x[0-9a-f]+)")
    return dom, int(m.group(1)), int(m.group(2), 16)


def memfd_in_core(core, dom) -> bool:
    return any(f"memfd:dom{dom} " in f + " " for f in core.fds())


def test_guest_maps_a_peer_grant_reads_writes_unmaps(pc, events):
    b = free_domid(pc)
    a, ref, _ = granter(pc, b)
    c, cref, _ = granter(pc, 0)                       # a grant meant for dom0
    b = start_at(pc, b, f"map={a} gref={ref} other={c} ogref={cref}")
    pc.domain_unpause(b)
    got = wait_shutdown(events, [a, b])
    out_a, out_b = console(pc, a), console(pc, b)
    assert got[b]["shutdown_reason"] == SHUTDOWN_poweroff, out_b
    for line in (f"ref 5000 of d{a}: -3",                           # GNTST_bad_gntref
                 f"d{c}'s ref {cref} (not granted to us): -1",      # GNTST_general_error
                 f"map d{a} ref {ref} at gfn 0x", ": 0\n",
                 'read "grant-share:pattern"',
                 "grant-share:pattern <- console_io from the mapped gfn",
                 "the granter acked",
                 "unmap at the wrong address: -1", "unmap: 0", "unmap again: -4",
                 "console_io from the emptied gfn: -14"):
        assert line in out_b, (line, out_b)
    assert 'peer wrote "peer:from grant-map"' in out_a, out_a
    assert "revoke refused while mapped (flags 0x19)" in out_a      # permit|reading|writing
    assert "revoked (0), flags now 0x0" in out_a
    for d in (a, b, c):
        pc.domain_destroy(d)


def test_readonly_grant_is_readonly_in_the_mapper(pc, events, core):
    b = free_domid(pc)
    a, ref, frame = granter(pc, b, "readonly=1")
    b = start_at(pc, b, f"map={a} gref={ref} readonly=1")
    pc.domain_unpause(b)
    got = wait_shutdown(events, [b])
    out_b = console(pc, b)
    for line in ("writable map of a read-only grant: -1", ": 0\n",
                 'read "grant-share:pattern"',
                 "query_size into the read-only page: -14",          # -EFAULT
                 "writing the read-only page"):
        assert line in out_b, (line, out_b)
    if core.accel == "emu":
        # unicorn refuses the store; #GP(0) as Xen injects it, which this
        # guest's handler reports before crashing the domain
        assert "exception 13 (#GP) error 0" in out_b, out_b
        assert got[b]["shutdown_reason"] == SHUTDOWN_crash, out_b
        assert "after the write" not in out_b
    else:
        # a KVM_MEM_READONLY slot: the store exits as MMIO and is dropped
        assert 'after the write the page reads "g"' in out_b, out_b
        assert "unmap: 0" in out_b and "unmap again: -4" in out_b
        assert got[b]["shutdown_reason"] == SHUTDOWN_poweroff, out_b
    with ForeignMapping(pc, a, [frame]) as m:
        assert bytes(m.page(frame)[:19]) == b"grant-share:pattern"
        pc.domain_destroy(b)                          # releases its pin
        m.page(frame)[:6] = b"peer:\0"
    out_a = finish_granter(pc, events, a)
    assert "revoke refused" not in out_a and "revoked (0)" in out_a, out_a


def finish_granter(pc, events, a):
    wait_shutdown(events, [a])
    out = console(pc, a)
    pc.domain_destroy(a)
    return out


def test_destroying_either_side_while_mapped(pc, events, core):
    # the mapper dies holding the mapping: the granter's grant is free again
    b = free_domid(pc)
    a, ref, _ = granter(pc, b)
    b = start_at(pc, b, f"map={a} gref={ref} hold=1")
    pc.domain_unpause(b)
    wait_for(pc, b, "holding the mapping")
    wait_for(pc, a, r"revoke refused while mapped \(flags 0x19\)")
    pc.domain_destroy(b)
    out_a = finish_granter(pc, events, a)
    assert "revoked (0), flags now 0x0" in out_a, out_a
    # the granter dies while mapped: its memory lives until the mapper goes
    b = free_domid(pc)
    a, ref, _ = granter(pc, b)
    b = start_at(pc, b, f"map={a} gref={ref} hold=1")
    pc.domain_unpause(b)
    wait_for(pc, b, "holding the mapping")
    pc.domain_destroy(a)
    assert memfd_in_core(core, a)
    time.sleep(0.05)
    assert b in [d["domid"] for d in pc.domain_list()]     # the mapper runs on
    assert "crashed" not in console(pc, b)
    pc.domain_destroy(b)
    deadline = time.monotonic() + WAIT_S
    while memfd_in_core(core, a) or memfd_in_core(core, b):
        assert time.monotonic() < deadline, core.fds()
        time.sleep(0.01)
    assert core.alive()


def test_mapping_over_a_grant_mapping_crashes_the_mapper(pc, events):
    """Xen's p2m_add_page refuses to replace a grant mapping: domain_crash."""
    b = free_domid(pc)
    a, ref, frame = granter(pc, b)
    b = start_at(pc, b, f"map={a} gref={ref} twice=1")
    pc.domain_unpause(b)
    got = wait_shutdown(events, [b])
    assert got[b]["shutdown_reason"] == SHUTDOWN_crash, console(pc, b)
    assert "already holds a grant mapping" in pc.xen_dmesg().decode()
    assert "mapped again" not in console(pc, b)
    pc.domain_destroy(b)                              # its first mapping goes too
    with ForeignMapping(pc, a, [frame]) as m:
        m.page(frame)[:6] = b"peer:\0"
    out_a = finish_granter(pc, events, a)
    assert "revoke refused" not in out_a and "revoked (0)" in out_a, out_a
