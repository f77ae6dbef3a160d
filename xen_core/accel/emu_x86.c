/* The x86 the software CPU performs itself, because unicorn does not:
 * event delivery through the guest IDT (with x86's double-fault rules and
 * privilege changes), `syscall`, leaving the reset state for the PVH entry,
 * and finding unicorn's internal CPU state (emu_calibrate). See emu.c. */
#include "emu_priv.h"

#include <sys/uio.h>
#include <unistd.h>

struct emu_cal cal;

/* ------------------------------------------------------ event delivery */

/* QEMU's CPU state behind the engine's back (offsets from emu_calibrate):
 * in place when env_find() located it, else through a context snapshot.
 * `snap` takes the snapshot when one is needed; put() writes it back. */
static char *cpu_state(struct emu_vcpu *v)
{
    if (v->env)
        return v->env - cal.ctx_data; /* + a context offset = the live field */
    uc_context_save(v->uc, v->ctx);
    return (char *)v->ctx;
}

static void cpu_state_put(struct emu_vcpu *v)
{
    if (!v->env)
        uc_context_restore(v->uc, v->ctx);
}

/* Read the fault's error code and int-n flag. */
void ctx_peek(struct emu_vcpu *v, int *err_code, int *is_int)
{
    char *c = cpu_state(v);
    memcpy(err_code, c + cal.error_code, 4);
    memcpy(is_int, c + cal.is_int, 4);
}

/* Reset QEMU's exception-in-flight marker (see emu.c). */
void ctx_clear_in_flight(struct emu_vcpu *v)
{
    char *c = cpu_state(v);
    int32_t x;
    memcpy(&x, c + cal.old_exception, 4);
    if (x != -1) {
        x = -1;
        memcpy(c + cal.old_exception, &x, 4);
        cpu_state_put(v);
    }
}

bool irq_inhibited(struct emu_vcpu *v)
{
    uint32_t hf;
    memcpy(&hf, cpu_state(v) + cal.hflags, 4);
    return hf & HF_INHIBIT_IRQ;
}

bool vector_has_error_code(int vec)
{
    return vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 ||
           vec == 29 || vec == 30;
}

/* Supervisor-mode ("implicit") accesses to the IDT, GDT, TSS and the new
 * stack walk the guest's 4-level page tables here: unicorn's vmem helpers
 * translate with the current CPL, and a ring-3 interrupt must reach
 * supervisor-only pages. Returns 0 and the physical address, or -1. */
/* A physical read or write by the engine itself: a host pointer from the
 * region table, else unicorn. Writes keep going through uc_mem_write: it
 * invalidates translations of code on the page it writes (a host store
 * would not, see emu.c). `len` stays within one page. */
static int phys_read(struct emu_vcpu *v, uint64_t pa, void *buf, size_t len)
{
    uint8_t *h = region_host_read(v, pa, len);
    if (h) {
        memcpy(buf, h, len);
        return 0;
    }
    return uc_mem_read(v->uc, pa, buf, len) == UC_ERR_OK ? 0 : -1;
}

/* One page-table entry (8 bytes, aligned: never across a region end). */
static inline int phys_read64(struct emu_vcpu *v, uint64_t pa, uint64_t *e)
{
    uint8_t *h = region_host_read(v, pa, 8);
    if (h) {
        memcpy(e, h, 8);
        return 0;
    }
    return uc_mem_read(v->uc, pa, e, 8) == UC_ERR_OK ? 0 : -1;
}

static int gva_to_gpa(struct emu_vcpu *v, uint64_t va, uint64_t *pa)
{
    uint64_t cr0 = rreg(v->uc, UC_X86_REG_CR0);
    if (!(cr0 & (1ull << 31))) {
        *pa = va;
        return 0;
    }
    uint64_t table = rreg(v->uc, UC_X86_REG_CR3) & 0x000ffffffffff000ull;
    for (int level = 3; level >= 0; level--) {
        uint64_t e;
        int idx = (va >> (12 + 9 * level)) & 511;
        if (phys_read64(v, table + idx * 8, &e) != 0 || !(e & 1))
            return -1;
        uint64_t frame = e & 0x000ffffffffff000ull;
        if (level > 0 && level < 3 && (e & 0x80)) { /* 1 GiB / 2 MiB page */
            uint64_t mask = (1ull << (12 + 9 * level)) - 1;
            *pa = (frame & ~mask) | (va & mask);
            return 0;
        }
        table = frame;
    }
    *pa = table | (va & 0xfff);
    return 0;
}

static int sys_access(struct emu_vcpu *v, uint64_t va, void *buf, size_t len, bool write)
{
    uint8_t *b = buf;
    while (len) {
        uint64_t pa;
        size_t chunk = 4096 - (va & 0xfff);
        if (chunk > len)
            chunk = len;
        if (gva_to_gpa(v, va, &pa) != 0 ||
            (write ? uc_mem_write(v->uc, pa, b, chunk) != UC_ERR_OK
                   : phys_read(v, pa, b, chunk) != 0)) {
            v->fault_va = va;
            return -1;
        }
        va += chunk;
        b += chunk;
        len -= chunk;
    }
    return 0;
}

#define DESC_P (1u << 15)
#define DESC_S (1u << 12)
#define DESC_CODE (1u << 11)
#define DESC_L (1u << 21)
#define DESC_G (1u << 23)
#define DESC_B (1u << 22)
#define DESC_RW (1u << 9)
#define DESC_A (1u << 8)
#define HF_CPL_MASK 3u
#define HF_CS32 (1u << 4)
#define HF_SS32 (1u << 5)
#define HF_ADDSEG (1u << 6)
#define HF_LMA (1u << 14)
#define HF_CS64 (1u << 15)

/* QEMU's SegmentCache: selector, base, limit, flags (high descriptor word). */
struct seg_cache {
    uint32_t selector;
    uint64_t base;
    uint32_t limit;
    uint32_t flags;
};

/* Load CS and SS with their hidden parts and QEMU's CPL/mode flags through
 * a context snapshot: unicorn's API only writes selectors in 64-bit mode.
 * CS must be a 64-bit code segment (long mode). */
static void load_cs_ss64(struct emu_vcpu *v, struct seg_cache cs, struct seg_cache ss)
{
    char *c = cpu_state(v);
    memcpy(c + cal.seg_cs, &cs, sizeof(cs));
    memcpy(c + cal.seg_cs + sizeof(struct seg_cache), &ss, sizeof(ss));
    uint32_t hf, cpl = (ss.flags >> 13) & 3;
    memcpy(&hf, c + cal.hflags, 4);
    hf = (hf & ~(HF_CPL_MASK | HF_SS32 | HF_ADDSEG)) | HF_CS32 | HF_CS64 | cpl;
    if (ss.flags & DESC_B)
        hf |= HF_SS32;
    memcpy(c + cal.hflags, &hf, 4);
    cpu_state_put(v);
}

/* Enter a more privileged 64-bit code segment as an interrupt does (SDM
 * 6.14.2): CS from the gate's descriptor, SS = NULL with RPL = new CPL. */
static void load_inner_cs_ss(struct emu_vcpu *v, uint16_t sel, uint32_t e2, int dpl)
{
    struct seg_cache cs = {(sel & ~3u) | dpl, 0, 0xffffffff, e2};
    struct seg_cache ss = {(uint32_t)dpl, 0, 0, (uint32_t)dpl << 13};
    load_cs_ss64(v, cs, ss);
}

/* Deliver one event through the 64-bit IDT as the CPU would (Intel SDM
 * vol. 3 6.14): gate, stack from the TSS (privilege change or IST),
 * 16-byte aligned frame SS RSP RFLAGS CS RIP [error], IF cleared for
 * interrupt gates. Returns 0, -1 when delivery itself faults (the caller
 * escalates), -2 for what this engine cannot do. */
struct fault {
    int vec;
    uint32_t err;
    uint64_t cr2;
};

#define FAULT(v_, e_) (f->vec = (v_), f->err = (e_), -1)
#define PAGE_FAULT(w_) (f->vec = 14, f->err = (w_) ? 2 : 0, f->cr2 = v->fault_va, -1)

static int deliver64(struct emu_vcpu *v, int vec, bool has_err, uint64_t err, bool soft,
                     bool ext, struct fault *f)
{
    uc_engine *uc = v->uc;
    uc_x86_mmr idtr = {0}, gdtr = {0}, tr = {0};
    uint32_t idt_err = vec * 8 + 2 + ext; /* error code naming the IDT entry */
    uc_reg_read(uc, UC_X86_REG_IDTR, &idtr);
    if ((uint64_t)vec * 16 + 15 > idtr.limit)
        return FAULT(13, idt_err);
    uint8_t g[16];
    if (sys_access(v, idtr.base + vec * 16, g, 16, false))
        return PAGE_FAULT(false);
    uint16_t sel = g[2] | g[3] << 8;
    int ist = g[4] & 7, type = g[5] & 0xf, gate_dpl = (g[5] >> 5) & 3, present = g[5] >> 7;
    uint64_t target = (uint64_t)(g[0] | g[1] << 8) | (uint64_t)(g[6] | g[7] << 8) << 16 |
                      (uint64_t)(g[8] | g[9] << 8 | g[10] << 16 | (uint32_t)g[11] << 24) << 32;
    if (type != 0xe && type != 0xf)
        return FAULT(13, idt_err);
    if (!present)
        return FAULT(11, idt_err);
    uint64_t cs = rreg(uc, UC_X86_REG_CS), ss = rreg(uc, UC_X86_REG_SS);
    int cpl = cs & 3;
    if (soft && gate_dpl < cpl)
        return FAULT(13, idt_err);
    /* The target code segment descriptor decides the new CPL. */
    uint32_t e[2];
    uc_reg_read(uc, UC_X86_REG_GDTR, &gdtr);
    if ((sel & ~3u) == 0 || (sel & 4) || (sel | 7u) > gdtr.limit)
        return FAULT(13, (sel & ~3u) + ext);
    if (sys_access(v, gdtr.base + (sel & ~7u), e, 8, false))
        return PAGE_FAULT(false);
    uint32_t e2 = e[1];
    int dpl = (e2 >> 13) & 3;
    if ((e2 & (DESC_S | DESC_CODE)) != (DESC_S | DESC_CODE) || dpl > cpl)
        return FAULT(13, (sel & ~3u) + ext);
    if (!(e2 & DESC_P))
        return FAULT(11, (sel & ~3u) + ext);
    if (!(e2 & DESC_L)) {
        set_err(v, "event %d: handler segment %#x is not 64-bit", vec, sel);
        return -2;
    }
    uint64_t rsp = rreg(uc, UC_X86_REG_RSP), rip = rreg(uc, UC_X86_REG_RIP);
    uint64_t rflags = rreg(uc, UC_X86_REG_RFLAGS);
    uint64_t new_rsp = rsp;
    if (ist || dpl < cpl) {
        /* 64-bit TSS: RSP0..2 at 4, IST1..7 at 0x24. */
        uint32_t off = ist ? 0x24 + (ist - 1) * 8 : 4 + dpl * 8;
        uc_reg_read(uc, UC_X86_REG_TR, &tr);
        if (off + 7 > tr.limit)
            return FAULT(10, (uint32_t)(rreg(uc, UC_X86_REG_TR) & ~3u) + ext);
        if (sys_access(v, tr.base + off, &new_rsp, 8, false))
            return PAGE_FAULT(false);
    }
    new_rsp &= ~0xfull;
    uint64_t frame[6];
    int n = 0;
    if (has_err)
        frame[n++] = err;
    frame[n++] = rip;
    frame[n++] = cs;
    frame[n++] = rflags;
    frame[n++] = rsp;
    frame[n++] = ss;
    new_rsp -= n * 8;
    /* Pushed from the top, as the CPU does: CR2 names the first slot that
     * cannot be written. A frame within one page is one write (one walk,
     * one uc_mem_write); a failure there is the top slot's. */
    if ((new_rsp >> 12) == ((new_rsp + n * 8 - 1) >> 12)) {
        if (sys_access(v, new_rsp, frame, n * 8, true)) {
            v->fault_va = new_rsp + (n - 1) * 8;
            return PAGE_FAULT(true);
        }
    } else {
        for (int i = n - 1; i >= 0; i--)
            if (sys_access(v, new_rsp + i * 8, &frame[i], 8, true))
                return PAGE_FAULT(true);
    }
    if (dpl < cpl)
        load_inner_cs_ss(v, sel, e2, dpl);
    else if (sel != cs)
        wreg(uc, UC_X86_REG_CS, (sel & ~3u) | cpl);
    rflags &= ~((1ull << 8) | (1ull << 14) | (1ull << 16) | (1ull << 17)); /* TF NT RF VM */
    if (type == 0xe)
        rflags &= ~RFLAGS_IF;
    wreg(uc, UC_X86_REG_RSP, new_rsp);
    wreg(uc, UC_X86_REG_RFLAGS, rflags);
    wreg(uc, UC_X86_REG_RIP, target);
    return 0;
}

/* EFER.LMA: QEMU mirrors it in hflags (HF_LMA), read in place when the
 * engine can; else through the MSR. */
static bool long_mode(struct emu_vcpu *v)
{
    if (v->env) {
        uint32_t hf;
        memcpy(&hf, cpu_state(v) + cal.hflags, 4);
        return hf & HF_LMA;
    }
    return rd_msr(v->uc, MSR_EFER) & EFER_LMA;
}

static bool contributory(int vec) { return vec == 0 || (vec >= 10 && vec <= 13); }

/* Deliver an event; a fault while delivering it is handled with x86's
 * rules (SDM vol. 3 table 6-5): contributory after contributory, or
 * contributory/#PF after #PF, is #DF; anything after #DF is a triple fault
 * (shutdown); otherwise the second exception is delivered in turn. */
int raise_event(struct emu_vcpu *v, int vec, bool has_err, uint64_t err, bool soft)
{
    bool ext = !soft;
    for (int depth = 0; depth < 4; depth++) {
        struct fault f = {0};
        int r;
        if (long_mode(v)) {
            r = deliver64(v, vec, has_err, err, soft, ext, &f);
        } else {
            /* Legacy-mode IDTs are not implemented; an empty one (PVH entry
             * before the guest loads its own) faults like hardware. */
            uc_x86_mmr idtr = {0};
            uc_reg_read(v->uc, UC_X86_REG_IDTR, &idtr);
            r = -1;
            f.vec = 13;
            if (idtr.limit != 0 && (uint64_t)vec * 8 + 7 <= idtr.limit) {
                set_err(v, "event %d in legacy protected mode: not supported", vec);
                r = -2;
            }
        }
        if (r == 0)
            return 0;
        if (r == -2) {
            v->reason = R_ERROR;
            return -1;
        }
        if (vec == 8)
            break; /* triple fault */
        if (f.vec == 14)
            wreg(v->uc, UC_X86_REG_CR2, f.cr2);
        bool dbl = (contributory(vec) && contributory(f.vec)) ||
                   (vec == 14 && (contributory(f.vec) || f.vec == 14));
        if (dbl)
            vec = 8, err = 0;
        else
            vec = f.vec, err = f.err;
        has_err = true; /* #DF, #TS, #NP, #GP, #PF all push one */
        soft = false;
        ext = true;
    }
    v->reason = R_TRIPLE;
    set_err(v, "triple fault");
    return -1;
}

int do_syscall(struct emu_vcpu *v)
{
    uc_engine *uc = v->uc;
    uint64_t efer = rd_msr(uc, MSR_EFER), rip = v->syscall_rip;
    uint64_t rflags = rreg(uc, UC_X86_REG_RFLAGS);
    if (!(efer & 1) || !(efer & EFER_LMA)) { /* SCE off or legacy mode: #UD */
        wreg(uc, UC_X86_REG_RIP, rip);
        v->counters[C_EXCEPTIONS]++;
        return raise_event(v, 6, false, 0, false);
    }
    uint64_t star = rd_msr(uc, 0xC0000081), lstar = rd_msr(uc, 0xC0000082);
    uint64_t fmask = rd_msr(uc, 0xC0000084);
    uint16_t sel = (star >> 32) & 0xfffc;
    wreg(uc, UC_X86_REG_RCX, rip + 2);
    wreg(uc, UC_X86_REG_R11, rflags & ~(1ull << 16));
    struct seg_cache cs = {sel, 0, 0xffffffff,
                           DESC_G | DESC_P | DESC_S | DESC_CODE | DESC_RW | DESC_A | DESC_L};
    struct seg_cache ss = {(sel + 8u) & 0xfffc, 0, 0xffffffff,
                           DESC_G | DESC_B | DESC_P | DESC_S | DESC_RW | DESC_A};
    load_cs_ss64(v, cs, ss);
    wreg(uc, UC_X86_REG_RFLAGS, rflags & ~fmask & ~(1ull << 16));
    wreg(uc, UC_X86_REG_RIP, lstar);
    return 0;
}

/* ---------------------------------------------------- boot trampoline */

/* Layout of the private page (one per vCPU: each engine maps its own). */
#define P_GDTR 0x00 /* 6-byte pseudo-descriptor (limit, base) */
#define P_DSEL 0x08 /* data selector word for `mov sreg, m16` */
#define P_JMP 0x0c  /* far pointer to the entry (offset32, sel16) */
#define P_GDT 0x20
#define P_CODE32 0x100

static const uint64_t gdt[] = {
    0,
    0x00cf9b000000ffffull, /* 0x08: 32-bit flat code */
    0x00cf93000000ffffull, /* 0x10: flat data */
    0x00af9b000000ffffull, /* 0x18: 64-bit code */
};

static void put32(uint8_t *p, uint32_t x) { memcpy(p, &x, 4); }

/* 32-bit code that touches no general register (the guest's ebx etc. are
 * already set): lgdt; ljmp 0x08:1f; 1: mov ds/es/ss/fs/gs, [dsel];
 * ljmp *[entry]. Loading the selectors for real fills the hidden parts,
 * which unicorn's register API does not. */
void build_priv_page(uint8_t *pg)
{
    uint32_t base = (uint32_t)EMU_PRIV_GPA;
    memset(pg, 0xf4, 4096); /* hlt anywhere else */
    uint16_t lim = sizeof(gdt) - 1, dsel = 0x10;
    memcpy(pg + P_GDTR, &lim, 2);
    put32(pg + P_GDTR + 2, base + P_GDT);
    memcpy(pg + P_DSEL, &dsel, 2);
    memcpy(pg + P_GDT, gdt, sizeof(gdt));
    uint8_t *c = pg + P_CODE32;
    int n = 0;
    c[n++] = 0x0f; c[n++] = 0x01; c[n++] = 0x15; put32(c + n, base + P_GDTR); n += 4;
    c[n++] = 0xea; put32(c + n, base + P_CODE32 + n + 6); n += 4; c[n++] = 0x08; c[n++] = 0x00;
    static const uint8_t sregs[] = {0x1d, 0x05, 0x15, 0x25, 0x2d}; /* ds es ss fs gs */
    for (unsigned i = 0; i < sizeof(sregs); i++) {
        c[n++] = 0x8e; c[n++] = sregs[i]; put32(c + n, base + P_DSEL); n += 4;
    }
    c[n++] = 0xff; c[n++] = 0x2d; put32(c + n, base + P_JMP); n += 4;
}

/* The LAPIC's reset state as Xen's vlapic gives it (vlapic_reset):
 * APIC ID vcpu_id * 2, version 0x50014, LVTs masked, software disabled,
 * DFR flat. */
void build_lapic_page(uint8_t *pg, int vcpu_id)
{
    memset(pg, 0, 4096);
    put32(pg + 0x20, (uint32_t)(vcpu_id * 2) << 24); /* ID */
    put32(pg + 0x30, 0x00050014);                     /* version, 6 LVTs */
    put32(pg + 0xe0, 0xffffffff);                     /* DFR */
    put32(pg + 0xf0, 0xff);                           /* SVR: vector 0xff, disabled */
    for (int r = 0x320; r <= 0x370; r += 0x10)        /* LVT timer..error */
        put32(pg + r, 1u << 16);
}

static uint64_t tramp_for(struct emu_vcpu *v, uint32_t entry)
{
    uint16_t sel = 0x08;
    put32(v->priv + P_JMP, entry);
    memcpy(v->priv + P_JMP + 4, &sel, 2);
    return EMU_PRIV_GPA + P_CODE32;
}

/* Leave unicorn's reset state (long mode, paging off) for 32-bit protected
 * mode: the only way found is PAE+PG on, then PG off (clears LMA). */
static void leave_long_mode(uc_engine *uc)
{
    wreg(uc, UC_X86_REG_CR4, rreg(uc, UC_X86_REG_CR4) | (1u << 5));
    wreg(uc, UC_X86_REG_CR0, rreg(uc, UC_X86_REG_CR0) | (1u << 31) | 1);
    wreg(uc, UC_X86_REG_CR0, 0x11); /* PE|ET */
    wr_msr(uc, MSR_EFER, 0);
    wreg(uc, UC_X86_REG_CR4, 0);
    wreg(uc, UC_X86_REG_CR3, 0);
}

/* Real mode as a STARTUP IPI leaves a CPU (Xen's hvm_vcpu_reset_state):
 * CS = cs with base cs << 4, the data segments at base 0, all limits
 * 64 KiB, 16-bit code and stack, CR0.PE off, GDTR/IDTR base 0 limit
 * 0xffff. Unicorn's API writes selectors only: the caches and QEMU's
 * hflags go in through a context snapshot. */
static void enter_real_mode(struct emu_vcpu *v, uint16_t cs, uint16_t ip)
{
    uc_engine *uc = v->uc;
    leave_long_mode(uc);
    wreg(uc, UC_X86_REG_CR0, 0x10); /* ET: PE off, real mode */
    uc_x86_mmr table = {0, 0, 0xffff, 0};
    uc_reg_write(uc, UC_X86_REG_GDTR, &table);
    uc_reg_write(uc, UC_X86_REG_IDTR, &table);
    uc_context_save(uc, v->ctx);
    char *c = (char *)v->ctx;
    /* segs[] order is ES CS SS DS FS GS; calibration found CS. */
    for (int i = 0; i < 6; i++) {
        struct seg_cache s = {0, 0, 0xffff, DESC_P | DESC_S | DESC_RW | DESC_A};
        if (i == 1)
            s = (struct seg_cache){cs, (uint64_t)cs << 4, 0xffff,
                                   DESC_P | DESC_S | DESC_CODE | DESC_RW | DESC_A};
        memcpy(c + cal.seg_cs + (i - 1) * (long)sizeof(struct seg_cache), &s, sizeof(s));
    }
    uint32_t hf;
    memcpy(&hf, c + cal.hflags, 4);
    hf &= ~(HF_CPL_MASK | HF_CS32 | HF_SS32 | HF_CS64);
    hf |= HF_ADDSEG;
    memcpy(c + cal.hflags, &hf, 4);
    uc_context_restore(uc, v->ctx);
    wreg(uc, UC_X86_REG_RIP, ip);
}

int emu_set_boot(struct emu_vcpu *v, int mode, uint64_t rip, const uint64_t *regs,
                 uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer)
{
    uc_engine *uc = v->uc;
    int rc = emu_set_regs(v, regs);
    if (rc)
        return rc;
    if (mode == EMU_MODE_REAL16) {
        if (rip > 0xfffffull)
            return UC_ERR_ARG;
        enter_real_mode(v, (uint16_t)(rip >> 4), (uint16_t)(rip & 0xf));
    } else if (mode == EMU_MODE_FLAT32) {
        if (rip > 0xffffffffull)
            return UC_ERR_ARG;
        leave_long_mode(uc);
        if (cr0 != 0x11)
            wreg(uc, UC_X86_REG_CR0, cr0);
        wreg(uc, UC_X86_REG_RIP, tramp_for(v, (uint32_t)rip));
    } else {
        /* VCPU_HVM_MODE_64B: the reset state already has a flat 64-bit CS. */
        wreg(uc, UC_X86_REG_CR3, cr3);
        wreg(uc, UC_X86_REG_CR4, cr4);
        wr_msr(uc, MSR_EFER, efer);
        wreg(uc, UC_X86_REG_CR0, cr0);
        wreg(uc, UC_X86_REG_RIP, rip);
    }
    uc_ctl_flush_tb(uc);
    forget_scans(v);
    return 0;
}

/* ------------------------------------------------------ calibration */

struct probe {
    uc_context *snap;
    uc_context *snap2;
    uint64_t want_block, want_block2;
    int got;
};

static void probe_intr(uc_engine *uc, uint32_t intno, void *ud)
{
    struct probe *p = ud;
    uc_context_save(uc, p->snap);
    p->got = (int)intno;
    uc_emu_stop(uc);
}

static void probe_block(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct probe *p = ud;
    if (addr == p->want_block)
        uc_context_save(uc, p->snap);
    if (addr == p->want_block2)
        uc_context_save(uc, p->snap2);
}

static int32_t at32(uc_context *c, long off) { return *(int32_t *)((char *)c + off); }

/* CPUID leaf `leaf`, subleaf 0, as unicorn answers it (the probe code at
 * 0x4300 is `cpuid; hlt`). */
static void probe_cpuid(uc_engine *uc, uc_context *reset, uint32_t leaf, uint32_t out[4])
{
    static const int r[4] = {UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX};
    uc_context_restore(uc, reset);
    wreg(uc, UC_X86_REG_RAX, leaf);
    wreg(uc, UC_X86_REG_RCX, 0);
    uc_emu_start(uc, 0x4300, NEVER_PC, 0, 10);
    for (int i = 0; i < 4; i++)
        out[i] = (uint32_t)rreg(uc, r[i]);
}

/* ------------------------------------------------ the live CPU state */

/* Copy up to `len` bytes at `src` in this process; a page that is not
 * mapped ends the copy instead of faulting (process_vm_readv on ourselves,
 * one page per remote iovec: partial transfers stop at an iovec). Returns
 * the bytes copied. For probing pointers found inside unicorn. */
static size_t safe_read(void *dst, uintptr_t src, size_t len)
{
    struct iovec local = {dst, len}, remote[64];
    int n = 0;
    for (uintptr_t a = src, left = len; left && n < 64; n++) {
        size_t chunk = 4096 - (a & 4095);
        if (chunk > left)
            chunk = left;
        remote[n].iov_base = (void *)a;
        remote[n].iov_len = chunk;
        a += chunk;
        left -= chunk;
    }
    ssize_t r = process_vm_readv(getpid(), &local, 1, remote, n, 0);
    return r < 0 ? 0 : (size_t)r;
}

/* RAX..R15 in QEMU's order (regs[] opens CPUX86State). */
static const int qemu_gpr[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP,
    UC_X86_REG_RBP, UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8,  UC_X86_REG_R9,
    UC_X86_REG_R10, UC_X86_REG_R11, UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14,
    UC_X86_REG_R15};

/* `env` is this engine's live CPU state if registers written through the
 * API show up there, and a snapshot is a byte copy of it. */
static bool env_check(uc_engine *uc, uc_context *ctx, const char *env)
{
    uint64_t rax = rreg(uc, UC_X86_REG_RAX), got = 0;
    bool ok = true;
    for (int i = 1; i <= 2 && ok; i++) {
        uint64_t probe = 0x6e76c0de00000000ull + i * 0x10001ull;
        wreg(uc, UC_X86_REG_RAX, probe);
        ok = safe_read(&got, (uintptr_t)env, 8) == 8 && got == probe;
    }
    wreg(uc, UC_X86_REG_RAX, rax);
    size_t size = uc_context_size(uc) - cal.ctx_data;
    char *copy = ok ? malloc(size) : NULL;
    if (!copy)
        return false;
    uc_context_save(uc, ctx);
    ok = safe_read(copy, (uintptr_t)env, size) == size &&
         memcmp(copy, (char *)ctx + cal.ctx_data, size) == 0;
    free(copy);
    return ok;
}

/* This engine's live CPU state through the pointers env_locate() found,
 * checked; NULL: use snapshots. */
char *env_find(uc_engine *uc, uc_context *ctx)
{
    uintptr_t cpu = 0, env = 0;
    if (!cal.env_found || safe_read(&cpu, (uintptr_t)uc + cal.uc_cpu, 8) != 8 || !cpu ||
        safe_read(&env, cpu + cal.cpu_env, 8) != 8 || !env || (env & 7))
        return NULL;
    return env_check(uc, ctx, (char *)env) ? (char *)env : NULL;
}

/* Whether the chain in `cal` reaches the live state of an engine that has
 * not run yet (as a vCPU's is when it is created) and, unchanged, after
 * it ran some code: a pointer that merely happens to lead there in one
 * engine (measured: one inside the translator's state) is refused. */
static bool env_chain_holds(void)
{
    uc_engine *uc = NULL;
    uc_context *ctx = NULL;
    bool ok = uc_open(UC_ARCH_X86, UC_MODE_64, &uc) == UC_ERR_OK &&
              uc_context_alloc(uc, &ctx) == UC_ERR_OK;
    char *env = ok ? env_find(uc, ctx) : NULL;
    static const uint8_t code[] = {0x48, 0xff, 0xc0, 0x90, 0xf4}; /* inc rax; nop; hlt */
    ok = env && uc_mem_map(uc, 0x1000, 0x1000, UC_PROT_ALL) == UC_ERR_OK &&
         uc_mem_write(uc, 0x1000, code, sizeof(code)) == UC_ERR_OK &&
         uc_emu_start(uc, 0x1000, NEVER_PC, 0, 10) == UC_ERR_OK && env_find(uc, ctx) == env;
    if (ctx)
        uc_context_free(ctx);
    if (uc)
        uc_close(uc);
    return ok;
}

/* Find the pointer chain engine -> CPU object -> CPU state (QEMU's
 * uc->cpu->env_ptr; the state lives inside the CPU object, after it):
 * mark the general registers, then look for a pointer in the engine's
 * first 16 KiB to an object holding a pointer, within its next 128 KiB,
 * to those marks; keep the first such chain that also holds in fresh
 * engines (env_chain_holds). Not found: snapshots (slower, same
 * behaviour). */
static void env_locate(uc_engine *uc, uc_context *ctx)
{
    enum { UC_SCAN = 16384, OBJ_SCAN = 131072 };
    uint64_t sig[16];
    for (int i = 0; i < 16; i++) {
        sig[i] = 0x5167c0de00000000ull ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull >> 32);
        wreg(uc, qemu_gpr[i], sig[i]);
    }
    uc_context_save(uc, ctx);
    size_t csize = uc_context_size(uc);
    long d = -1;
    for (long off = 0; off < 512 && off + (long)sizeof(sig) <= (long)csize; off += 8)
        if (memcmp((char *)ctx + off, sig, sizeof(sig)) == 0) {
            d = off;
            break;
        }
    uint64_t *words = malloc(UC_SCAN), *obj = malloc(OBJ_SCAN);
    size_t nw = d >= 0 && words && obj ? safe_read(words, (uintptr_t)uc, UC_SCAN) / 8 : 0;
    cal.ctx_data = d;
    for (size_t k = 0; k < nw && !cal.env_found; k++) {
        uintptr_t p = words[k];
        if (p < 65536 || (p & 7) || (p >> 47))
            continue;
        size_t got = safe_read(obj, p, OBJ_SCAN);
        for (size_t j = 0; j < got / 8 && !cal.env_found; j++) {
            uintptr_t q = obj[j];
            if (q < p || (q & 7) || q - p + sizeof(sig) > got ||
                memcmp((char *)obj + (q - p), sig, sizeof(sig)) != 0)
                continue;
            cal.uc_cpu = (long)(k * 8);
            cal.cpu_env = (long)(j * 8);
            cal.env_found = 1;
            if (!env_find(uc, ctx) || !env_chain_holds())
                cal.env_found = 0;
        }
    }
    free(words);
    free(obj);
}

/* Find where this unicorn build keeps error_code, exception_is_int,
 * old_exception and hflags inside a saved context, by diffing snapshots of
 * probe runs: #GP(0x1238) from loading a bad selector, int3, and the block
 * after `sti` (interrupt shadow). */
int emu_calibrate(char *err, size_t errlen)
{
    if (cal.done)
        return 0;
    uc_engine *uc = NULL;
    struct probe p = {0};
    uc_context *reset = NULL, *gp = NULL, *i3 = NULL;
    int rc = -1;
    uc_hook h1, h2;
    if (uc_open(UC_ARCH_X86, UC_MODE_64, &uc) != UC_ERR_OK) {
        snprintf(err, errlen, "uc_open failed");
        return -1;
    }
    size_t size = uc_context_size(uc);
    uc_mem_map(uc, 0, 0x10000, UC_PROT_ALL);
    uc_context_alloc(uc, &reset);
    uc_context_alloc(uc, &gp);
    uc_context_alloc(uc, &i3);
    uc_context_alloc(uc, &p.snap2);
    uc_hook_add(uc, &h1, UC_HOOK_INTR, probe_intr, &p, 1, 0);
    uc_hook_add(uc, &h2, UC_HOOK_BLOCK, probe_block, &p, 1, 0);
    uc_context_save(uc, reset);
    static const uint8_t code_gp[] = {0x66, 0xb8, 0x38, 0x12, 0x8e, 0xd8, 0xf4};
    static const uint8_t code_i3[] = {0x90, 0xcc, 0xf4};
    static const uint8_t code_sti[] = {0xfb, 0x90, 0x90, 0xf4};
    uc_mem_write(uc, 0x4000, code_gp, sizeof(code_gp));
    uc_mem_write(uc, 0x4100, code_i3, sizeof(code_i3));
    uc_mem_write(uc, 0x4200, code_sti, sizeof(code_sti));
    uint64_t rsp = 0x8000;
    p.snap = gp;
    p.want_block = p.want_block2 = ~0ull;
    wreg(uc, UC_X86_REG_RSP, rsp);
    uc_emu_start(uc, 0x4000, NEVER_PC, 0, 100);
    uint64_t gp_rip = rreg(uc, UC_X86_REG_RIP);
    int gp_vec = p.got;
    uc_context_restore(uc, reset);
    p.snap = i3;
    p.got = -1;
    uc_emu_start(uc, 0x4100, NEVER_PC, 0, 100);
    int i3_vec = p.got;
    uc_context_restore(uc, reset);
    uc_context *s1 = NULL;
    uc_context_alloc(uc, &s1);
    p.snap = s1;
    p.want_block = 0x4201;
    p.want_block2 = 0x4202;
    wreg(uc, UC_X86_REG_RSP, rsp);
    uc_emu_start(uc, 0x4200, NEVER_PC, 0, 100);
    /* Unicorn's own leaf 1 (the engine adds the APIC ID) and leaf 7.0 (it
     * adds ARCH_CAPABILITIES). */
    static const uint8_t code_cpuid[] = {0x0f, 0xa2, 0xf4};
    uc_mem_write(uc, 0x4300, code_cpuid, sizeof(code_cpuid));
    probe_cpuid(uc, reset, 1, cal.leaf1);
    probe_cpuid(uc, reset, 7, cal.leaf7);
    /* In 64-bit mode the API writes selectors only: find CS's cache. */
    uc_context *sel = NULL;
    uc_context_alloc(uc, &sel);
    uc_context_restore(uc, reset);
    wreg(uc, UC_X86_REG_CS, 0x5a58);
    wreg(uc, UC_X86_REG_SS, 0x6c68);
    uc_context_save(uc, sel);
    long csoff = -1;
    int ncs = 0;
    for (long off = 0; off + 4 <= (long)size; off += 4)
        if (at32(sel, off) == 0x5a58 && off + 24 + 4 <= (long)size && at32(sel, off + 24) == 0x6c68)
            csoff = off, ncs++;
    uc_context_free(sel);
    if (ncs != 1) {
        snprintf(err, errlen, "segment cache layout not recognised (%d candidates)", ncs);
        goto out;
    }
    cal.seg_cs = csoff;
    if (gp_vec != 13 || gp_rip != 0x4004 || i3_vec != 3) {
        snprintf(err, errlen, "probe runs: #GP vector %d at %#llx, int3 vector %d", gp_vec,
                 (unsigned long long)gp_rip, i3_vec);
        goto out;
    }
    long ec = -1, ii = -1, oe = -1, hf = -1;
    int nec = 0, nii = 0, noe = 0, nhf = 0;
    for (long off = 0; off + 4 <= (long)size; off += 4) {
        if (at32(gp, off) == 0x1238 && at32(reset, off) != 0x1238 &&
            off + 4 + 4 <= (long)size && at32(i3, off + 4) == 1 && at32(gp, off + 4) == 0)
            ec = off, nec++; /* exception_is_int follows error_code (CPUX86State) */
        if (at32(i3, off) == 1 && at32(gp, off) == 0 && at32(reset, off) == 0)
            ii = off, nii++;
        if (at32(gp, off) == 13 && at32(reset, off) == -1 && at32(i3, off) == -1)
            oe = off, noe++;
        if (((uint32_t)at32(s1, off) ^ (uint32_t)at32(p.snap2, off)) == HF_INHIBIT_IRQ &&
            (at32(s1, off) & HF_INHIBIT_IRQ))
            hf = off, nhf++;
    }
    if (nec == 1)
        ii = ec + 4, nii = 1;
    /* hflags in 64-bit mode has LMA (bit 14) and CS64 (bit 15) set. */
    if (nhf == 1 && (at32(s1, hf) & 0xc000) != 0xc000)
        nhf = 0;
    if (nec != 1 || nii != 1 || noe != 1 || nhf != 1) {
        snprintf(err, errlen,
                 "context layout not recognised (candidates: error_code %d, is_int %d, "
                 "old_exception %d, hflags %d)", nec, nii, noe, nhf);
        goto out;
    }
    cal.error_code = ec;
    cal.is_int = ii;
    cal.old_exception = oe;
    cal.hflags = hf;
    const char *how = getenv("PYXEN_EMU_CPU_STATE"); /* emu.py checks the value */
    if (!how || strcmp(how, "snapshot") != 0)
        env_locate(uc, reset);
    cal.done = 1;
    rc = 0;
out:
    uc_context_free(reset);
    uc_context_free(gp);
    uc_context_free(i3);
    uc_context_free(p.snap2);
    if (s1)
        uc_context_free(s1);
    uc_close(uc);
    return rc;
}
