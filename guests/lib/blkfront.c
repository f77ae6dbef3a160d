/* blkfront: see blkfront.h. The ring page, two indirect pages and the data
 * pages are granted to the backend once; requests then only carry refs.
 * Requests of one call are published with one push and one notification.
 * That fixed pool is what Linux's blkfront keeps with feature-persistent
 * (callers copy their data in and out of it), so we can offer it. */
#include "blkfront.h"
#include "evtchn.h"
#include "xenbus.h"

#define RING_SIZE BLKIF_RING_SIZE_1PAGE
#define WAIT_NS 60000000000UL            /* a backend silent this long is gone */

static uint8_t ring_page[4096] __attribute__((aligned(4096)));
static uint8_t ind_pages[BLKFRONT_IND_PAGES][4096] __attribute__((aligned(4096)));
static uint8_t data_pages[BLKFRONT_DATA_PAGES][4096] __attribute__((aligned(4096)));

#define barrier() asm volatile("" ::: "memory")
#define mb() asm volatile("mfence" ::: "memory")

static struct xen_sring_hdr *sring(void) { return (struct xen_sring_hdr *)ring_page; }
static void *slot(uint32_t idx)
{
    return ring_page + sizeof(struct xen_sring_hdr) + (idx & (RING_SIZE - 1)) * BLKIF_RING_ENTRY_SIZE;
}

uint8_t *blkfront_page(unsigned int i) { return data_pages[i]; }

static unsigned long frame_of(const void *p) { return (uintptr_t)p >> 12; }

static long read_u64(const char *dir, const char *key, uint64_t *v, uint64_t dflt)
{
    char path[192], buf[32];
    uint64_t n = 0;

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    if (xs_read(path, buf, sizeof(buf))) {
        *v = dflt;
        return -XEN_ENOENT;
    }
    for (char *c = buf; *c >= '0' && *c <= '9'; c++)
        n = n * 10 + (*c - '0');
    *v = n;
    return 0;
}

static long write_key(const char *dir, const char *key, const char *fmt, unsigned long v)
{
    char path[192], buf[32];

    snprintf(path, sizeof(path), "%s/%s", dir, key);
    snprintf(buf, sizeof(buf), fmt, v);
    return xs_write(path, buf);
}

/* Wait until the backend's state is `want` (watch-driven, re-read on any
 * event or every 100 ms). Closing/Closed on the way is a failure. */
static long wait_backend_state(struct blkfront *bf, uint64_t want)
{
    char path[192], wpath[192], token[16];
    uint64_t st, deadline = now_ns() + WAIT_NS;

    snprintf(path, sizeof(path), "%s/state", bf->be);
    xs_watch(path, "blkfront");
    for (;;) {
        read_u64(bf->be, "state", &st, 0);
        if (st == want)
            return 0;
        if (st >= 5)
            return -XEN_EIO;
        if (now_ns() > deadline)
            return -XEN_ETIMEDOUT;
        xs_read_watch(wpath, sizeof(wpath), token, sizeof(token), now_ns() + 100000000UL);
    }
}

long blkfront_wait_device(unsigned long devid, uint64_t timeout_ns)
{
    char path[96], buf[128];
    uint64_t deadline = now_ns() + timeout_ns;

    snprintf(path, sizeof(path), "device/vbd/%lu/backend", devid);
    while (xs_read(path, buf, sizeof(buf))) {
        if (now_ns() > deadline)
            return -XEN_ETIMEDOUT;
        sleep_ns(100000000UL);
    }
    return 0;
}

long blkfront_wait_unplug(struct blkfront *bf, uint64_t timeout_ns)
{
    char path[192], token[16];
    uint64_t st, deadline = now_ns() + timeout_ns;
    long rc;

    snprintf(path, sizeof(path), "%s/state", bf->be);
    xs_watch(path, "blkfront");
    for (;;) {
        /* A backend directory the toolstack already removed reads as gone. */
        if (read_u64(bf->be, "state", &st, 6) || st >= 5)
            break;
        if (now_ns() > deadline)
            return -XEN_ETIMEDOUT;
        xs_read_watch(path, sizeof(path), token, sizeof(token), now_ns() + 100000000UL);
        snprintf(path, sizeof(path), "%s/state", bf->be);
    }
    /* blkfront_closing: xenbus_frontend_closed goes Closing, then Closed. */
    if ((rc = write_key(bf->fe, "state", "%lu", 5)))
        return rc;
    return write_key(bf->fe, "state", "%lu", 6);
}

long blkfront_init(struct blkfront *bf, unsigned long devid, int persistent)
{
    uint64_t v;
    long rc;

    memset(bf, 0, sizeof(*bf));
    snprintf(bf->fe, sizeof(bf->fe), "device/vbd/%lu", devid);
    {
        char path[96];
        snprintf(path, sizeof(path), "%s/backend", bf->fe);
        if ((rc = xs_read(path, bf->be, sizeof(bf->be))))
            return rc;
    }
    read_u64(bf->fe, "backend-id", &v, 0);
    bf->be_id = v;
    if ((rc = wait_backend_state(bf, 2)))            /* InitWait */
        return rc;

    memset(ring_page, 0, sizeof(ring_page));
    sring()->req_event = sring()->rsp_event = 1;      /* SHARED_RING_INIT */
    bf->ring_ref = gnttab_grant(bf->be_id, frame_of(ring_page), 0);
    /* A persistent backend maps every gref writable (xen-blkback), so the
     * indirect pages are granted writable only when we offer persistence. */
    for (int i = 0; i < BLKFRONT_IND_PAGES; i++)
        bf->ind_ref[i] = gnttab_grant(bf->be_id, frame_of(ind_pages[i]), !persistent);
    for (int i = 0; i < BLKFRONT_DATA_PAGES; i++)
        bf->data_ref[i] = gnttab_grant(bf->be_id, frame_of(data_pages[i]), 0);
    if ((rc = evtchn_alloc_unbound(bf->be_id, &bf->port)))
        return rc;
    if ((rc = write_key(bf->fe, "ring-ref", "%lu", bf->ring_ref)) ||
        (rc = write_key(bf->fe, "event-channel", "%lu", bf->port)) ||
        (rc = write_key(bf->fe, "feature-persistent", "%lu", persistent ? 1 : 0)))
        return rc;
    {
        char path[96];
        snprintf(path, sizeof(path), "%s/protocol", bf->fe);
        if ((rc = xs_write(path, "x86_64-abi")))
            return rc;
    }
    if ((rc = write_key(bf->fe, "state", "%lu", 3)))   /* Initialised */
        return rc;
    if ((rc = wait_backend_state(bf, 4)))             /* Connected */
        return rc;
    read_u64(bf->be, "sectors", &bf->sectors, 0);
    read_u64(bf->be, "sector-size", &v, 512);
    bf->sector_size = v;
    read_u64(bf->be, "info", &v, 0);
    bf->info = v;
    read_u64(bf->be, "feature-max-indirect-segments", &v, 0);
    bf->max_indirect = v;
    read_u64(bf->be, "feature-flush-cache", &v, 0);
    bf->flush = v;
    read_u64(bf->be, "feature-persistent", &v, 0);
    bf->persistent = persistent && v;
    return write_key(bf->fe, "state", "%lu", 4);
}

static void push(struct blkfront *bf)
{
    uint32_t old = sring()->req_prod, new = bf->req_prod_pvt;

    barrier();
    sring()->req_prod = new;
    mb();
    if ((uint32_t)(new - sring()->req_event) < (uint32_t)(new - old))
        evtchn_send(bf->port);
}

/* Collect `n` responses; the first failing status (or 0). */
static long wait_responses(struct blkfront *bf, unsigned int n)
{
    long result = 0;
    uint64_t deadline = now_ns() + WAIT_NS;

    while (n) {
        unsigned long seen = evtchn_count(bf->port);
        while (n && bf->rsp_cons != sring()->rsp_prod) {
            struct blkif_response *r = slot(bf->rsp_cons);
            barrier();
            if (r->status != BLKIF_RSP_OKAY && !result)
                result = r->status;
            bf->rsp_cons++;
            n--;
        }
        if (!n)
            break;
        sring()->rsp_event = bf->rsp_cons + 1;       /* RING_FINAL_CHECK_FOR_RESPONSES */
        mb();
        if (bf->rsp_cons != sring()->rsp_prod)
            continue;
        if (now_ns() > deadline)
            return -XEN_ETIMEDOUT;
        evtchn_wait(bf->port, seen, now_ns() + 100000000UL);
    }
    return result;
}

long blkfront_io(struct blkfront *bf, int write, uint64_t sector, unsigned int nsect,
                 unsigned int per_req)
{
    unsigned int npages = (nsect + 7) / 8, page = 0, inflight = 0, ind = 0;
    uint8_t op = write ? BLKIF_OP_WRITE : BLKIF_OP_READ;
    int indirect = per_req > BLKIF_MAX_SEGMENTS_PER_REQUEST;
    long rc = 0;

    if (npages > BLKFRONT_DATA_PAGES || !per_req)
        return -XEN_EINVAL;
    if (indirect && (per_req > bf->max_indirect || per_req > BLKIF_SEGS_PER_INDIRECT_FRAME))
        return -XEN_EINVAL;
    while (page < npages) {
        unsigned int nseg = npages - page < per_req ? npages - page : per_req;
        struct blkif_request_segment *segs;
        void *req;

        /* Out of ring slots or indirect pages (one may be reused only after
         * its request completed): publish what is queued and drain it. */
        if (inflight == RING_SIZE || (indirect && inflight == BLKFRONT_IND_PAGES)) {
            long w;
            push(bf);
            w = wait_responses(bf, inflight);
            rc = rc ? rc : w;
            inflight = ind = 0;
        }
        req = slot(bf->req_prod_pvt);
        if (indirect) {
            struct blkif_request_indirect *ir = req;
            memset(ir, 0, sizeof(*ir));
            ir->operation = BLKIF_OP_INDIRECT;
            ir->indirect_op = op;
            ir->nr_segments = nseg;
            ir->id = ++bf->next_id;
            ir->sector_number = sector + page * 8;
            ir->indirect_grefs[0] = bf->ind_ref[ind];
            segs = (struct blkif_request_segment *)ind_pages[ind++];
        } else {
            struct blkif_request *r = req;
            memset(r, 0, sizeof(*r));
            r->operation = op;
            r->nr_segments = nseg;
            r->id = ++bf->next_id;
            r->sector_number = sector + page * 8;
            segs = r->seg;
        }
        for (unsigned int i = 0; i < nseg; i++, page++) {
            unsigned int left = nsect - page * 8;
            segs[i].gref = bf->data_ref[page];
            segs[i].first_sect = 0;
            segs[i].last_sect = (left >= 8 ? 8 : left) - 1;
        }
        bf->req_prod_pvt++;
        inflight++;
    }
    /* One push for the whole batch: the backend is woken (at most) once and
     * finds every request there, as blk-mq's commit_rqs does. */
    push(bf);
    {
        long w = wait_responses(bf, inflight);
        return rc ? rc : w;
    }
}

long blkfront_flush(struct blkfront *bf)
{
    struct blkif_request *r = slot(bf->req_prod_pvt);

    memset(r, 0, sizeof(*r));
    r->operation = BLKIF_OP_FLUSH_DISKCACHE;
    r->id = ++bf->next_id;
    bf->req_prod_pvt++;
    push(bf);
    return wait_responses(bf, 1);
}
