"""A vif as a TAP in a Linux bridge, inside a network namespace this test
creates (skipped where namespaces or /dev/net/tun are not allowed)."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def netns_ok() -> bool:
    if not shutil.which("unshare") or not shutil.which("ip") or not os.path.exists("/dev/net/tun"):
        return False
    r = subprocess.run(["unshare", "-n", "ip", "link", "add", "name", "probe0", "type", "bridge"],
                       capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not netns_ok(), reason="no network namespaces, bridges or /dev/net/tun here")
def test_tap_in_linux_bridge(tmp_path):
    r = subprocess.run(["unshare", "-n", sys.executable, "-m", "tests.pv_drivers.tap_netns",
                        str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0 and "TAP-OK" in r.stdout, r.stdout + r.stderr
