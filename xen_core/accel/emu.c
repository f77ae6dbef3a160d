/* Software CPU: one unicorn engine per vCPU, run loop and traps in C.
 *
 * Why C: unicorn's Python hooks cost ~0.5 us a call plus ~2 us per register
 * access; a C hook costs tens of ns. Python is entered only through
 * emu_py_exit() (cffi extern "Python", which takes the GIL) for work the core
 * must do: hypercalls, port I/O, the hypercall-page MSR, hlt.
 *
 * Unicorn facts this file works around (SOFTWARE-CPU-NOTES.md, and measured
 * while writing it):
 * - It never delivers exceptions through the guest IDT: UC_HOOK_INTR hands
 *   us the vector and we deliver (deliver64, raise_event). QEMU's
 *   "exception in flight" (env->old_exception) is never reset by unicorn,
 *   and even a clean stop leaves it set (13), so it is cleared after each
 *   delivery and each emu_start. It, the error code, the int-n flag, hflags
 *   and the CS/SS caches are reached through a context snapshot at offsets
 *   found at start-up by emu_calibrate() (probe runs diffing snapshots).
 * - No wrmsr hook: a block hook scans each new block for `0f 30` and puts a
 *   code hook on each site (it fires only if an instruction starts there).
 * - A stop asked for inside an `out` hook only takes effect at the end of
 *   the block; unicorn checks for a stop after code hooks, so the same scan
 *   puts one after each `out imm8, eax` to the hypercall port.
 * - Writing RIP from a hook that runs mid-block (`out`, syscall) derails
 *   unicorn; only exception-path hooks (INTR, invalid opcode) may. The
 *   others stop and let the run loop move RIP.
 * - `syscall` is skipped by unicorn: performed here. `lock` is not atomic
 *   across engines: a machine's vCPUs take turns on one CPU lock.
 * - Asynchronous stop/interrupt only at block boundaries, from the block
 *   hook on the vCPU's own thread (never an emu_start timeout).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicorn/unicorn.h>

#include "emu.h"

/* Provided by cffi (extern "Python"). */
static int emu_py_exit(uint64_t token);

#define F_STOP 1u
#define F_IRQ 2u
#define F_OPS 4u
#define F_YIELD 8u /* another vCPU of this machine waits for the CPU lock */
#define F_RIP 16u  /* a handler moved RIP: applied at the next stop */
#define SLICE_NS 2000000 /* run at least this long before handing over */

#define SCAN_SLOTS 4096 /* direct-mapped cache of already scanned blocks */
#define MAX_SITES 256
#define MAX_OPS 64
#define EMU_TCG_BUFFER (128u << 20)
#define NEVER_PC 0xfff0000000000000ULL /* non-canonical: `until` never hit */

#define HF_INHIBIT_IRQ (1u << 3) /* QEMU hflags: interrupt shadow (sti, mov ss) */
#define RFLAGS_IF (1ull << 9)
#define EFER_LMA (1ull << 10)
#define MSR_EFER 0xC0000080u

enum stop_reason { R_NONE, R_ASYNC, R_TRIPLE, R_ERROR, R_SITES, R_SYSCALL };

/* Offsets inside a uc_context, found by emu_calibrate(). */
static struct {
    int done;
    long error_code, is_int, old_exception, hflags, seg_cs;
} cal;

struct mem_op {
    int kind; /* 0 map, 1 unmap, 2 invalidate */
    uint64_t gpa, size, host;
};

/* Unicorn never sets QEMU's CF_PARALLEL, so `lock`-prefixed instructions
 * are not atomic between two engines on two threads (measured: two vCPUs
 * doing `lock inc` lost 40% of the increments). So the vCPUs of a machine
 * take turns on one CPU lock, handed over FIFO at block boundaries after a
 * time slice, and released while Python runs. */
struct emu_machine {
    struct emu_cpuid_leaf *leaves;
    int nleaves;
    uint32_t hc_port;
    pthread_mutex_t big;
    pthread_cond_t turn;
    uint64_t next_ticket, serving;
    struct emu_vcpu *holder;
    int nwaiting;
};

struct emu_vcpu {
    uc_engine *uc;
    struct emu_machine *m;
    uint8_t *priv; /* this vCPU's EMU_PRIV_GPA page, host side */
    int id;
    uint64_t token; /* names the Python EmuVcpu (cheaper than a cffi handle) */
    uc_context *ctx;
    _Atomic unsigned flags;
    _Atomic uint64_t irq_bits[4];
    uint64_t irq_defer_rip; /* interrupt shadow: let one block run first */
    int reason;
    int c_hypercalls; /* benchmark: answer hypercalls in C, no Python */
    uint64_t slice_start;
    uint64_t syscall_rip;
    uint64_t pending_rip;
    uint64_t fault_va; /* where the last sys_access() failed */
    int in_py_hook; /* inside a Python callback made from a unicorn hook */
    int in_run;
    pthread_t thread;
    pthread_mutex_t mu;
    struct mem_op ops[MAX_OPS];
    int nops, ops_overflow;
    uint64_t scanned[SCAN_SLOTS];
    uint64_t sites[MAX_SITES];
    uint8_t site_kind[MAX_SITES];
    int nsites, nsites_hooked;
    uint64_t wrmsr_skip; /* a stop came before this wrmsr ran: deliver once */
    uint64_t counters[8];
    struct emu_exit exit;
    char err[256];
};

enum { C_HYPERCALLS, C_SCANS, C_SITES, C_EXCEPTIONS, C_IRQS, C_BLOCK_STOPS };

static void set_err(struct emu_vcpu *v, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_err(struct emu_vcpu *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->err, sizeof(v->err), fmt, ap);
    va_end(ap);
}

static uint64_t rreg(uc_engine *uc, int r)
{
    uint64_t x = 0;
    uc_reg_read(uc, r, &x);
    return x;
}

static void wreg(uc_engine *uc, int r, uint64_t x) { uc_reg_write(uc, r, &x); }

static uint64_t rd_msr(uc_engine *uc, uint32_t msr)
{
    uc_x86_msr m = {.rid = msr};
    uc_reg_read(uc, UC_X86_REG_MSR, &m);
    return m.value;
}

static void wr_msr(uc_engine *uc, uint32_t msr, uint64_t val)
{
    uc_x86_msr m = {.rid = msr, .value = val};
    uc_reg_write(uc, UC_X86_REG_MSR, &m);
}

/* ------------------------------------------------------------ CPU lock */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ull + t.tv_nsec;
}

static void cpu_lock(struct emu_vcpu *v)
{
    struct emu_machine *m = v->m;
    pthread_mutex_lock(&m->big);
    uint64_t ticket = m->next_ticket++;
    if (ticket != m->serving) {
        m->nwaiting++;
        if (m->holder)
            atomic_fetch_or(&m->holder->flags, F_YIELD);
        while (ticket != m->serving)
            pthread_cond_wait(&m->turn, &m->big);
        m->nwaiting--;
    }
    m->holder = v;
    v->slice_start = now_ns();
    if (m->nwaiting)
        atomic_fetch_or(&v->flags, F_YIELD);
    pthread_mutex_unlock(&m->big);
}

static void cpu_unlock(struct emu_vcpu *v)
{
    struct emu_machine *m = v->m;
    pthread_mutex_lock(&m->big);
    m->holder = NULL;
    m->serving++;
    atomic_fetch_and(&v->flags, ~F_YIELD);
    pthread_cond_broadcast(&m->turn);
    pthread_mutex_unlock(&m->big);
}

/* ---------------------------------------------------------------- Python */

static int call_python(struct emu_vcpu *v, uc_engine *uc)
{
    cpu_unlock(v);
    v->in_py_hook = uc != NULL;
    int rc = emu_py_exit(v->token);
    v->in_py_hook = 0;
    cpu_lock(v);
    if (rc != 0) {
        set_err(v, "exit handler raised (kind %d)", v->exit.kind);
        v->reason = R_ERROR;
        if (uc)
            uc_emu_stop(uc);
        return -1;
    }
    if (uc && (atomic_load_explicit(&v->flags, memory_order_relaxed) & (F_STOP | F_OPS | F_RIP))) {
        v->reason = R_ASYNC; /* the handler asked to stop: end of this block */
        uc_emu_stop(uc);
    }
    return 0;
}

static const int hc_regs[7] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI,
                               UC_X86_REG_RDX, UC_X86_REG_R10, UC_X86_REG_R8,
                               UC_X86_REG_R9};

/* Hypercall: number in eax, arguments rdi rsi rdx r10 r8 r9, result in rax. */
static void do_hypercall(struct emu_vcpu *v, uc_engine *uc)
{
    uint64_t vals[7];
    void *ptrs[7];
    for (int i = 0; i < 7; i++)
        ptrs[i] = &vals[i];
    uc_reg_read_batch(uc, (int *)hc_regs, ptrs, 7);
    v->counters[C_HYPERCALLS]++;
    if (v->c_hypercalls) {
        wreg(uc, UC_X86_REG_RAX, 0);
        return;
    }
    v->exit.kind = EMU_EXIT_HYPERCALL;
    v->exit.nr = vals[0] & 0xffffffffu;
    memcpy(v->exit.args, &vals[1], sizeof(v->exit.args));
    v->exit.value = 0;
    if (call_python(v, uc) == 0)
        wreg(uc, UC_X86_REG_RAX, v->exit.value);
}

static void hook_out(uc_engine *uc, uint32_t port, int size, uint32_t value, void *ud)
{
    struct emu_vcpu *v = ud;
    if (port == v->m->hc_port) {
        do_hypercall(v, uc);
        return;
    }
    v->exit.kind = EMU_EXIT_IO_OUT;
    v->exit.port = port;
    v->exit.size = size;
    v->exit.value = value;
    call_python(v, uc);
}

static uint32_t hook_in(uc_engine *uc, uint32_t port, int size, void *ud)
{
    struct emu_vcpu *v = ud;
    v->exit.kind = EMU_EXIT_IO_IN;
    v->exit.port = port;
    v->exit.size = size;
    v->exit.value = 0xffffffffu;
    if (call_python(v, uc) != 0)
        return 0xffffffffu;
    return (uint32_t)v->exit.value;
}

static int hook_cpuid(uc_engine *uc, void *ud)
{
    struct emu_vcpu *v = ud;
    uint32_t leaf = (uint32_t)rreg(uc, UC_X86_REG_RAX);
    for (int i = 0; i < v->m->nleaves; i++) {
        struct emu_cpuid_leaf *l = &v->m->leaves[i];
        if (l->leaf == leaf) {
            wreg(uc, UC_X86_REG_RAX, l->eax);
            wreg(uc, UC_X86_REG_RBX, l->ebx);
            wreg(uc, UC_X86_REG_RCX, l->ecx);
            wreg(uc, UC_X86_REG_RDX, l->edx);
            return 1; /* skip unicorn's own answer */
        }
    }
    return 0;
}

/* ------------------------------------------------------ event delivery */

/* Reset QEMU's exception-in-flight marker (and read the fault's error code
 * and int-n flag) through a context snapshot. */
static void ctx_peek(struct emu_vcpu *v, int *err_code, int *is_int)
{
    uc_context_save(v->uc, v->ctx);
    *err_code = *(int32_t *)((char *)v->ctx + cal.error_code);
    *is_int = *(int32_t *)((char *)v->ctx + cal.is_int);
}

static void ctx_clear_in_flight(struct emu_vcpu *v)
{
    uc_context_save(v->uc, v->ctx);
    int32_t *p = (int32_t *)((char *)v->ctx + cal.old_exception);
    if (*p != -1) {
        *p = -1;
        uc_context_restore(v->uc, v->ctx);
    }
}

static bool irq_inhibited(struct emu_vcpu *v)
{
    uc_context_save(v->uc, v->ctx);
    return *(uint32_t *)((char *)v->ctx + cal.hflags) & HF_INHIBIT_IRQ;
}

static bool vector_has_error_code(int vec)
{
    return vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 ||
           vec == 29 || vec == 30;
}

/* Supervisor-mode ("implicit") accesses to the IDT, GDT, TSS and the new
 * stack walk the guest's 4-level page tables here: unicorn's vmem helpers
 * translate with the current CPL, and a ring-3 interrupt must reach
 * supervisor-only pages. Returns 0 and the physical address, or -1. */
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
        if (uc_mem_read(v->uc, table + idx * 8, &e, 8) != UC_ERR_OK || !(e & 1))
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
            (write ? uc_mem_write(v->uc, pa, b, chunk) : uc_mem_read(v->uc, pa, b, chunk))) {
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
    uc_context_save(v->uc, v->ctx);
    char *c = (char *)v->ctx;
    memcpy(c + cal.seg_cs, &cs, sizeof(cs));
    memcpy(c + cal.seg_cs + sizeof(struct seg_cache), &ss, sizeof(ss));
    uint32_t hf, cpl = (ss.flags >> 13) & 3;
    memcpy(&hf, c + cal.hflags, 4);
    hf = (hf & ~(HF_CPL_MASK | HF_SS32 | HF_ADDSEG)) | HF_CS32 | HF_CS64 | cpl;
    if (ss.flags & DESC_B)
        hf |= HF_SS32;
    memcpy(c + cal.hflags, &hf, 4);
    uc_context_restore(v->uc, v->ctx);
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
     * cannot be written. */
    for (int i = n - 1; i >= 0; i--)
        if (sys_access(v, new_rsp + i * 8, &frame[i], 8, true))
            return PAGE_FAULT(true);
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

static bool contributory(int vec) { return vec == 0 || (vec >= 10 && vec <= 13); }

/* Deliver an event; a fault while delivering it is handled with x86's
 * rules (SDM vol. 3 table 6-5): contributory after contributory, or
 * contributory/#PF after #PF, is #DF; anything after #DF is a triple fault
 * (shutdown); otherwise the second exception is delivered in turn. */
static int raise_event(struct emu_vcpu *v, int vec, bool has_err, uint64_t err, bool soft)
{
    bool ext = !soft;
    for (int depth = 0; depth < 4; depth++) {
        struct fault f = {0};
        int r;
        if (rd_msr(v->uc, MSR_EFER) & EFER_LMA) {
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

static void hook_intr(uc_engine *uc, uint32_t intno, void *ud)
{
    struct emu_vcpu *v = ud;
    int err = 0, is_int = 0;
    ctx_peek(v, &err, &is_int);
    bool soft = is_int != 0;
    bool has_err = !soft && vector_has_error_code(intno);
    v->counters[C_EXCEPTIONS]++;
    if (raise_event(v, intno, has_err, (uint32_t)err, soft) != 0)
        uc_emu_stop(uc);
    ctx_clear_in_flight(v);
}

/* vmcall (0f 01 c1) / vmmcall (0f 01 d9) are hypercalls (Linux uses them
 * directly); any other invalid opcode is #UD through the guest IDT. */
static bool hook_invalid(uc_engine *uc, void *ud)
{
    struct emu_vcpu *v = ud;
    uint64_t rip = rreg(uc, UC_X86_REG_RIP);
    uint8_t b[3] = {0};
    if (uc_vmem_read(uc, rip, UC_PROT_EXEC, b, 3) == UC_ERR_OK && b[0] == 0x0f &&
        b[1] == 0x01 && (b[2] == 0xc1 || b[2] == 0xd9)) {
        do_hypercall(v, uc);
        if (atomic_load(&v->flags) & F_RIP) { /* exception context: RIP is safe here */
            atomic_fetch_and(&v->flags, ~F_RIP);
            rip = v->pending_rip - 3;
        }
        if (v->reason != R_ERROR)
            wreg(uc, UC_X86_REG_RIP, rip + 3);
        return v->reason != R_ERROR;
    }
    v->counters[C_EXCEPTIONS]++;
    if (raise_event(v, 6, false, 0, false) != 0) {
        uc_emu_stop(uc);
        ctx_clear_in_flight(v);
        return true;
    }
    ctx_clear_in_flight(v);
    return true;
}

/* Unicorn skips `syscall` (it only calls hooks), so do what the CPU does
 * in 64-bit mode (SDM SYSCALL): RCX = next RIP, R11 = RFLAGS, RFLAGS &=
 * ~FMASK, flat CS = STAR[47:32], SS = CS + 8, CPL 0, RIP = LSTAR. Writing
 * RIP inside this hook (called mid-block, unlike the exception hooks)
 * derails unicorn, so the hook only stops; syscall ends its block, and the
 * run loop performs it. `sysret` is emulated by unicorn itself. */
static void hook_syscall(uc_engine *uc, void *ud)
{
    struct emu_vcpu *v = ud;
    v->syscall_rip = rreg(uc, UC_X86_REG_RIP);
    v->reason = R_SYSCALL;
    uc_emu_stop(uc);
}

static int do_syscall(struct emu_vcpu *v)
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

/* ------------------------------------------------------------- wrmsr */

static void hook_wrmsr_site(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct emu_vcpu *v = ud;
    uint8_t b[2];
    if (size != 2 || uc_vmem_read(uc, addr, UC_PROT_EXEC, b, 2) || b[0] != 0x0f || b[1] != 0x30)
        return;
    if (addr == v->wrmsr_skip) {
        v->wrmsr_skip = ~0ull;
        return;
    }
    uint32_t msr = (uint32_t)rreg(uc, UC_X86_REG_RCX);
    /* Forward the hypervisor MSR range (Xen's hypercall-page MSR is at
     * 0x40000000 or 0x40000200); unicorn keeps the architectural ones. */
    if (msr < 0x40000000u || msr > 0x400001ffu)
        return;
    v->exit.kind = EMU_EXIT_WRMSR;
    v->exit.msr = msr;
    v->exit.value = (rreg(uc, UC_X86_REG_RDX) << 32) | (uint32_t)rreg(uc, UC_X86_REG_RAX);
    v->reason = R_NONE;
    call_python(v, uc);
    if (v->reason == R_ASYNC) /* stopping before the wrmsr itself runs */
        v->wrmsr_skip = addr;
}

/* Placed on the instruction after each `out imm8, eax` to the hypercall
 * port: a stop asked for by the hypercall's handler takes effect there,
 * before the rest of the block runs (unicorn only checks for a stop after
 * code hooks, not after `out`). */
static void hook_post_out(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct emu_vcpu *v = ud;
    if (atomic_load_explicit(&v->flags, memory_order_relaxed) & (F_STOP | F_OPS | F_RIP)) {
        v->reason = R_ASYNC;
        uc_emu_stop(uc);
    }
}

enum { SITE_WRMSR, SITE_POST_OUT };

static inline unsigned scan_slot(uint64_t a) { return (a ^ (a >> 12)) & (SCAN_SLOTS - 1); }

static void scan_block(struct emu_vcpu *v, uc_engine *uc, uint64_t addr, uint32_t size)
{
    uint8_t buf[4096];
    v->scanned[scan_slot(addr)] = addr;
    v->counters[C_SCANS]++;
    if (size < 2 || size > sizeof(buf) || uc_vmem_read(uc, addr, UC_PROT_EXEC, buf, size))
        return;
    bool found = false;
    for (uint32_t i = 0; i + 1 < size; i++) {
        uint64_t site;
        int kind;
        if (buf[i] == 0x0f && buf[i + 1] == 0x30)
            site = addr + i, kind = SITE_WRMSR;
        else if (buf[i] == 0xe7 && buf[i + 1] == v->m->hc_port)
            site = addr + i + 2, kind = SITE_POST_OUT;
        else
            continue;
        bool known = false;
        for (int k = 0; k < v->nsites; k++)
            known |= v->sites[k] == site && v->site_kind[k] == kind;
        if (!known && v->nsites < MAX_SITES) {
            v->site_kind[v->nsites] = kind;
            v->sites[v->nsites++] = site;
            found = true;
        }
    }
    if (found) {
        /* The code hook must be compiled into this block: stop before it
         * runs, hook, drop the translation, restart here. */
        v->reason = R_SITES;
        uc_emu_stop(uc);
    }
}

static int hook_sites(struct emu_vcpu *v)
{
    for (; v->nsites_hooked < v->nsites; v->nsites_hooked++) {
        uint64_t s = v->sites[v->nsites_hooked];
        uc_hook hh;
        void *cb = v->site_kind[v->nsites_hooked] == SITE_WRMSR ? (void *)hook_wrmsr_site
                                                                : (void *)hook_post_out;
        if (uc_hook_add(v->uc, &hh, UC_HOOK_CODE, cb, v, s, s) != UC_ERR_OK)
            return -1;
        uc_ctl_remove_cache(v->uc, s, s + 2);
        v->counters[C_SITES]++;
    }
    return 0;
}

/* ------------------------------------------------------------- blocks */

static bool irq_pending(struct emu_vcpu *v)
{
    for (int i = 0; i < 4; i++)
        if (atomic_load_explicit(&v->irq_bits[i], memory_order_relaxed))
            return true;
    return false;
}

static void hook_block(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct emu_vcpu *v = ud;
    unsigned f = atomic_load_explicit(&v->flags, memory_order_relaxed);
    if (__builtin_expect(f != 0, 0)) {
        if (f & (F_STOP | F_OPS | F_RIP)) {
            v->reason = R_ASYNC;
            v->counters[C_BLOCK_STOPS]++;
            uc_emu_stop(uc);
            return;
        }
        if ((f & F_YIELD) && now_ns() - v->slice_start >= SLICE_NS) {
            cpu_unlock(v); /* let the waiting vCPU run; this engine pauses here */
            cpu_lock(v);
            f = atomic_load_explicit(&v->flags, memory_order_relaxed);
        }
        if (f & F_IRQ) {
            if (addr == v->irq_defer_rip) {
                v->irq_defer_rip = ~0ull; /* one block in the sti shadow */
            } else if (rreg(uc, UC_X86_REG_RFLAGS) & RFLAGS_IF) {
                v->reason = R_ASYNC;
                v->counters[C_BLOCK_STOPS]++;
                uc_emu_stop(uc);
                return;
            }
        }
    }
    if (__builtin_expect(v->scanned[scan_slot(addr)] != addr, 0))
        scan_block(v, uc, addr, size);
}

/* --------------------------------------------------------- run loop */

/* New code may now sit where scanned blocks were (the cache is keyed by
 * virtual address, invalidation is by physical range): scan again. */
static void forget_scans(struct emu_vcpu *v)
{
    memset(v->scanned, 0xff, sizeof(v->scanned));
}

static void apply_op(struct emu_vcpu *v, struct mem_op *op)
{
    switch (op->kind) {
    case 0:
        uc_mem_map_ptr(v->uc, op->gpa, op->size, UC_PROT_ALL, (void *)(uintptr_t)op->host);
        break;
    case 1:
        uc_mem_unmap(v->uc, op->gpa, op->size);
        break;
    case 2:
        uc_ctl_remove_cache(v->uc, op->gpa, op->gpa + op->size);
        forget_scans(v);
        break;
    }
}

static void drain_ops(struct emu_vcpu *v)
{
    pthread_mutex_lock(&v->mu);
    for (int i = 0; i < v->nops; i++)
        apply_op(v, &v->ops[i]);
    if (v->ops_overflow) {
        uc_ctl_flush_tb(v->uc);
        forget_scans(v);
    }
    v->nops = 0;
    v->ops_overflow = 0;
    atomic_fetch_and(&v->flags, ~F_OPS);
    pthread_mutex_unlock(&v->mu);
}

/* Apply now when the vCPU is idle or this is its own thread (inside a
 * callback); otherwise queue for its next block boundary. */
static int mem_op(struct emu_vcpu *v, int kind, uint64_t gpa, uint64_t size, uint64_t host)
{
    struct mem_op op = {kind, gpa, size, host};
    int rc = 0;
    pthread_mutex_lock(&v->mu);
    if (!v->in_run || pthread_equal(v->thread, pthread_self())) {
        if (kind == 0)
            rc = uc_mem_map_ptr(v->uc, gpa, size, UC_PROT_ALL, (void *)(uintptr_t)host);
        else if (kind == 1)
            rc = uc_mem_unmap(v->uc, gpa, size);
        else {
            rc = uc_ctl_remove_cache(v->uc, gpa, gpa + size);
            forget_scans(v);
        }
    } else if (v->nops < MAX_OPS) {
        v->ops[v->nops++] = op;
        atomic_fetch_or(&v->flags, F_OPS);
    } else if (kind == 2) {
        v->ops_overflow = 1;
        atomic_fetch_or(&v->flags, F_OPS);
    } else {
        rc = UC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

int emu_mem_map(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host)
{
    return mem_op(v, 0, gpa, size, host);
}

int emu_mem_unmap(struct emu_vcpu *v, uint64_t gpa, uint64_t size)
{
    return mem_op(v, 1, gpa, size, 0);
}

int emu_invalidate(struct emu_vcpu *v, uint64_t gpa, uint64_t size)
{
    return mem_op(v, 2, gpa, size, 0);
}

static int take_irq(struct emu_vcpu *v)
{
    for (int i = 3; i >= 0; i--) {
        uint64_t b = atomic_load(&v->irq_bits[i]);
        if (b) {
            int bit = 63 - __builtin_clzll(b);
            atomic_fetch_and(&v->irq_bits[i], ~(1ull << bit));
            return i * 64 + bit;
        }
    }
    return -1;
}

static void refresh_irq_flag(struct emu_vcpu *v)
{
    if (!irq_pending(v))
        atomic_fetch_and(&v->flags, ~F_IRQ);
}

/* Deliver the highest pending vector if the guest accepts interrupts now.
 * Returns -1 on a triple fault / error. */
static int maybe_deliver_irq(struct emu_vcpu *v, uint64_t rip)
{
    if (!irq_pending(v) || !(rreg(v->uc, UC_X86_REG_RFLAGS) & RFLAGS_IF))
        return 0;
    if (irq_inhibited(v)) {
        v->irq_defer_rip = rip;
        return 0;
    }
    int vec = take_irq(v);
    refresh_irq_flag(v);
    if (vec < 0)
        return 0;
    v->counters[C_IRQS]++;
    int r = raise_event(v, vec, false, 0, false);
    ctx_clear_in_flight(v);
    return r;
}

static bool stopped_at_hlt(struct emu_vcpu *v)
{
    uint64_t rip = rreg(v->uc, UC_X86_REG_RIP);
    uint8_t b = 0;
    return rip && uc_vmem_read(v->uc, rip - 1, UC_PROT_EXEC, &b, 1) == UC_ERR_OK && b == 0xf4;
}

int emu_run(struct emu_vcpu *v)
{
    pthread_mutex_lock(&v->mu);
    v->in_run = 1;
    v->thread = pthread_self();
    pthread_mutex_unlock(&v->mu);
    int result;
    v->err[0] = 0;
    cpu_lock(v);
    for (;;) {
        if (atomic_load(&v->flags) & F_OPS)
            drain_ops(v);
        if (atomic_load(&v->flags) & F_RIP) {
            atomic_fetch_and(&v->flags, ~F_RIP);
            wreg(v->uc, UC_X86_REG_RIP, v->pending_rip);
        }
        if (atomic_load(&v->flags) & F_STOP) {
            atomic_fetch_and(&v->flags, ~F_STOP);
            result = EMU_RUN_STOPPED;
            break;
        }
        if (hook_sites(v) != 0) {
            set_err(v, "cannot hook wrmsr site");
            result = EMU_RUN_ERROR;
            break;
        }
        uint64_t rip = rreg(v->uc, UC_X86_REG_RIP);
        v->reason = R_NONE;
        if (maybe_deliver_irq(v, rip) != 0) {
            result = v->reason == R_TRIPLE ? EMU_RUN_TRIPLE_FAULT : EMU_RUN_ERROR;
            break;
        }
        rip = rreg(v->uc, UC_X86_REG_RIP);
        uc_err e = uc_emu_start(v->uc, rip, NEVER_PC, 0, 0);
        /* Leaving emu_start (even by a clean stop from the block hook) can
         * leave QEMU's exception-in-flight marker set (measured: 13), which
         * would turn the guest's next fault into #DF: nothing is in flight
         * at a stop, so clear it. */
        ctx_clear_in_flight(v);
        if (v->reason == R_TRIPLE) {
            result = EMU_RUN_TRIPLE_FAULT;
            break;
        }
        if (v->reason == R_ERROR) {
            result = EMU_RUN_ERROR;
            break;
        }
        if (e != UC_ERR_OK) {
            set_err(v, "unicorn: %s at rip %#llx", uc_strerror(e),
                    (unsigned long long)rreg(v->uc, UC_X86_REG_RIP));
            result = EMU_RUN_ERROR;
            break;
        }
        if (v->reason == R_SYSCALL && do_syscall(v) != 0) {
            result = v->reason == R_TRIPLE ? EMU_RUN_TRIPLE_FAULT : EMU_RUN_ERROR;
            break;
        }
        if (v->reason != R_NONE)
            continue; /* block-boundary stop: loop top handles it */
        if (!stopped_at_hlt(v)) {
            set_err(v, "emulation ended at rip %#llx (not hlt)",
                    (unsigned long long)rreg(v->uc, UC_X86_REG_RIP));
            result = EMU_RUN_ERROR;
            break;
        }
        /* hlt: wait in the core unless an interrupt is already deliverable. */
        if (!(irq_pending(v) && (rreg(v->uc, UC_X86_REG_RFLAGS) & RFLAGS_IF))) {
            v->exit.kind = EMU_EXIT_HALT;
            if (call_python(v, NULL) != 0) {
                result = EMU_RUN_ERROR;
                break;
            }
        }
    }
    cpu_unlock(v);
    pthread_mutex_lock(&v->mu);
    v->in_run = 0;
    pthread_mutex_unlock(&v->mu);
    return result;
}

void emu_request_stop(struct emu_vcpu *v) { atomic_fetch_or(&v->flags, F_STOP); }

void emu_request_interrupt(struct emu_vcpu *v, int vector)
{
    if (vector < 0 || vector > 255)
        return;
    atomic_fetch_or(&v->irq_bits[vector / 64], 1ull << (vector % 64));
    atomic_fetch_or(&v->flags, F_IRQ);
}

/* -------------------------------------------------------- registers */

static const int gregs[18] = {
    UC_X86_REG_RAX, UC_X86_REG_RBX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RSI,
    UC_X86_REG_RDI, UC_X86_REG_RSP, UC_X86_REG_RBP, UC_X86_REG_R8,  UC_X86_REG_R9,
    UC_X86_REG_R10, UC_X86_REG_R11, UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14,
    UC_X86_REG_R15, UC_X86_REG_RIP, UC_X86_REG_RFLAGS};

int emu_get_regs(struct emu_vcpu *v, uint64_t *regs)
{
    void *p[18];
    for (int i = 0; i < 18; i++)
        p[i] = &regs[i];
    return uc_reg_read_batch(v->uc, (int *)gregs, p, 18);
}

/* Inside a callback from a hook that runs mid-block (`out`, wrmsr), a RIP
 * write derails unicorn: the new RIP is kept and applied at the stop that
 * follows right after the instruction. */
int emu_set_regs(struct emu_vcpu *v, const uint64_t *regs)
{
    void *p[18];
    for (int i = 0; i < 18; i++)
        p[i] = (void *)&regs[i];
    if (v->in_py_hook && regs[16] != rreg(v->uc, UC_X86_REG_RIP)) {
        v->pending_rip = regs[16];
        atomic_fetch_or(&v->flags, F_RIP);
        return uc_reg_write_batch(v->uc, (int *)gregs, p, 16) ||
               uc_reg_write_batch(v->uc, (int *)gregs + 17, p + 17, 1);
    }
    return uc_reg_write_batch(v->uc, (int *)gregs, p, 18);
}

int emu_get_sregs(struct emu_vcpu *v, uint64_t *s)
{
    s[0] = rreg(v->uc, UC_X86_REG_CR0);
    s[1] = rreg(v->uc, UC_X86_REG_CR2);
    s[2] = rreg(v->uc, UC_X86_REG_CR3);
    s[3] = rreg(v->uc, UC_X86_REG_CR4);
    s[4] = rd_msr(v->uc, MSR_EFER);
    s[5] = rreg(v->uc, UC_X86_REG_CS) & 3;
    return 0;
}

const char *emu_error(struct emu_vcpu *v) { return v->err; }

struct emu_exit *emu_exit_of(struct emu_vcpu *v) { return &v->exit; }

void emu_set_c_hypercalls(struct emu_vcpu *v, int on) { v->c_hypercalls = on; }

uint64_t emu_counter(struct emu_vcpu *v, int which)
{
    return which >= 0 && which < 8 ? v->counters[which] : 0;
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
static void build_priv_page(uint8_t *pg)
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

int emu_set_boot(struct emu_vcpu *v, int mode, uint64_t rip, const uint64_t *regs,
                 uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer)
{
    uc_engine *uc = v->uc;
    int rc = emu_set_regs(v, regs);
    if (rc)
        return rc;
    if (mode == EMU_MODE_FLAT32) {
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

/* ------------------------------------------------------ lifecycle */

struct emu_machine *emu_machine_new(const struct emu_cpuid_leaf *leaves, int n,
                                    uint32_t hypercall_port)
{
    struct emu_machine *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->leaves = calloc(n ? n : 1, sizeof(*leaves));
    memcpy(m->leaves, leaves, n * sizeof(*leaves));
    m->nleaves = n;
    m->hc_port = hypercall_port;
    pthread_mutex_init(&m->big, NULL);
    pthread_cond_init(&m->turn, NULL);
    return m;
}

void emu_machine_free(struct emu_machine *m)
{
    if (!m)
        return;
    free(m->leaves);
    pthread_mutex_destroy(&m->big);
    pthread_cond_destroy(&m->turn);
    free(m);
}

static int add_hooks(struct emu_vcpu *v)
{
    uc_hook h;
    uc_engine *uc = v->uc;
    if (uc_hook_add(uc, &h, UC_HOOK_INSN, hook_out, v, 1, 0, UC_X86_INS_OUT) ||
        uc_hook_add(uc, &h, UC_HOOK_INSN, hook_in, v, 1, 0, UC_X86_INS_IN) ||
        uc_hook_add(uc, &h, UC_HOOK_INSN, hook_cpuid, v, 1, 0, UC_X86_INS_CPUID) ||
        uc_hook_add(uc, &h, UC_HOOK_INSN, hook_syscall, v, 1, 0, UC_X86_INS_SYSCALL) ||
        uc_hook_add(uc, &h, UC_HOOK_INSN_INVALID, hook_invalid, v, 1, 0) ||
        uc_hook_add(uc, &h, UC_HOOK_INTR, hook_intr, v, 1, 0) ||
        uc_hook_add(uc, &h, UC_HOOK_BLOCK, hook_block, v, 1, 0))
        return -1;
    return 0;
}

struct emu_vcpu *emu_vcpu_new(struct emu_machine *m, int id, uint64_t token, char *err,
                              size_t errlen)
{
    if (!cal.done) {
        snprintf(err, errlen, "emu_calibrate() has not succeeded");
        return NULL;
    }
    struct emu_vcpu *v = calloc(1, sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    v->m = m;
    v->id = id;
    v->token = token;
    v->irq_defer_rip = ~0ull;
    v->wrmsr_skip = ~0ull;
    memset(v->scanned, 0xff, sizeof(v->scanned));
    pthread_mutex_init(&v->mu, NULL);
    if (posix_memalign((void **)&v->priv, 4096, 4096) != 0) {
        snprintf(err, errlen, "out of memory");
        free(v);
        return NULL;
    }
    build_priv_page(v->priv);
    uc_err e = uc_open(UC_ARCH_X86, UC_MODE_64, &v->uc);
    /* Unicorn reserves 1 GiB of translation buffer per engine by default;
     * one vCPU needs far less (when full, QEMU flushes and retranslates). */
    if (e == UC_ERR_OK)
        e = uc_ctl_set_tcg_buffer_size(v->uc, EMU_TCG_BUFFER);
    if (e == UC_ERR_OK)
        e = uc_context_alloc(v->uc, &v->ctx);
    if (e == UC_ERR_OK)
        e = uc_mem_map_ptr(v->uc, EMU_PRIV_GPA, 4096, UC_PROT_READ | UC_PROT_EXEC, v->priv);
    if (e == UC_ERR_OK && add_hooks(v) != 0)
        e = UC_ERR_HOOK;
    if (e != UC_ERR_OK) {
        snprintf(err, errlen, "unicorn: %s", uc_strerror(e));
        emu_vcpu_free(v);
        return NULL;
    }
    return v;
}

void emu_vcpu_free(struct emu_vcpu *v)
{
    if (!v)
        return;
    if (v->ctx)
        uc_context_free(v->ctx);
    if (v->uc)
        uc_close(v->uc);
    pthread_mutex_destroy(&v->mu);
    free(v->priv);
    free(v);
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

/* ------------------------------------------------------ benchmarks */

static void empty_block_hook(uc_engine *uc, uint64_t addr, uint32_t size, void *ud) {}

/* The reference for the hook overhead: the same loop (`dec rcx; jnz`) in a
 * bare engine with no hook at all, or with only an empty C block hook.
 * Returns ns per iteration. */
double emu_bench_bare_loop(uint64_t iterations, int empty_block_hook_on)
{
    uc_engine *uc;
    uc_hook h;
    if (uc_open(UC_ARCH_X86, UC_MODE_64, &uc) != UC_ERR_OK)
        return -1;
    if (empty_block_hook_on)
        uc_hook_add(uc, &h, UC_HOOK_BLOCK, empty_block_hook, NULL, 1, 0);
    uc_mem_map(uc, 0, 0x10000, UC_PROT_ALL);
    static const uint8_t code[] = {0x48, 0xff, 0xc9, 0x75, 0xfb, 0xf4}; /* dec rcx; jnz; hlt */
    uc_mem_write(uc, 0x1000, code, sizeof(code));
    wreg(uc, UC_X86_REG_RCX, iterations);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    uc_emu_start(uc, 0x1000, NEVER_PC, 0, 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    uc_close(uc);
    return ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / (double)iterations;
}
