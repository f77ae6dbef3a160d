/* grant-share: grant a page to a peer (default domain 0), write a pattern,
 * print the reference, wait until the peer writes "peer:" at the start of
 * the page, then revoke the grant (refused while it is mapped).
 *   peer=D readonly=1 */
#include "lib/evtchn.h"
#include <xen/memory.h>

static uint8_t shared[4096] __attribute__((aligned(4096)));

int guest_main(void)
{
    uint64_t peer = cmdline_u64("peer", 0), ro = cmdline_u64("readonly", 0);
    grant_ref_t ref;
    long rc;
    int refused = 0;

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
        if (!refused++)
            printk("grant-share: revoke refused while mapped (flags 0x%x)\n",
                   gnttab_flags(ref));
        sleep_ns(1000000);
    }
    printk("grant-share: revoked (%ld), flags now 0x%x\n", rc, gnttab_flags(ref));
    return 0;
}
