/* hello: banner with xen_version, a 10 ms timer sleep measured by pvclock,
 * then poweroff. */
#include "lib/guest.h"

int guest_main(void)
{
    xen_extraversion_t extra;
    uint64_t t0, t1;
    long ver, rc;

    ver = HYPERVISOR_xen_version(XENVER_version, NULL);
    memset(extra, 0, sizeof(extra));
    rc = HYPERVISOR_xen_version(XENVER_extraversion, extra);
    if (rc < 0)
        panic("hello: XENVER_extraversion: %ld\n", rc);
    extra[sizeof(extra) - 1] = '\0';
    printk("Hello from a PVH guest on Xen %lu.%lu%s\n",
           (unsigned long)ver >> 16, (unsigned long)ver & 0xffff, extra);
    printk("hello: cmdline \"%s\", ram %lu MiB\n", cmdline(),
           (unsigned long)(ram_end() >> 20));

    rc = time_init();
    if (rc)
        panic("hello: shared info / pvclock: %ld\n", rc);
    t0 = now_ns();
    /* Arm the vCPU timer too, as a kernel would; the poll's own timeout
     * is what wakes us (no event channel is bound). */
    HYPERVISOR_set_timer_op(t0 + 10000000);
    rc = sleep_until(t0 + 10000000);
    t1 = now_ns();
    if (rc)
        panic("hello: SCHEDOP_poll: %ld\n", rc);
    printk("hello: slept %lu us\n", (unsigned long)(t1 - t0) / 1000);
    printk("hello: bye\n");
    return 0;
}
