/* Xen system time from the shared info page's vcpu_time_info (pvclock),
 * and sleeping with SCHEDOP_poll. */
#include "guest.h"
#include <xen/memory.h>

extern uint8_t shared_info_page[4096];
struct shared_info *shared_info;

/* Map shared info over one of our own (bss) frames, as Linux does on HVM. */
int time_init(void)
{
    struct xen_add_to_physmap xatp = {
        .domid = DOMID_SELF,
        .space = XENMAPSPACE_shared_info,
        .idx = 0,
        .gpfn = (uintptr_t)shared_info_page >> 12,
    };
    long rc = HYPERVISOR_memory_op(XENMEM_add_to_physmap, &xatp);

    if (rc)
        return rc;
    shared_info = (struct shared_info *)shared_info_page;
    if (!shared_info->vcpu_info[0].time.tsc_to_system_mul)
        return -XEN_EINVAL;          /* no time published: now_ns() would stall */
    return 0;
}

uint64_t now_ns(void)
{
    volatile struct vcpu_time_info *t = &shared_info->vcpu_info[0].time;
    uint32_t version, mul;
    uint64_t tsc_stamp, system_time, delta;
    int8_t shift;

    /* An odd or changed version means Xen was updating: read again. */
    do {
        version = t->version;
        barrier();
        tsc_stamp = t->tsc_timestamp;
        system_time = t->system_time;
        mul = t->tsc_to_system_mul;
        shift = t->tsc_shift;
        delta = rdtsc() - tsc_stamp;
        barrier();
    } while ((version & 1) || version != t->version);

    if (shift < 0)
        delta >>= -shift;
    else
        delta <<= shift;
    return system_time + (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* With no ports, SCHEDOP_poll blocks until the absolute timeout passes. */
long sleep_until(uint64_t deadline_ns)
{
    struct sched_poll poll = { .ports = NULL, .nr_ports = 0 };
    long rc;

    while (now_ns() < deadline_ns) {
        poll.timeout = deadline_ns;
        rc = HYPERVISOR_sched_op(SCHEDOP_poll, &poll);
        if (rc)
            return rc;
    }
    return 0;
}

long sleep_ns(uint64_t ns)
{
    return sleep_until(now_ns() + ns);
}
