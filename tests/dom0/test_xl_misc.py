"""xl console input and detach, memory commands, host commands."""
import os
import struct
import subprocess

from dom0.foreignmemory import ForeignMapping
from dom0.privcmd import Privcmd
from xen_core.abi import console as cabi
from xen_core.abi import hvm as hvmabi

from .conftest import EVENT_WAIT_S, ROOT, guest, wait_for

PV_SHUTDOWN = os.path.join(ROOT, "examples", "pv-shutdown.cfg")


def test_console_input_reaches_the_ring_and_ctrl_bracket_detaches(dom0):
    guest("pv-shutdown")
    dom0.xl("create", PV_SHUTDOWN, 'name="con"')
    wait_for(lambda: "ready" in dom0.console_log("con"), "the guest's first output")
    domid = dom0.domains()["con"][0]
    p = subprocess.Popen([os.sys.executable, "-m", "toolstack.xl", "console", "con"],
                         env=dom0.env, cwd=ROOT, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = p.communicate(b"typed-at-xl-console\r\x1d", timeout=EVENT_WAIT_S)
    finally:
        p.kill()
    assert p.returncode == 0, err            # Ctrl-] ended it; the domain lives on
    assert "con" in dom0.domains()
    pc = Privcmd(dom0.dir)
    try:
        gfn = pc.hvm_param_get(domid, hvmabi.HVM_PARAM_CONSOLE_PFN)

        def typed():
            with ForeignMapping(pc, domid, [gfn]) as m:
                page = m.page(gfn)
                prod = struct.unpack_from("<I", page, cabi.IN_PROD)[0]
                data = bytes(page[cabi.IN_OFFSET:cabi.IN_OFFSET + min(prod, cabi.IN_SIZE)])
            return b"typed-at-xl-console\r" in data
        wait_for(typed, "the input in the guest's console `in` ring")
    finally:
        pc.close()
    assert dom0.xl("console", "-t", "serial", "con", check=False).returncode != 0


def test_mem_set_and_mem_max(dom0):
    guest("pv-shutdown")
    dom0.xl("create", "-p", PV_SHUTDOWN, 'name="mem"')
    domid = dom0.domains()["mem"][0]
    dom0.xl("mem-set", "mem", "16m")
    pc = Privcmd(dom0.dir)
    dom0.xl("mem-max", "mem", "24")
    p = dom0.xl("mem-max", "mem", "4g", check=False)
    assert p.returncode != 0 and len(p.stderr.strip().splitlines()) == 1
    p = dom0.xl("mem-set", "mem", "64", check=False)
    assert p.returncode != 0 and "static" in p.stderr
    pc.close()
    import pyxs
    with pyxs.Client(unix_socket_path=dom0.env["XENSTORED_PATH"]) as c:
        assert c.read(f"/local/domain/{domid}/memory/target".encode()) == b"16384"
        assert c.read(f"/local/domain/{domid}/memory/static-max".encode()) == b"24576"


def test_info_dmesg_uptime(dom0):
    guest("hello")
    info = dom0.xl("info").stdout
    assert "xen_version            : 4.17" in info and "total_memory" in info
    dom0.xl("create", "-c", os.path.join(ROOT, "examples", "demo.cfg"), input="")
    wait_for(lambda: "demo" not in dom0.domains(), "the demo domain gone")
    dmesg = dom0.xl("dmesg").stdout
    assert "(XEN) created d1" in dmesg
    up = dom0.xl("uptime").stdout.splitlines()
    assert up[0].split() == ["Name", "ID", "Uptime"] and up[1].startswith("Domain-0")
