/* netfront: see netfront.h. Ring pages and every buffer are granted once;
 * a tx buffer is busy until its response comes back, an rx buffer is
 * posted again as soon as its frame is copied out. */
#include "netfront.h"
#include "evtchn.h"
#include "xenbus.h"
#include <xen/io/blkif.h>       /* struct xen_sring_hdr */

#define WAIT_NS 60000000000UL

static uint8_t tx_ring[4096] __attribute__((aligned(4096)));
static uint8_t rx_ring[4096] __attribute__((aligned(4096)));
static uint8_t tx_bufs[NETFRONT_TX_BUFS][4096] __attribute__((aligned(4096)));
static uint8_t rx_bufs[NETFRONT_RX_BUFS][4096] __attribute__((aligned(4096)));

#define barrier() asm volatile("" ::: "memory")
#define mb() asm volatile("mfence" ::: "memory")
#define HDR(r) ((struct xen_sring_hdr *)(r))

static struct netif_tx_request *tx_req(uint32_t i)
{
    return (void *)(tx_ring + 64 + (i & (NET_TX_RING_SIZE - 1)) * NETIF_TX_ENTRY_SIZE);
}
static struct netif_rx_request *rx_req(uint32_t i)
{
    return (void *)(rx_ring + 64 + (i & (NET_RX_RING_SIZE - 1)) * NETIF_RX_ENTRY_SIZE);
}

static unsigned long frame_of(const void *p) { return (uintptr_t)p >> 12; }

static long xs_printf(const char *dir, const char *key, const char *fmt, unsigned long v)
{
    char path[192], buf[32];
    snprintf(path, sizeof(path), "%s/%s", dir, key);
    snprintf(buf, sizeof(buf), fmt, v);
    return xs_write(path, buf);
}

static long backend_state(struct netfront *nf)
{
    char path[192], buf[16];
    snprintf(path, sizeof(path), "%s/state", nf->be);
    if (xs_read(path, buf, sizeof(buf)))
        return 0;
    return buf[0] - '0';
}

static long wait_state(struct netfront *nf, long want)
{
    char path[192], wpath[192], token[16];
    uint64_t deadline = now_ns() + WAIT_NS;

    snprintf(path, sizeof(path), "%s/state", nf->be);
    xs_watch(path, "netfront");
    for (;;) {
        long st = backend_state(nf);
        if (st == want)
            return 0;
        if (st >= 5)
            return -XEN_EIO;
        if (now_ns() > deadline)
            return -XEN_ETIMEDOUT;
        xs_read_watch(wpath, sizeof(wpath), token, sizeof(token), now_ns() + 100000000UL);
    }
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
           c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

#define RX_PUSH_BATCH 16

/* Sleep until the port fires (or the deadline), counted for the reports. */
static void wait_event(struct netfront *nf, unsigned long seen, uint64_t deadline_ns)
{
    uint64_t t0 = now_ns();

    nf->waits++;
    evtchn_wait(nf->port, seen, deadline_ns);
    nf->wait_ns += now_ns() - t0;
}

static void push_rx(struct netfront *nf)
{
    uint32_t old = HDR(rx_ring)->req_prod, new = nf->rx_prod_pvt;
    barrier();
    HDR(rx_ring)->req_prod = new;
    mb();
    if ((uint32_t)(new - HDR(rx_ring)->req_event) < (uint32_t)(new - old))
        { nf->kicks++; evtchn_send(nf->port); }
}

static void post_rx(struct netfront *nf, uint16_t id)
{
    struct netif_rx_request *r = rx_req(nf->rx_prod_pvt++);
    r->id = id;
    r->gref = nf->rx_ref[id];
}

long netfront_init(struct netfront *nf, unsigned long devid)
{
    char path[96], mac[32];
    long rc;

    memset(nf, 0, sizeof(*nf));
    snprintf(nf->fe, sizeof(nf->fe), "device/vif/%lu", devid);
    snprintf(path, sizeof(path), "%s/backend", nf->fe);
    if ((rc = xs_read(path, nf->be, sizeof(nf->be))))
        return rc;
    snprintf(path, sizeof(path), "%s/backend-id", nf->fe);
    if (!xs_read(path, mac, sizeof(mac)))
        for (char *c = mac; *c >= '0' && *c <= '9'; c++)
            nf->be_id = nf->be_id * 10 + (*c - '0');
    snprintf(path, sizeof(path), "%s/mac", nf->fe);
    if ((rc = xs_read(path, mac, sizeof(mac))))
        return rc;
    for (int i = 0; i < 6; i++) {
        int hi = hexval(mac[3 * i]), lo = hexval(mac[3 * i + 1]);
        if (hi < 0 || lo < 0)
            return -XEN_EINVAL;
        nf->mac[i] = hi << 4 | lo;
    }
    if ((rc = wait_state(nf, 2)))
        return rc;
    memset(tx_ring, 0, sizeof(tx_ring));
    memset(rx_ring, 0, sizeof(rx_ring));
    HDR(tx_ring)->req_event = HDR(tx_ring)->rsp_event = 1;
    HDR(rx_ring)->req_event = HDR(rx_ring)->rsp_event = 1;
    nf->tx_ring_ref = gnttab_grant(nf->be_id, frame_of(tx_ring), 0);
    nf->rx_ring_ref = gnttab_grant(nf->be_id, frame_of(rx_ring), 0);
    for (int i = 0; i < NETFRONT_TX_BUFS; i++)
        nf->tx_ref[i] = gnttab_grant(nf->be_id, frame_of(tx_bufs[i]), 1);
    for (int i = 0; i < NETFRONT_RX_BUFS; i++)
        nf->rx_ref[i] = gnttab_grant(nf->be_id, frame_of(rx_bufs[i]), 0);
    if ((rc = evtchn_alloc_unbound(nf->be_id, &nf->port)))
        return rc;
    if ((rc = xs_printf(nf->fe, "tx-ring-ref", "%lu", nf->tx_ring_ref)) ||
        (rc = xs_printf(nf->fe, "rx-ring-ref", "%lu", nf->rx_ring_ref)) ||
        (rc = xs_printf(nf->fe, "event-channel", "%lu", nf->port)) ||
        (rc = xs_printf(nf->fe, "request-rx-copy", "%lu", 1)) ||
        (rc = xs_printf(nf->fe, "feature-rx-notify", "%lu", 1)) ||
        (rc = xs_printf(nf->fe, "feature-sg", "%lu", 0)) ||
        (rc = xs_printf(nf->fe, "state", "%lu", 4)))        /* netfront: straight to Connected */
        return rc;
    if ((rc = wait_state(nf, 4)))
        return rc;
    for (int i = 0; i < NETFRONT_RX_BUFS; i++)
        post_rx(nf, i);
    push_rx(nf);
    return 0;
}

static void reclaim_tx(struct netfront *nf)
{
    while (nf->tx_cons != HDR(tx_ring)->rsp_prod) {
        struct netif_tx_response *r = (void *)tx_req(nf->tx_cons);
        barrier();
        if (r->status != NETIF_RSP_NULL && r->id < NETFRONT_TX_BUFS)
            nf->tx_busy[r->id] = 0;
        if (r->status == NETIF_RSP_ERROR || r->status == NETIF_RSP_DROPPED)
            nf->tx_dropped++;
        nf->tx_cons++;
    }
}

long netfront_send(struct netfront *nf, const void *frame, unsigned int len)
{
    struct netif_tx_request *r;
    uint32_t old, new;
    int id = -1;

    if (len > 4096)
        return -XEN_EINVAL;
    for (uint64_t deadline = now_ns() + WAIT_NS; id < 0; ) {
        reclaim_tx(nf);
        for (int i = 0; i < NETFRONT_TX_BUFS; i++)
            if (!nf->tx_busy[i]) {
                id = i;
                break;
            }
        if (id < 0) {
            unsigned long seen = evtchn_count(nf->port);
            /* RING_FINAL_CHECK_FOR_RESPONSES on tx: ask to be kicked. */
            HDR(tx_ring)->rsp_event = nf->tx_cons + 1;
            mb();
            if (nf->tx_cons != HDR(tx_ring)->rsp_prod)
                continue;
            if (now_ns() > deadline)
                return -XEN_ETIMEDOUT;
            wait_event(nf, seen, now_ns() + 10000000UL);
        }
    }
    memcpy(tx_bufs[id], frame, len);
    nf->tx_busy[id] = 1;
    r = tx_req(nf->tx_prod_pvt++);
    r->gref = nf->tx_ref[id];
    r->offset = 0;
    r->flags = 0;
    r->id = id;
    r->size = len;
    old = HDR(tx_ring)->req_prod;
    new = nf->tx_prod_pvt;
    barrier();
    HDR(tx_ring)->req_prod = new;
    mb();
    if ((uint32_t)(new - HDR(tx_ring)->req_event) < (uint32_t)(new - old))
        { nf->kicks++; evtchn_send(nf->port); }
    return 0;
}

long netfront_recv(struct netfront *nf, void *buf, unsigned int size, uint64_t deadline_ns)
{
    for (;;) {
        unsigned long seen = evtchn_count(nf->port);
        reclaim_tx(nf);
        if (nf->rx_cons != HDR(rx_ring)->rsp_prod) {
            struct netif_rx_response *r = (void *)rx_req(nf->rx_cons);
            uint16_t id = r->id;
            long n = r->status;
            barrier();
            nf->rx_cons++;
            if (n > 0 && id < NETFRONT_RX_BUFS && r->offset + n <= 4096) {
                if (n > size)
                    n = size;
                memcpy(buf, rx_bufs[id] + r->offset, n);
            } else {
                n = -1;
            }
            /* Refill at once but publish in batches (xennet_alloc_rx_buffers):
             * one push, at most one kick, per RX_PUSH_BATCH buffers. */
            if (id < NETFRONT_RX_BUFS) {
                post_rx(nf, id);
                if (nf->rx_prod_pvt - HDR(rx_ring)->req_prod >= RX_PUSH_BATCH)
                    push_rx(nf);
            }
            if (n > 0)
                return n;
            continue;
        }
        if (nf->rx_prod_pvt != HDR(rx_ring)->req_prod)
            push_rx(nf);                      /* nothing posted stays unseen */
        HDR(rx_ring)->rsp_event = nf->rx_cons + 1;
        HDR(tx_ring)->rsp_event = nf->tx_cons + 1;
        mb();
        if (nf->rx_cons != HDR(rx_ring)->rsp_prod)
            continue;
        if (now_ns() >= deadline_ns)
            return 0;
        wait_event(nf, seen, deadline_ns);
    }
}
