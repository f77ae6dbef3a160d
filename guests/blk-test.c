/* blk-test: the guest side of a vbd. Identifies the disk, writes a pattern
 * over `mb` MiB (default 4) from sector `start` with direct and indirect
 * requests alternately, flushes, reads it back the other way round and
 * checks it, then times 4 KiB random reads. Prints MB/s, IOPS and
 * "blk-test: PASS" (poweroff) or "blk-test: FAIL ..." (crash).
 *   vdev=N (default 51712, xvda)  mb=N  start=SECTOR  iops=N (reads, 0: skip)
 *   persistent=0|1 (default 1: offer feature-persistent)
 *   hotplug=1: wait for the disk to be attached (xl block-attach), and after
 *   the checks wait for it to be detached (xl block-detach), answering the
 *   backend's Closing with Closing and Closed.
 * On a read-only disk (info & VDISK_READONLY) it checks that a write is
 * refused and that reads work. Word i of sector s holds s << 16 | i. */
#include "lib/guest.h"
#include "lib/evtchn.h"
#include "lib/xenbus.h"
#include "lib/blkfront.h"

#define FAIL(...) do { pvcons_printf("blk-test: FAIL " __VA_ARGS__); return 1; } while (0)
#define CHUNK_PAGES BLKFRONT_DATA_PAGES
#define HOTPLUG_WAIT_NS 300000000000UL       /* 5 minutes for the toolstack */

static struct blkfront bf;

static void fill(uint64_t sector, unsigned int nsect)
{
    for (unsigned int s = 0; s < nsect; s++) {
        uint64_t *w = (uint64_t *)(blkfront_page(s / 8) + (s % 8) * 512);
        for (unsigned int i = 0; i < 64; i++)
            w[i] = (sector + s) << 16 | i;
    }
}

static long check(uint64_t sector, unsigned int nsect)
{
    for (unsigned int s = 0; s < nsect; s++) {
        uint64_t *w = (uint64_t *)(blkfront_page(s / 8) + (s % 8) * 512);
        for (unsigned int i = 0; i < 64; i++)
            if (w[i] != ((sector + s) << 16 | i))
                return (long)(sector + s);
    }
    return -1;
}

/* Zero the pages a read will fill (word stores: the byte memset is slow
 * on the software CPU), so the check proves the data came from the disk. */
static void clear(unsigned int npages)
{
    uint64_t *w = (uint64_t *)blkfront_page(0);

    for (unsigned long i = 0; i < npages * 512UL; i++)
        w[i] = 0;
}

static unsigned long rate(uint64_t bytes, uint64_t ns)
{
    return ns ? (unsigned long)(bytes * 1000 / ns) : 0;   /* MB/s = bytes/us */
}

int guest_main(void)
{
    uint64_t mb = cmdline_u64("mb", 4), start = cmdline_u64("start", 0);
    uint64_t nreads = cmdline_u64("iops", 1000), total, t0, tw, tr;
    uint64_t vdev = cmdline_u64("vdev", 51712), hotplug = cmdline_u64("hotplug", 0);
    unsigned int indirect;
    long rc;

    if ((rc = time_init()) || (rc = evtchn_init()) || (rc = gnttab_init()))
        panic("blk-test: set-up: %ld\n", rc);
    if ((rc = pvcons_init()))
        panic("blk-test: no PV console: %ld\n", rc);
    if ((rc = xs_init()))
        FAIL("no xenstore: %ld\n", rc);
    if (hotplug) {
        pvcons_printf("blk-test: waiting for vbd %lu\n", (unsigned long)vdev);
        if ((rc = blkfront_wait_device(vdev, HOTPLUG_WAIT_NS)))
            FAIL("no vbd %lu attached: %ld\n", (unsigned long)vdev, rc);
    }
    if ((rc = blkfront_init(&bf, vdev, (int)cmdline_u64("persistent", 1))))
        FAIL("connect: %ld\n", rc);
    pvcons_printf("blk-test: disk %s: %lu sectors of %u bytes, info %u, "
                  "max indirect segments %u, flush %u, persistent %u\n", bf.be,
                  (unsigned long)bf.sectors, bf.sector_size, bf.info, bf.max_indirect, bf.flush,
                  bf.persistent);
    indirect = bf.max_indirect >= 64 ? 64 : BLKIF_MAX_SEGMENTS_PER_REQUEST;

    if (bf.info & VDISK_READONLY) {
        fill(0, 8);
        rc = blkfront_io(&bf, 1, 0, 8, 1);
        pvcons_printf("blk-test: write on a read-only disk: %ld\n", rc);
        if (rc != BLKIF_RSP_ERROR)
            FAIL("a read-only disk accepted a write\n");
        if ((rc = blkfront_io(&bf, 0, 0, 8, 1)))
            FAIL("read on a read-only disk: %ld\n", rc);
        pvcons_printf("blk-test: first bytes %02x %02x %02x %02x\n", blkfront_page(0)[0],
                      blkfront_page(0)[1], blkfront_page(0)[2], blkfront_page(0)[3]);
        pvcons_printf("blk-test: PASS\n");
        return 0;
    }

    total = mb << 11;                                 /* sectors */
    if (start + total > bf.sectors)
        total = bf.sectors > start ? (bf.sectors - start) & ~7UL : 0;
    if (!total)
        FAIL("disk too small\n");
    /* Only the I/O is timed: making and checking the pattern is not. */
    tw = tr = 0;
    for (uint64_t s = 0, n = 0; s < total; s += CHUNK_PAGES * 8, n++) {
        unsigned int ns = total - s < CHUNK_PAGES * 8 ? total - s : CHUNK_PAGES * 8;
        fill(start + s, ns);
        t0 = now_ns();
        if ((rc = blkfront_io(&bf, 1, start + s, ns, n & 1 ? indirect : 11)))
            FAIL("write at sector %lu: %ld\n", (unsigned long)(start + s), rc);
        tw += now_ns() - t0;
    }
    t0 = now_ns();
    if (bf.flush && (rc = blkfront_flush(&bf)))
        FAIL("flush: %ld\n", rc);
    tw += now_ns() - t0;
    for (uint64_t s = 0, n = 0; s < total; s += CHUNK_PAGES * 8, n++) {
        unsigned int ns = total - s < CHUNK_PAGES * 8 ? total - s : CHUNK_PAGES * 8;
        clear(CHUNK_PAGES);
        t0 = now_ns();
        if ((rc = blkfront_io(&bf, 0, start + s, ns, n & 1 ? 11 : indirect)))
            FAIL("read at sector %lu: %ld\n", (unsigned long)(start + s), rc);
        tr += now_ns() - t0;
        if ((rc = check(start + s, ns)) >= 0)
            FAIL("sector %ld read back wrong\n", rc);
    }
    pvcons_printf("blk-test: wrote and read back %lu sectors (direct and %u-segment indirect)\n",
                  (unsigned long)total, indirect);
    pvcons_printf("blk-test: seq write %lu MB/s, seq read %lu MB/s\n",
                  rate(total * 512, tw), rate(total * 512, tr));
    if (nreads) {
        uint64_t x = 88172645463325252UL, pages = total / 8;
        t0 = now_ns();
        for (uint64_t i = 0; i < nreads; i++) {
            uint64_t s;
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            s = start + (x % pages) * 8;
            if ((rc = blkfront_io(&bf, 0, s, 8, 1)))
                FAIL("random read at %lu: %ld\n", (unsigned long)s, rc);
            if ((rc = check(s, 8)) >= 0)
                FAIL("sector %ld random read wrong\n", rc);
        }
        t0 = now_ns() - t0;
        pvcons_printf("blk-test: 4k random read %lu IOPS\n",
                      (unsigned long)(t0 ? nreads * 1000000000UL / t0 : 0));
    }
    if (hotplug) {
        pvcons_printf("blk-test: I/O done, waiting for detach\n");
        if ((rc = blkfront_wait_unplug(&bf, HOTPLUG_WAIT_NS)))
            FAIL("detach: %ld\n", rc);
        pvcons_printf("blk-test: detached (Closing, Closed)\n");
    }
    pvcons_printf("blk-test: PASS\n");
    return 0;
}
