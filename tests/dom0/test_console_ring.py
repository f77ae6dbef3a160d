"""The backend's console ring arithmetic, against a bytearray page laid out
as xencons_interface."""
import struct

from hypothesis import given, strategies as st

from pv_drivers.console import ConsoleRing
from xen_core.abi import console as c


def produce(page, data, start=None):
    """The guest's side of `out`: data, then out_prod."""
    prod = struct.unpack_from("<I", page, c.OUT_PROD)[0] if start is None else start
    for i, b in enumerate(data):
        page[c.OUT_OFFSET + (prod + i) % c.OUT_SIZE] = b
    struct.pack_into("<I", page, c.OUT_PROD, (prod + len(data)) & 0xFFFFFFFF)


def test_layout_matches_io_console_h():
    assert (c.IN_OFFSET, c.OUT_OFFSET, c.IN_CONS, c.IN_PROD, c.OUT_CONS, c.OUT_PROD) == \
        (0, 1024, 3072, 3076, 3080, 3084)


def test_drain_wraps_and_free_running_indexes():
    page = bytearray(4096)
    struct.pack_into("<II", page, c.OUT_CONS, 0xFFFFFFF0, 0xFFFFFFF0)
    ring = ConsoleRing(page)
    produce(page, b"a" * 100)
    assert ring.pending_output()
    assert ring.read_output() == b"a" * 100
    assert struct.unpack_from("<I", page, c.OUT_CONS)[0] == (0xFFFFFFF0 + 100) & 0xFFFFFFFF
    assert ring.read_output() == b""


@given(st.lists(st.binary(min_size=0, max_size=2048), max_size=20))
def test_everything_produced_is_read_in_order(chunks):
    page = bytearray(4096)
    ring = ConsoleRing(page)
    got = b""
    for ch in chunks:
        produce(page, ch)
        got += ring.read_output()
    assert got == b"".join(chunks)


def test_bogus_producer_keeps_one_ring():
    page = bytearray(4096)
    ring = ConsoleRing(page)
    struct.pack_into("<I", page, c.OUT_PROD, 100000)
    assert len(ring.read_output()) == c.OUT_SIZE
    assert not ring.pending_output()


def test_input_respects_space():
    page = bytearray(4096)
    ring = ConsoleRing(page)
    assert ring.write_input(b"x" * 1000) == 1000
    assert ring.write_input(b"y" * 100) == 24
    assert ring.in_space() == 0
    struct.pack_into("<I", page, c.IN_CONS, 1000)      # the guest consumed
    assert ring.write_input(b"z" * 10) == 10
    assert bytes(page[1024 - 24:1024]) == b"y" * 24
    assert bytes(page[0:10]) == b"z" * 10
