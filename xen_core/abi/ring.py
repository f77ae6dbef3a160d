"""The generic shared ring (Xen public io/ring.h).

A shared ring is one or more pages: a header of four free-running u32
indexes, padded to 64 bytes, then an array of entries, each the union of a
request and a response. The entry count is the largest power of two that
fits (__RING_SIZE). A slot is `idx & (size - 1)`.
"""
import struct

RING_IDX = struct.Struct("<I")
REQ_PROD = 0
REQ_EVENT = 4
RSP_PROD = 8
RSP_EVENT = 12
HEADER_SIZE = 64          # req_prod, req_event, rsp_prod, rsp_event, __pad[48]
IDX_MASK = 0xFFFFFFFF

# Linux include/xen/xenbus.h: a frontend gives up to 2^order pages as
# ring-ref0..N-1 when the backend advertises max-ring-page-order.
XENBUS_MAX_RING_GRANT_ORDER = 4


def ring_size(nbytes: int, entry_size: int) -> int:
    """__RING_SIZE: entries of `entry_size` after the header, rounded down
    to a power of two."""
    n = (nbytes - HEADER_SIZE) // entry_size
    if n < 1:
        raise ValueError(f"ring of {nbytes} bytes holds no {entry_size}-byte entry")
    return 1 << (n.bit_length() - 1)
