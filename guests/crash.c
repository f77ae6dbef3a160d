/* crash: dies on purpose, to show that a dying domain takes nothing else
 * with it. cmdline `mode=`:
 *   triple (default)  no IDT, then ud2: #UD -> #GP -> #DF -> triple fault
 *   pagefault         touch an unmapped address: the library's IDT reports
 *                     the #PF and shuts down with SHUTDOWN_crash
 *   shutdown          SCHEDOP_shutdown(SHUTDOWN_crash) directly */
#include "lib/guest.h"

int guest_main(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) none = { 0, 0 };
    char mode[16] = "triple";

    cmdline_get("mode", mode, sizeof(mode));
    if (!strcmp(mode, "pagefault")) {
        printk("crash: reading unmapped address 0x100000000\n");
        (void)*(volatile uint64_t *)0x100000000UL;
    } else if (!strcmp(mode, "shutdown")) {
        printk("crash: SCHEDOP_shutdown(SHUTDOWN_crash)\n");
        shutdown(SHUTDOWN_crash);
    } else {
        printk("crash: loading an empty IDT and executing ud2\n");
        asm volatile("lidt %0; ud2" :: "m"(none));
    }
    printk("crash: still alive after mode=%s\n", mode);
    return 1;
}
