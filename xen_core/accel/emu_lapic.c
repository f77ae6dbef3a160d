/* The local APIC page (EMU_LAPIC_GPA), per vCPU, as unicorn MMIO: reads
 * and writes land in the vCPU's register file (v->lapic, reset state from
 * build_lapic_page), and a write to the ICR is the one thing the core must
 * see: INIT and STARTUP IPIs bring secondary vCPUs up the native way
 * (Linux's native_cpu_up), fixed IPIs reach another vCPU (Linux's
 * REBOOT_VECTOR in stop_other_cpus).
 *
 * The ICR write goes to the core as the write of the x2APIC ICR MSR
 * (0x830: ICR low in bits 0-31, destination APIC ID in bits 32-63) through
 * the wrmsr exit: the same register in the form that needs no ICR2, so one
 * core path serves both APIC modes. Register semantics follow Xen's
 * vlapic_reg_write: the delivery-status bit is never set (the IPI is
 * delivered by the time the write returns), ICR2 keeps its destination
 * byte only. */
#include "emu_priv.h"

#define APIC_ICR 0x300
#define APIC_ICR2 0x310
#define APIC_ICR_BUSY (1u << 12)
#define MSR_X2APIC_ICR 0x830u
#define X2APIC_BROADCAST 0xffffffffull

static uint32_t reg32(struct emu_vcpu *v, uint64_t off)
{
    uint32_t x;
    memcpy(&x, v->lapic + off, 4);
    return x;
}

static uint64_t lapic_read(uc_engine *uc, uint64_t off, unsigned size, void *ud)
{
    struct emu_vcpu *v = ud;
    uint64_t x = 0;
    if (off < 4096 && size <= 8 && off + size <= 4096)
        memcpy(&x, v->lapic + off, size);
    return x;
}

static void lapic_write(uc_engine *uc, uint64_t off, unsigned size, uint64_t value, void *ud)
{
    struct emu_vcpu *v = ud;
    if (off >= 4096 || size > 8 || off + size > 4096)
        return;
    if ((off & ~0xfull) != APIC_ICR) {
        if ((off & ~0xfull) == APIC_ICR2 && (off & 0xf) == 0 && size >= 4)
            value &= 0xff000000u;
        memcpy(v->lapic + off, &value, size);
        return;
    }
    /* ICR: a 32-bit write at its start is what sends (SDM 10.6.1). */
    memcpy(v->lapic + off, &value, size);
    if (off != APIC_ICR || size < 4)
        return;
    uint32_t low = reg32(v, APIC_ICR) & ~APIC_ICR_BUSY;
    memcpy(v->lapic + APIC_ICR, &low, 4);
    uint64_t dest = reg32(v, APIC_ICR2) >> 24;
    if (dest == 0xff)
        dest = X2APIC_BROADCAST;
    v->exit.kind = EMU_EXIT_WRMSR;
    v->exit.msr = MSR_X2APIC_ICR;
    v->exit.value = dest << 32 | low;
    emu_call_python(v, uc);
}

int lapic_map(struct emu_vcpu *v)
{
    return uc_mmio_map(v->uc, EMU_LAPIC_GPA, 4096, lapic_read, v, lapic_write, v);
}
