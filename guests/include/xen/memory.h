/* memory_op commands and arguments. */
#ifndef GUEST_XEN_MEMORY_H
#define GUEST_XEN_MEMORY_H

#include <xen/types.h>

#define XENMEM_increase_reservation  0
#define XENMEM_decrease_reservation  1
#define XENMEM_maximum_ram_page      2
#define XENMEM_current_reservation   3
#define XENMEM_maximum_reservation   4
#define XENMEM_populate_physmap      6
#define XENMEM_add_to_physmap        7
#define XENMEM_memory_map            9
#define XENMEM_machine_memory_map   10

#define XENMAPSPACE_shared_info  0
#define XENMAPSPACE_grant_table  1
#define XENMAPSPACE_gmfn         2
#define XENMAPSPACE_gmfn_range   3
#define XENMAPSPACE_gmfn_foreign 4
#define XENMAPSPACE_dev_mmio     5

struct xen_memory_reservation {
    XEN_GUEST_HANDLE(xen_pfn_t) extent_start;
    xen_ulong_t nr_extents;
    unsigned int extent_order;
    unsigned int mem_flags;
    domid_t domid;
};

struct xen_add_to_physmap {
    domid_t domid;
    uint16_t size;         /* pages, XENMAPSPACE_gmfn_range only */
    unsigned int space;    /* XENMAPSPACE_* */
    xen_ulong_t idx;
    xen_pfn_t gpfn;        /* where the frame appears */
};

struct xen_memory_map {
    unsigned int nr_entries;
    XEN_GUEST_HANDLE(void) buffer;
};

#endif
