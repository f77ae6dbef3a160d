/* xen_version sub-ops and their buffers. */
#ifndef GUEST_XEN_VERSION_H
#define GUEST_XEN_VERSION_H

#include <xen/types.h>

#define XENVER_version              0   /* returns major << 16 | minor */
#define XENVER_extraversion         1
#define XENVER_compile_info         2
#define XENVER_capabilities         3
#define XENVER_changeset            4
#define XENVER_platform_parameters  5
#define XENVER_get_features         6
#define XENVER_pagesize             7
#define XENVER_guest_handle         8
#define XENVER_commandline          9

#define XEN_EXTRAVERSION_LEN 16
typedef char xen_extraversion_t[XEN_EXTRAVERSION_LEN];

struct xen_compile_info {
    char compiler[64];
    char compile_by[16];
    char compile_domain[32];
    char compile_date[32];
};

typedef char xen_capabilities_info_t[1024];
typedef char xen_changeset_info_t[64];

struct xen_platform_parameters {
    xen_ulong_t virt_start;
};

struct xen_feature_info {
    unsigned int submap_idx;
    uint32_t submap;
};

typedef uint8_t xen_domain_handle_t[16];

#endif
