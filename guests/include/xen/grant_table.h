/* grant_table_op, v1 grant entries (public grant_table.h), x86-64. */
#ifndef GUEST_XEN_GRANT_TABLE_H
#define GUEST_XEN_GRANT_TABLE_H

#include <xen/types.h>

#define __HYPERVISOR_grant_table_op_nr 20

#define GNTTABOP_map_grant_ref     0
#define GNTTABOP_unmap_grant_ref   1
#define GNTTABOP_setup_table       2
#define GNTTABOP_copy              5
#define GNTTABOP_query_size        6
#define GNTTABOP_set_version       8
#define GNTTABOP_get_version      10

typedef uint32_t grant_ref_t;
typedef uint32_t grant_handle_t;

struct grant_entry_v1 {
    uint16_t flags;
    domid_t domid;
    uint32_t frame;
};

#define GTF_invalid         0
#define GTF_permit_access   1
#define GTF_type_mask       3
#define GTF_readonly        (1U << 2)
#define GTF_reading         (1U << 3)
#define GTF_writing         (1U << 4)

#define GNTMAP_device_map   (1U << 0)
#define GNTMAP_host_map     (1U << 1)
#define GNTMAP_readonly     (1U << 2)

#define GNTCOPY_source_gref (1U << 0)
#define GNTCOPY_dest_gref   (1U << 1)

#define GNTST_okay            0
#define GNTST_general_error  (-1)
#define GNTST_bad_domain     (-2)
#define GNTST_bad_gntref     (-3)
#define GNTST_bad_handle     (-4)
#define GNTST_bad_copy_arg   (-10)

struct gnttab_map_grant_ref {
    uint64_t host_addr;      /* HVM/PVH: the guest-physical address */
    uint32_t flags;          /* GNTMAP_* */
    grant_ref_t ref;
    domid_t dom;
    int16_t status;          /* OUT */
    grant_handle_t handle;   /* OUT */
    uint64_t dev_bus_addr;   /* OUT */
};

struct gnttab_unmap_grant_ref {
    uint64_t host_addr;
    uint64_t dev_bus_addr;
    grant_handle_t handle;
    int16_t status;          /* OUT */
};

struct gnttab_query_size {
    domid_t dom;
    uint32_t nr_frames;      /* OUT */
    uint32_t max_nr_frames;  /* OUT */
    int16_t status;          /* OUT */
};

struct gnttab_set_version {
    uint32_t version;
};

struct gnttab_copy {
    struct gnttab_copy_ptr {
        union {
            grant_ref_t ref;
            xen_pfn_t gmfn;
        } u;
        domid_t domid;
        uint16_t offset;
    } source, dest;
    uint16_t len;
    uint16_t flags;
    int16_t status;          /* OUT */
};

#endif
