"""Hypercall numbers, errno values and domain ids (Xen public xen.h, errno.h)."""

# Hypercall numbers (__HYPERVISOR_*), x86-64.
HYPERVISOR_set_trap_table = 0
HYPERVISOR_mmu_update = 1
HYPERVISOR_set_gdt = 2
HYPERVISOR_stack_switch = 3
HYPERVISOR_set_callbacks = 4
HYPERVISOR_fpu_taskswitch = 5
HYPERVISOR_sched_op_compat = 6
HYPERVISOR_platform_op = 7
HYPERVISOR_set_debugreg = 8
HYPERVISOR_get_debugreg = 9
HYPERVISOR_update_descriptor = 10
HYPERVISOR_memory_op = 12
HYPERVISOR_multicall = 13
HYPERVISOR_update_va_mapping = 14
HYPERVISOR_set_timer_op = 15
HYPERVISOR_event_channel_op_compat = 16
HYPERVISOR_xen_version = 17
HYPERVISOR_console_io = 18
HYPERVISOR_physdev_op_compat = 19
HYPERVISOR_grant_table_op = 20
HYPERVISOR_vm_assist = 21
HYPERVISOR_update_va_mapping_otherdomain = 22
HYPERVISOR_iret = 23
HYPERVISOR_vcpu_op = 24
HYPERVISOR_set_segment_base = 25
HYPERVISOR_mmuext_op = 26
HYPERVISOR_xsm_op = 27
HYPERVISOR_nmi_op = 28
HYPERVISOR_sched_op = 29
HYPERVISOR_callback_op = 30
HYPERVISOR_xenoprof_op = 31
HYPERVISOR_event_channel_op = 32
HYPERVISOR_physdev_op = 33
HYPERVISOR_hvm_op = 34
HYPERVISOR_sysctl = 35
HYPERVISOR_domctl = 36
HYPERVISOR_kexec_op = 37
HYPERVISOR_tmem_op = 38
HYPERVISOR_argo_op = 39
HYPERVISOR_xenpmu_op = 40
HYPERVISOR_dm_op = 41
HYPERVISOR_hypfs_op = 42

# Number of 32-byte stubs in the one hypercall page (4096 / 32).
NR_HYPERCALL_STUBS = 128
HYPERCALL_STUB_SIZE = 32

# Xen's errno values (public errno.h; the same numbers as Linux x86).
EPERM = 1
ENOENT = 2
ESRCH = 3
EINTR = 4
EIO = 5
ENXIO = 6
E2BIG = 7
ENOEXEC = 8
EBADF = 9
ECHILD = 10
EAGAIN = 11
ENOMEM = 12
EACCES = 13
EFAULT = 14
EBUSY = 16
EEXIST = 17
EXDEV = 18
ENODEV = 19
EINVAL = 22
ENFILE = 23
EMFILE = 24
ENOSPC = 28
EROFS = 30
EMLINK = 31
EDOM = 33
ERANGE = 34
EDEADLK = 35
ENAMETOOLONG = 36
ENOLCK = 37
ENOSYS = 38
ENOTEMPTY = 39
ENODATA = 61
ETIME = 62
EBADMSG = 74
EOVERFLOW = 75
EILSEQ = 84
ERESTART = 85
ENOTSOCK = 88
EOPNOTSUPP = 95
EADDRINUSE = 98
EADDRNOTAVAIL = 99
ENOBUFS = 105
EISCONN = 106
ENOTCONN = 107
ETIMEDOUT = 110

ERRNO_NAMES = {v: k for k, v in globals().items()
               if k.startswith("E") and k.isupper() and isinstance(v, int)}


def errno_name(err: int) -> str:
    """'ENOSYS' for 38 or -38."""
    return ERRNO_NAMES.get(abs(err), f"E{abs(err)}")


# Domain ids (domid_t is uint16_t).
DOMID_FIRST_RESERVED = 0x7FF0
DOMID_SELF = 0x7FF0
DOMID_IO = 0x7FF1
DOMID_XEN = 0x7FF2
DOMID_COW = 0x7FF3
DOMID_INVALID = 0x7FF4
DOMID_IDLE = 0x7FFF

# Virtual IRQs (VIRQ_*): V = per vCPU, G = global.
VIRQ_TIMER = 0
VIRQ_DEBUG = 1
VIRQ_CONSOLE = 2
VIRQ_DOM_EXC = 3

# console_io sub-ops.
CONSOLEIO_write = 0
CONSOLEIO_read = 1
