/* spin: never stops on its own (for destroy and containment tests). */
#include "lib/guest.h"

int guest_main(void)
{
    volatile unsigned long n = 0;

    printk("spinning\n");
    for (;;)
        n++;
    return 0;
}
