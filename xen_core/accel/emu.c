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
 *   and the CS/SS caches sit at offsets found at start-up by
 *   emu_calibrate() (probe runs diffing snapshots). A snapshot is a byte
 *   copy of the live CPU state, which calibration also locates (env_find):
 *   the fields are then read and written in place, not through a 5.6 KB
 *   copy each time (PYXEN_EMU_CPU_STATE=snapshot keeps the copies).
 * - The engine's own physical reads (page walks, IDT, GDT, TSS) use host
 *   pointers from a region table kept beside the engine's mappings
 *   (uc_mem_read searches the mappings on every call). Its writes (the
 *   interrupt frame) stay uc_mem_write: that invalidates translated code
 *   on the page written, a host store would not, and nothing stops a
 *   guest from keeping code on its stack page. One write per frame.
 * - No wrmsr or rdmsr hook: a block hook scans each new block for `0f 30`
 *   and `0f 32` and puts a code hook on each site (it fires only if an
 *   instruction starts there). Unicorn reads 0 from MSRs it does not know,
 *   MSR_ARCH_CAPABILITIES among them, so the engine answers that one.
 * - The block hook costs a helper call and an exit check per executed
 *   block (Linux boots through ~230M blocks: `rep stos` runs one per
 *   element). Dropping it and stopping the engine with uc_emu_stop from
 *   another thread was tried: Linux then crashed (corrupt registers) once
 *   interrupts were delivered at those stops (3 of 3 boots), though plain
 *   stop-and-resume was clean in synthetic tests and with asynchronous
 *   interrupts off.
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
 *   emu_set_async_irq(v, 0) turns the interrupt half off: a pending vector
 *   then waits for a hypercall or hlt, whatever else stops the engine (the
 *   check that a guest behaves the same either way; C_ASYNC_IRQ_STOPS
 *   counts the block-hook deliveries).
 */
#include "emu_priv.h"

/* Provided by cffi (extern "Python"). */
static int emu_py_exit(uint64_t token);

/* ------------------------------------------------------------ CPU lock */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000ull + t.tv_nsec;
}

/* The machine whose CPU lock this thread holds (a vCPU in guest code or a
 * hook, or a host thread in emu_machine_pause), so a delivery made from
 * inside a hook does not wait for itself. */
static __thread struct emu_machine *held_here;

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
    held_here = m;
    pthread_mutex_unlock(&m->big);
}

static void cpu_unlock(struct emu_vcpu *v)
{
    struct emu_machine *m = v->m;
    pthread_mutex_lock(&m->big);
    m->holder = NULL;
    m->serving++;
    atomic_fetch_and(&v->flags, ~F_YIELD);
    held_here = NULL;
    pthread_cond_broadcast(&m->turn);
    pthread_mutex_unlock(&m->big);
}

/* Another thread's read-modify-write of memory the guest also changes with
 * `lock`-prefixed instructions (event-channel bitmaps, evtchn_pending_sel,
 * the mask): unicorn performs those as load + store (no CF_PARALLEL), so
 * a bit a host atomic sets between the guest's load and store is lost
 * (measured: Linux's `lock btr` of one port wiping another port's fresh
 * pending bit, its timer VIRQ never handled again). Such a writer takes
 * the CPU lock like a vCPU: no guest instruction is then half done. The
 * holder yields at its next block boundary. wait=0: only if no vCPU holds
 * or waits for it. Returns 1 taken, 2 already held by this thread (do
 * not resume), 0 busy (wait=0). */
int emu_machine_pause(struct emu_machine *m, int wait)
{
    if (held_here == m)
        return 2;
    pthread_mutex_lock(&m->big);
    if (!wait && m->next_ticket != m->serving) {
        pthread_mutex_unlock(&m->big);
        return 0;
    }
    uint64_t ticket = m->next_ticket++;
    if (ticket != m->serving) {
        m->nwaiting++;
        atomic_fetch_add(&m->host_waiting, 1);
        if (m->holder)
            atomic_fetch_or(&m->holder->flags, F_YIELD);
        while (ticket != m->serving)
            pthread_cond_wait(&m->turn, &m->big);
        atomic_fetch_sub(&m->host_waiting, 1);
        m->nwaiting--;
    }
    m->holder = NULL;
    m->pauser_held = held_here; /* a vCPU of another machine delivering here */
    held_here = m;
    pthread_mutex_unlock(&m->big);
    return 1;
}

void emu_machine_resume(struct emu_machine *m)
{
    pthread_mutex_lock(&m->big);
    m->holder = NULL;
    m->serving++;
    held_here = m->pauser_held;
    pthread_cond_broadcast(&m->turn);
    pthread_mutex_unlock(&m->big);
}

/* ---------------------------------------------------------------- Python */

static bool irq_pending(struct emu_vcpu *v);

/* Whether Python may block this vCPU until an event comes (hlt, the
 * scheduler hypercalls, ...): such a vCPU counts as outside, and a
 * delivery made in C then kicks it through Python (evtchn_fast.c). An
 * event-channel operation (a send that C could not answer), I/O, an MSR
 * write or another vCPU's kick return without waiting for an event;
 * the interrupt a delivery requests meanwhile is taken when the vCPU is
 * back in C. */
static bool may_wait_for_event(const struct emu_vcpu *v)
{
    return v->exit.kind == EMU_EXIT_HALT ||
           (v->exit.kind == EMU_EXIT_HYPERCALL && v->exit.nr != HYPERVISOR_event_channel_op);
}

static int call_python(struct emu_vcpu *v, uc_engine *uc)
{
    cpu_unlock(v);
    v->in_py_hook = uc != NULL;
    v->counters[C_PYTHON_EXITS]++;
    bool waits = may_wait_for_event(v);
    if (waits)
        atomic_fetch_add(&v->m->outside, 1);
    /* An event posted before `outside` rose (a poster then saw every vCPU
     * in C and kicked no one): not a halt, the run loop applies it. */
    int rc = v->exit.kind == EMU_EXIT_HALT && (atomic_load(&v->flags) & F_EVQ)
                 ? 0 : emu_py_exit(v->token);
    if (waits)
        atomic_fetch_sub(&v->m->outside, 1);
    v->in_py_hook = 0;
    cpu_lock(v);
    /* The handler may have called into unicorn (mapping, unmapping or
     * invalidating memory): unicorn resolves the range as a virtual
     * address, and a miss there leaves QEMU's exception-in-flight marker
     * at #PF (measured: Linux's memory_op), turning the guest's next #PF
     * into #DF. Nothing is in flight at a hook: clear it. */
    if (uc)
        ctx_clear_in_flight(v);
    if (rc != 0) {
        set_err(v, "exit handler raised (kind %d)", v->exit.kind);
        v->reason = R_ERROR;
        if (uc)
            uc_emu_stop(uc);
        return -1;
    }
    if (uc && (atomic_load_explicit(&v->flags, memory_order_relaxed) & (F_STOP | F_OPS | F_RIP))) {
        v->reason = R_ASYNC; /* the handler asked to stop: end of this block */
        v->irq_point = v->exit.kind == EMU_EXIT_HYPERCALL;
        uc_emu_stop(uc);
    } else if (uc && !v->async_irq && v->exit.kind == EMU_EXIT_HYPERCALL && irq_pending(v) &&
               (rreg(uc, UC_X86_REG_RFLAGS) & RFLAGS_IF)) {
        v->reason = R_ASYNC; /* no block-hook delivery: the hypercall is the point */
        v->irq_point = 1;
        uc_emu_stop(uc);
    }
    return 0;
}

/* For hooks outside this file (emu_lapic.c). */
int emu_call_python(struct emu_vcpu *v, uc_engine *uc) { return call_python(v, uc); }

static const int hc_regs[7] = {UC_X86_REG_RAX, UC_X86_REG_RDI, UC_X86_REG_RSI,
                               UC_X86_REG_RDX, UC_X86_REG_R10, UC_X86_REG_R8,
                               UC_X86_REG_R9};

/* Hot hypercalls answered here when the Python core has cached what they
 * need (evtchn_fast.h): EVTCHNOP_send to a port whose peer is a dom0
 * evtchn handle. Anything else, or an argument the guest's page tables do
 * not map, is Python's. True when answered. */
static bool fast_hypercall(struct emu_vcpu *v, uc_engine *uc, const uint64_t *vals)
{
    struct evf_table *t = v->m->evtchn;
    struct evf_serve kick;
    uint32_t port;
    int rc;
    if (!t || (uint32_t)vals[0] != t->hypercall || (uint32_t)vals[1] != t->send_op ||
        uc_vmem_read(uc, vals[2], UC_PROT_READ, &port, sizeof(port)) != UC_ERR_OK ||
        (rc = evf_send(t, port, &kick)) < 0)
        return false;
    v->counters[C_FAST_HYPERCALLS]++;
    wreg(uc, UC_X86_REG_RAX, 0);
    if (rc == 1) {
        /* Delivered; a vCPU of the receiver may wait in Python: it kicks. */
        v->exit.kind = EMU_EXIT_EVTCHN_KICK;
        v->exit.args[0] = kick.kick_domid;
        v->exit.args[1] = kick.kick_port;
        v->exit.args[2] = kick.kick_vcpu;
        v->exit.args[3] = kick.kick_flags;
        call_python(v, uc);
        return true;
    }
    if (!v->async_irq && irq_pending(v) && (rreg(uc, UC_X86_REG_RFLAGS) & RFLAGS_IF)) {
        v->reason = R_ASYNC; /* as after a Python hypercall: the delivery point */
        uc_emu_stop(uc);
    }
    return true;
}

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
    if (fast_hypercall(v, uc, vals))
        return;
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
    if (v->io_in_ones) /* the handler answers all ones to every port */
        return size >= 4 ? 0xffffffffu : (1u << (8 * size)) - 1;
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
    if (leaf == 1) {
        /* Xen gives an HVM/PVH vCPU the initial APIC ID vcpu_id * 2
         * (guest_cpuid); unicorn's single CPU says 0 for all. OSXSAVE
         * mirrors CR4.OSXSAVE. */
        uint32_t ecx = cal.leaf1[2] & ~(1u << 27);
        if (rreg(uc, UC_X86_REG_CR4) & (1u << 18))
            ecx |= 1u << 27;
        wreg(uc, UC_X86_REG_RAX, cal.leaf1[0]);
        wreg(uc, UC_X86_REG_RBX, (cal.leaf1[1] & 0x00ffffffu) | ((uint32_t)(v->id * 2) << 24));
        wreg(uc, UC_X86_REG_RCX, ecx);
        wreg(uc, UC_X86_REG_RDX, cal.leaf1[3]);
        return 1;
    }
    if (leaf == 7 && (uint32_t)rreg(uc, UC_X86_REG_RCX) == 0 && v->m->arch_caps) {
        wreg(uc, UC_X86_REG_RAX, cal.leaf7[0]);
        wreg(uc, UC_X86_REG_RBX, cal.leaf7[1]);
        wreg(uc, UC_X86_REG_RCX, cal.leaf7[2]);
        wreg(uc, UC_X86_REG_RDX, cal.leaf7[3] | CPUID7_EDX_ARCH_CAPS);
        return 1;
    }
    return 0;
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

/* rdmsr of MSR_ARCH_CAPABILITIES: stop before unicorn reads its 0; the run
 * loop sets EDX:EAX and moves past the instruction (no RIP write here, mid
 * block). Other MSRs are unicorn's. */
static void hook_rdmsr_site(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct emu_vcpu *v = ud;
    uint8_t b[2];
    if (!v->m->arch_caps || size != 2 ||
        (uint32_t)rreg(uc, UC_X86_REG_RCX) != MSR_ARCH_CAPABILITIES ||
        uc_vmem_read(uc, addr, UC_PROT_EXEC, b, 2) || b[0] != 0x0f || b[1] != 0x32)
        return;
    v->rdmsr_rip = addr;
    v->reason = R_RDMSR;
    uc_emu_stop(uc);
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

enum { SITE_WRMSR, SITE_POST_OUT, SITE_RDMSR };

/* By address, a slot per byte: the blocks of a hot loop share a few cache
 * lines of the table (a hash spreading them over the table made this
 * lookup a cache miss per executed block: ~7% of a Linux boot). Not four
 * bytes a slot: blocks that start a byte apart (`sti` ends a block, so
 * `sti; hlt` starts one at the hlt, and the next at the byte after it)
 * then evicted each other, a scan each time (5 per event round trip). */
static inline unsigned scan_slot(uint64_t a) { return a & (SCAN_SLOTS - 1); }

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
        else if (buf[i] == 0x0f && buf[i + 1] == 0x32)
            site = addr + i, kind = SITE_RDMSR;
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
        int kind = v->site_kind[v->nsites_hooked];
        void *cb = kind == SITE_WRMSR ? (void *)hook_wrmsr_site
                   : kind == SITE_RDMSR ? (void *)hook_rdmsr_site : (void *)hook_post_out;
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
        if (atomic_load(&v->irq_bits[i]))
            return true;
    return false;
}

/* A vCPU waiting in fast_halt() wakes on any of these (set first, then
 * signalled under v->mu if it waits, so the waiter cannot miss one: see
 * wake_vcpu). */
#define WAKE_FLAGS (F_STOP | F_IRQ | F_OPS | F_RIP | F_KICK | F_EVQ)

static void wake_vcpu(struct emu_vcpu *v)
{
    /* The caller set its flag (seq_cst) before this load; a waiter sets
     * `halting` (seq_cst) before it looks at the flags. So either the
     * waiter sees the flag, or this sees `halting` and signals under mu.
     * A vCPU that is not waiting costs no lock and no futex call. */
    if (!atomic_load(&v->halting))
        return;
    pthread_mutex_lock(&v->mu);
    pthread_cond_signal(&v->wake);
    pthread_mutex_unlock(&v->mu);
}

/* What the block hook acts on (F_KICK, left set by a kick that found the
 * vCPU running, only ends a C hlt wait). */
#define BLOCK_FLAGS (F_STOP | F_OPS | F_RIP | F_YIELD | F_IRQ | F_EVQ)

/* Events another thread posted while this machine's CPU lock was busy
 * (evtchn_fast.c deliver_locked), applied here holding it: between two
 * instructions, so no guest read-modify-write of the bitmaps is half done.
 * `uc`: from the block hook. */
static int drain_events(struct emu_vcpu *v, uc_engine *uc)
{
    atomic_fetch_and(&v->flags, ~F_EVQ);
    v->counters[C_POSTED_DRAINS]++;
    struct evf_table *t = v->m->evtchn;
    struct evf_serve s;
    while (t && evf_drain(t, v, v->id, &s)) {
        v->exit.kind = EMU_EXIT_EVTCHN_KICK;
        v->exit.args[0] = s.kick_domid;
        v->exit.args[1] = s.kick_port;
        v->exit.args[2] = s.kick_vcpu;
        v->exit.args[3] = s.kick_flags;
        if (call_python(v, uc) != 0)
            return -1;
    }
    return 0;
}

static void __attribute__((noinline))
block_slow(uc_engine *uc, uint64_t addr, uint32_t size, struct emu_vcpu *v)
{
    unsigned f = atomic_load_explicit(&v->flags, memory_order_relaxed) & BLOCK_FLAGS;
    if (f & F_EVQ) {
        if (drain_events(v, uc) != 0)
            return;
        f = atomic_load_explicit(&v->flags, memory_order_relaxed) & BLOCK_FLAGS;
    }
    if (f != 0) {
        if (f & (F_STOP | F_OPS | F_RIP)) {
            v->reason = R_ASYNC;
            v->counters[C_BLOCK_STOPS]++;
            uc_emu_stop(uc);
            return;
        }
        if ((f & F_YIELD) && (atomic_load_explicit(&v->m->host_waiting, memory_order_relaxed) ||
                              now_ns() - v->slice_start >= SLICE_NS)) {
            cpu_unlock(v); /* let the waiting vCPU run; this engine pauses here */
            cpu_lock(v);
            f = atomic_load_explicit(&v->flags, memory_order_relaxed);
        }
        if ((f & F_IRQ) && v->async_irq) {
            if (addr == v->irq_defer_rip) {
                v->irq_defer_rip = ~0ull; /* one block in the sti shadow */
            } else if (rreg(uc, UC_X86_REG_RFLAGS) & RFLAGS_IF) {
                v->reason = R_ASYNC;
                v->counters[C_BLOCK_STOPS]++;
                v->counters[C_ASYNC_IRQ_STOPS]++;
                uc_emu_stop(uc);
                return;
            }
        }
    }
    if (v->scanned[scan_slot(addr)] != addr)
        scan_block(v, uc, addr, size);
}

/* Runs before every executed block: the common case (nothing pending, the
 * block already scanned) stays a leaf. */
static void hook_block(uc_engine *uc, uint64_t addr, uint32_t size, void *ud)
{
    struct emu_vcpu *v = ud;
    if (__builtin_expect((atomic_load_explicit(&v->flags, memory_order_relaxed) & BLOCK_FLAGS) ||
                         v->scanned[scan_slot(addr)] != addr, 0))
        block_slow(uc, addr, size, v);
}

/* --------------------------------------------------------- run loop */

/* New code may now sit where scanned blocks were (the cache is keyed by
 * virtual address, invalidation is by physical range): scan again. */
void forget_scans(struct emu_vcpu *v)
{
    memset(v->scanned, 0xff, sizeof(v->scanned));
}

/* The region table (emu_priv.h) follows each mapping change the engine
 * accepted. An unmap drops every region it touches (unicorn may split
 * one; the rest then goes through unicorn, still correct). */
static void region_add(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host, int ro)
{
    if (v->nregions == v->cap_regions) {
        int cap = v->cap_regions ? 2 * v->cap_regions : 16;
        struct emu_region *r = realloc(v->regions, cap * sizeof(*r));
        if (!r)
            return;
        v->regions = r;
        v->cap_regions = cap;
    }
    v->regions[v->nregions++] = (struct emu_region){gpa, size, (uint8_t *)(uintptr_t)host, ro};
}

static void region_del(struct emu_vcpu *v, uint64_t gpa, uint64_t size)
{
    for (int i = 0; i < v->nregions;) {
        struct emu_region *r = &v->regions[i];
        if (r->gpa < gpa + size && gpa < r->gpa + r->size)
            *r = v->regions[--v->nregions];
        else
            i++;
    }
    v->last_region = 0;
}

/* Host address of [gpa, gpa + len) if one region holds all of it (and it
 * is writable, for a write); NULL otherwise. The last hit is tried first:
 * nearly every lookup is RAM. */
uint8_t *region_host(struct emu_vcpu *v, uint64_t gpa, size_t len, bool write)
{
    int n = v->nregions, i = v->last_region;
    for (int k = 0; k < n; k++, i = i + 1 == n ? 0 : i + 1) {
        struct emu_region *r = &v->regions[i];
        uint64_t off = gpa - r->gpa;
        if (off < r->size && len <= r->size - off) {
            if (write && r->ro)
                return NULL;
            v->last_region = i;
            return r->host + off;
        }
    }
    return NULL;
}

/* Mapping kinds: 0 read-write, 3 read-only (a read-only grant mapping: a
 * guest write stops the run with UC_ERR_WRITE_PROT, emu_run injects #GP). */
static uint32_t map_prot(int kind)
{
    return kind == 3 ? UC_PROT_READ | UC_PROT_EXEC : UC_PROT_ALL;
}

/* One memory op on the engine (and the region table), on the vCPU's
 * thread or while it does not run. */
static int apply_op(struct emu_vcpu *v, const struct mem_op *op)
{
    int rc;
    switch (op->kind) {
    case 0:
    case 3:
        rc = uc_mem_map_ptr(v->uc, op->gpa, op->size, map_prot(op->kind),
                            (void *)(uintptr_t)op->host);
        if (rc == UC_ERR_OK)
            region_add(v, op->gpa, op->size, op->host, op->kind == 3);
        return rc;
    case 1:
        region_del(v, op->gpa, op->size);
        return uc_mem_unmap(v->uc, op->gpa, op->size);
    default:
        rc = uc_ctl_remove_cache(v->uc, op->gpa, op->gpa + op->size);
        forget_scans(v);
        return rc;
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
        rc = apply_op(v, &op);
    } else if (v->nops < MAX_OPS) {
        v->ops[v->nops++] = op;
        atomic_fetch_or(&v->flags, F_OPS);
        pthread_cond_signal(&v->wake);
    } else if (kind == 2) {
        v->ops_overflow = 1;
        atomic_fetch_or(&v->flags, F_OPS);
        pthread_cond_signal(&v->wake);
    } else {
        rc = UC_ERR_NOMEM;
    }
    pthread_mutex_unlock(&v->mu);
    return rc;
}

/* Drop every translation of this vCPU's engine before it runs guest code
 * again. Each vCPU has its own unicorn engine, and an engine notices only its
 * own stores to code it translated: when another vCPU rewrites kernel text
 * (Linux's text_poke_bp: int3, then the new bytes, each followed by an IPI
 * that every CPU must take before the next step), this one would keep
 * running the old bytes. Queued like a memory op when the vCPU is running
 * on another thread, so the loop top drops them before it takes the IPI. */
void emu_flush_code(struct emu_vcpu *v)
{
    pthread_mutex_lock(&v->mu);
    if (!v->in_run || pthread_equal(v->thread, pthread_self())) {
        uc_ctl_flush_tb(v->uc);
        forget_scans(v);
    } else {
        v->ops_overflow = 1; /* drain_ops: flush everything */
        atomic_fetch_or(&v->flags, F_OPS);
        pthread_cond_signal(&v->wake);
    }
    pthread_mutex_unlock(&v->mu);
}

int emu_mem_map(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host)
{
    return mem_op(v, 0, gpa, size, host);
}

int emu_mem_map_ro(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host)
{
    return mem_op(v, 3, gpa, size, host);
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

/* Clear F_IRQ, then look again: a request_interrupt() racing with this
 * (bit first, flag second) can then never leave a bit without its flag. */
static void refresh_irq_flag(struct emu_vcpu *v)
{
    atomic_fetch_and(&v->flags, ~F_IRQ);
    if (irq_pending(v))
        atomic_fetch_or(&v->flags, F_IRQ);
}

/* Deliver the highest pending vector if the guest accepts interrupts now.
 * Returns -1 on a triple fault / error. */
static int maybe_deliver_irq(struct emu_vcpu *v, uint64_t rip)
{
    if (!irq_pending(v) || !(rreg(v->uc, UC_X86_REG_RFLAGS) & RFLAGS_IF))
        return 0;
    /* hlt ends any interrupt shadow (QEMU's helper_hlt clears
     * HF_INHIBIT_IRQ): after a hlt stop there is nothing to look up. */
    if (!v->hlt_stop && irq_inhibited(v)) {
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

/* Halt polling, as KVM's halt_poll_ns: a vCPU that halts in a ping-pong
 * (an event channel to a backend or a peer) is woken again within tens of
 * microseconds, and a sleep plus a futex wake-up costs as much as the rest
 * of the round trip. So a hlt first watches its flags for up to
 * `halt_poll_ns`, yielding the CPU to any other runnable thread at each
 * look (2 shared cores: it must not starve the dom0 process it waits for).
 * The window adapts as KVM's does: it starts at 0, grows from
 * HALT_POLL_START (x2) while wake-ups come after it but within the
 * maximum, and drops to 0 after a longer sleep, so an idle guest (a 4 ms
 * tick) never polls. True when woken while polling. */
#define HALT_POLL_START 10000u

static bool halt_poll(struct emu_vcpu *v, uint64_t t0)
{
    uint64_t win = v->halt_poll_ns;
    if (!win)
        return false;
    while (!(atomic_load(&v->flags) & WAKE_FLAGS)) {
        if (now_ns() - t0 >= win) {
            v->counters[C_HALT_POLL_MISSES]++;
            return false;
        }
        sched_yield();
    }
    atomic_fetch_and(&v->flags, ~F_KICK);
    v->counters[C_HALT_POLL_HITS]++;
    return true;
}

/* After a hlt that slept: `halt_ns` from the hlt to the wake-up
 * (UINT64_MAX: not woken in C at all). */
static void halt_poll_adapt(struct emu_vcpu *v, uint64_t halt_ns)
{
    uint64_t max = v->halt_poll_max_ns;
    if (halt_ns > max)
        v->halt_poll_ns = 0;
    else if (v->halt_poll_ns < max)
        v->halt_poll_ns = v->halt_poll_ns ? v->halt_poll_ns * 2 : HALT_POLL_START;
    if (v->halt_poll_ns > max)
        v->halt_poll_ns = max;
}

/* hlt with interrupts on: wait here, without the GIL or the CPU lock, for
 * an interrupt, a stop, a memory op or a kick, instead of a round trip
 * through Python's halt (its GIL hand-off and condition variable are most
 * of an event's wake-up latency). Bounded by halt_wait_ns: a vCPU still
 * idle then goes to Python's halt, which accounts it blocked and checks
 * evtchn_upcall_pending (the level Xen asserts at each VM entry). True
 * when woken here. */
static bool fast_halt(struct emu_vcpu *v)
{
    if (!v->halt_wait_ns || !(rreg(v->uc, UC_X86_REG_RFLAGS) & RFLAGS_IF))
        return false;
    cpu_unlock(v);
    if (atomic_load(&v->flags) & WAKE_FLAGS) {
        /* Woken before it halted (a kick that found it running): no halt
         * to learn from, as KVM's invalid wake-ups. */
        atomic_fetch_and(&v->flags, ~F_KICK);
        cpu_lock(v);
        return true;
    }
    uint64_t t0 = now_ns();
    if (halt_poll(v, t0)) {
        cpu_lock(v);
        return true;
    }
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    uint64_t ns = dl.tv_nsec + v->halt_wait_ns;
    dl.tv_sec += ns / 1000000000u;
    dl.tv_nsec = ns % 1000000000u;
    bool woken = true;
    pthread_mutex_lock(&v->mu);
    atomic_store(&v->halting, 1);
    while (!(atomic_load(&v->flags) & WAKE_FLAGS)) {
        if (pthread_cond_timedwait(&v->wake, &v->mu, &dl) != 0 &&
            !(atomic_load(&v->flags) & WAKE_FLAGS)) {
            woken = false;
            break;
        }
    }
    atomic_store(&v->halting, 0);
    atomic_fetch_and(&v->flags, ~F_KICK);
    pthread_mutex_unlock(&v->mu);
    halt_poll_adapt(v, woken ? now_ns() - t0 : UINT64_MAX);
    cpu_lock(v);
    return woken;
}

int emu_run(struct emu_vcpu *v)
{
    pthread_mutex_lock(&v->mu);
    v->in_run = 1;
    v->thread = pthread_self();
    pthread_mutex_unlock(&v->mu);
    atomic_fetch_sub(&v->m->outside, 1);
    int result;
    v->err[0] = 0;
    cpu_lock(v);
    for (;;) {
        if (atomic_load(&v->flags) & F_OPS)
            drain_ops(v);
        if ((atomic_load(&v->flags) & F_EVQ) && drain_events(v, NULL) != 0) {
            result = EMU_RUN_ERROR;
            break;
        }
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
        /* With async_irq off, only a hypercall or hlt delivers (not a stop
         * for a new wrmsr site or a memory op another thread queued). */
        bool point = v->async_irq || v->irq_point;
        v->irq_point = 0;
        if (point && maybe_deliver_irq(v, rip) != 0) {
            result = v->reason == R_TRIPLE ? EMU_RUN_TRIPLE_FAULT : EMU_RUN_ERROR;
            break;
        }
        rip = rreg(v->uc, UC_X86_REG_RIP);
        v->hlt_stop = false;
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
        if (e == UC_ERR_WRITE_PROT) {
            /* A store to a read-only mapping (a p2m_grant_map_ro page): Xen
             * injects #GP(0) (hvm_hap_nested_page_fault). Unicorn leaves RIP
             * at the faulting instruction. */
            v->counters[C_EXCEPTIONS]++;
            if (raise_event(v, 13, true, 0, false) != 0) {
                result = v->reason == R_TRIPLE ? EMU_RUN_TRIPLE_FAULT : EMU_RUN_ERROR;
                break;
            }
            continue;
        }
        if (e != UC_ERR_OK) {
            set_err(v, "unicorn: %s at rip %#llx", uc_strerror(e),
                    (unsigned long long)rreg(v->uc, UC_X86_REG_RIP));
            result = EMU_RUN_ERROR;
            break;
        }
        if (v->reason == R_RDMSR) {
            wreg(v->uc, UC_X86_REG_RAX, (uint32_t)v->m->arch_caps);
            wreg(v->uc, UC_X86_REG_RDX, v->m->arch_caps >> 32);
            wreg(v->uc, UC_X86_REG_RIP, v->rdmsr_rip + 2);
            continue;
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
        v->irq_point = 1;
        v->hlt_stop = true;
        /* hlt: wait in the core unless an interrupt is already deliverable
         * or a stop is pending (the loop top returns it). */
        if (!(atomic_load(&v->flags) & F_STOP) &&
            !(irq_pending(v) && (rreg(v->uc, UC_X86_REG_RFLAGS) & RFLAGS_IF)) &&
            !fast_halt(v)) {
            v->exit.kind = EMU_EXIT_HALT;
            if (call_python(v, NULL) != 0) {
                result = EMU_RUN_ERROR;
                break;
            }
        }
    }
    cpu_unlock(v);
    atomic_fetch_add(&v->m->outside, 1);
    pthread_mutex_lock(&v->mu);
    v->in_run = 0;
    pthread_mutex_unlock(&v->mu);
    return result;
}

void emu_request_stop(struct emu_vcpu *v)
{
    atomic_fetch_or(&v->flags, F_STOP);
    wake_vcpu(v);
}

/* Enough on its own to end a C hlt wait (F_IRQ is a wake flag): no
 * emu_kick() is needed after it. */
void emu_request_interrupt(struct emu_vcpu *v, int vector)
{
    if (vector < 0 || vector > 255)
        return;
    atomic_fetch_or(&v->irq_bits[vector / 64], 1ull << (vector % 64));
    atomic_fetch_or(&v->flags, F_IRQ);
    wake_vcpu(v);
}

void emu_kick(struct emu_vcpu *v)
{
    atomic_fetch_or(&v->flags, F_KICK);
    wake_vcpu(v);
}

/* Posted events (evtchn_fast.c) for this vCPU: seq_cst, before the poster
 * looks at `outside` (call_python looks at F_EVQ after raising it). */
void emu_post_events(struct emu_vcpu *v)
{
    atomic_fetch_or(&v->flags, F_EVQ);
    wake_vcpu(v);
}

/* For a vCPU blocked in Python: a posted event ends the block. */
int emu_events_posted(struct emu_vcpu *v) { return (atomic_load(&v->flags) & F_EVQ) != 0; }

void emu_set_halt_wait(struct emu_vcpu *v, uint64_t ns) { v->halt_wait_ns = ns; }

void emu_set_halt_poll(struct emu_vcpu *v, uint64_t max_ns)
{
    v->halt_poll_max_ns = max_ns;
    v->halt_poll_ns = 0;
}

void emu_machine_set_evtchn(struct emu_machine *m, struct evf_table *t) { m->evtchn = t; }

void emu_machine_set_arch_caps(struct emu_machine *m, uint64_t value) { m->arch_caps = value; }

/* Every vCPU of the machine is in guest code, a C hlt wait, or Python
 * for an exit that never waits for an event (may_wait_for_event); none
 * idle: an event needs no Python kick (evtchn_fast.c). */
int emu_machine_all_in_c(struct emu_machine *m) { return atomic_load(&m->outside) == 0; }

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

void emu_set_async_irq(struct emu_vcpu *v, int on) { v->async_irq = on != 0; }

void emu_set_io_in_ones(struct emu_vcpu *v, int on) { v->io_in_ones = on != 0; }

uint64_t emu_counter(struct emu_vcpu *v, int which)
{
    return which >= 0 && which < C_NCOUNTERS ? v->counters[which] : 0;
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
    atomic_fetch_add(&m->outside, 1); /* not running yet */
    v->id = id;
    v->token = token;
    v->irq_defer_rip = ~0ull;
    v->wrmsr_skip = ~0ull;
    v->async_irq = 1;
    memset(v->scanned, 0xff, sizeof(v->scanned));
    pthread_mutex_init(&v->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&v->wake, &ca);
    pthread_condattr_destroy(&ca);
    if (posix_memalign((void **)&v->priv, 4096, 4096) != 0) {
        snprintf(err, errlen, "out of memory");
        free(v);
        return NULL;
    }
    build_priv_page(v->priv);
    if (posix_memalign((void **)&v->lapic, 4096, 4096) != 0) {
        snprintf(err, errlen, "out of memory");
        free(v->priv);
        free(v);
        return NULL;
    }
    build_lapic_page(v->lapic, id);
    uc_err e = uc_open(UC_ARCH_X86, UC_MODE_64, &v->uc);
    /* Unicorn reserves 1 GiB of translation buffer per engine by default;
     * one vCPU needs far less (when full, QEMU flushes and retranslates). */
    if (e == UC_ERR_OK)
        e = uc_ctl_set_tcg_buffer_size(v->uc, EMU_TCG_BUFFER);
    if (e == UC_ERR_OK)
        e = uc_context_alloc(v->uc, &v->ctx);
    if (e == UC_ERR_OK)
        v->env = env_find(v->uc, v->ctx);
    v->counters[C_STATE_IN_PLACE] = v->env != NULL; /* 1, not a count */
    if (e == UC_ERR_OK)
        e = uc_mem_map_ptr(v->uc, EMU_PRIV_GPA, 4096, UC_PROT_READ | UC_PROT_EXEC, v->priv);
    if (e == UC_ERR_OK)
        e = lapic_map(v);
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
    if (v->m)
        atomic_fetch_sub(&v->m->outside, 1);
    if (v->ctx)
        uc_context_free(v->ctx);
    if (v->uc)
        uc_close(v->uc);
    pthread_mutex_destroy(&v->mu);
    pthread_cond_destroy(&v->wake);
    free(v->priv);
    free(v->lapic);
    free(v->regions);
    free(v);
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
