/* Grant table v1: frame 0 at a page of ours (add_to_physmap, as Linux on
 * PVH does), refs from 8 up (0..7 are the toolstack's, as in Linux). */
#include "evtchn.h"
#include <xen/memory.h>

#define GNTTAB_FIRST_REF 8
#define GNTTAB_NR_REFS (4096 / sizeof(struct grant_entry_v1))

static uint8_t gnttab_page[4096] __attribute__((aligned(4096)));
static volatile struct grant_entry_v1 *gnttab;
static grant_ref_t next_ref = GNTTAB_FIRST_REF;

long HYPERVISOR_grant_table_op(unsigned int cmd, void *arg, unsigned int count)
{
    return _hypercall3(__HYPERVISOR_grant_table_op_nr, (long)cmd, (long)arg, (long)count);
}

long gnttab_init(void)
{
    struct gnttab_set_version v = { .version = 1 };
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_grant_table,
        .idx = 0,
        .gpfn = (uintptr_t)gnttab_page >> 12,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_set_version, &v, 1);

    if (rc)
        return rc;
    rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);
    if (rc)
        return rc;
    gnttab = (volatile struct grant_entry_v1 *)gnttab_page;
    return 0;
}

grant_ref_t gnttab_grant(domid_t domid, unsigned long frame, int readonly)
{
    grant_ref_t ref = next_ref++;

    if (ref >= GNTTAB_NR_REFS)
        panic("gnttab: out of grant references\n");
    gnttab[ref].domid = domid;
    gnttab[ref].frame = frame;
    barrier();   /* frame and domid before the flags make it valid */
    gnttab[ref].flags = GTF_permit_access | (readonly ? GTF_readonly : 0);
    return ref;
}

uint16_t gnttab_flags(grant_ref_t ref)
{
    return gnttab[ref].flags;
}

long gnttab_end_access(grant_ref_t ref)
{
    uint16_t flags = gnttab[ref].flags;

    /* Only while Xen shows no use: the cmpxchg fails if it pins meanwhile. */
    do {
        if (flags & (GTF_reading | GTF_writing))
            return -XEN_EBUSY;
    } while (!__atomic_compare_exchange_n(&gnttab[ref].flags, &flags, 0, 0,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
    return 0;
}

int16_t gnttab_map(domid_t domid, grant_ref_t ref, unsigned long gfn, int readonly,
                   grant_handle_t *handle)
{
    struct gnttab_map_grant_ref op = {
        .host_addr = (uint64_t)gfn << 12,
        .flags = GNTMAP_host_map | (readonly ? GNTMAP_readonly : 0),
        .ref = ref,
        .dom = domid,
    };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_map_grant_ref, &op, 1);

    if (rc)
        panic("gnttab: map_grant_ref: %ld\n", rc);
    *handle = op.handle;
    return op.status;
}

int16_t gnttab_unmap(unsigned long gfn, grant_handle_t handle)
{
    struct gnttab_unmap_grant_ref op = { .host_addr = (uint64_t)gfn << 12, .handle = handle };
    long rc = HYPERVISOR_grant_table_op(GNTTABOP_unmap_grant_ref, &op, 1);

    if (rc)
        panic("gnttab: unmap_grant_ref: %ld\n", rc);
    return op.status;
}
