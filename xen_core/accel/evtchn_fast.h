/* Event-channel fast path: the sends a guest may complete without Python.
 *
 * xen_core/evtchn.py stays the single source of truth: these tables are a
 * cache it fills after answering a send itself (evtchn_fast.py) and empties
 * whenever either end of a cached channel changes (close, reset, domain
 * destruction). A port not in the cache goes the slow way, so every error
 * (bad port, closed port, foreign port) is still Python's answer.
 *
 * Dom0's per-port state (the evtchn device's "masked until user space
 * unmasks it", and an event that came meanwhile) lives here, not in Python,
 * so both paths see one copy. Everything is under one mutex. */
#ifndef XEN_CORE_EVTCHN_FAST_H
#define XEN_CORE_EVTCHN_FAST_H

#include <stdint.h>

#define EVF_NR_PORTS 4096
#define EVF_MASKED 1
#define EVF_LATCHED 2

/* Dom0's ports as the evtchn device presents them. */
struct evf_dom0 {
    uint8_t state[EVF_NR_PORTS];
    uint64_t lost; /* ports a full handle socket could not take */
};

/* One guest's ports whose peer is a dom0 evtchn handle: a send writes the
 * peer port to that handle's socket (unless masked: then latched). */
struct evf_table {
    struct evf_dom0 *dom0;
    uint32_t hypercall, send_op; /* Xen's numbers, from xen_core/abi */
    uint8_t cached[EVF_NR_PORTS];
    int32_t fd[EVF_NR_PORTS];
    uint32_t rport[EVF_NR_PORTS];
    uint64_t fast_sends;
};

int evf_dom0_mark(struct evf_dom0 *d, uint32_t port);
int evf_dom0_unmask(struct evf_dom0 *d, uint32_t port);
void evf_dom0_clear(struct evf_dom0 *d, uint32_t port, int bits);
int evf_dom0_state(struct evf_dom0 *d, uint32_t port);
int evf_write_port(struct evf_dom0 *d, int fd, uint32_t port);
void evf_cache(struct evf_table *t, uint32_t port, int fd, uint32_t rport);
void evf_uncache(struct evf_table *t, uint32_t port);
void evf_uncache_fd(struct evf_table *t, int fd);
int evf_send(struct evf_table *t, uint32_t port);

#define EVF_2L_NEW 1
#define EVF_2L_UPCALL 2
int evf_2l_set_pending(uint64_t pending, uint64_t mask, uint64_t sel, uint64_t upcall,
                       uint32_t port);

#endif
