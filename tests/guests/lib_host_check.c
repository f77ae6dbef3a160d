/* Runs the guest library's pure parts (printf formatting, cmdline and
 * memmap parsing) on the host: test_guest_lib.py builds it with the host
 * gcc and compares every line with what the guests must print. */
#include <stdio.h>
#include <limits.h>
#include "lib/guest.h"

uint8_t hypercall_page[4096];            /* never called here */
const struct hvm_start_info *start_info;

static struct hvm_start_info si = { .magic = XEN_HVM_START_MAGIC_VALUE, .version = 1 };
static struct hvm_memmap_table_entry mm[3] = {
    { 0, 0x9f000, XEN_HVM_MEMMAP_TYPE_RAM, 0 },
    { 0x100000, 0x3f00000, XEN_HVM_MEMMAP_TYPE_RAM, 0 },
    { 0xfeff8000, 0x8000, XEN_HVM_MEMMAP_TYPE_RESERVED, 0 },
};

#define F(...) do { char b[128]; int n = snprintf(b, sizeof(b), __VA_ARGS__); \
                    printf("fmt|%s|%d\n", b, n); } while (0)

int main(void)
{
    char small[5] = "xxxx", buf[16];
    int n;

    F("%d", -5);
    F("%d", INT_MIN);
    F("%u", 4294967295u);
    F("%x", 0xdeadbeefu);
    F("%lx", 0x123456789abcdef0UL);
    F("%lu", ULONG_MAX);
    F("%ld", LONG_MIN);
    F("%08x", 0xbeefu);
    F("%5s|%s", "ab", (char *)NULL);
    F("%p", (void *)0x1000);
    F("%c%%", 'A');
    F("%q");
    F("end%");
    F("%-3d", 5);          /* no '-' flag in the guests' printf (glibc: "5  ") */
    n = snprintf(small, sizeof(small), "hello world");
    printf("trunc|%s|%d\n", small, n);
    n = snprintf(small, 0, "abc");
    printf("zero|%s|%d\n", small, n);

    start_info = &si;
    printf("nocmdline|%s|%d\n", cmdline(), cmdline_get("loops", buf, sizeof(buf)));
    si.cmdline_paddr = (uintptr_t)"loops2=7 loops=42 foo=bar  x=0x1F y= z=12a long=abcdefghijklmnopqrstuvwxyz";
    n = cmdline_get("loops", buf, sizeof(buf));
    printf("get|loops|%d|%s\n", n, buf);
    n = cmdline_get("foo", buf, sizeof(buf));
    printf("get|foo|%d|%s\n", n, buf);
    n = cmdline_get("lo", buf, sizeof(buf));
    printf("get|lo|%d\n", n);
    n = cmdline_get("long", buf, sizeof(buf));
    printf("get|long|%d|%s\n", n, buf);
    printf("u64|loops|%lu\n", (unsigned long)cmdline_u64("loops", 1));
    printf("u64|x|%lu\n", (unsigned long)cmdline_u64("x", 1));
    printf("u64|y|%lu\n", (unsigned long)cmdline_u64("y", 9));
    printf("u64|z|%lu\n", (unsigned long)cmdline_u64("z", 9));
    printf("u64|missing|%lu\n", (unsigned long)cmdline_u64("missing", 5));

    printf("ram_end|%lx\n", (unsigned long)ram_end());
    si.memmap_paddr = (uintptr_t)mm;
    si.memmap_entries = 3;
    printf("ram_end|%lx\n", (unsigned long)ram_end());
    return 0;
}
