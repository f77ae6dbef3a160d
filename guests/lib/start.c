/* From head.S's long-mode entry to guest_main(): traps, Xen, hypercall page. */
#include "guest.h"
#include <xen/arch-x86/cpuid.h>

const struct hvm_start_info *start_info;
uint32_t xen_cpuid_base;
int hypercall_ready;

/* Before the hypercall page exists the only way out is port 0xe9 (the
 * debug console many VMMs offer) and a deliberate triple fault. */
void __attribute__((noreturn)) early_fail(const char *msg)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) none = { 0, 0 };

    for (; *msg; msg++)
        asm volatile("outb %0, $0xe9" :: "a"(*msg));
    asm volatile("lidt %0; ud2" :: "m"(none));
    for (;;)
        ;
}

/* Xen may sit at any 0x100-aligned base in 0x40000000..0x4000ff00 (another
 * hypervisor's leaves can come first, Viridian for instance). */
static uint32_t find_xen_leaves(void)
{
    uint32_t base, a, b, c, d;

    for (base = XEN_CPUID_FIRST_LEAF; base < XEN_CPUID_FIRST_LEAF + 0x10000;
         base += 0x100) {
        cpuid(base, &a, &b, &c, &d);
        if (b == XEN_CPUID_SIGNATURE_EBX && c == XEN_CPUID_SIGNATURE_ECX &&
            d == XEN_CPUID_SIGNATURE_EDX && a - base >= 2)
            return base;
    }
    return 0;
}

void __attribute__((noreturn)) guest_start(uint32_t start_info_paddr)
{
    uint32_t pages, msr, c, d;
    int rc;

    traps_init();
    start_info = (const struct hvm_start_info *)(uintptr_t)start_info_paddr;
    if (start_info->magic != XEN_HVM_START_MAGIC_VALUE)
        early_fail("guest: bad hvm_start_info magic\n");

    xen_cpuid_base = find_xen_leaves();
    if (!xen_cpuid_base)
        early_fail("guest: no Xen CPUID leaves\n");

    /* Leaf base+2: eax = hypercall pages, ebx = the MSR to write the
     * guest-physical address of the page to. */
    cpuid(xen_cpuid_base + 2, &pages, &msr, &c, &d);
    if (pages < 1)
        early_fail("guest: Xen offers no hypercall page\n");
    wrmsr(msr, (uintptr_t)hypercall_page);
    hypercall_ready = 1;

    rc = guest_main();
    shutdown(rc ? SHUTDOWN_crash : SHUTDOWN_poweroff);
}

void __attribute__((noreturn)) shutdown(unsigned int reason)
{
    struct sched_shutdown sd = { .reason = reason };

    for (;;) {
        HYPERVISOR_sched_op(SCHEDOP_shutdown, &sd);
        /* Shutdown never returns on Xen; if it does, say so and retry as a
         * crash so the domain still ends. */
        printk("guest: SCHEDOP_shutdown returned\n");
        sd.reason = SHUTDOWN_crash;
    }
}

void __attribute__((noreturn)) panic(const char *fmt, ...)
{
    char buf[256];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    console_write("PANIC: ", 7);
    console_write(buf, n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1);
    shutdown(SHUTDOWN_crash);
}
