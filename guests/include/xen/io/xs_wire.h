/* xenstore wire protocol and ring page (Xen public io/xs_wire.h). */
#ifndef GUEST_XEN_IO_XS_WIRE_H
#define GUEST_XEN_IO_XS_WIRE_H

#include <xen/types.h>

enum xsd_sockmsg_type {
    XS_CONTROL, XS_DIRECTORY, XS_READ, XS_GET_PERMS, XS_WATCH, XS_UNWATCH,
    XS_TRANSACTION_START, XS_TRANSACTION_END, XS_INTRODUCE, XS_RELEASE,
    XS_GET_DOMAIN_PATH, XS_WRITE, XS_MKDIR, XS_RM, XS_SET_PERMS,
    XS_WATCH_EVENT, XS_ERROR, XS_IS_DOMAIN_INTRODUCED, XS_RESUME,
    XS_SET_TARGET, XS_RESET_WATCHES = 21, XS_DIRECTORY_PART,
};

/* Inside a watch event's payload. */
enum xs_watch_type { XS_WATCH_PATH = 0, XS_WATCH_TOKEN };

struct xsd_sockmsg {
    uint32_t type;      /* enum xsd_sockmsg_type */
    uint32_t req_id;    /* echoed in the reply */
    uint32_t tx_id;     /* transaction, 0 for none */
    uint32_t len;       /* payload bytes that follow */
};

#define XENSTORE_PAYLOAD_MAX 4096
#define XENSTORE_RING_SIZE 1024
typedef uint32_t XENSTORE_RING_IDX;
#define MASK_XENSTORE_IDX(idx) ((idx) & (XENSTORE_RING_SIZE - 1))

struct xenstore_domain_interface {
    char req[XENSTORE_RING_SIZE];   /* guest -> xenstored */
    char rsp[XENSTORE_RING_SIZE];   /* xenstored -> guest */
    XENSTORE_RING_IDX req_cons, req_prod;
    XENSTORE_RING_IDX rsp_cons, rsp_prod;
    uint32_t server_features;
    uint32_t connection;
    uint32_t error;
};

#define XENSTORE_SERVER_FEATURE_RECONNECTION 1
#define XENSTORE_SERVER_FEATURE_ERROR 2
#define XENSTORE_CONNECTED 0
#define XENSTORE_RECONNECT 1

#endif
