/* grant-share: grant a page to a peer (default domain 0), write a pattern,
 * print the reference, wait until the peer writes "peer:" at the start of
 * the page, then revoke the grant (refused while it is mapped; the first
 * refusal writes "ack" at offset 2048 for the peer).
 *   peer=D readonly=1
 * With map=D gref=R, the peer's side instead, as an HVM/PVH guest does it:
 * map domain D's grant R over a page of our own physmap, read the pattern,
 * write "peer:..." (unless readonly=1: then try a write the mapping must
 * refuse), wait for the ack, unmap; misuse first (a ref beyond the table,
 * other=D2 ogref=R2 a grant meant for someone else).
 *   map=D gref=R [readonly=1] [other=D2 ogref=R2] [hold=1: keep it mapped]
 *   [twice=1: map it again over itself, which crashes us as on Xen] */
#include "lib/evtchn.h"
#include <xen/memory.h>

static uint8_t shared[4096] __attribute__((aligned(4096)));
static volatile uint8_t window[4096] __attribute__((aligned(4096)));

#define NONE (~0ull)

static int map_peer(uint64_t peer, uint64_t ref, uint64_t ro)
{
    unsigned long gfn = (uintptr_t)window >> 12;
    uint64_t other = cmdline_u64("other", NONE);
    grant_handle_t h, bad;
    char seen[20];
    long rc;

    printk("grant-map: ref 5000 of d%lu: %d\n", (unsigned long)peer,
           gnttab_map(peer, 5000, gfn, ro, &bad));
    if (other != NONE)
        printk("grant-map: d%lu's ref %lu (not granted to us): %d\n", (unsigned long)other,
               (unsigned long)cmdline_u64("ogref", 0),
               gnttab_map(other, cmdline_u64("ogref", 0), gfn, ro, &bad));
    if (ro)
        printk("grant-map: writable map of a read-only grant: %d\n",
               gnttab_map(peer, ref, gfn, 0, &bad));
    printk("grant-map: map d%lu ref %lu at gfn 0x%lx: %d\n", (unsigned long)peer,
           (unsigned long)ref, gfn, gnttab_map(peer, ref, gfn, ro, &h));
    if (cmdline_u64("twice", 0))   /* over our own grant mapping: Xen crashes us */
        printk("grant-map: mapped again at the same gfn: %d\n",
               gnttab_map(peer, ref, gfn, ro, &bad));
    memcpy(seen, (const void *)window, 19);
    seen[19] = 0;
    printk("grant-map: read \"%s\"\n", seen);
    /* hypercalls see the granted page at that gfn too */
    HYPERVISOR_console_io(CONSOLEIO_write, 19, (const void *)window);
    printk(" <- console_io from the mapped gfn\n");
    if (ro) {
        rc = HYPERVISOR_grant_table_op(GNTTABOP_query_size, (void *)window, 1);
        printk("grant-map: query_size into the read-only page: %ld\n", rc);
        printk("grant-map: writing the read-only page\n");
        window[0] = 'X';
        printk("grant-map: after the write the page reads \"%c\"\n", window[0]);
    } else {
        memcpy((void *)window, "peer:from grant-map", 20);
        while (memcmp((const void *)(window + 2048), "ack", 3))
            sleep_ns(1000000);
        printk("grant-map: the granter acked\n");
        if (cmdline_u64("hold", 0)) {
            printk("grant-map: holding the mapping\n");
            for (;;)
                sleep_ns(1000000000);
        }
    }
    printk("grant-map: unmap at the wrong address: %d\n", gnttab_unmap(gfn + 1, h));
    printk("grant-map: unmap: %d\n", gnttab_unmap(gfn, h));
    printk("grant-map: unmap again: %d\n", gnttab_unmap(gfn, h));
    rc = HYPERVISOR_console_io(CONSOLEIO_write, 4, (const void *)window);
    printk("grant-map: console_io from the emptied gfn: %ld\n", rc);
    return 0;
}

int guest_main(void)
{
    uint64_t peer = cmdline_u64("peer", 0), ro = cmdline_u64("readonly", 0);
    grant_ref_t ref;
    long rc;
    int refused = 0;

    if (cmdline_u64("map", NONE) != NONE) {
        if ((rc = time_init()))
            panic("grant-map: init: %ld\n", rc);
        return map_peer(cmdline_u64("map", 0), cmdline_u64("gref", 0), ro);
    }

    if ((rc = time_init()) || (rc = gnttab_init()))
        panic("grant-share: init: %ld\n", rc);
    /* Frames go where the guest asks, RAM or not (Linux puts them above
     * RAM), up to max_grant_frames (64). */
    {
        struct xen_add_to_physmap xatp = {
            .domid = DOMID_SELF, .space = XENMAPSPACE_grant_table, .idx = 1,
            .gpfn = cmdline_u64("highframe", 0x107fff),
        };
        struct gnttab_query_size q = { .dom = DOMID_SELF };
        long r1 = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp), r2;

        xatp.idx = 64;
        r2 = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
        HYPERVISOR_grant_table_op(GNTTABOP_query_size, &q, 1);
        printk("grant-share: frame 1 at 0x%lx: %ld, frame 64: %ld, nr_frames %u of %u\n",
               (unsigned long)xatp.gpfn, r1, r2, q.nr_frames, q.max_nr_frames);
    }
    memcpy(shared, "grant-share:pattern", 20);
    ref = gnttab_grant(peer, (uintptr_t)shared >> 12, ro);
    printk("grant-share: gref %u frame 0x%lx to domain %lu\n", ref,
           (unsigned long)((uintptr_t)shared >> 12), (unsigned long)peer);
    while (memcmp(shared, "peer:", 5))
        sleep_ns(1000000);
    shared[63] = 0;
    printk("grant-share: peer wrote \"%s\"\n", (const char *)shared);
    while ((rc = gnttab_end_access(ref)) == -XEN_EBUSY) {
        if (!refused++) {
            printk("grant-share: revoke refused while mapped (flags 0x%x)\n",
                   gnttab_flags(ref));
            memcpy(shared + 2048, "ack", 4);
        }
        sleep_ns(1000000);
    }
    printk("grant-share: revoked (%ld), flags now 0x%x\n", rc, gnttab_flags(ref));
    return 0;
}
