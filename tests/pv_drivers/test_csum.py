"""Checksum completion for NETTXF_csum_blank frames: the result verifies
as a receiver checks it (pseudo-header + segment sum to 0xFFFF), whatever
the frontend left in the field."""
import os
import struct

import pytest
from hypothesis import given, settings, strategies as st

from pv_drivers.csum import _sum16, complete_checksum
from pv_drivers.netback import NetBackend
from pv_drivers.ring import BackRing, SharedRing
from xen_core.abi import netif

from .doubles import PageGrants, new_front, tx_request


def ipv4_udp(payload, src=b"\x0a\x00\x00\x01", dst=b"\x0a\x00\x00\x02", csum=b"\xde\xad"):
    udp = struct.pack("!HHH", 1234, 5678, 8 + len(payload)) + csum + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", 0xFFFF - _sum16(ip)) + ip[12:]
    return b"\x00\x16\x3e\x00\x00\x02\x00\x16\x3e\x00\x00\x01\x08\x00" + ip + udp


def ipv6_tcp(payload):
    tcp = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, 0x50, 0x18, 512, 0x1234, 0) + payload
    ip = struct.pack("!IHBB16s16s", 6 << 28, len(tcp), 6, 64, b"\xfe\x80" + b"\0" * 13 + b"\1",
                     b"\xfe\x80" + b"\0" * 13 + b"\2")
    return b"\x00" * 12 + b"\x86\xdd" + ip + tcp


def verify(frame, l3_len, proto):
    """A receiver's check: pseudo-header + segment sums to 0xFFFF."""
    if proto == "v4":
        ip = frame[14:34]
        seg = frame[34:]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, ip[9], len(seg))
    else:
        ip = frame[14:54]
        seg = frame[54:]
        pseudo = ip[8:40] + struct.pack("!I3xB", len(seg), ip[6])
    return _sum16(pseudo + seg) == 0xFFFF


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=1400))
def test_completed_checksums_verify(payload):
    assert verify(complete_checksum(ipv4_udp(payload)), 20, "v4")
    assert verify(complete_checksum(ipv6_tcp(payload)), 40, "v6")


def test_known_udp_checksum():
    # The field's old content does not matter; the result is the RFC 768 sum.
    a = complete_checksum(ipv4_udp(b"hello", csum=b"\x00\x00"))
    b = complete_checksum(ipv4_udp(b"hello", csum=b"\xff\xff"))
    assert a == b and a[-7:-5] != b"\x00\x00"


@pytest.mark.parametrize("frame", [b"\x00" * 12 + b"\x08\x06" + b"\0" * 28,      # ARP
                                   ipv4_udp(b"x")[:30]])                        # truncated
def test_unusable_frames_refused(frame):
    with pytest.raises(ValueError):
        complete_checksum(frame)


def test_netback_completes_csum_blank_frames():
    txbuf, txf = new_front(netif.TX_ENTRY_SIZE)
    rxbuf, _ = new_front(netif.RX_ENTRY_SIZE)
    grants, sent = PageGrants(), []
    back = NetBackend(BackRing(SharedRing(txbuf, netif.TX_ENTRY_SIZE)),
                      BackRing(SharedRing(rxbuf, netif.RX_ENTRY_SIZE)), grants, sent.append)
    frame = ipv4_udp(os.urandom(100), csum=b"\x12\x34")
    g = grants.grant(bytearray(frame.ljust(4096, b"\0")), readonly=True)
    txf.put_request(tx_request(g, 0, netif.NETTXF_csum_blank | netif.NETTXF_data_validated,
                               1, len(frame)))
    txf.put_request(tx_request(g, 0, 0, 2, len(frame)))   # not offloaded: left alone
    txf.push_requests_and_check_notify()
    back.process_tx()
    assert verify(sent[0], 20, "v4") and sent[1] == frame
