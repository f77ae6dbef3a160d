"""Network I/O interface (Xen public io/netif.h), x86-64 layouts.

Tx: the frontend's first request of a packet carries the packet's total
size; NETTXF_more_data chains further slots, each with its own fragment
size. NETTXF_extra_info means the next slot is a netif_extra_info.
Rx (copy mode, request-rx-copy=1): the frontend posts page grants, the
backend copies a packet in and answers with offset, flags and the length
in `status` (negative = NETIF_RSP_*).
"""
import struct

NETTXF_csum_blank = 1 << 0
NETTXF_data_validated = 1 << 1
NETTXF_more_data = 1 << 2
NETTXF_extra_info = 1 << 3

NETRXF_data_validated = 1 << 0
NETRXF_csum_blank = 1 << 1
NETRXF_more_data = 1 << 2
NETRXF_extra_info = 1 << 3
NETRXF_gso_prefix = 1 << 4

XEN_NETIF_EXTRA_TYPE_NONE = 0
XEN_NETIF_EXTRA_TYPE_GSO = 1
XEN_NETIF_EXTRA_FLAG_MORE = 1 << 0

NETIF_RSP_DROPPED = -2
NETIF_RSP_ERROR = -1
NETIF_RSP_OKAY = 0
NETIF_RSP_NULL = 1          # a response slot for an extra_info request

XEN_NETIF_MAX_TX_SIZE = 0xFFFF
XEN_NETIF_NR_SLOTS_MIN = 18     # slots a packet may take (Linux: max_skb_slots)

# netif_tx_request: gref u32, offset u16, flags u16, id u16, size u16
TX_REQUEST = struct.Struct("<IHHHH")
# netif_tx_response: id u16, status i16
TX_RESPONSE = struct.Struct("<Hh")
# netif_extra_info: type u8, flags u8, union (6 bytes)
EXTRA_INFO = struct.Struct("<BB6x")
TX_ENTRY_SIZE = 12
# netif_rx_request: id u16, pad u16, gref u32
RX_REQUEST = struct.Struct("<HxxI")
# netif_rx_response: id u16, offset u16, flags u16, status i16
RX_RESPONSE = struct.Struct("<HHHh")
RX_ENTRY_SIZE = 8

ETH_HLEN = 14
