"""Two vifs on one bridge name meet through the built-in switch of
xen-backendd (no privileges), over libxl's keys and netback's handshake."""
from .conftest import NetFront, add_vif, wait_for

MAC_A, MAC_B = "00:16:3e:00:00:0a", "00:16:3e:00:00:0b"


def mac(s):
    return bytes.fromhex(s.replace(":", ""))


def test_two_guests_through_the_switch(store, netbackendd):
    ba, _ = add_vif(store, 11, 0, MAC_A)
    add_vif(store, 12, 0, MAC_B)
    a = NetFront(store, netbackendd.transport_double, 11)
    b = NetFront(store, netbackendd.transport_double, 12)
    a.connect()
    b.connect()
    assert store.read(f"{ba}/feature-rx-copy") == "1"
    assert store.read(f"{ba}/hotplug-status") == "connected"
    bcast = b"\xff" * 6 + mac(MAC_A) + b"\x08\x06" + b"arp?" * 10
    a.send(bcast)
    assert b.receive() == bcast
    reply = mac(MAC_A) + mac(MAC_B) + b"\x08\x06" + b"arp!" * 10
    b.send(reply)
    assert a.receive() == reply
    for i in range(50):                       # a burst, in order
        b.send(mac(MAC_A) + mac(MAC_B) + b"\x08\x00" + bytes([i]) * 50)
    assert [a.receive()[14] for _ in range(50)] == list(range(50))
    assert netbackendd.switches["xenbr0"].fdb[mac(MAC_B)].name == "vif12.0"


def test_frontend_without_rx_copy_is_refused(store, netbackendd):
    bpath, fpath = add_vif(store, 13, 0, MAC_A)
    wait_for(lambda: store.read(f"{bpath}/state") == "2", "InitWait")
    store.write(f"{fpath}/tx-ring-ref", 8)
    store.write(f"{fpath}/rx-ring-ref", 9)
    store.write(f"{fpath}/event-channel", 1)
    store.write(f"{fpath}/state", 4)
    wait_for(lambda: store.read(f"{bpath}/state") == "5", "Closing")
    assert "rx-copy" in store.read("/local/domain/0/error/backend/vif/13/0/error")
