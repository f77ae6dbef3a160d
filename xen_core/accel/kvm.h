/* The KVM engine's C side: VM and vCPU setup and the KVM_RUN loop.
 *
 * The part between the cdef markers is read verbatim by build_kvm.py as the
 * cffi declarations, so it holds plain declarations only.
 */
#ifndef XEN_CORE_ACCEL_KVM_H
#define XEN_CORE_ACCEL_KVM_H
#include <stdint.h>

/* cdef-begin */
/* Why xk_vcpu_run() returned, or what the exit callback is asked to do. */
enum {
    XK_EXIT_HYPERCALL = 1,  /* out to the hypercall port: nr, args -> result */
    XK_EXIT_IO_IN = 2,      /* port, size, count, data <- result per element */
    XK_EXIT_IO_OUT = 3,     /* port, size, count, data */
    XK_EXIT_WRMSR = 4,      /* msr, value; fault = 1 injects #GP */
    XK_EXIT_RDMSR = 5,      /* msr -> result; fault = 1 injects #GP */
    XK_EXIT_HALT = 6,       /* hlt with no in-kernel irqchip */
    XK_EXIT_STOPPED = 7,    /* request_stop() */
    XK_EXIT_SHUTDOWN = 8,   /* KVM_EXIT_SHUTDOWN: triple fault */
    XK_EXIT_ERROR = 9       /* anything we cannot run; hw_* say what */
};

struct xk_exit {
    uint32_t kind;
    uint32_t port;
    uint32_t size;
    uint32_t count;
    uint32_t msr;
    uint32_t fault;          /* set by the handler (msr exits) */
    uint64_t nr;
    uint64_t args[6];
    uint64_t value;          /* wrmsr value */
    uint8_t *data;           /* io data in the run page, count * size bytes */
    uint64_t result;         /* set by the handler */
    uint32_t hw_exit_reason; /* kvm_run.exit_reason, for ERROR */
    int32_t hw_errno;        /* KVM_RUN errno, for ERROR */
    uint64_t hw_detail[4];   /* suberror / entry failure reason / ... */
    uint64_t hw_rip;
};

struct xk_vcpu;

int xk_kvm_open(const char *path);
int xk_vm_create(int kvm_fd, uint64_t tss_addr, uint64_t ident_addr,
                 uint32_t filtered_msr);
int xk_set_user_memory(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
                       uint64_t host_addr);
int xk_set_user_memory_flags(int vm_fd, uint32_t slot, uint64_t gpa, uint64_t size,
                             uint64_t host_addr, uint32_t flags);
struct xk_vcpu *xk_vcpu_create(int kvm_fd, int vm_fd, uint32_t id,
                               uint32_t hypercall_port,
                               const uint32_t *leaves, int nleaves, int *err);
void xk_vcpu_destroy(struct xk_vcpu *v);
int xk_vcpu_fd(struct xk_vcpu *v);
int xk_vcpu_set_sync(struct xk_vcpu *v, uint64_t valid_mask);
int xk_vcpu_set_boot(struct xk_vcpu *v, int long64, uint64_t cr0, uint64_t cr3,
                     uint64_t cr4, uint64_t efer);
uint64_t *xk_vcpu_regs(struct xk_vcpu *v);
void xk_vcpu_regs_dirty(struct xk_vcpu *v);
int xk_vcpu_get_sregs(struct xk_vcpu *v, uint64_t *out6);
int xk_vcpu_run(struct xk_vcpu *v, struct xk_exit *ex, void *handle);
void xk_vcpu_request_stop(struct xk_vcpu *v);
void xk_vcpu_request_interrupt(struct xk_vcpu *v, int vector);
int xk_vcpu_pending_interrupt(struct xk_vcpu *v);
uint64_t xk_host_tsc(void);

/* bench/accel_kvm.py: costs measured with no Python in the loop. */
int64_t xk_bench_out_loop(struct xk_vcpu *v, uint64_t n, int ioctl_regs);
int64_t xk_bench_regs_ioctl(struct xk_vcpu *v, uint64_t n, int set);
/* cdef-end */

/* Defined by cffi (extern "Python+C" in build_kvm.py): the Python exit
 * handler, called on the vCPU thread with the GIL taken for it. Returns
 * nonzero to make xk_vcpu_run() return STOPPED. */
int xk_py_exit(void *handle, struct xk_exit *ex);

#endif
