"""Completing the TCP/UDP checksum of a frame a frontend sent with
NETTXF_csum_blank (checksum offload: Linux netfront leaves it to the
backend for IPv4, and IPv6 with feature-ipv6-csum-offload). We compute it
whole, over the pseudo-header and the segment with the field zeroed, so
what the frontend left in the field does not matter. Frames we cannot
parse are refused, as netback's checksum_setup refuses them."""
import struct

ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
IPPROTO_TCP, IPPROTO_UDP = 6, 17
CSUM_OFFSET = {IPPROTO_TCP: 16, IPPROTO_UDP: 6}


def _sum16(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def complete_checksum(frame: bytes) -> bytes:
    """The frame with its TCP/UDP checksum filled in; ValueError if the
    frame is not IPv4/IPv6 TCP or UDP."""
    l3 = 14
    etype = struct.unpack_from("!H", frame, 12)[0] if len(frame) >= 14 else 0
    if etype == ETH_P_8021Q and len(frame) >= 18:
        l3, etype = 18, struct.unpack_from("!H", frame, 16)[0]
    if etype == ETH_P_IP and len(frame) >= l3 + 20:
        ihl = (frame[l3] & 0xF) * 4
        total = struct.unpack_from("!H", frame, l3 + 2)[0]
        proto = frame[l3 + 9]
        l4, end = l3 + ihl, l3 + total
        pseudo = frame[l3 + 12:l3 + 20] + struct.pack("!BBH", 0, proto, end - l4)
        if ihl < 20 or end > len(frame) or struct.unpack_from("!H", frame, l3 + 6)[0] & 0x3FFF:
            raise ValueError("IPv4 header unusable for checksum offload (or a fragment)")
    elif etype == ETH_P_IPV6 and len(frame) >= l3 + 40:
        proto = frame[l3 + 6]
        l4 = l3 + 40
        end = l4 + struct.unpack_from("!H", frame, l3 + 4)[0]
        pseudo = frame[l3 + 8:l3 + 40] + struct.pack("!I3xB", end - l4, proto)
        if end > len(frame):
            raise ValueError("IPv6 payload length beyond the frame")
    else:
        raise ValueError(f"checksum offload on ethertype {etype:#06x}")
    if proto not in CSUM_OFFSET or end - l4 < CSUM_OFFSET[proto] + 2:
        raise ValueError(f"checksum offload on IP protocol {proto}")
    off = l4 + CSUM_OFFSET[proto]
    seg = frame[l4:off] + b"\0\0" + frame[off + 2:end]
    csum = 0xFFFF - _sum16(pseudo + seg)
    if proto == IPPROTO_UDP and csum == 0:
        csum = 0xFFFF
    return frame[:off] + struct.pack("!H", csum) + frame[off + 2:]
