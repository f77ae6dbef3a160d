"""20 domains created and destroyed concurrently, twice: nothing leaks
(processes, fds, memfds, threads, xenstore nodes, console ptys)."""
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import ROOT, guest, wait_for

N = 20


def fds(pid):
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


def threads(pid):
    return len(os.listdir(f"/proc/{pid}/task"))


def group_members(pgid):
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.getpgid(int(p)) == pgid:
                    pids.append(int(p))
            except ProcessLookupError:
                pass
    return sorted(pids)


def store_dump(dom0):
    exe = shutil.which("xenstore-ls")
    if exe is None:
        pytest.skip("xenstore-ls not installed (Debian xenstore-utils)")
    p = subprocess.run([exe, "-p", "/"], env=dom0.env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    # The console daemon's tty and start times differ run to run; node set must not.
    return sorted(re.sub(r" = .*", "", line) for line in p.stdout.splitlines())


def snapshot(dom0):
    core, xsd, con = dom0.pid("xen-core"), dom0.pid("xenstored"), dom0.pid("xenconsoled")
    return {
        "core fds": fds(core), "xenstored fds": fds(xsd), "xenconsoled fds": fds(con),
        "core threads": threads(core), "xenconsoled threads": threads(con),
        "group": group_members(os.getpgid(core)),
        "store": store_dump(dom0),
    }


def test_twenty_at_once_twice_leaves_nothing(dom0):
    spin = guest("spin")
    cfg = os.path.join(ROOT, "examples", "demo.cfg")
    # Warm-up: the first domain creates dom0's backend/console directory,
    # which stays (as under libxl); everything per domain must go.
    dom0.xl("create", "-p", cfg, f'kernel="{spin}"', 'name="warm"')
    dom0.xl("destroy", "warm")
    wait_for(lambda: not dom0.monitor_pids(), "the warm-up monitor to exit")
    before = snapshot(dom0)
    assert not [n for n in before["store"] if n.strip() == "warm"]
    assert not any("memfd:" in f for f in before["core fds"])

    def create(i):
        return dom0.xl("create", "-p", cfg, f'kernel="{spin}"', f'name="c{i}"')

    def destroy(i):
        return dom0.xl("destroy", f"c{i}")

    with ThreadPoolExecutor(N) as pool:
        for _ in range(2):
            list(pool.map(create, range(N)))
            doms = dom0.domains()
            assert {f"c{i}" for i in range(N)} <= set(doms)
            assert len({doms[f"c{i}"][0] for i in range(N)}) == N
            memfds = {f for f in fds(dom0.pid("xen-core")) if "memfd:" in f}
            assert len(memfds) == N                  # one memory per domain
            wait_for(lambda: len(dom0.monitor_pids()) == N, "one monitor per domain")
            list(pool.map(destroy, range(N)))
            assert list(dom0.domains()) == ["Domain-0"]
            wait_for(lambda: not dom0.monitor_pids(), "monitors to exit")
    after = snapshot(dom0)
    for key in before:
        assert after[key] == before[key], (key, set(after[key]) ^ set(before[key]))
