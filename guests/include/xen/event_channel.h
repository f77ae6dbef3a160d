/* event_channel_op commands used by the test guests. */
#ifndef GUEST_XEN_EVENT_CHANNEL_H
#define GUEST_XEN_EVENT_CHANNEL_H

#include <xen/types.h>

#define EVTCHNOP_bind_interdomain  0
#define EVTCHNOP_bind_virq         1
#define EVTCHNOP_bind_pirq         2
#define EVTCHNOP_close             3
#define EVTCHNOP_send              4
#define EVTCHNOP_status            5
#define EVTCHNOP_alloc_unbound     6
#define EVTCHNOP_bind_ipi          7
#define EVTCHNOP_bind_vcpu         8
#define EVTCHNOP_unmask            9
#define EVTCHNOP_reset            10
#define EVTCHNOP_init_control     11

#define VIRQ_TIMER    0
#define VIRQ_DEBUG    1
#define VIRQ_CONSOLE  2
#define VIRQ_DOM_EXC  3

struct evtchn_send {
    evtchn_port_t port;
};

/* close, unmask: { port } */
struct evtchn_port_op {
    evtchn_port_t port;
};

struct evtchn_alloc_unbound {
    domid_t dom, remote_dom;
    evtchn_port_t port;                 /* OUT */
};

struct evtchn_bind_interdomain {
    domid_t remote_dom;
    evtchn_port_t remote_port;
    evtchn_port_t local_port;           /* OUT */
};

struct evtchn_bind_virq {
    uint32_t virq;
    uint32_t vcpu;
    evtchn_port_t port;                 /* OUT */
};

#endif
