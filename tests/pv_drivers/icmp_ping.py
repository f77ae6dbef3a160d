"""`python -m tests.pv_drivers.icmp_ping ADDR [COUNT]`: ICMP echo over a raw
socket (root), for hosts without ping(8). Prints "N received"; exit 1 if
any reply is missing."""
import os
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s


def main(addr: str, count: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    sock.settimeout(5)
    ident, got = os.getpid() & 0xFFFF, 0
    for seq in range(1, count + 1):
        payload = bytes(range(56))
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload
        t0 = time.perf_counter()
        sock.sendto(pkt, (addr, 0))
        try:
            while True:
                data = sock.recv(2048)
                icmp = data[(data[0] & 0xF) * 4:]
                typ, _, _, rid, rseq = struct.unpack("!BBHHH", icmp[:8])
                if typ == 0 and rid == ident and rseq == seq and checksum(icmp) == 0:
                    got += 1
                    print(f"reply from {addr}: seq={seq} time={(time.perf_counter() - t0) * 1e3:.2f} ms")
                    break
        except socket.timeout:
            print(f"no reply for seq={seq}")
    print(f"{count} transmitted, {got} received")
    return 0 if got == count else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3))
