"""Run inside a fresh network namespace (`unshare -n`) by test_vif_tap.py:
xen-backendd with Linux bridges allowed puts a vif's TAP into the bridge
(created on demand) and frames cross in both directions."""
import socket
import subprocess
import sys
import threading
import time

from pv_drivers.backendd import Backendd
from pv_drivers.vif import VifDevice

from .conftest import NetFront, Store, add_vif, wait_for
from .doubles import LocalTransport

MAC = bytes.fromhex("00163e000015")


def main(tmp: str) -> int:
    store = Store(tmp)
    transport = LocalTransport()
    d = Backendd(store.sock, transport, kinds={"vif": VifDevice})
    threading.Thread(target=d.run, daemon=True).start()
    try:
        add_vif(store, 21, 0, "00:16:3e:00:00:15", bridge="xenbr7")
        front = NetFront(store, transport, 21)
        front.connect()
        link = subprocess.run(["ip", "-o", "link", "show", "dev", "vif21.0"],
                              capture_output=True, text=True).stdout
        assert "master xenbr7" in link, link
        host = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        host.bind(("xenbr7", 0))
        host.settimeout(1)
        out = b"\xff" * 6 + MAC + b"\x88\xb5" + b"guest->host" * 5
        deadline = time.monotonic() + 60
        while True:                      # the port may take a moment to forward
            front.send(out)
            try:
                if host.recv(4096) == out:
                    break
            except socket.timeout:
                pass
            assert time.monotonic() < deadline, "guest frame never reached the bridge"
        back = MAC + b"\x02\x00\x00\x00\x00\x01" + b"\x88\xb5" + b"host->guest" * 5
        host.send(back)
        got = front.receive()
        while got != back:
            got = front.receive()
        print("TAP-OK")
        return 0
    finally:
        d.stop()
        d.close()
        store.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
