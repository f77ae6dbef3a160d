/*
 * Hypercalls through the hypercall page: stub `nr` is at hypercall_page +
 * 32 * nr. 64-bit ABI: number in the stub, arguments in rdi, rsi, rdx, r10,
 * r8, result in rax. Argument registers may be clobbered (Xen's debug builds
 * do it on purpose), so they are all in/out operands.
 */
#ifndef GUEST_HYPERCALL_H
#define GUEST_HYPERCALL_H

#include <xen/xen.h>

extern uint8_t hypercall_page[4096];

#define HYPERCALL_CLOBBERS "memory", "rcx", "r11", "r9"

/* nr must be a compile-time constant. */
#define _hypercall5(nr, a1, a2, a3, a4, a5) ({                                \
    register long __a1 asm("rdi") = (long)(a1);                             \
    register long __a2 asm("rsi") = (long)(a2);                             \
    register long __a3 asm("rdx") = (long)(a3);                             \
    register long __a4 asm("r10") = (long)(a4);                             \
    register long __a5 asm("r8") = (long)(a5);                              \
    long __res;                                                             \
    asm volatile("call hypercall_page + %c[off]"                            \
                 : "=a"(__res), "+r"(__a1), "+r"(__a2), "+r"(__a3),         \
                   "+r"(__a4), "+r"(__a5)                                   \
                 : [off] "i"((nr) * 32)                                     \
                 : HYPERCALL_CLOBBERS);                                     \
    __res; })

#define _hypercall2(nr, a1, a2) _hypercall5(nr, a1, a2, 0, 0, 0)
#define _hypercall3(nr, a1, a2, a3) _hypercall5(nr, a1, a2, a3, 0, 0)

/* Any stub by number at run time (unknown-number checks). */
static inline long hypercall_nr(unsigned int nr, long a1, long a2, long a3,
                                long a4, long a5)
{
    register long __a1 asm("rdi") = a1;
    register long __a2 asm("rsi") = a2;
    register long __a3 asm("rdx") = a3;
    register long __a4 asm("r10") = a4;
    register long __a5 asm("r8") = a5;
    long res;
    void *stub = hypercall_page + 32 * (nr & 127);

    asm volatile("call *%[stub]"
                 : "=a"(res), "+r"(__a1), "+r"(__a2), "+r"(__a3), "+r"(__a4),
                   "+r"(__a5), [stub] "+r"(stub)
                 :
                 : HYPERCALL_CLOBBERS);
    return res;
}

static inline long HYPERVISOR_xen_version(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_xen_version, cmd, arg);
}

static inline long HYPERVISOR_console_io(int cmd, unsigned long len, const void *buf)
{
    return _hypercall3(__HYPERVISOR_console_io, cmd, len, buf);
}

static inline long HYPERVISOR_sched_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_sched_op, cmd, arg);
}

static inline long HYPERVISOR_set_timer_op(uint64_t timeout_ns)
{
    return _hypercall5(__HYPERVISOR_set_timer_op, timeout_ns, 0, 0, 0, 0);
}

static inline long HYPERVISOR_memory_op(unsigned int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_memory_op, cmd, arg);
}

static inline long HYPERVISOR_vcpu_op(int cmd, unsigned int vcpuid, void *arg)
{
    return _hypercall3(__HYPERVISOR_vcpu_op, cmd, vcpuid, arg);
}

static inline long HYPERVISOR_hvm_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_hvm_op, cmd, arg);
}

static inline long HYPERVISOR_event_channel_op(int cmd, void *arg)
{
    return _hypercall2(__HYPERVISOR_event_channel_op, cmd, arg);
}

#endif
