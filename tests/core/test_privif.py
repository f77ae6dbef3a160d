"""Framing of the privileged interface (xen_core.abi.privif)."""
import json
import os

import pytest

from xen_core.abi import privif


def test_round_trip_in_pieces():
    frames = privif.encode({"id": 1, "op": "hello"}) + privif.encode({"id": 2, "op": "x"})
    dec = privif.Decoder()
    got = []
    for i in range(len(frames)):          # one byte at a time
        got += dec.feed(frames[i:i + 1])
    assert [m.body for m in got] == [{"id": 1, "op": "hello"}, {"id": 2, "op": "x"}]
    assert dec.pending == 0


def test_fds_attach_to_their_frame():
    r, w = os.pipe()
    try:
        dec = privif.Decoder()
        first = privif.encode({"id": 1}, nfds=2)
        msgs = dec.feed(first + privif.encode({"id": 2}), [r, w])
        assert msgs[0].fds == [r, w] and msgs[1].fds == []
        assert "nfds" not in msgs[0].body
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("raw, why", [
    (privif.HEADER.pack(0), "length"),
    (privif.HEADER.pack(privif.MAX_FRAME + 1), "length"),
    (privif.HEADER.pack(3) + b"{x]", "JSON"),
    (privif.HEADER.pack(4) + b"\xff\xfe{}", "JSON"),
    (privif.HEADER.pack(2) + b"[]", "object"),
    (privif.HEADER.pack(11) + b'{"nfds": 1}', "fds"),
    (privif.HEADER.pack(14) + b'{"nfds": "x"}' + b" ", "fds"),
])
def test_malformed_frames_are_protocol_errors(raw, why):
    with pytest.raises(privif.ProtocolError, match=why):
        privif.Decoder().feed(raw)


def test_replies():
    assert privif.reply_ok(3, {"a": 1}) == {"id": 3, "ok": True, "result": {"a": 1}}
    e = privif.reply_error(4, 3, "ESRCH", "no domain 9")
    assert json.loads(privif.encode(e)[4:]) == e


def test_oversized_body_refused():
    with pytest.raises(ValueError):
        privif.encode({"blob": "x" * privif.MAX_FRAME})
