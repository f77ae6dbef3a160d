"""Later layers add operations to the privileged interface (register_op)."""
import threading

import pytest

from dom0.privcmd import Privcmd, XenError
from xen_core import daemon
from xen_core.abi import xen as x

from .conftest import engine_or_skip


@pytest.fixture
def server(tmp_path):
    from xen_core.hypervisor import Hypervisor
    core = Hypervisor(engine_or_skip("emu"))
    srv = daemon.Server(core, str(tmp_path))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.stop()
    t.join()
    core.close()


def test_registered_op_is_served_and_cleaned_up(server):
    closed = []

    def echo(conn, body):
        v = body["v"]
        conn.cancels.append(lambda: closed.append(v))
        return {"echo": v, "domains": len(conn.core.list_domains())}, ()

    daemon.register_op("test_echo", echo)
    try:
        pc = Privcmd(server.run_dir)
        assert pc._call("test_echo", v=7) == {"echo": 7, "domains": 1}
        with pytest.raises(XenError) as e:
            pc._call("test_echo")          # KeyError in the handler: EINVAL, still serving
        assert e.value.errno == x.EINVAL
        assert pc.hello()["accel"] == "emu"
        pc.close()
        for _ in range(6000):               # the connection thread runs its cleanups
            if closed:
                break
            threading.Event().wait(0.01)
        assert closed == [7]
    finally:
        daemon.EXTRA_OPS.pop("test_echo", None)
    with pytest.raises(ValueError):
        daemon.register_op("domain_create", echo)
