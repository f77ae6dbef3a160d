/* An IDT for vectors 0..31 so that a stray fault is reported on the console
 * and crashes the domain, instead of triple-faulting silently. */
#include "guest.h"

struct exc_frame {
    uint64_t vector, error_code;
    uint64_t rip, cs, rflags, rsp, ss;   /* pushed by the CPU */
};

struct idt_gate {
    uint16_t offset_lo;
    uint16_t selector;
    uint8_t ist;
    uint8_t type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi;
    uint32_t reserved;
};

extern const uint64_t exc_stubs[32];
extern int hypercall_ready;
void __attribute__((noreturn)) early_fail(const char *msg);

static struct idt_gate idt[32] __attribute__((aligned(16)));

static const char *const exc_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO",
    "#TS", "#NP", "#SS", "#GP", "#PF", "15", "#MF", "#AC", "#MC", "#XM",
    "#VE", "#CP", "22", "23", "24", "25", "26", "27", "#HV", "#VC", "#SX", "31",
};

void traps_init(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr;
    unsigned int i;

    for (i = 0; i < 32; i++) {
        uint64_t h = exc_stubs[i];

        idt[i].offset_lo = h & 0xffff;
        idt[i].selector = 0x10;          /* 64-bit code, see head.S */
        idt[i].ist = 0;
        idt[i].type_attr = 0x8e;         /* present, DPL0, interrupt gate */
        idt[i].offset_mid = (h >> 16) & 0xffff;
        idt[i].offset_hi = h >> 32;
        idt[i].reserved = 0;
    }
    idtr.limit = sizeof(idt) - 1;
    idtr.base = (uintptr_t)idt;
    asm volatile("lidt %0" :: "m"(idtr));
}

void __attribute__((noreturn)) exception_report(const struct exc_frame *f)
{
    uint64_t cr2;

    if (!hypercall_ready)
        early_fail("guest: exception before the hypercall page\n");
    asm volatile("mov %%cr2, %0" : "=r"(cr2));
    printk("guest: exception %lu (%s) error %lx at rip %lx rsp %lx cr2 %lx\n",
           (unsigned long)f->vector, exc_names[f->vector & 31],
           (unsigned long)f->error_code, (unsigned long)f->rip,
           (unsigned long)f->rsp, (unsigned long)cr2);
    shutdown(SHUTDOWN_crash);
}
