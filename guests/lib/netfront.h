/* A netfront for the test guests: one queue, rx copy mode, no scatter-
 * gather; xenbus handshake as Linux's xen-netfront does it. */
#ifndef GUEST_NETFRONT_H
#define GUEST_NETFRONT_H

#include "guest.h"
#include <xen/io/netif.h>

#define NETFRONT_TX_BUFS 32
#define NETFRONT_RX_BUFS 64

struct netfront {
    char fe[64], be[128];
    domid_t be_id;
    uint8_t mac[6];
    uint32_t port, tx_ring_ref, rx_ring_ref;
    uint32_t tx_ref[NETFRONT_TX_BUFS], rx_ref[NETFRONT_RX_BUFS];
    uint8_t tx_busy[NETFRONT_TX_BUFS];
    uint32_t tx_prod_pvt, tx_cons, rx_prod_pvt, rx_cons;
    unsigned long tx_dropped;
    unsigned long kicks, waits, wait_ns;      /* notifications sent, sleeps for one */
};

long netfront_init(struct netfront *nf, unsigned long devid);
/* Queue one frame (<= 4096 bytes); 0 or a negative Xen errno. */
long netfront_send(struct netfront *nf, const void *frame, unsigned int len);
/* The next received frame copied to buf: its length, 0 if none arrived
 * before `deadline_ns`. */
long netfront_recv(struct netfront *nf, void *buf, unsigned int size, uint64_t deadline_ns);

#endif
