/* Internals shared by emu.c (engine, hooks, run loop) and emu_x86.c (the
 * x86 the engine performs itself). Not part of the cffi interface. */
#ifndef XEN_CORE_EMU_PRIV_H
#define XEN_CORE_EMU_PRIV_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <unicorn/unicorn.h>

#include "emu.h"
#include "evtchn_fast.h"

#define EMU_INTERNAL __attribute__((visibility("hidden")))


#define F_STOP 1u
#define F_IRQ 2u
#define F_OPS 4u
#define F_YIELD 8u /* another vCPU of this machine waits for the CPU lock */
#define F_RIP 16u  /* a handler moved RIP: applied at the next stop */
#define F_KICK 32u /* the core woke this vCPU (timer, event): ends a C hlt wait */
#define F_EVQ 64u  /* events posted while the CPU lock was busy (evf_drain) */
#define SLICE_NS 2000000 /* run at least this long before handing over */

#define SCAN_SLOTS 131072 /* direct-mapped cache of scanned blocks (1 MiB) */
#define MAX_SITES 256
#define MAX_OPS 64
#define EMU_TCG_BUFFER (128u << 20)
#define NEVER_PC 0xfff0000000000000ULL /* non-canonical: `until` never hit */

#define HF_INHIBIT_IRQ (1u << 3) /* QEMU hflags: interrupt shadow (sti, mov ss) */
#define RFLAGS_IF (1ull << 9)
#define EFER_LMA (1ull << 10)
#define MSR_EFER 0xC0000080u
#define HYPERVISOR_event_channel_op 32 /* Xen's __HYPERVISOR_event_channel_op */
#define MSR_ARCH_CAPABILITIES 0x10au
#define CPUID7_EDX_ARCH_CAPS (1u << 29)

enum { C_HYPERCALLS, C_SCANS, C_SITES, C_EXCEPTIONS, C_IRQS, C_BLOCK_STOPS,
       C_ASYNC_IRQ_STOPS, C_FAST_HYPERCALLS, C_HALT_POLL_HITS, C_HALT_POLL_MISSES,
       C_PYTHON_EXITS, C_STATE_IN_PLACE, C_POSTED_DRAINS, C_NCOUNTERS };

enum stop_reason { R_NONE, R_ASYNC, R_TRIPLE, R_ERROR, R_SITES, R_SYSCALL, R_RDMSR };

/* Offsets inside a uc_context, found by emu_calibrate() (emu_x86.c). */
struct emu_cal {
    int done;
    long error_code, is_int, old_exception, hflags, seg_cs;
    /* Where the live CPU state is (env_find): a uc_context is a header and
     * then a plain copy of it (uc_context_save is one memcpy for x86), so
     * with its address the fields above are read and written in place
     * instead of through a 5.6 KB save (and restore). env_found 0: use
     * the snapshots. */
    int env_found;
    long ctx_data;    /* offset of the CPU state copy in a uc_context */
    long uc_cpu;      /* offset in the engine of its CPU object pointer */
    long cpu_env;     /* offset in that object of the CPU state pointer */
    uint32_t leaf1[4]; /* unicorn's CPUID leaf 1 (eax ebx ecx edx) */
    uint32_t leaf7[4]; /* and its leaf 7 subleaf 0 */
};
EMU_INTERNAL extern struct emu_cal cal;

struct mem_op {
    int kind; /* 0 map, 1 unmap, 2 invalidate, 3 map read-only */
    uint64_t gpa, size, host;
};

/* The engine's RAM mappings as host pointers (emu.c keeps it in step with
 * uc_mem_map_ptr / uc_mem_unmap, on the vCPU's thread or while it is not
 * running): the engine's own physical reads (page-table walks, IDT, GDT,
 * TSS) go straight to memory instead of through uc_mem_read's mapping
 * search. What is not here (MMIO, a table that could not grow) still goes
 * to unicorn. */
struct emu_region {
    uint64_t gpa, size;
    uint8_t *host;
    int ro;
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
    struct evf_table *evtchn; /* sends answered in C (evtchn_fast.c), or NULL */
    _Atomic int outside; /* vCPUs idle, or in Python where it may wait for an event */
    _Atomic int host_waiting; /* threads waiting in emu_machine_pause: yield at once */
    uint64_t arch_caps; /* MSR_ARCH_CAPABILITIES; 0: not offered */
    struct emu_machine *pauser_held; /* what the pausing thread held before */
};

struct emu_vcpu {
    uc_engine *uc;
    struct emu_machine *m;
    uint8_t *priv; /* this vCPU's EMU_PRIV_GPA page, host side */
    uint8_t *lapic; /* this vCPU's EMU_LAPIC_GPA page */
    int id;
    uint64_t token; /* names the Python EmuVcpu (cheaper than a cffi handle) */
    uc_context *ctx;
    char *env; /* unicorn's live CPU state (cal.env_found), or NULL */
    _Atomic unsigned flags;
    _Atomic int halting; /* in fast_halt's wait: a wake must signal */
    _Atomic uint64_t irq_bits[4];
    uint64_t irq_defer_rip; /* interrupt shadow: let one block run first */
    int reason;
    int c_hypercalls; /* benchmark: answer hypercalls in C, no Python */
    int async_irq; /* deliver interrupts at block boundaries while busy */
    int io_in_ones; /* answer every `in` with all ones, without Python */
    int irq_point; /* async_irq off: this stop is at a hypercall or hlt */
    bool hlt_stop; /* the engine stopped at a hlt (no interrupt shadow) */
    uint64_t slice_start;
    uint64_t syscall_rip;
    uint64_t pending_rip;
    uint64_t fault_va; /* where the last sys_access() failed */
    int in_py_hook; /* inside a Python callback made from a unicorn hook */
    int in_run;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t wake; /* with mu: a hlt waiting in C (fast_halt) */
    uint64_t halt_wait_ns; /* how long hlt waits in C before Python's halt; 0: never */
    uint64_t halt_poll_ns, halt_poll_max_ns; /* halt polling: the window now, its cap */
    struct mem_op ops[MAX_OPS];
    int nops, ops_overflow;
    struct emu_region *regions;
    int nregions, cap_regions, last_region;
    uint64_t scanned[SCAN_SLOTS];
    uint64_t sites[MAX_SITES];
    uint8_t site_kind[MAX_SITES];
    int nsites, nsites_hooked;
    uint64_t wrmsr_skip; /* a stop came before this wrmsr ran: deliver once */
    uint64_t rdmsr_rip; /* R_RDMSR: the rdmsr the run loop performs */
    uint64_t counters[C_NCOUNTERS];
    struct emu_exit exit;
    char err[256];
};


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

/* emu_x86.c: the x86 the engine does itself (event delivery, syscall,
 * boot trampoline, calibration). */
EMU_INTERNAL void ctx_peek(struct emu_vcpu *v, int *err_code, int *is_int);
EMU_INTERNAL void ctx_clear_in_flight(struct emu_vcpu *v);
EMU_INTERNAL bool irq_inhibited(struct emu_vcpu *v);
EMU_INTERNAL char *env_find(uc_engine *uc, uc_context *ctx);
EMU_INTERNAL bool vector_has_error_code(int vec);
EMU_INTERNAL int raise_event(struct emu_vcpu *v, int vec, bool has_err, uint64_t err, bool soft);
EMU_INTERNAL int do_syscall(struct emu_vcpu *v);
EMU_INTERNAL void build_priv_page(uint8_t *pg);
EMU_INTERNAL void build_lapic_page(uint8_t *pg, int vcpu_id);
/* emu_lapic.c: the LAPIC page as MMIO, ICR writes reported to the core */
EMU_INTERNAL int lapic_map(struct emu_vcpu *v);
/* emu.c */
EMU_INTERNAL void forget_scans(struct emu_vcpu *v);
EMU_INTERNAL uint8_t *region_host(struct emu_vcpu *v, uint64_t gpa, size_t len, bool write);

/* region_host for a read, the last region hit tried inline first. */
static inline uint8_t *region_host_read(struct emu_vcpu *v, uint64_t gpa, size_t len)
{
    if (v->nregions) {
        struct emu_region *r = &v->regions[v->last_region];
        uint64_t off = gpa - r->gpa;
        if (off < r->size && len <= r->size - off)
            return r->host + off;
    }
    return region_host(v, gpa, len, false);
}
EMU_INTERNAL int emu_call_python(struct emu_vcpu *v, uc_engine *uc);

#endif
