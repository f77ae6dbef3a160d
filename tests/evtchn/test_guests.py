"""Event channels and grants end to end: real guests on the software CPU,
a dom0 process on the other side through xen-core's privileged socket."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from dom0.evtchn import Evtchn
from dom0.gntdev import Gntdev
from dom0.privcmd import XenError
from xen_core.abi import grant_table as g
from xen_core.abi import sched as s

from tests.core.conftest import (  # noqa: F401 (pc, events: fixtures)
    CoreProcess, ROOT, WAIT_S, console, events, pc, start_guest, wait_console as wait_for,
    wait_shutdown)

@pytest.fixture(scope="module")
def core():
    try:
        c = CoreProcess("emu")
    except RuntimeError as e:
        pytest.skip(str(e))
    yield c
    c.stop()


def finish(pc, events, domid):
    ev = wait_shutdown(events, [domid])[domid]
    out = console(pc, domid)
    pc.domain_destroy(domid)
    return ev, out


def dom0_peer(pc, n: int, args: str = ""):
    """An evtchn-ping guest serving `n` round trips to dom0, bound by a
    fresh handle: (domid, its port, the handle, dom0's port), the fresh
    binding's event taken and re-armed."""
    dom = start_guest(pc, "evtchn-ping", cmdline=f"peer=0 count={n}{args}")
    pc.domain_unpause(dom)
    gport = int(wait_for(pc, dom, r"port (\d+) for domain 0").group(1))
    xe = Evtchn(pc)
    lp = xe.bind_interdomain(dom, gport)
    assert xe.pending(WAIT_S) == lp          # Xen marks a fresh binding pending
    xe.unmask(lp)
    return dom, gport, xe, lp


def ping(xe, lp, n: int) -> None:
    """Dom0's side of `n` round trips: notify, take the reply, re-arm."""
    xe.notify(lp)
    for i in range(n):
        assert xe.pending(WAIT_S) == lp, i
        xe.unmask(lp)
        if i < n - 1:
            xe.notify(lp)


def test_guest_dom0_ping_pong(pc, events):
    n = 50
    dom, gport, xe, lp = dom0_peer(pc, n)
    st = pc.call("evtchn_status", domid=dom, port=gport)[0]
    assert (st["status"], st["a"], st["b"]) == (2, 0, lp)   # interdomain to dom0:lp
    ping(xe, lp, n)
    ev = wait_shutdown(events, [dom])[dom]
    engine = pc.domain_info(dom)["vcpus"][0]["engine"]
    if "fast_hypercalls" in engine:
        # emu: the first send went through Python, which cached the channel;
        # the engine answered the others (the misuse sends after them, on a
        # free and a closed port, went to Python and got -EINVAL).
        assert engine["fast_hypercalls"] == n - 1
    out = console(pc, dom)
    pc.domain_destroy(dom)
    assert ev["shutdown_reason"] == s.SHUTDOWN_poweroff, out
    assert f"evtchn-ping: {n} events" in out
    assert "send on free port: -22" in out and "close port: 0, send after close: -22" in out
    assert re.search(r"VIRQ_TIMER on port \d+, bind again: -17", out), out
    assert re.search(r"IPI on port \d+: 1\n", out), out
    assert "init_control -38, op_compat -38, gnttab v2 -38" in out, out
    # the guest closed its end: ours is unbound again, then gone with the handle
    xe.close()


def ping_pong_pair(pc, events, n: int, args: str = ""):
    """Two evtchn-ping guests connected through their consoles (the first
    allocates the port, the second binds it and serves first): their
    domids and shutdown events once both powered off."""
    a = start_guest(pc, "evtchn-ping", cmdline=f"count={n}{args}")
    b = start_guest(pc, "evtchn-ping", cmdline=f"count={n}{args}")
    pc.domain_unpause(a)
    pc.domain_unpause(b)
    pc.console_write_input(a, f"peer={b}\n".encode())
    port = wait_for(pc, a, rf"port (\d+) for domain {b}").group(1)
    pc.console_write_input(b, f"peer={a} port={port}\n".encode())
    return a, b, wait_shutdown(events, [a, b])


def test_guest_guest_ping_pong(pc, events):
    n = 30
    a, b, got = ping_pong_pair(pc, events, n)
    for dom in (a, b):
        out = console(pc, dom)
        assert got[dom]["shutdown_reason"] == s.SHUTDOWN_poweroff, out
        assert f"evtchn-ping: {n} events" in out, out
        engine = pc.domain_info(dom)["vcpus"][0]["engine"]
        if "fast_hypercalls" in engine:
            # emu: the first send went through Python (which cached the
            # channel); later ones are answered in C when the peer's CPU
            # lock is free (it waits in hlt), through Python when its
            # vCPU is in guest code (evf: emu_machine_pause, issue 9).
            assert 0 < engine["fast_hypercalls"] <= n - 1, out
        assert re.search(r"\(VIRQ_CONSOLE [1-9]\d*\)", out), out   # input raised it
        pc.domain_destroy(dom)


def test_dom0_notify_checks_and_handle_close_unbinds(pc):
    dom = start_guest(pc, "evtchn-ping", cmdline="peer=0 count=1")
    try:
        pc.domain_unpause(dom)
        gport = int(wait_for(pc, dom, r"port (\d+) for domain 0").group(1))
        xe = Evtchn(pc)
        lp = xe.bind_interdomain(dom, gport)
        with pytest.raises(XenError) as ei:
            xe.bind_interdomain(dom, gport)          # bind twice
        assert ei.value.errno == 22
        with pytest.raises(XenError) as ei:
            xe.notify(lp + 100)                      # not ours
        assert ei.value.errno == 107
        with pytest.raises(XenError) as ei:
            xe.bind_interdomain(7777, 1)
        assert ei.value.errno == 3
        with pytest.raises(XenError) as ei:
            pc.call("evtchn_notify", handle=xe.handle, port=4000)
        assert ei.value.errno == 107
        xe.close()                                   # unbinds: the guest's port is unbound again
        st = pc.call("evtchn_status", domid=dom, port=gport)[0]
        assert st["status"] == 1 and st["a"] == 0
    finally:
        pc.domain_destroy(dom)


def test_fd_stays_readable_while_ports_are_queued(pc):
    """One port per pending(), as xenevtchn_pending: a select loop taking
    one port per wake-up sees every one (consoled with three guests)."""
    import select
    a, b = Evtchn(pc), Evtchn(pc)
    try:
        mine = [a.bind_unbound_port(0) for _ in range(2)]
        theirs = [b.bind_interdomain(0, p) for p in mine]
        assert {b.pending(WAIT_S), b.pending(WAIT_S)} == set(theirs)   # fresh bindings
        for p in mine:                                   # a's too: drain and re-arm
            a.unmask(p)
        for p in theirs:
            b.notify(p)
        time.sleep(0.1)                                  # both queued before the first read
        got = []
        while len(got) < 2:
            r, _, _ = select.select([a.fd()], [], [], WAIT_S)
            assert r, got                                # a queued port keeps fd() readable
            got.append(a.pending(0))
        assert sorted(got) == sorted(mine)
        assert a.pending(0.05) is None
    finally:
        a.close()
        b.close()


def test_handle_is_two_pipes_and_ends_when_the_core_closes_it(pc):
    import stat
    xe = Evtchn(pc)
    port = xe.bind_virq(3)                           # VIRQ_DOM_EXC
    assert stat.S_ISFIFO(os.fstat(xe.rfd).st_mode) and stat.S_ISFIFO(os.fstat(xe.wfd).st_mode)
    assert xe.pending(0.05) is None
    pc.call("evtchn_close", handle=xe.handle)        # xen-core's side goes first
    with pytest.raises(XenError) as ei:
        xe.pending(WAIT_S)                           # EOF on the report pipe
    assert ei.value.errno == 9
    deadline = time.monotonic() + WAIT_S
    while True:                                      # once its reader is gone: EBADF, no SIGPIPE
        try:
            xe.notify(port)
        except XenError as e:
            assert e.errno == 9
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    xe.close()                                       # the second close is harmless
    assert pc.hello()["protocol"] == 1


def test_events_for_a_busy_guest_are_posted_and_applied_by_its_vcpu(pc, events):
    """The guest spins (interrupts on, never hlt): its vCPU holds its CPU
    lock, so dom0's notifies are posted to it and applied at its next block
    boundary (evtchn_fast.c evf_drain), each one arriving exactly once."""
    n = 200
    dom, _, xe, lp = dom0_peer(pc, n, " spin=1")
    ping(xe, lp, n)
    wait_shutdown(events, [dom])
    engine = pc.domain_info(dom)["vcpus"][0]["engine"]
    out = console(pc, dom)
    pc.domain_destroy(dom)
    xe.close()
    assert f"evtchn-ping: {n} events" in out, out
    if "posted_event_drains" in engine:
        assert engine["posted_event_drains"] > 0, engine


def test_two_busy_guests_ping_pong_through_posted_events(pc, events):
    n = 200
    a, b, got = ping_pong_pair(pc, events, n, " spin=1")
    for d in (a, b):
        out = console(pc, d)
        assert got[d]["shutdown_reason"] == s.SHUTDOWN_poweroff, out
        assert f"evtchn-ping: {n} events" in out, out
        engine = pc.domain_info(d)["vcpus"][0]["engine"]
        if "posted_event_drains" in engine:
            assert engine["posted_event_drains"] > 0, engine
        pc.domain_destroy(d)


def test_halt_polling_catches_ping_pong_wakeups(pc, events):
    """Two guests ping-pong: each wake-up comes within microseconds of the
    hlt, so the polling window grows and catches them (emu.c halt_poll;
    tests/accel/test_halt_poll.py has its rules)."""
    n = 300
    a, b, _ = ping_pong_pair(pc, events, n)
    for d in (a, b):
        engine = pc.domain_info(d)["vcpus"][0]["engine"]
        if "halt_poll_hits" not in engine:
            pytest.skip("the engine keeps no halt-polling statistics")
        assert f"evtchn-ping: {n} events" in console(pc, d)
        assert engine["halt_poll_hits"] > 0, engine
        pc.domain_destroy(d)


def test_halt_polling_off(monkeypatch):
    monkeypatch.setenv("PYXEN_EMU_HALT_POLL_NS", "0")
    try:
        core = CoreProcess("emu")
    except RuntimeError as e:
        pytest.skip(str(e))
    try:
        pc, events = core.privcmd(), core.privcmd()
        events.subscribe_dom_exc()
        a, b, _ = ping_pong_pair(pc, events, 100)
        for d in (a, b):
            assert "evtchn-ping: 100 events" in console(pc, d)
            engine = pc.domain_info(d)["vcpus"][0]["engine"]
            assert engine["halt_poll_hits"] == engine["halt_poll_misses"] == 0, engine
        pc.close()
        events.close()
    finally:
        core.stop()


def grant_guest(pc, cmdline=""):
    dom = start_guest(pc, "grant-share", cmdline=cmdline)
    pc.domain_unpause(dom)
    ref = int(wait_for(pc, dom, r"gref (\d+) frame").group(1))
    return dom, ref


def test_dom0_maps_granted_page_both_ways(pc, events):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    m = gd.map(dom, [ref])
    assert bytes(m.page()[:19]) == b"grant-share:pattern"
    # mapping twice (same domain) is allowed, by another ref beyond the table not
    m2 = gd.map(dom, [ref], readonly=True)
    wait_for(pc, dom, r"gref")
    for bad_ref, status in ((1024, "bad_gntref"), (0, "general_error"), (3, "general_error")):
        with pytest.raises(XenError) as ei:
            gd.map(dom, [bad_ref])
        assert f"GNTST_{status}" in str(ei.value)
    with pytest.raises(XenError) as ei:
        gd.map(9999, [ref])
    assert "GNTST_bad_domain" in str(ei.value)
    m.page()[:15] = b"peer:from dom0\0"
    wait_for(pc, dom, r'peer wrote "peer:from dom0"')
    wait_for(pc, dom, r"revoke refused while mapped \(flags 0x19\)")   # permit|reading|writing
    handles = list(m.handles)
    assert m.unmap() == [g.GNTST_okay]
    assert gd.unmap_handles(handles) == [g.GNTST_bad_handle]              # unmap twice
    time.sleep(0.05)
    assert "revoked" not in console(pc, dom)                              # m2 still maps it
    assert m2.unmap() == [g.GNTST_okay]
    ev, out = finish(pc, events, dom)
    assert "grant-share: revoked (0), flags now 0x0" in out, out
    gd.close()


def test_grant_copy_both_ways_and_bad_args(pc, events):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    seg = lambda src, dst, n: {"source": src, "dest": dst, "len": n}
    gref = lambda off: {"ref": ref, "domid": dom, "offset": off}
    assert gd.copy([seg(gref(0), {"buf": 100}, 19)]) == [g.GNTST_okay]
    assert bytes(gd.buf[100:119]) == b"grant-share:pattern"
    gd.buf[0:16] = b"peer:copied in\0\0"
    assert gd.copy([seg({"buf": 0}, gref(0), 16),
                    seg(gref(4090), {"buf": 0}, 10),          # across the page end
                    seg(gref(0), {"ref": 1024, "domid": dom, "offset": 0}, 8),
                    seg({"ref": ref, "domid": 4321, "offset": 0}, {"buf": 0}, 8)]) == [
        g.GNTST_okay, g.GNTST_bad_copy_arg, g.GNTST_bad_gntref, g.GNTST_bad_domain]
    ev, out = finish(pc, events, dom)
    assert 'peer wrote "peer:copied in"' in out
    assert "revoked (0)" in out                                # copies leave no pin behind
    gd.close()


def test_readonly_grant(pc, events, core):
    dom, ref = grant_guest(pc, "readonly=1")
    gd = Gntdev(pc)
    with pytest.raises(XenError) as ei:
        gd.map(dom, [ref])                                     # write-pin of a r/o grant
    assert "GNTST_general_error" in str(ei.value)
    assert gd.copy([{"source": {"buf": 0}, "dest": {"ref": ref, "domid": dom, "offset": 0},
                     "len": 4}]) == [g.GNTST_general_error]
    m = gd.map(dom, [ref], readonly=True)
    assert bytes(m.page()[:19]) == b"grant-share:pattern"
    # a write through the read-only mapping faults (in a child process)
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from dom0.privcmd import Privcmd; from dom0.gntdev import Gntdev\n"
            "gd = Gntdev(Privcmd(%r)); m = gd.map(%d, [%d], readonly=True)\n"
            "print('mapped', flush=True); m.page()[0] = 0x41\n") % (ROOT, core.run_dir, dom, ref)
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=WAIT_S)
    assert child.returncode != 0 and b"mapped" in child.stdout
    assert bytes(m.page()[:5]) == b"grant"
    m.unmap()
    pc.domain_destroy(dom)
    gd.close()


def test_destroy_while_mapped_keeps_memory_until_unmap(pc, core):
    dom, ref = grant_guest(pc)
    gd = Gntdev(pc)
    m = gd.map(dom, [ref])
    pc.domain_destroy(dom)
    assert bytes(m.page()[:19]) == b"grant-share:pattern"      # still the guest's page
    m.page()[:4] = b"live"
    assert bytes(m.page()[:4]) == b"live"
    assert m.unmap() == [g.GNTST_okay]
    gd.close()
    time.sleep(0.1)
    assert not [f for f in core.fds() if f"memfd:dom{dom} " in f + " "]
    with open("/proc/self/maps") as f:
        assert f"memfd:dom{dom} " not in f.read()


def test_dom0_virq_dom_exc(pc):
    xe = Evtchn(pc)
    port = xe.bind_virq(3)                                   # VIRQ_DOM_EXC
    with pytest.raises(XenError) as ei:
        xe.bind_virq(3)
    assert ei.value.errno == 17
    dom = start_guest(pc, "hello")
    pc.domain_unpause(dom)
    assert xe.pending(WAIT_S) == port                        # it shut down
    xe.unmask(port)
    pc.domain_destroy(dom)
    assert xe.pending(WAIT_S) == port                        # and died
    xe.close()


def test_xenstored_attacher(pc, events):
    from dom0.xs_attach import PrivcmdDomainAttacher
    dom = start_guest(pc, "evtchn-ping", cmdline="peer=0 count=2")
    pc.domain_unpause(dom)
    gport = int(wait_for(pc, dom, r"port (\d+) for domain 0").group(1))
    at = PrivcmdDomainAttacher(pc)
    page = at.map_store_page(dom, 0x100)
    notify, efd = at.bind_evtchn(dom, gport)
    assert os.eventfd_read(efd) == 1                         # the binding's own event
    for _ in range(2):
        notify()
        import select
        assert select.select([efd], [], [], WAIT_S)[0]
        os.eventfd_read(efd)
    page[0:1] = page[0:1]                                    # writable
    at.release(dom)
    ev, out = finish(pc, events, dom)
    assert "evtchn-ping: 2 events" in out
    at.close()


def test_grant_frames_above_ram(pc, events):
    dom, ref = grant_guest(pc)
    out = console(pc, dom)
    assert "frame 1 at 0x107fff: 0, frame 64: -22, nr_frames 2 of 64" in out, out
    fd, offsets, errors, _ = pc.foreign_map_fd(dom, [0x107fff])   # 4 GiB + , 16 MiB of RAM
    os.close(fd)
    assert errors == [0] and offsets[0] > 0
    gd = Gntdev(pc)
    m = gd.map(dom, [ref])
    m.page()[:6] = b"peer:\0"
    m.unmap()
    finish(pc, events, dom)
    gd.close()


def test_connection_close_unbinds_and_leaks_nothing(pc, core):
    dom = start_guest(pc, "evtchn-ping", cmdline="peer=0 count=1")
    try:
        pc.domain_unpause(dom)
        gport = int(wait_for(pc, dom, r"port (\d+) for domain 0").group(1))
        time.sleep(0.2)
        before = sorted(core.fds())
        other = core.privcmd()
        xe = Evtchn(other)
        xe.bind_interdomain(dom, gport, eventfd=True)
        xe.bind_virq(3)
        gd = Gntdev(other)
        assert len(core.fds()) > len(before)
        other.sock.close()                       # the process goes away: no goodbyes
        os.close(xe.rfd)
        os.close(xe.wfd)
        deadline = time.monotonic() + WAIT_S
        while pc.call("evtchn_status", domid=dom, port=gport)[0]["status"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        while sorted(core.fds()) != before:
            assert time.monotonic() < deadline, (before, core.fds())
            time.sleep(0.01)
        xe2 = Evtchn(pc)
        assert xe2.bind_virq(3) > 0                # VIRQ_DOM_EXC was released too
        xe2.close()
        del gd
    finally:
        pc.domain_destroy(dom)


@pytest.mark.parametrize("op,args,errno", [
    ("evtchn_bind_virq", {"handle": 999, "virq": 3}, 9),            # no such handle
    ("evtchn_bind_virq", {"virq": 3}, 9),
    ("gntdev_map", {"handle": "x", "domid": 1, "refs": [8]}, 9),
    ("evtchn_alloc_unbound", {"domid": "one", "remote_domid": 0}, 22),
    ("evtchn_alloc_unbound", {"domid": 4242, "remote_domid": 0}, 3),
    ("evtchn_status", {"domid": 0, "port": 1 << 40}, 22),
    ("evtchn_reset", {"domid": 4242}, 3),
    ("debug_keys", {"keys": 5}, 22),
])
def test_bad_requests_answer_errno_and_keep_serving(pc, op, args, errno):
    with pytest.raises(XenError) as ei:
        pc.call(op, **args)
    assert ei.value.errno == errno
    assert pc.hello()["protocol"] == 1


def test_bad_handle_arguments(pc):
    xe = Evtchn(pc)
    gd = Gntdev(pc)
    for op, args in (("evtchn_bind_virq", {"virq": 99}), ("evtchn_bind_virq", {"virq": -1}),
                     ("evtchn_unbind", {"port": 5}), ("evtchn_bind_interdomain", {"domid": 0}),
                     ("evtchn_bind_interdomain", {"domid": 0, "remote_port": 4096})):
        with pytest.raises(XenError) as ei:
            pc.call(op, handle=xe.handle, **args)
        assert ei.value.errno == 22, (op, args)
    for args in ({"domid": 1, "refs": []}, {"domid": 1, "refs": [-1]},
                 {"domid": 1, "refs": "8"}, {"domid": 1, "refs": [True]}):
        with pytest.raises(XenError) as ei:
            pc.call("gntdev_map", handle=gd.handle, **args)
        assert ei.value.errno == 22, args
    for segs in ([{"source": {"buf": 0}}], [{"source": {"buf": 1 << 30}, "dest": {"buf": 0}, "len": 1}],
                 ["x"], {"a": 1}):
        with pytest.raises(XenError) as ei:
            pc.call("gntdev_copy", handle=gd.handle, segments=segs)
        assert ei.value.errno == 22, segs
    assert gd.unmap_handles([12345]) == [g.GNTST_bad_handle]
    xe.close()
    gd.close()
