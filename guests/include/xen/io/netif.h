/* Network I/O interface (Xen public io/netif.h), x86-64. Written from the
 * published ABI. Rings use the header of io/ring.h (see blkif.h). */
#ifndef GUEST_XEN_IO_NETIF_H
#define GUEST_XEN_IO_NETIF_H

#include <xen/types.h>

#define NETTXF_csum_blank     (1U << 0)
#define NETTXF_data_validated (1U << 1)
#define NETTXF_more_data      (1U << 2)
#define NETTXF_extra_info     (1U << 3)
#define NETRXF_data_validated (1U << 0)
#define NETRXF_csum_blank     (1U << 1)
#define NETRXF_more_data      (1U << 2)

#define NETIF_RSP_DROPPED (-2)
#define NETIF_RSP_ERROR   (-1)
#define NETIF_RSP_OKAY      0
#define NETIF_RSP_NULL      1

struct netif_tx_request {
    uint32_t gref;
    uint16_t offset, flags, id, size;    /* size: the whole packet in the first slot */
};
struct netif_tx_response {
    uint16_t id;
    int16_t status;
};
struct netif_rx_request {
    uint16_t id, pad;
    uint32_t gref;
};
struct netif_rx_response {
    uint16_t id, offset, flags;
    int16_t status;                      /* > 0: bytes in this slot */
};

#define NETIF_TX_ENTRY_SIZE 12
#define NETIF_RX_ENTRY_SIZE 8
#define NET_TX_RING_SIZE 256             /* one page */
#define NET_RX_RING_SIZE 256

#endif
