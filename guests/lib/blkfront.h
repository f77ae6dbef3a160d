/* A blkfront for the test guests: one single-page ring, xenbus handshake
 * as Linux's xen-blkfront does it, I/O from a fixed set of data pages
 * granted once at start, direct (11 segments) or indirect requests. */
#ifndef GUEST_BLKFRONT_H
#define GUEST_BLKFRONT_H

#include "guest.h"
#include <xen/io/blkif.h>

#define BLKFRONT_DATA_PAGES 256      /* 1 MiB of I/O buffer */
#define BLKFRONT_IND_PAGES 4         /* indirect requests in flight at most */

struct blkfront {
    char fe[64], be[128];
    domid_t be_id;
    uint32_t port, ring_ref, ind_ref[BLKFRONT_IND_PAGES];
    uint32_t data_ref[BLKFRONT_DATA_PAGES];
    uint32_t req_prod_pvt, rsp_cons;
    uint64_t sectors, next_id;
    uint32_t sector_size, info, max_indirect, flush, persistent;
};

/* Connect to device/vbd/<devid>, offering feature-persistent if asked
 * (bf->persistent: both ends agreed): 0 or a negative Xen errno. */
long blkfront_init(struct blkfront *bf, unsigned long devid, int persistent);
/* Wait until the toolstack has created device/vbd/<devid> (hot attach). */
long blkfront_wait_device(unsigned long devid, uint64_t timeout_ns);
/* Wait for the backend to start closing the device (hot detach: the
 * toolstack wrote online=0, state=Closing), then answer Closing and Closed
 * as Linux's blkfront does; 0 or a negative Xen errno. */
long blkfront_wait_unplug(struct blkfront *bf, uint64_t timeout_ns);
/* Data page `i` of the I/O buffer. */
uint8_t *blkfront_page(unsigned int i);
/* Read or write `nsect` 512-byte sectors at `sector` from/to the data pages,
 * as requests of up to `per_req` pages (<= 11: direct; more: indirect).
 * 0, or the first failing BLKIF_RSP_* status, or a negative Xen errno. */
long blkfront_io(struct blkfront *bf, int write, uint64_t sector, unsigned int nsect,
                 unsigned int per_req);
long blkfront_flush(struct blkfront *bf);

#endif
