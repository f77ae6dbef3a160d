/* The KVM engine's run loop and setup, called from kvm.py through cffi.
 *
 * No in-kernel irqchip: `hlt` then exits to user space (the core decides when
 * the vCPU runs again) and the upcall vector is injected with KVM_INTERRUPT
 * when the guest can take it. Registers travel through the run page
 * (KVM_CAP_SYNC_REGS): on this fleet's kvm_pvm each KVM_GET_REGS or
 * KVM_SET_REGS costs about 5 us, a hypercall needs both.
 */
#define _GNU_SOURCE
#include "kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

/* kvm.py hands registers over as GENERAL_REGS order: struct kvm_regs order. */
_Static_assert(sizeof(struct kvm_regs) == 18 * 8, "kvm_regs layout");
_Static_assert(offsetof(struct kvm_regs, rip) == 16 * 8, "kvm_regs layout");

#define XK_RFLAGS_IF 0x200u
#define XK_CR0_PE 0x1ull
#define XK_CR0_ET 0x10ull
#define XK_CR0_PG 0x80000000ull
#define XK_CR4_PAE 0x20ull
#define XK_EFER_LME 0x100ull
#define XK_EFER_LMA 0x400ull

struct xk_vcpu {
    int fd;
    uint32_t id;
    uint32_t hc_port;
    struct kvm_run *run;
    size_t run_size;
    uint64_t valid_mask;
    int cui_pending;       /* the kernel completes the last exit at next KVM_RUN */
    int handed_out;        /* an exit returned to Python awaits completion */
    int sregs_fresh;       /* run->s.regs.sregs reflects the vCPU */
    atomic_int stop;
    atomic_int irq;        /* pending vector, -1 for none */
    pthread_mutex_t lock;  /* guards thread/running for kicks */
    pthread_t thread;
    int running;
};

/* ---- kicking a vCPU out of KVM_RUN ---------------------------------- */

static pthread_once_t xk_sig_once = PTHREAD_ONCE_INIT;
static __thread int xk_sig_unblocked;

static int xk_kick_signal(void) { return SIGRTMIN + 6; }

static void xk_sig_noop(int sig) { (void)sig; }

static void xk_sig_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = xk_sig_noop;
    sa.sa_flags = SA_RESTART;  /* KVM_RUN answers -EINTR regardless */
    sigemptyset(&sa.sa_mask);
    sigaction(xk_kick_signal(), &sa, NULL);
}

static void xk_sig_thread_setup(void)
{
    pthread_once(&xk_sig_once, xk_sig_install);
    if (!xk_sig_unblocked) {
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, xk_kick_signal());
        pthread_sigmask(SIG_UNBLOCK, &s, NULL);
        xk_sig_unblocked = 1;
    }
}

/* The other half of the race with the run loop: the flag is published
 * before immediate_exit, and the loop clears immediate_exit before it reads
 * the flags, so a request is never lost. */
static void xk_kick(struct xk_vcpu *v)
{
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_lock(&v->lock);
    if (v->running)
        pthread_kill(v->thread, xk_kick_signal());
    pthread_mutex_unlock(&v->lock);
}

void xk_vcpu_request_stop(struct xk_vcpu *v)
{
    atomic_store(&v->stop, 1);
    xk_kick(v);
}

void xk_vcpu_request_interrupt(struct xk_vcpu *v, int vector)
{
    atomic_store(&v->irq, vector);
    xk_kick(v);
}

int xk_vcpu_pending_interrupt(struct xk_vcpu *v)
{
    return atomic_load(&v->irq);
}

/* ---- VM ------------------------------------------------------------- */

static int xk_ioctl(int fd, unsigned long req, void *arg)
{
    int r;
    do {
        r = ioctl(fd, req, arg);
    } while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

int xk_kvm_open(const char *path)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int api = ioctl(fd, KVM_GET_API_VERSION, 0);
    if (api != KVM_API_VERSION) {
        int err = api < 0 ? errno : EPROTO;
        close(fd);
        return -err;
    }
    return fd;
}

int xk_vm_create(int kvm_fd, uint64_t tss_addr, uint64_t ident_addr,
                 uint32_t filtered_msr)
{
    int vm = xk_ioctl(kvm_fd, KVM_CREATE_VM, 0);
    if (vm < 0)
        return vm;
    int r;
    /* Intel VMX needs both inside guest-physical space for real-mode and
     * unpaged guests; kvm.py puts them outside RAM and the special pages. */
    r = xk_ioctl(vm, KVM_SET_IDENTITY_MAP_ADDR, &ident_addr);
    if (r < 0)
        goto fail;
    r = ioctl(vm, KVM_SET_TSS_ADDR, (unsigned long)tss_addr);
    if (r < 0) {
        r = -errno;
        goto fail;
    }
    /* The hypercall-page MSR goes to user space through a deny filter. */
    struct kvm_enable_cap cap;
    memset(&cap, 0, sizeof cap);
    cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
    cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
    r = xk_ioctl(vm, KVM_ENABLE_CAP, &cap);
    if (r < 0)
        goto fail;
    static uint8_t deny_bitmap[1];  /* bit 0 clear: denied, i.e. exits */
    struct kvm_msr_filter filter;
    memset(&filter, 0, sizeof filter);
    filter.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
    filter.ranges[0].flags = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
    filter.ranges[0].nmsrs = 1;
    filter.ranges[0].base = filtered_msr;
    filter.ranges[0].bitmap = deny_bitmap;
    r = xk_ioctl(vm, KVM_X86_SET_MSR_FILTER, &filter);
    if (r < 0)
        goto fail;
    return vm;
fail:
    close(vm);
    return r;
}

int xk_set_user_memory(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
                       uint64_t host_addr)
{
    return xk_set_user_memory_flags(vm_fd, slot, gpa, size, host_addr, 0);
}

/* flags: KVM_MEM_READONLY makes guest writes exit as MMIO (dropped below). */
int xk_set_user_memory_flags(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
                             uint64_t host_addr, uint32_t flags)
{
    struct kvm_userspace_memory_region region = {
        .slot = slot,
        .flags = flags,
        .guest_phys_addr = gpa,
        .memory_size = size,
        .userspace_addr = host_addr,
    };
    int r = xk_ioctl(vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
    return r < 0 ? r : 0;
}

/* ---- vCPU ----------------------------------------------------------- */

static struct kvm_cpuid2 *xk_supported_cpuid(int kvm_fd, int *err)
{
    for (int n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
        if (!c) {
            *err = -ENOMEM;
            return NULL;
        }
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        int e = errno;
        free(c);
        if (e != E2BIG) {
            *err = -e;
            return NULL;
        }
    }
    *err = -E2BIG;
    return NULL;
}

/* KVM's supported set plus Xen's leaves (which replace KVM's own hypervisor
 * range, "KVMKVMKVM"), with this vCPU's APIC id. */
static int xk_set_cpuid(struct xk_vcpu *v, int kvm_fd, const uint32_t *leaves,
                        int nleaves)
{
    int err = 0;
    struct kvm_cpuid2 *sup = xk_supported_cpuid(kvm_fd, &err);
    if (!sup)
        return err;
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + (sup->nent + nleaves) * sizeof c->entries[0]);
    if (!c) {
        free(sup);
        return -ENOMEM;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < sup->nent; i++) {
        struct kvm_cpuid_entry2 e = sup->entries[i];
        if (e.function >= 0x40000000 && e.function <= 0x400000ff)
            continue;
        if (e.function == 1)
            e.ebx = (e.ebx & 0x00ffffffu) | (v->id << 24);
        if (e.function == 0xb || e.function == 0x1f)
            e.edx = v->id;
        c->entries[n++] = e;
    }
    for (int i = 0; i < nleaves; i++) {
        struct kvm_cpuid_entry2 *e = &c->entries[n++];
        memset(e, 0, sizeof *e);
        e->function = leaves[5 * i];
        e->eax = leaves[5 * i + 1];
        e->ebx = leaves[5 * i + 2];
        e->ecx = leaves[5 * i + 3];
        e->edx = leaves[5 * i + 4];
    }
    c->nent = n;
    int r = xk_ioctl(v->fd, KVM_SET_CPUID2, c);
    free(c);
    free(sup);
    return r < 0 ? r : 0;
}

uint64_t xk_host_tsc(void) { return __rdtsc(); }

/* The guest's TSC is the host's (offset 0), as on the software CPU: the core
 * publishes host TSC readings in vcpu_time_info. KVM would otherwise start
 * each vCPU's TSC at 0. */
static int xk_zero_tsc_offset(struct xk_vcpu *v)
{
    uint64_t offset = 0;
    struct kvm_device_attr attr = {
        .group = KVM_VCPU_TSC_CTRL,
        .attr = KVM_VCPU_TSC_OFFSET,
        .addr = (uint64_t)(uintptr_t)&offset,
    };
    if (ioctl(v->fd, KVM_HAS_DEVICE_ATTR, &attr) == 0)
        return xk_ioctl(v->fd, KVM_SET_DEVICE_ATTR, &attr) < 0 ? -errno : 0;
    /* Older kernels: write IA32_TIME_STAMP_COUNTER (0x10) with the host's. */
    struct {
        struct kvm_msrs hdr;
        struct kvm_msr_entry e;
    } msrs;
    memset(&msrs, 0, sizeof msrs);
    msrs.hdr.nmsrs = 1;
    msrs.e.index = 0x10;
    msrs.e.data = __rdtsc();
    int r = xk_ioctl(v->fd, KVM_SET_MSRS, &msrs);
    return r == 1 ? 0 : (r < 0 ? r : -EINVAL);
}

struct xk_vcpu *xk_vcpu_create(int kvm_fd, int vm_fd, uint32_t id,
                               uint32_t hypercall_port,
                               const uint32_t *leaves, int nleaves, int *err)
{
    struct xk_vcpu *v = calloc(1, sizeof *v);
    if (!v) {
        *err = -ENOMEM;
        return NULL;
    }
    v->id = id;
    v->hc_port = hypercall_port;
    atomic_init(&v->stop, 0);
    atomic_init(&v->irq, -1);
    pthread_mutex_init(&v->lock, NULL);
    v->fd = ioctl(vm_fd, KVM_CREATE_VCPU, (unsigned long)id);
    if (v->fd < 0) {
        *err = -errno;
        goto fail_free;
    }
    int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (size < (int)sizeof(struct kvm_run)) {
        *err = size < 0 ? -errno : -EINVAL;
        goto fail_close;
    }
    v->run_size = size;
    v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) {
        *err = -errno;
        goto fail_close;
    }
    int r = xk_set_cpuid(v, kvm_fd, leaves, nleaves);
    if (r < 0) {
        *err = r;
        goto fail_unmap;
    }
    /* SREGS too: the core reads CR3 for guest-virtual copies in most
     * hypercalls; syncing them costs ~0.2 us per exit here, a
     * KVM_GET_SREGS ~3 us (bench/accel_kvm.py). */
    r = xk_zero_tsc_offset(v);
    if (r < 0) {
        *err = r;
        goto fail_unmap;
    }
    r = xk_vcpu_set_sync(v, KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS);
    if (r < 0) {
        *err = r;
        goto fail_unmap;
    }
    /* The run page is the register file from now on; fill it once. */
    r = xk_ioctl(v->fd, KVM_GET_REGS, &v->run->s.regs.regs);
    if (r < 0) {
        *err = r;
        goto fail_unmap;
    }
    return v;
fail_unmap:
    munmap(v->run, v->run_size);
fail_close:
    close(v->fd);
fail_free:
    pthread_mutex_destroy(&v->lock);
    free(v);
    return NULL;
}

void xk_vcpu_destroy(struct xk_vcpu *v)
{
    if (!v)
        return;
    munmap(v->run, v->run_size);
    close(v->fd);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

int xk_vcpu_fd(struct xk_vcpu *v) { return v->fd; }

int xk_vcpu_set_sync(struct xk_vcpu *v, uint64_t valid_mask)
{
    if (valid_mask & ~(uint64_t)(KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS))
        return -EINVAL;
    v->valid_mask = valid_mask;
    v->run->kvm_valid_regs = valid_mask;
    v->sregs_fresh = 0;
    return 0;
}

uint64_t *xk_vcpu_regs(struct xk_vcpu *v)
{
    return (uint64_t *)&v->run->s.regs.regs;
}

void xk_vcpu_regs_dirty(struct xk_vcpu *v)
{
    v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
}

static void xk_flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type,
                            int code64)
{
    memset(s, 0, sizeof *s);
    s->base = 0;
    s->limit = 0xffffffff;
    s->selector = sel;
    s->type = type;
    s->present = 1;
    s->dpl = 0;
    s->s = 1;
    s->l = code64;
    s->db = code64 ? 0 : 1;  /* L=1 requires D=0 */
    s->g = 1;
}

static void xk_settle(struct xk_vcpu *v);

/* Flat segments as Xen's VCPU_HVM_MODE_32B/64B lay them out: code 0x08,
 * data 0x10, base 0, limit 4 GiB, accessed types (code 0xb, data 0x3). */
int xk_vcpu_set_boot(struct xk_vcpu *v, int long64, uint64_t cr0, uint64_t cr3,
                     uint64_t cr4, uint64_t efer)
{
    /* An exit left half-done (a handler raised) must not complete into the
     * new state: finish it first, and drop its answer. */
    v->handed_out = 0;
    xk_settle(v);
    struct kvm_sregs s;
    int r = xk_ioctl(v->fd, KVM_GET_SREGS, &s);
    if (r < 0)
        return r;
    xk_flat_segment(&s.cs, 0x08, 0xb, long64);
    xk_flat_segment(&s.ds, 0x10, 0x3, 0);
    s.es = s.fs = s.gs = s.ss = s.ds;
    s.cr0 = cr0;
    s.cr3 = cr3;
    s.cr4 = cr4;
    s.efer = efer;
    memset(s.interrupt_bitmap, 0, sizeof s.interrupt_bitmap);
    r = xk_ioctl(v->fd, KVM_SET_SREGS, &s);
    if (r < 0)
        return r;
    v->sregs_fresh = 0;
    return 0;
}

int xk_vcpu_get_sregs(struct xk_vcpu *v, uint64_t *out6)
{
    struct kvm_sregs tmp, *s = &tmp;
    if (v->sregs_fresh) {
        s = &v->run->s.regs.sregs;
    } else {
        int r = xk_ioctl(v->fd, KVM_GET_SREGS, &tmp);
        if (r < 0)
            return r;
    }
    out6[0] = s->cr0;
    out6[1] = s->cr2;
    out6[2] = s->cr3;
    out6[3] = s->cr4;
    out6[4] = s->efer;
    out6[5] = s->ss.dpl;  /* CPL is SS.DPL (CS.DPL differs for conforming code) */
    return 0;
}

/* ---- the run loop --------------------------------------------------- */

static void xk_inject(struct xk_vcpu *v)
{
    struct kvm_run *run = v->run;
    int vec = atomic_load(&v->irq);
    if (vec < 0) {
        run->request_interrupt_window = 0;
        return;
    }
    /* rflags from the run page: it is what the next entry loads, even if
     * the core just changed it. */
    if (run->ready_for_interrupt_injection &&
        (run->s.regs.regs.rflags & XK_RFLAGS_IF)) {
        struct kvm_interrupt irq = { .irq = (uint32_t)vec };
        if (xk_ioctl(v->fd, KVM_INTERRUPT, &irq) == 0) {
            atomic_compare_exchange_strong(&v->irq, &vec, -1);
            run->request_interrupt_window = 0;
            return;
        }
    }
    run->request_interrupt_window = 1;
}

/* Hand the exit's answer back to KVM: it lands at the next KVM_RUN. */
static void xk_complete(struct xk_vcpu *v, struct xk_exit *ex)
{
    switch (ex->kind) {
    case XK_EXIT_HYPERCALL:
        v->run->s.regs.regs.rax = ex->result;
        v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
        break;
    case XK_EXIT_WRMSR:
        v->run->msr.error = ex->fault ? 1 : 0;
        break;
    case XK_EXIT_RDMSR:
        v->run->msr.error = ex->fault ? 1 : 0;
        v->run->msr.data = ex->result;
        break;
    default:
        break;  /* io data was written in place; hlt needs nothing */
    }
}

static int xk_error(struct xk_vcpu *v, struct xk_exit *ex, int err, uint32_t reason,
                    uint64_t d0, uint64_t d1, uint64_t d2, uint64_t d3)
{
    ex->kind = XK_EXIT_ERROR;
    ex->hw_rip = v->run->s.regs.regs.rip;
    ex->hw_errno = err;
    ex->hw_exit_reason = reason;
    ex->hw_detail[0] = d0;
    ex->hw_detail[1] = d1;
    ex->hw_detail[2] = d2;
    ex->hw_detail[3] = d3;
    return XK_EXIT_ERROR;
}

/* A stop leaves no half-done exit behind: an immediate-exit KVM_RUN makes
 * the kernel finish it (skip the `out`, load the msr result). */
static void xk_settle(struct xk_vcpu *v)
{
    if (!v->cui_pending && !v->run->kvm_dirty_regs)
        return;
    __atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
    ioctl(v->fd, KVM_RUN, 0);
    __atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    v->cui_pending = 0;
    if (v->valid_mask & KVM_SYNC_X86_SREGS)
        v->sregs_fresh = 1;
}

/* Run until an exit needs the handler or the vCPU must stop. */
static int xk_run_until_exit(struct xk_vcpu *v, struct xk_exit *ex)
{
    struct kvm_run *run = v->run;
    for (;;) {
        atomic_thread_fence(memory_order_seq_cst);
        if (atomic_load(&v->stop)) {
            xk_settle(v);
            __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
            atomic_store(&v->stop, 0);
            ex->kind = XK_EXIT_STOPPED;
            return XK_EXIT_STOPPED;
        }
        xk_inject(v);
        int r = ioctl(v->fd, KVM_RUN, 0);
        int err = errno;
        v->cui_pending = 0;
        if (v->valid_mask & KVM_SYNC_X86_SREGS)
            v->sregs_fresh = 1;
        if (r < 0) {
            if (err == EINTR || err == EAGAIN) {
                __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
                continue;
            }
            return xk_error(v, ex, err, run->exit_reason, 0, 0, 0, 0);
        }
        switch (run->exit_reason) {
        case KVM_EXIT_IO: {
            v->cui_pending = 1;
            struct kvm_regs *g = &run->s.regs.regs;
            if (run->io.direction == KVM_EXIT_IO_OUT && run->io.port == v->hc_port &&
                run->io.count == 1) {
                ex->kind = XK_EXIT_HYPERCALL;
                ex->nr = g->rax;
                ex->args[0] = g->rdi;
                ex->args[1] = g->rsi;
                ex->args[2] = g->rdx;
                ex->args[3] = g->r10;
                ex->args[4] = g->r8;
                ex->args[5] = g->r9;
                ex->result = 0;
                return XK_EXIT_HYPERCALL;
            }
            ex->kind = run->io.direction == KVM_EXIT_IO_OUT ? XK_EXIT_IO_OUT : XK_EXIT_IO_IN;
            ex->port = run->io.port;
            ex->size = run->io.size;
            ex->count = run->io.count;
            ex->data = (uint8_t *)run + run->io.data_offset;
            return ex->kind;
        }
        case KVM_EXIT_HLT:
            ex->kind = XK_EXIT_HALT;
            return XK_EXIT_HALT;
        case KVM_EXIT_X86_WRMSR:
            v->cui_pending = 1;
            ex->kind = XK_EXIT_WRMSR;
            ex->msr = run->msr.index;
            ex->value = run->msr.data;
            ex->fault = 0;
            return XK_EXIT_WRMSR;
        case KVM_EXIT_X86_RDMSR:
            /* Xen has no readable MSR in its range: #GP, as guest_rdmsr_xen. */
            v->cui_pending = 1;
            run->msr.error = 1;
            continue;
        case KVM_EXIT_MMIO:
            /* Guest-physical space with nothing behind it: reads see all
             * ones and writes vanish, as Xen's null handler does. */
            v->cui_pending = 1;
            if (!run->mmio.is_write)
                memset(run->mmio.data, 0xff, sizeof run->mmio.data);
            continue;
        case KVM_EXIT_IRQ_WINDOW_OPEN:
        case KVM_EXIT_INTR:
            continue;
        case KVM_EXIT_SHUTDOWN:
            ex->kind = XK_EXIT_SHUTDOWN;
            return XK_EXIT_SHUTDOWN;
        case KVM_EXIT_FAIL_ENTRY:
            return xk_error(v, ex, 0, run->exit_reason,
                            run->fail_entry.hardware_entry_failure_reason,
                            run->fail_entry.cpu, 0, 0);
        case KVM_EXIT_INTERNAL_ERROR:
            /* For KVM_INTERNAL_ERROR_EMULATION data[0] holds flags and
             * data[1..2] the insn_size byte and the instruction bytes. */
            return xk_error(v, ex, 0, run->exit_reason, run->internal.suberror,
                            run->internal.ndata > 0 ? run->internal.data[0] : 0,
                            run->internal.ndata > 1 ? run->internal.data[1] : 0,
                            run->internal.ndata > 2 ? run->internal.data[2] : 0);
        default:
            return xk_error(v, ex, 0, run->exit_reason, 0, 0, 0, 0);
        }
    }
}

static int xk_needs_handler(int kind)
{
    return kind == XK_EXIT_HYPERCALL || kind == XK_EXIT_IO_IN ||
           kind == XK_EXIT_IO_OUT || kind == XK_EXIT_WRMSR || kind == XK_EXIT_HALT;
}

/* handle == NULL: return every handler exit to the caller, which calls
 * again to complete it. Otherwise call xk_py_exit() for it right here. */
int xk_vcpu_run(struct xk_vcpu *v, struct xk_exit *ex, void *handle)
{
    xk_sig_thread_setup();
    pthread_mutex_lock(&v->lock);
    v->thread = pthread_self();
    v->running = 1;
    pthread_mutex_unlock(&v->lock);

    if (v->handed_out) {
        xk_complete(v, ex);
        v->handed_out = 0;
    }
    int kind;
    for (;;) {
        kind = xk_run_until_exit(v, ex);
        if (!xk_needs_handler(kind))
            break;
        if (!handle) {
            v->handed_out = 1;
            break;
        }
        if (xk_py_exit(handle, ex))
            atomic_store(&v->stop, 1);
        xk_complete(v, ex);
    }

    pthread_mutex_lock(&v->lock);
    v->running = 0;
    pthread_mutex_unlock(&v->lock);
    return kind;
}

/* ---- bench ---------------------------------------------------------- */

static int64_t xk_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* n hypercall-port exits answered in C (rax = the count), no Python. The
 * registers travel through the run page per valid_mask, or (ioctl_regs) with
 * KVM_GET_REGS + KVM_SET_REGS as a hypercall would need without sync_regs. */
int64_t xk_bench_out_loop(struct xk_vcpu *v, uint64_t n, int ioctl_regs)
{
    struct kvm_regs regs;
    int64_t t0 = xk_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (ioctl(v->fd, KVM_RUN, 0) < 0)
            return -errno;
        if (v->run->exit_reason != KVM_EXIT_IO || v->run->io.port != v->hc_port)
            return -EIO;
        if (ioctl_regs) {
            if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
                return -errno;
            regs.rax = i;
            if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
                return -errno;
        } else if (v->valid_mask & KVM_SYNC_X86_REGS) {
            v->run->s.regs.regs.rax = i;
            v->run->kvm_dirty_regs |= KVM_SYNC_X86_REGS;
        }
    }
    v->cui_pending = 1;
    if (ioctl_regs)  /* the run page is the register file again */
        ioctl(v->fd, KVM_GET_REGS, &v->run->s.regs.regs);
    return xk_now_ns() - t0;
}

/* n KVM_GET_REGS (set = 0) or KVM_SET_REGS (set = 1) of the current state. */
int64_t xk_bench_regs_ioctl(struct xk_vcpu *v, uint64_t n, int set)
{
    struct kvm_regs regs;
    if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
        return -errno;
    unsigned long req = set ? KVM_SET_REGS : KVM_GET_REGS;
    int64_t t0 = xk_now_ns();
    for (uint64_t i = 0; i < n; i++)
        if (ioctl(v->fd, req, &regs) < 0)
            return -errno;
    return xk_now_ns() - t0;
}
