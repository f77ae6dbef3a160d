/* evtchn-ping: ping-pong `count` events with a peer over an interdomain
 * event channel.
 *   peer=D            the peer's domid (absent: read "peer=D [port=P]" from
 *                     the console input, for peers created after us)
 *   port=P            connect to the peer's unbound port P and serve first;
 *                     without it, allocate a port for the peer, print it,
 *                     and answer each event.
 *   count=N           round trips (default 1000)
 *   spin=1            wait for each event busy (interrupts on, no hlt): the
 *                     vCPU holds its CPU, events reach it while it runs
 * Prints "evtchn-ping: N events" and the time taken, then powers off. */
#include "lib/evtchn.h"

static int spin;

static unsigned long wait_event(evtchn_port_t port, unsigned long seen)
{
    unsigned long c;

    if (!spin)
        return evtchn_wait(port, seen, 0);
    asm volatile("sti" ::: "memory");
    while ((c = evtchn_count(port)) == seen)
        asm volatile("pause" ::: "memory");
    return c;
}

static uint64_t value(const char *s, const char *key, uint64_t dflt)
{
    unsigned long n = strlen(key);

    for (; *s; s++) {
        if (!strncmp(s, key, n)) {
            uint64_t v = 0;

            for (s += n; *s >= '0' && *s <= '9'; s++)
                v = v * 10 + (*s - '0');
            return v;
        }
    }
    return dflt;
}

/* VIRQ_TIMER through the singleshot timer, and an IPI to ourselves. */
static void selftest(void)
{
    evtchn_port_t tport, ipi, again;
    struct evtchn_bind_ipi { uint32_t vcpu; evtchn_port_t port; } op = { 0, 0 };
    long rc;

    if ((rc = evtchn_bind_virq(VIRQ_TIMER, &tport)))
        panic("evtchn-ping: bind_virq: %ld\n", rc);
    HYPERVISOR_set_timer_op(now_ns() + 1000000);
    evtchn_wait(tport, 0, 0);
    printk("evtchn-ping: VIRQ_TIMER on port %u, bind again: %ld\n", tport,
           evtchn_bind_virq(VIRQ_TIMER, &again));
    if ((rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_ipi, &op)))
        panic("evtchn-ping: bind_ipi: %ld\n", rc);
    ipi = op.port;
    evtchn_send(ipi);
    printk("evtchn-ping: IPI on port %u: %lu\n", ipi, evtchn_wait(ipi, 0, 0));
    evtchn_close(ipi);
    evtchn_close(tport);
    {
        /* FIFO not offered, no legacy multiplexed form for PVH, no v2. */
        uint64_t ctl[2] = { 0, 0 };
        struct { uint32_t cmd; uint32_t port; uint8_t pad[24]; } compat = { EVTCHNOP_send, ipi, {0} };
        struct gnttab_set_version v2 = { .version = 2 };

        printk("evtchn-ping: init_control %ld, op_compat %ld, gnttab v2 %ld\n",
               HYPERVISOR_event_channel_op(EVTCHNOP_init_control, ctl),
               _hypercall2(16, (long)&compat, 0),
               HYPERVISOR_grant_table_op(GNTTABOP_set_version, &v2, 1));
    }
}

int guest_main(void)
{
    char line[128];
    const char *args = cmdline();
    uint64_t peer, rport, count, t0, t1, i;
    evtchn_port_t port;
    unsigned long seen = 0;
    long rc;

    if ((rc = time_init()) || (rc = evtchn_init()))
        panic("evtchn-ping: init: %ld\n", rc);
    count = cmdline_u64("count", 1000);
    spin = cmdline_u64("spin", 0) != 0;
    selftest();
    peer = value(args, "peer=", ~0UL);
    rport = value(args, "port=", ~0UL);
    if (peer == ~0UL) {
        console_readline(line, sizeof(line));
        printk("evtchn-ping: read \"%s\" (VIRQ_CONSOLE %lu)\n", line, console_virqs());
        peer = value(line, "peer=", 0);
        rport = value(line, "port=", ~0UL);
    }
    if (rport == ~0UL) {
        rc = evtchn_alloc_unbound(peer, &port);
        if (rc)
            panic("evtchn-ping: alloc_unbound: %ld\n", rc);
        seen = evtchn_count(port);   /* a port number reused after the self-test */
        printk("evtchn-ping: port %u for domain %lu\n", port, (unsigned long)peer);
        t0 = now_ns();
        for (i = 0; i < count; i++) {
            seen = wait_event(port, seen);
            if (i == 0)
                t0 = now_ns();
            if ((rc = evtchn_send(port)))
                panic("evtchn-ping: send: %ld\n", rc);
        }
    } else {
        /* Xen marks a fresh binding pending: with interrupts off, count
         * what we have, then let that event in before pinging. */
        asm volatile("cli" ::: "memory");
        rc = evtchn_bind_interdomain(peer, rport, &port);
        if (rc)
            panic("evtchn-ping: bind_interdomain %lu:%lu: %ld\n",
                  (unsigned long)peer, (unsigned long)rport, rc);
        printk("evtchn-ping: bound port %u to %lu:%lu\n", port,
               (unsigned long)peer, (unsigned long)rport);
        seen = evtchn_wait(port, evtchn_count(port), 0);   /* the bind's own event */
        t0 = now_ns();
        for (i = 0; i < count; i++) {
            if ((rc = evtchn_send(port)))
                panic("evtchn-ping: send: %ld\n", rc);
            seen = wait_event(port, seen);
            if (cmdline_u64("verbose", 0))
                printk("evtchn-ping: %lu seen %lu\n", (unsigned long)i, seen);
        }
    }
    t1 = now_ns();
    printk("evtchn-ping: %lu events in %lu us\n", (unsigned long)count,
           (unsigned long)((t1 - t0) / 1000));
    /* misuse answers Xen's codes and harms nothing */
    printk("evtchn-ping: send on free port: %ld\n", evtchn_send(4000));
    rc = evtchn_close(port);
    printk("evtchn-ping: close port: %ld, send after close: %ld\n", rc, evtchn_send(port));
    return 0;
}
