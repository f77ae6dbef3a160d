/* hvm_start_info: the command line (`key=value` words) and the memory map. */
#include "guest.h"

const char *cmdline(void)
{
    if (!start_info->cmdline_paddr)
        return "";
    return (const char *)(uintptr_t)start_info->cmdline_paddr;
}

int cmdline_get(const char *key, char *buf, unsigned long size)
{
    const char *p = cmdline();
    unsigned long klen = strlen(key);

    while (*p) {
        const char *w = p, *end;

        while (*p && *p != ' ')
            p++;
        end = p;
        while (*p == ' ')
            p++;
        if ((unsigned long)(end - w) > klen && !strncmp(w, key, klen) &&
            w[klen] == '=') {
            unsigned long n = end - (w + klen + 1);

            if (size) {
                if (n >= size)
                    n = size - 1;
                memcpy(buf, w + klen + 1, n);
                buf[n] = '\0';
            }
            return 1;
        }
    }
    return 0;
}

/* Decimal or 0x-hex; the default when absent or malformed. */
uint64_t cmdline_u64(const char *key, uint64_t dflt)
{
    char buf[32], *p = buf;
    unsigned int base = 10;
    uint64_t v = 0;

    if (!cmdline_get(key, buf, sizeof(buf)) || !*buf)
        return dflt;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
        base = 16, p += 2;
    if (!*p)
        return dflt;
    for (; *p; p++) {
        unsigned int d;

        if (*p >= '0' && *p <= '9')
            d = *p - '0';
        else if (base == 16 && *p >= 'a' && *p <= 'f')
            d = *p - 'a' + 10;
        else if (base == 16 && *p >= 'A' && *p <= 'F')
            d = *p - 'A' + 10;
        else
            return dflt;
        v = v * base + d;
    }
    return v;
}

uint64_t ram_end(void)
{
    const struct hvm_memmap_table_entry *e;
    uint64_t end = 0;
    uint32_t i;

    if (start_info->version < 1 || !start_info->memmap_paddr)
        return 0;
    e = (const void *)(uintptr_t)start_info->memmap_paddr;
    for (i = 0; i < start_info->memmap_entries; i++)
        if (e[i].type == XEN_HVM_MEMMAP_TYPE_RAM && e[i].addr + e[i].size > end)
            end = e[i].addr + e[i].size;
    return end;
}
