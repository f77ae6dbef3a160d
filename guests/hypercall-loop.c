/* hypercall-loop: xen_version(XENVER_version) `loops` times (default
 * 100000) back to back, for the null-hypercall benchmark. */
#include "lib/guest.h"

int guest_main(void)
{
    uint64_t loops = cmdline_u64("loops", 100000), i, t0 = 0, t1 = 0;
    int have_time = time_init() == 0;
    long ver = 0;

    if (have_time)
        t0 = now_ns();
    for (i = 0; i < loops; i++)
        ver = HYPERVISOR_xen_version(XENVER_version, NULL);
    if (have_time)
        t1 = now_ns();
    if (ver < 0)
        panic("hypercall-loop: xen_version: %ld\n", ver);
    printk("hypercall-loop: %lu calls\n", (unsigned long)loops);
    if (have_time && loops)
        printk("hypercall-loop: %lu ns, %lu ns per call\n",
               (unsigned long)(t1 - t0), (unsigned long)((t1 - t0) / loops));
    return 0;
}
