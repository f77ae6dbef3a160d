/* crash: triple-faults on purpose (no IDT, then #UD -> #GP -> #DF -> reset),
 * to show that a dying domain takes nothing else with it. */
#include "lib/guest.h"

int guest_main(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) none = { 0, 0 };

    printk("crash: loading an empty IDT and executing ud2\n");
    asm volatile("lidt %0; ud2" :: "m"(none));
    printk("crash: still alive after ud2\n");
    return 1;
}
