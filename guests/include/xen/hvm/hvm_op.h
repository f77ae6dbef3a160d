/* hvm_op commands used by the test guests. */
#ifndef GUEST_XEN_HVM_OP_H
#define GUEST_XEN_HVM_OP_H

#include <xen/types.h>

#define HVMOP_set_param 0
#define HVMOP_get_param 1

struct xen_hvm_param {
    domid_t domid;
    uint32_t index;   /* HVM_PARAM_* */
    uint64_t value;
};

#endif
