/* sched_op commands and arguments. */
#ifndef GUEST_XEN_SCHED_H
#define GUEST_XEN_SCHED_H

#include <xen/types.h>

#define SCHEDOP_yield            0
#define SCHEDOP_block            1
#define SCHEDOP_shutdown         2
#define SCHEDOP_poll             3
#define SCHEDOP_remote_shutdown  4
#define SCHEDOP_shutdown_code    5
#define SCHEDOP_watchdog         6
#define SCHEDOP_pin_override     7

#define SHUTDOWN_poweroff    0
#define SHUTDOWN_reboot      1
#define SHUTDOWN_suspend     2
#define SHUTDOWN_crash       3
#define SHUTDOWN_watchdog    4
#define SHUTDOWN_soft_reset  5

struct sched_shutdown {
    unsigned int reason;
};

/* Block until one of ports is pending or the absolute system time
 * `timeout` (ns, 0 = none) passes. At most 128 ports. */
struct sched_poll {
    XEN_GUEST_HANDLE(evtchn_port_t) ports;
    unsigned int nr_ports;
    uint64_t timeout;
};

struct sched_remote_shutdown {
    domid_t domain_id;
    unsigned int reason;
};

struct sched_watchdog {
    uint32_t id;
    uint32_t timeout;
};

#endif
