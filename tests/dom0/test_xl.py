"""End to end through the `xl` CLI in a private run directory."""
import os
import re
import shutil
import subprocess
import time

import pytest

from .conftest import ROOT, guest, wait_for

DEMO = os.path.join(ROOT, "examples", "demo.cfg")


def spin_args(name, *extra):
    return [DEMO, f'kernel="{guest("spin")}"', f'name="{name}"', *extra]


def xs(dom0, tool, *args, check=True):
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} not installed (Debian xenstore-utils)")
    p = subprocess.run([exe, *args], env=dom0.env, capture_output=True, text=True, timeout=60)
    if check and p.returncode:
        raise AssertionError(f"{tool} {args}: {p.stderr}")
    return p


def introduced(dom0, domid):
    import pyxs
    with pyxs.Client(unix_socket_path=dom0.env["XENSTORED_PATH"]) as c:
        return c.is_domain_introduced(domid)


def test_create_c_shows_console_and_poweroff_destroys(dom0):
    guest("hello")
    p = dom0.xl("create", "-c", DEMO, input="")
    assert "Hello from a PVH guest on Xen 4.17" in p.stdout
    assert "hello: bye" in p.stdout
    assert "Parsing config from" in p.stderr
    assert "xen-core was not running" in p.stderr      # xl started the services
    wait_for(lambda: "demo" not in dom0.domains(), "on_poweroff=destroy")
    assert "hello: bye" in dom0.console_log("demo")
    assert list(dom0.domains()) == ["Domain-0"]


def test_list_pause_unpause_names_destroy(dom0):
    dom0.xl("create", *spin_args("s1"))
    doms = dom0.domains()
    domid, state = doms["s1"]
    assert doms["Domain-0"][0] == 0
    assert re.fullmatch(r"[rb]-----", state)
    wait_for(lambda: "spinning" in dom0.console_log("s1"), "console output in the log")
    dom0.xl("pause", "s1")
    assert dom0.domains()["s1"][1] == "--p---"
    dom0.xl("unpause", str(domid))
    assert "p" not in dom0.domains()["s1"][1]
    assert dom0.xl("domid", "s1").stdout.strip() == str(domid)
    assert dom0.xl("domname", str(domid)).stdout.strip() == "s1"
    dom0.xl("rename", "s1", "s2")
    assert dom0.xl("domname", str(domid)).stdout.strip() == "s2"
    line = dom0.xl("list", "s2").stdout.splitlines()[1]
    assert line.split()[:4] == ["s2", str(domid), "32", "1"]
    long = dom0.xl("list", "-l", "s2").stdout
    assert '"domid": %d' % domid in long and '"kernel"' in long
    assert "s2" in dom0.xl("uptime").stdout
    rows = [l.split() for l in dom0.xl("vcpu-list", "s2").stdout.splitlines()[1:]]
    assert len(rows) == 1 and rows[0][:3] == ["s2", str(domid), "0"]
    assert re.fullmatch(r"[r-][b-]-", rows[0][4]) and float(rows[0][5]) > 0
    dom0.xl("destroy", "s2")
    assert "s2" not in dom0.domains()
    p = dom0.xl("pause", "s2", check=False)
    assert p.returncode != 0 and p.stderr.strip() == "s2 is an invalid domain identifier (rc=-6)"


def test_errors_are_one_line(dom0, tmp_path):
    dom0.xl("create", "-p", *spin_args("dup"))
    cases = {
        "name in use": (["create", *spin_args("dup")], "already exists"),
        "kernel missing": (["create", DEMO, 'kernel="/nonexistent/vmlinuz"'],
                           "No such file or directory"),
        "not enough memory": (["create", DEMO, "memory=4000000", "maxmem=4000000",
                               'name="big"'], "not enough memory"),
        "unknown domain": (["destroy", "nosuchdomain"], "invalid domain identifier"),
        "unknown domid": (["unpause", "4000"], "invalid domain identifier"),
    }
    for what, (args, needle) in cases.items():
        p = dom0.xl(*args, check=False)
        err = [l for l in p.stderr.splitlines() if not l.startswith("Parsing config")]
        assert p.returncode != 0, what
        assert len(err) == 1 and needle in err[0], (what, p.stderr)
    assert list(dom0.domains()) == ["Domain-0", "dup"]       # nothing half-built left
    # Services unreachable: a run directory that cannot exist.
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = dict(dom0.env, XEN_RUN_DIR=str(blocker / "run"))
    p = subprocess.run([os.sys.executable, "-m", "toolstack.xl", "list"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_xenstore_home_while_running_and_gone_after(dom0):
    dom0.xl("create", *spin_args("xs1"))
    domid = dom0.domains()["xs1"][0]
    home = f"/local/domain/{domid}"
    wait_for(lambda: xs(dom0, "xenstore-read", f"{home}/console/tty", check=False).stdout.strip(),
             "xenconsoled to publish the tty")
    tree = xs(dom0, "xenstore-ls", "-p", home).stdout
    for key in ("name = \"xs1\"", f"domid = \"{domid}\"", "target = \"32768\"",
                "static-max = \"32768\"", "availability = \"online\"", "shutdown = \"\"",
                "feature-poweroff", "feature-reboot", "ring-ref", "port", "limit = \"1048576\"",
                "type = \"xenconsoled\"", "tty = \"/dev/pts/"):
        assert key in tree, key
    # Permissions as libxl sets them: the home readable by the guest, the
    # control keys owned by it.
    perms = dict(line.split(" = ", 1)[0].strip() and (line.split(" = ")[0].strip(), line)
                 for line in tree.splitlines() if " = " in line)
    assert f"(n0,r{domid})" in perms["name"]
    assert f"(n{domid})" in perms["shutdown"]
    vm = xs(dom0, "xenstore-read", f"{home}/vm").stdout.strip()
    assert vm.startswith("/vm/")
    vmtree = xs(dom0, "xenstore-ls", vm).stdout
    assert 'name = "xs1"' in vmtree and "start_time" in vmtree and vm[4:] in vmtree
    assert introduced(dom0, domid)          # XS_INTRODUCE reached xenstored's ring
    # spin never sets up event channels: no PV control, as libxl judges it.
    p = dom0.xl("shutdown", "xs1", check=False)
    assert p.returncode != 0 and "PV control interface not available" in p.stderr
    assert xs(dom0, "xenstore-read", f"{home}/control/shutdown").stdout.strip() == ""
    dom0.xl("destroy", "xs1")
    assert xs(dom0, "xenstore-ls", home, check=False).returncode != 0
    assert xs(dom0, "xenstore-ls", vm, check=False).returncode != 0
    assert str(domid) not in xs(dom0, "xenstore-list", "/local/domain").stdout.split()
    assert not introduced(dom0, domid)      # XS_RELEASE


def test_forced_reboot_restarts_with_new_domid(dom0):
    dom0.xl("create", *spin_args("rb", 'on_reboot="restart"'))
    old = dom0.domains()["rb"][0]
    dom0.xl("reboot", "-F", "rb")
    new = wait_for(lambda: dom0.domains().get("rb", (old,))[0] != old
                   and dom0.domains()["rb"][0], "the restarted domain")
    assert new != old
    assert old not in [d for d, _ in dom0.domains().values()]
    wait_for(lambda: dom0.console_log("rb").count("spinning") >= 2, "second boot's output")
    dom0.xl("destroy", "rb")


@pytest.mark.parametrize("action", ["preserve", "destroy"])
def test_crash_actions(dom0, action):
    dom0.xl("create", DEMO, f'kernel="{guest("crash")}"', 'name="cr"',
            'cmdline="mode=pagefault"', f'on_crash="{action}"')
    if action == "destroy":
        wait_for(lambda: list(dom0.domains()) == ["Domain-0"], "the crashed domain destroyed")
        return
    doms = wait_for(lambda: [(n, s) for n, (_, s) in dom0.domains().items()
                             if n.startswith("cr-")], "the crashed domain preserved")
    (name, state), = doms
    assert re.fullmatch(r"cr-\d{8}T\d{4}Z", name)
    assert state == "----c-"
    # The name is free again: a new `cr` can be created beside the corpse.
    dom0.xl("create", "-p", DEMO, f'kernel="{guest("spin")}"', 'name="cr"')
    assert "cr" in dom0.domains()
