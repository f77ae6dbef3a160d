"""xen-core end to end: real guests booted through the privileged socket on
the software CPU, containment, concurrency, leaks, and bad input."""
import os
import socket
import struct
import subprocess
import sys
import time

import pytest

from dom0.foreignmemory import ForeignMapping
from dom0.privcmd import XenError
from xen_core.abi import privif
from xen_core.abi import sched as s
from xen_core.abi import xen as x

from .conftest import ROOT, console, guest, start_guest, wait_shutdown


@pytest.fixture
def core(emu_core):
    """The core behind conftest's `pc` and `events` fixtures."""
    return emu_core


def run_to_shutdown(pc, events, name, cmdline=""):
    domid = start_guest(pc, name, cmdline=cmdline)
    pc.domain_unpause(domid)
    ev = wait_shutdown(events, [domid])[domid]
    out = console(pc, domid)
    info = pc.domain_info(domid)
    pc.domain_destroy(domid)
    return ev, info, out


def test_hello(pc, events):
    ev, info, out = run_to_shutdown(pc, events, "hello", "greeting=yes")
    assert "Hello from a PVH guest on Xen 4.17" in out
    assert 'cmdline "greeting=yes"' in out
    assert "hello: slept" in out and "hello: bye" in out
    assert ev["shutdown_reason"] == s.SHUTDOWN_poweroff
    assert info["state"] == "shutdown" and info["shutdown_reason_name"] == "poweroff"


def test_xen_dmesg(pc, events):
    ev, info, out = run_to_shutdown(pc, events, "hello")
    log = pc.xen_dmesg().decode()
    d = ev["domid"]
    assert f"created d{d}" in log and f"(d{d}) hello: bye" in log and f"d{d} shut down: poweroff" in log
    pc.xen_dmesg(clear=True)
    assert f"(d{d})" not in pc.xen_dmesg().decode()


def test_badcall_all_pass(pc, events):
    ev, info, out = run_to_shutdown(pc, events, "badcall")
    assert "FAIL" not in out, out
    assert "0 failed" in out and out.count("PASS") >= 20
    assert info["shutdown_reason"] == s.SHUTDOWN_poweroff


def test_hypercall_loop(pc, events):
    ev, info, out = run_to_shutdown(pc, events, "hypercall-loop", "loops=500")
    assert "500 calls" in out
    assert info["shutdown_reason"] == s.SHUTDOWN_poweroff


def test_crash_is_contained(pc, events):
    bystander = start_guest(pc, "spin")
    pc.domain_unpause(bystander)
    ev, info, out = run_to_shutdown(pc, events, "crash")
    # A triple fault resets the domain, as on Xen (HVM_PARAM_TRIPLE_FAULT_REASON).
    assert info["state"] == "shutdown" and ev["shutdown_reason"] == s.SHUTDOWN_reboot
    assert "triple" in info["crash_detail"] or "error" in info["crash_detail"]
    t0 = pc.domain_info(bystander)["cpu_time_ns"]
    time.sleep(0.05)
    after = pc.domain_info(bystander)
    assert after["state"] == "running" and after["cpu_time_ns"] > t0
    pc.domain_destroy(bystander)


def test_spin_destroy_while_another_runs(pc, events):
    a, b = start_guest(pc, "spin"), start_guest(pc, "spin")
    pc.domain_unpause(a)
    pc.domain_unpause(b)
    pc.domain_destroy(a)
    with pytest.raises(XenError) as e:
        pc.domain_info(a)
    assert e.value.errno == x.ESRCH
    t0 = pc.domain_info(b)["cpu_time_ns"]
    time.sleep(0.05)
    assert pc.domain_info(b)["cpu_time_ns"] > t0
    ev, info, out = run_to_shutdown(pc, events, "hello")
    assert "hello: bye" in out
    pc.domain_destroy(b)


def test_pause_unpause(pc):
    d = start_guest(pc, "spin")
    assert pc.domain_info(d)["state"] == "paused"   # created paused, as on Xen
    pc.domain_unpause(d)
    assert pc.domain_info(d)["state"] == "running"
    pc.domain_pause(d)
    first = pc.domain_info(d)
    time.sleep(0.05)
    second = pc.domain_info(d)
    assert first["state"] == second["state"] == "paused"
    assert second["cpu_time_ns"] == first["cpu_time_ns"]
    pc.domain_unpause(d)
    assert pc.domain_info(d)["state"] == "running"
    with pytest.raises(XenError) as e:
        pc.domain_unpause(d)
    assert e.value.errno == x.EINVAL
    pc.domain_destroy(d)


def test_ten_concurrent_domains(pc, events):
    domids = [start_guest(pc, "hello", cmdline=f"n={i}") for i in range(10)]
    for d in domids:
        pc.domain_unpause(d)
    got = wait_shutdown(events, domids)
    for i, d in enumerate(domids):
        assert got[d]["shutdown_reason"] == s.SHUTDOWN_poweroff
        out = console(pc, d)
        assert f'cmdline "n={i}"' in out and "hello: bye" in out
        pc.domain_destroy(d)


def test_no_leaks_after_destroy(emu_core, pc, events):
    def counts():
        fds = emu_core.fds()
        return len(fds), sum("memfd:" in f for f in fds), emu_core.threads()

    def settled(baseline):
        # Connection threads finish after their client closes; threads of
        # earlier tests' connections may still be finishing at the baseline.
        for _ in range(500):
            if all(now <= then for now, then in zip(counts(), baseline)):
                return True
            time.sleep(0.01)
        return False

    run_to_shutdown(pc, events, "hello")                # warm up lazy state
    baseline = counts()
    for _ in range(3):
        run_to_shutdown(pc, events, "hello")
        run_to_shutdown(pc, events, "crash")
        d = start_guest(pc, "spin")
        pc.domain_unpause(d)
        during = counts()
        assert during[1] > baseline[1]   # the count sees a live domain
        pc.domain_destroy(d)
        other = emu_core.privcmd()
        other.domain_list()
        other.close()
    assert settled(baseline), (counts(), baseline)


def test_dom0_listing_and_physinfo(pc):
    info = pc.physinfo()
    assert info["nr_cpus"] >= 1 and info["total_memory"] > 0 and info["xen_version"] == [4, 17]
    d = start_guest(pc, "spin")
    pc.domain_unpause(d)
    vcpus = pc.domain_info(d)["vcpus"]
    assert [v["vcpu"] for v in vcpus] == [0] and vcpus[0]["online"]
    pc.domain_destroy(d)
    doms = {d["domid"]: d for d in pc.domain_list()}
    assert doms[0]["privileged"] and doms[0]["state"] == "running"
    with pytest.raises(XenError) as e:
        pc.domain_destroy(0)
    assert e.value.errno == x.EPERM


def test_errors_are_xen_errnos(pc):
    def errno_of(fn, *a, **k):
        with pytest.raises(XenError) as e:
            fn(*a, **k)
        return e.value.errno, e.value.name

    assert errno_of(pc.domain_destroy, 4000) == (x.ESRCH, "ESRCH")
    assert errno_of(pc.domain_info, 4000) == (x.ESRCH, "ESRCH")
    assert errno_of(pc.domain_create, 1 << 20, max_vcpus=0)[0] == x.EINVAL
    assert errno_of(pc.domain_create, 1 << 40)[0] == x.ENOMEM
    assert errno_of(pc.call, "no_such_op")[0] == x.ENOSYS
    assert errno_of(pc.call, "domain_info", domid="one")[0] == x.EINVAL
    assert errno_of(pc.call, "domain_info")[0] == x.EINVAL
    d = pc.domain_create(max_memory=1 << 20)
    try:
        assert errno_of(pc.populate_physmap, d, [(0, 257)])[0] == x.ENOMEM
        # The software CPU keeps the page at 0xfffff000 for itself: refused, nothing kept.
        assert errno_of(pc.populate_physmap, d, [(0xFFFFF, 1)])[0] == x.EINVAL
        assert pc.domain_info(d)["tot_pages"] == 0
        pc.domain_set_max_mem(d, 64 << 10)
        assert errno_of(pc.populate_physmap, d, [(0, 17)])[0] == x.ENOMEM
        assert errno_of(pc.domain_set_max_mem, d, 2 << 20)[0] == x.ENOMEM
        pc.domain_set_max_mem(d, 1 << 20)
        assert pc.domain_info(d)["max_pages"] == 256
        assert pc.populate_physmap(d, [(0, 256)]) == 256
        assert errno_of(pc.vcpu_setcontext, d, 0, {"mode": "vm86", "rip": 0})[0] == x.EINVAL
        assert errno_of(pc.vcpu_setcontext, d, 5, {"mode": "flat32", "rip": 0})[0] == x.EINVAL
        assert errno_of(pc.hvm_param_get, d, 39)[0] == x.EINVAL
        pc.hvm_param_set(d, 1, 0xFEFFC)                  # the toolstack may set STORE_PFN
        assert pc.hvm_param_get(d, 1) == 0xFEFFC
        assert errno_of(pc.set_memory_map, d, [(0, 1)])[0] == x.EINVAL
    finally:
        pc.domain_destroy(d)


def test_foreign_map_shares_the_guest_pages(pc):
    d = pc.domain_create(max_memory=1 << 20)
    try:
        pc.populate_physmap(d, [(0, 16)])
        with ForeignMapping(pc, d, [3, 4]) as a, ForeignMapping(pc, d, [4]) as b:
            a.write(3 * 4096 + 4090, b"across pages")
            assert b.read(4 * 4096, 6) == b" pages"
        m = ForeignMapping(pc, d, [5, 100])                 # gfn 100 is not populated
        assert m.errors == {5: 0, 100: -x.ENOENT}
        m.close()
        with pytest.raises(XenError) as e:
            ForeignMapping(pc, d, [100])
        assert e.value.errno == x.ENOENT
    finally:
        pc.domain_destroy(d)


@pytest.mark.parametrize("garbage", [
    b"\x00\x00\x00\x00",                      # zero length
    struct.pack("<I", 1 << 30),               # absurd length
    struct.pack("<I", 5) + b"nope!",          # not JSON
    struct.pack("<I", 2) + b"[]",             # not an object
    privif.encode({"id": 1, "op": "hello", "nfds": 3}),  # fds that never came
])
def test_malformed_frames_do_not_kill_the_daemon(emu_core, garbage):
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(emu_core.socket)
    raw.sendall(garbage)
    reply = raw.recv(4096)            # an error frame, then the daemon hangs up
    assert b'"ok":false' in reply and b"EINVAL" in reply
    assert raw.recv(4096) == b""
    raw.close()
    half = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    half.connect(emu_core.socket)
    half.sendall(privif.encode({"id": 1, "op": "hello"})[:7])
    half.close()                      # a client vanishing mid-frame
    assert emu_core.alive()
    p = emu_core.privcmd()
    assert p.hello()["accel"] == "emu"
    p.close()


def test_boot_cli_exit_status(tmp_path, emu_core):
    # An empty run directory: boot starts (and stops) a private core.
    env = dict(os.environ, XEN_RUN_DIR=str(tmp_path))
    hello = subprocess.run([sys.executable, "-m", "toolstack.boot", guest("hello"), "--accel", "emu"],
                           cwd=ROOT, env=env, capture_output=True)
    assert hello.returncode == 0, hello.stderr
    assert b"hello: bye" in hello.stdout
    crash = subprocess.run([sys.executable, "-m", "toolstack.boot", guest("crash"), "--accel", "emu",
                            "--memory", "8", "--cmdline", "mode=shutdown"], cwd=ROOT, env=env,
                           capture_output=True)
    assert crash.returncode == s.SHUTDOWN_crash
    missing = subprocess.run([sys.executable, "-m", "toolstack.boot", "/nonexistent.elf",
                              "--accel", "emu"], cwd=ROOT, env=env, capture_output=True)
    assert missing.returncode == 125 and b"nonexistent" in missing.stderr
    assert os.listdir(tmp_path) == []
    # A running core is used as it is: the domain shows up in its dmesg.
    before = emu_core.privcmd()
    before.xen_dmesg(clear=True)
    used = subprocess.run([sys.executable, "-m", "toolstack.boot", guest("hello"),
                           "--run-dir", emu_core.run_dir], cwd=ROOT, env=env, capture_output=True)
    assert used.returncode == 0 and b"hello: bye" in used.stdout
    assert b"hello: bye" in before.xen_dmesg()
    before.close()
    gone = subprocess.run([sys.executable, "-m", "toolstack.boot", guest("hello"),
                           "--run-dir", str(tmp_path / "nothing")], cwd=ROOT, env=env,
                          capture_output=True)
    assert gone.returncode == 125 and b"not reachable" in gone.stderr


def test_detaches_and_refuses_a_second_instance(tmp_path):
    import signal
    run_dir = str(tmp_path / "run")
    cmd = [sys.executable, "-m", "xen_core.daemon", "--run-dir", run_dir, "--accel", "emu"]
    first = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    pid = int(open(os.path.join(run_dir, "xen-core.pid")).read())
    try:
        second = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 1
        assert "another xen-core" in second.stderr and second.stderr.count("\n") == 1
        from dom0.privcmd import Privcmd
        with Privcmd(run_dir) as p:
            assert p.hello()["pid"] == pid
    finally:
        os.kill(pid, signal.SIGTERM)
    for _ in range(6000):   # wait for it to go
        if not os.path.exists(os.path.join(run_dir, "privcmd.sock")):
            break
        time.sleep(0.01)
    assert not os.path.exists(os.path.join(run_dir, "privcmd.sock"))


def test_unexpected_fds_are_closed(emu_core):
    import array
    before = len(emu_core.fds())
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.connect(emu_core.socket)
    r, w = os.pipe()
    try:
        for i in range(5):
            frame = privif.encode({"id": i, "op": "hello"}, nfds=2)
            raw.sendmsg([frame], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r, w]))])
            dec = privif.Decoder()
            msgs = []
            while not msgs:
                msgs = dec.feed(raw.recv(4096))
            assert msgs[0].body["ok"]
        assert len(emu_core.fds()) <= before + 1     # our connection, not the 10 fds
    finally:
        raw.close()
        os.close(r)
        os.close(w)
