"""Malformed input over the socket: the offending client gets an error reply
or loses its connection; the daemon and everyone else carry on."""

import socket

from xen_core.abi import xs_wire as w

from .conftest import RawClient

HDR = w.XSD_SOCKMSG


def still_serving(daemon):
    assert daemon.alive()
    c = RawClient(daemon.sock)
    assert c.ok(w.XS_READ, b"/local/domain/0/name") == b"Domain-0"
    c.close()


def closed_by_peer(sock) -> bool:
    sock.settimeout(30)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_short_header_then_hangup(daemon, client):
    bad = RawClient(daemon.sock)
    bad.send_raw(b"\x02\x00\x00\x00\x01\x00")
    bad.close()
    still_serving(daemon)
    assert client.ok(w.XS_READ, b"/local/domain/0/domid") == b"0"


def test_partial_message_waits_without_blocking_others(daemon, client):
    bad = RawClient(daemon.sock)
    msg = HDR.pack(w.XS_READ, 77, 0, 22) + b"/local/domain/0/name\0"
    bad.send_raw(msg[:10])
    still_serving(daemon)                    # others are served meanwhile
    bad.send_raw(msg[10:] + b"\0")           # 22nd byte: one NUL too many
    assert bad.recv_msg() == (w.XS_ERROR, 77, 0, b"EINVAL\0")
    bad.close()


def test_oversized_length_closes_only_that_connection(daemon, client):
    bad = RawClient(daemon.sock)
    bad.send_raw(HDR.pack(w.XS_WRITE, 1, 0, w.XENSTORE_PAYLOAD_MAX + 1) + b"x" * 64)
    assert closed_by_peer(bad.sock)
    still_serving(daemon)
    assert client.ok(w.XS_READ, b"/local/domain/0/domid") == b"0"


def test_unknown_type_is_enosys_and_connection_lives(daemon, client):
    for mtype in (w.XS_WATCH_EVENT, w.XS_ERROR, 20, w.XS_INVALID, 0xFFFFFFFF):
        t, body = client.request(mtype, b"junk\0")
        assert (t, body) == (w.XS_ERROR, b"ENOSYS\0")
    assert client.ok(w.XS_READ, b"/local/domain/0/domid") == b"0"


def test_missing_nul_and_bad_utf8_are_einval(daemon, client):
    cases = [(w.XS_READ, b"/local/domain/0/name"),        # no terminating NUL
             (w.XS_WRITE, b"/no-nul-anywhere"),
             (w.XS_READ, b"/\xc3\x28\0"),                   # invalid UTF-8
             (w.XS_MKDIR, b"/caf\xc3\xa9\0"),               # valid UTF-8, bad chars
             (w.XS_WATCH, b"/w\0"),                         # token missing
             (w.XS_SET_PERMS, b"/local\0q9\0"),
             (w.XS_INTRODUCE, b"5\0"),
             (w.XS_DIRECTORY_PART, b"/local\0-1\0")]
    for mtype, payload in cases:
        t, body = client.request(mtype, payload)
        assert (t, body) == (w.XS_ERROR, b"EINVAL\0"), (mtype, payload)
    still_serving(daemon)


def test_empty_payloads(daemon, client):
    for mtype in (w.XS_READ, w.XS_WRITE, w.XS_RM, w.XS_GET_PERMS, w.XS_CONTROL):
        t, body = client.request(mtype, b"")
        assert (t, body) == (w.XS_ERROR, b"EINVAL\0"), mtype


def test_flood_without_reading_hurts_only_the_flooder(daemon, client):
    flood = socket.socket(socket.AF_UNIX)
    flood.connect(daemon.sock)
    flood.setblocking(False)
    payload = b"/local/domain/0/name\0"
    burst = (HDR.pack(w.XS_READ, 1, 0, len(payload)) + payload) * 2000
    pending = b""
    for _ in range(200):                         # up to 400k requests
        pending = pending or burst
        try:
            pending = pending[flood.send(pending):]     # keep framing intact
        except BlockingIOError:
            break                                # xenstored stopped reading us
        # others keep being served while the flood is queued
        assert client.ok(w.XS_READ, b"/local/domain/0/domid") == b"0"
    assert client.ok(w.XS_READ, b"/local/domain/0/domid") == b"0"
    flood.close()
    still_serving(daemon)
    client.write(b"/after-flood", b"ok")
    assert client.ok(w.XS_READ, b"/after-flood") == b"ok"


def test_many_bad_clients_then_good_ones(daemon):
    for i in range(50):
        s = socket.socket(socket.AF_UNIX)
        s.connect(daemon.sock)
        s.sendall(HDR.pack(i, i, i, 0xFFFFFFFF))
        s.close()
    still_serving(daemon)
