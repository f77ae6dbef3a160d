"""xencommons start/status/stop in a private run directory."""
import os

from dom0 import xencommons

from .conftest import wait_for


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_start_status_stop(dom0):
    assert dom0.xencommons("status").returncode == 3
    p = dom0.xencommons("start")
    assert p.returncode == 0, p.stderr
    assert "Starting xen-core" in p.stdout and "Starting xenconsoled" in p.stdout
    st = dom0.xencommons("status")
    assert st.returncode == 0
    pids = {n: dom0.pid(n) for n in ("xen-core", "xenstored", "xenconsoled")}
    assert all(pids.values()) and all(alive(p) for p in pids.values())
    assert dom0.xencommons("start").stdout == ""     # all running: nothing to do
    # One process group for all of them.
    assert len({os.getpgid(p) for p in pids.values()}) == 1
    # xl finds them running and says nothing about starting them.
    assert "not running" not in dom0.xl("list").stderr
    p = dom0.xencommons("stop")
    assert p.returncode == 0
    # Reverse start order (xen-backendd first, once pv_drivers has it).
    names = [s.name for s in xencommons.services()]
    assert names[:3] == ["xen-core", "xenstored", "xenconsoled"]
    assert p.stdout.splitlines() == [f"Stopping {n}" for n in reversed(names)]
    wait_for(lambda: not any(alive(p) for p in pids.values()), "services gone")
    assert dom0.xencommons("status").returncode == 3
    assert not os.path.exists(os.path.join(dom0.dir, "privcmd.sock"))


def test_dead_service_restarted_by_xl(dom0):
    assert dom0.xencommons("start").returncode == 0
    os.kill(dom0.pid("xenconsoled"), 9)
    wait_for(lambda: dom0.xencommons("status").returncode == 3, "status to notice")
    p = dom0.xl("list")
    assert "xl: xenconsoled was not running: started it in" in p.stderr
    assert dom0.xencommons("status").returncode == 0
