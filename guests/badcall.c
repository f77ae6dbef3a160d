/* badcall: bad pointers, bad sub-ops and unknown hypercall numbers must get
 * Xen's errno back (and nothing else must happen). One PASS/FAIL line per
 * check; poweroff if all pass, crash otherwise. */
#include "lib/guest.h"
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/event_channel.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

static int passed, failed;

static void check(const char *what, long got, long want)
{
    if (got == want) {
        passed++;
        printk("PASS %s = %ld\n", what, got);
    } else {
        failed++;
        printk("FAIL %s = %ld, want %ld\n", what, got, want);
    }
}

int guest_main(void)
{
    /* Not mapped by our page tables (they cover [0, 4 GiB)). */
    void *unmapped = (void *)0x100000000UL;
    /* Non-canonical: no page walk can succeed. */
    void *noncanonical = (void *)0x0000800000000000UL;
    /* Mapped by our page tables, but no RAM behind it. */
    uint64_t end = ram_end();
    void *beyond_ram = (void *)((end + 0x200000) & ~0x1fffUL);
    /* Starts in RAM, runs past its end: a partial copy is still -EFAULT. */
    void *straddle = (void *)(end - 16);
    struct xen_hvm_param hp = { .domid = DOMID_SELF, .index = HVM_NR_PARAMS };
    struct xen_hvm_param hp_set = { .domid = DOMID_SELF, .index = HVM_NR_PARAMS + 5 };
    struct xen_hvm_param hp_nodom = { .domid = 0x7000, .index = HVM_PARAM_STORE_PFN };
    struct sched_poll poll = { .ports = NULL, .nr_ports = 129, .timeout = 1 };
    struct xen_feature_info fi = { .submap_idx = 1000 };
    long ver;

    printk("badcall: ram ends at %lx, probing %lx and %lx\n",
           (unsigned long)end, (unsigned long)beyond_ram, (unsigned long)straddle);
    if (!end)
        panic("badcall: no RAM in the hvm_start_info memmap\n");

    ver = HYPERVISOR_xen_version(XENVER_version, NULL);
    check("xen_version(version) major >= 3", ver >= (3L << 16), 1);
    check("xen_version(pagesize, NULL)", HYPERVISOR_xen_version(XENVER_pagesize, NULL), 4096);

    /* Hypercall numbers Xen does not have. */
    check("hypercall 63", hypercall_nr(63, 0, 0, 0, 0, 0), -XEN_ENOSYS);
    check("hypercall 100", hypercall_nr(100, 0, 0, 0, 0, 0), -XEN_ENOSYS);
    check("hypercall 127", hypercall_nr(127, 0, 0, 0, 0, 0), -XEN_ENOSYS);

    /* Unknown sub-ops. */
    check("xen_version(0x7fff)", HYPERVISOR_xen_version(0x7fff, NULL), -XEN_ENOSYS);
    check("console_io(99)", HYPERVISOR_console_io(99, 0, NULL), -XEN_ENOSYS);
    check("sched_op(99)", HYPERVISOR_sched_op(99, NULL), -XEN_ENOSYS);
    check("memory_op(99)", HYPERVISOR_memory_op(99, NULL), -XEN_ENOSYS);
    check("hvm_op(99)", HYPERVISOR_hvm_op(99, NULL), -XEN_ENOSYS);
    check("event_channel_op(99)", HYPERVISOR_event_channel_op(99, NULL), -XEN_ENOSYS);

    /* Bad guest pointers. */
    check("xen_version(extraversion, unmapped)",
          HYPERVISOR_xen_version(XENVER_extraversion, unmapped), -XEN_EFAULT);
    check("xen_version(extraversion, non-canonical)",
          HYPERVISOR_xen_version(XENVER_extraversion, noncanonical), -XEN_EFAULT);
    check("xen_version(extraversion, beyond RAM)",
          HYPERVISOR_xen_version(XENVER_extraversion, beyond_ram), -XEN_EFAULT);
    check("xen_version(compile_info, straddling RAM end)",
          HYPERVISOR_xen_version(XENVER_compile_info, straddle), -XEN_EFAULT);
    check("console_io(write, beyond RAM)",
          HYPERVISOR_console_io(CONSOLEIO_write, 16, beyond_ram), -XEN_EFAULT);
    check("console_io(write, straddling RAM end)",
          HYPERVISOR_console_io(CONSOLEIO_write, 64, straddle), -XEN_EFAULT);
    check("sched_op(shutdown, unmapped)",
          HYPERVISOR_sched_op(SCHEDOP_shutdown, unmapped), -XEN_EFAULT);
    check("sched_op(poll, beyond RAM)",
          HYPERVISOR_sched_op(SCHEDOP_poll, beyond_ram), -XEN_EFAULT);
    check("memory_op(add_to_physmap, unmapped)",
          HYPERVISOR_memory_op(XENMEM_add_to_physmap, unmapped), -XEN_EFAULT);
    check("hvm_op(get_param, beyond RAM)",
          HYPERVISOR_hvm_op(HVMOP_get_param, beyond_ram), -XEN_EFAULT);
    check("xen_version(get_features, unmapped)",
          HYPERVISOR_xen_version(XENVER_get_features, unmapped), -XEN_EFAULT);
    check("sched_op(shutdown_code, beyond RAM)",
          HYPERVISOR_sched_op(SCHEDOP_shutdown_code, beyond_ram), -XEN_EFAULT);
    check("memory_op(current_reservation, unmapped)",
          HYPERVISOR_memory_op(XENMEM_current_reservation, unmapped), -XEN_EFAULT);
    check("memory_op(memory_map, beyond RAM)",
          HYPERVISOR_memory_op(XENMEM_memory_map, beyond_ram), -XEN_EFAULT);
    check("vcpu_op(get_runstate_info, vcpu 0, unmapped)",
          HYPERVISOR_vcpu_op(VCPUOP_get_runstate_info, 0, unmapped), -XEN_EFAULT);

    /* Bad values. */
    check("sched_op(poll, nr_ports = 129)",
          HYPERVISOR_sched_op(SCHEDOP_poll, &poll), -XEN_EINVAL);
    check("hvm_op(get_param, index = HVM_NR_PARAMS)",
          HYPERVISOR_hvm_op(HVMOP_get_param, &hp), -XEN_EINVAL);
    check("hvm_op(set_param, index = HVM_NR_PARAMS + 5)",
          HYPERVISOR_hvm_op(HVMOP_set_param, &hp_set), -XEN_EINVAL);
    check("hvm_op(get_param, no such domain)",
          HYPERVISOR_hvm_op(HVMOP_get_param, &hp_nodom), -XEN_ESRCH);
    check("xen_version(get_features, submap 1000)",
          HYPERVISOR_xen_version(XENVER_get_features, &fi), -XEN_EINVAL);
    check("vcpu_op(is_up, vcpu 4096)",
          HYPERVISOR_vcpu_op(VCPUOP_is_up, 4096, NULL), -XEN_ENOENT);

    printk("badcall: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
