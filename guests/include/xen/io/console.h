/* The PV console ring page (Xen public io/console.h). */
#ifndef GUEST_XEN_IO_CONSOLE_H
#define GUEST_XEN_IO_CONSOLE_H

#include <xen/types.h>

typedef uint32_t XENCONS_RING_IDX;
#define MASK_XENCONS_IDX(idx, ring) ((idx) & (sizeof(ring) - 1))

struct xencons_interface {
    char in[1024];                  /* dom0 -> guest */
    char out[2048];                 /* guest -> dom0 */
    XENCONS_RING_IDX in_cons, in_prod;
    XENCONS_RING_IDX out_cons, out_prod;
};

#endif
