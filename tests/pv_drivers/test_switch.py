"""The built-in learning switch."""
import pytest

from pv_drivers.switch import Switch

A, B, C = bytes.fromhex("00163e000001"), bytes.fromhex("00163e000002"), bytes.fromhex("00163e000003")
BCAST = b"\xff" * 6


def frame(dst, src, payload=b"x" * 46):
    return dst + src + b"\x08\x00" + payload


def test_flood_learn_forward_detach():
    sw = Switch("xenbr0")
    got = {n: [] for n in "abc"}
    ports = {n: sw.attach(f"vif{i}.0", got[n].append) for i, n in enumerate("abc")}
    ports["a"].transmit(frame(BCAST, A))
    assert (len(got["a"]), len(got["b"]), len(got["c"])) == (0, 1, 1)
    ports["b"].transmit(frame(A, B))                   # A learnt: unicast only
    assert (len(got["a"]), len(got["c"])) == (1, 1)
    ports["a"].transmit(frame(B, A))
    assert (len(got["b"]), len(got["c"])) == (2, 1)
    ports["c"].transmit(frame(bytes.fromhex("00163e0000ff"), C))   # unknown: flood
    assert (len(got["a"]), len(got["b"])) == (2, 3)
    sw.detach(ports["b"])
    ports["a"].transmit(frame(B, A))                   # B forgotten: flooded to c only
    assert len(got["b"]) == 3 and len(got["c"]) == 2
    ports["a"].transmit(b"short")
    assert sw.dropped == 1
    with pytest.raises(ValueError, match="already attached"):
        sw.attach("vif0.0", print)
