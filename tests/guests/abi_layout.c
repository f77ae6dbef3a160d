/* Prints sizes, offsets and constants of the guests' Xen ABI definitions.
 * Built twice by test_abi_headers.py: against guests/include and against
 * Debian's libxen-dev headers; the two outputs must be identical. */
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/version.h>
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/event_channel.h>
#include <xen/elfnote.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/arch-x86/cpuid.h>
#include <xen/arch-x86/hvm/start_info.h>

#define S(t) printf("sizeof %s %zu\n", #t, sizeof(struct t))
#define O(t, f) printf("offsetof %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define C(c) printf("const %s %lld\n", #c, (long long)(c))

int main(void)
{
    S(vcpu_time_info); O(vcpu_time_info, version); O(vcpu_time_info, tsc_timestamp);
    O(vcpu_time_info, system_time); O(vcpu_time_info, tsc_to_system_mul);
    O(vcpu_time_info, tsc_shift); O(vcpu_time_info, flags);
    S(arch_vcpu_info); O(arch_vcpu_info, cr2);
    S(vcpu_info); O(vcpu_info, evtchn_upcall_pending); O(vcpu_info, evtchn_upcall_mask);
    O(vcpu_info, evtchn_pending_sel); O(vcpu_info, arch); O(vcpu_info, time);
    S(arch_shared_info); O(arch_shared_info, max_pfn); O(arch_shared_info, p2m_generation);
    S(shared_info); O(shared_info, vcpu_info); O(shared_info, evtchn_pending);
    O(shared_info, evtchn_mask); O(shared_info, wc_version); O(shared_info, wc_sec);
    O(shared_info, wc_nsec); O(shared_info, wc_sec_hi); O(shared_info, arch);

    S(hvm_start_info); O(hvm_start_info, magic); O(hvm_start_info, version);
    O(hvm_start_info, flags); O(hvm_start_info, nr_modules); O(hvm_start_info, modlist_paddr);
    O(hvm_start_info, cmdline_paddr); O(hvm_start_info, rsdp_paddr);
    O(hvm_start_info, memmap_paddr); O(hvm_start_info, memmap_entries);
    O(hvm_start_info, reserved);
    S(hvm_modlist_entry); O(hvm_modlist_entry, paddr); O(hvm_modlist_entry, size);
    O(hvm_modlist_entry, cmdline_paddr); O(hvm_modlist_entry, reserved);
    S(hvm_memmap_table_entry); O(hvm_memmap_table_entry, addr); O(hvm_memmap_table_entry, size);
    O(hvm_memmap_table_entry, type); O(hvm_memmap_table_entry, reserved);

    S(sched_shutdown); O(sched_shutdown, reason);
    S(sched_poll); O(sched_poll, ports); O(sched_poll, nr_ports); O(sched_poll, timeout);
    S(sched_remote_shutdown); O(sched_remote_shutdown, domain_id); O(sched_remote_shutdown, reason);
    S(sched_watchdog); O(sched_watchdog, id); O(sched_watchdog, timeout);

    S(xen_add_to_physmap); O(xen_add_to_physmap, domid); O(xen_add_to_physmap, size);
    O(xen_add_to_physmap, space); O(xen_add_to_physmap, idx); O(xen_add_to_physmap, gpfn);
    S(xen_memory_reservation); O(xen_memory_reservation, extent_start);
    O(xen_memory_reservation, nr_extents); O(xen_memory_reservation, extent_order);
    O(xen_memory_reservation, mem_flags); O(xen_memory_reservation, domid);
    S(xen_memory_map); O(xen_memory_map, nr_entries); O(xen_memory_map, buffer);

    S(vcpu_runstate_info); O(vcpu_runstate_info, state); O(vcpu_runstate_info, state_entry_time);
    O(vcpu_runstate_info, time);
    S(vcpu_set_periodic_timer); O(vcpu_set_periodic_timer, period_ns);
    S(vcpu_set_singleshot_timer); O(vcpu_set_singleshot_timer, timeout_abs_ns);
    O(vcpu_set_singleshot_timer, flags);
    S(vcpu_register_vcpu_info); O(vcpu_register_vcpu_info, mfn);
    O(vcpu_register_vcpu_info, offset); O(vcpu_register_vcpu_info, rsvd);

    S(xen_hvm_param); O(xen_hvm_param, domid); O(xen_hvm_param, index); O(xen_hvm_param, value);
    S(xen_compile_info); O(xen_compile_info, compiler); O(xen_compile_info, compile_by);
    O(xen_compile_info, compile_domain); O(xen_compile_info, compile_date);
    S(xen_platform_parameters); O(xen_platform_parameters, virt_start);
    S(xen_feature_info); O(xen_feature_info, submap_idx); O(xen_feature_info, submap);
    S(evtchn_send); O(evtchn_send, port);
    printf("sizeof xen_extraversion_t %zu\n", sizeof(xen_extraversion_t));
    printf("sizeof xen_capabilities_info_t %zu\n", sizeof(xen_capabilities_info_t));
    printf("sizeof xen_changeset_info_t %zu\n", sizeof(xen_changeset_info_t));
    printf("sizeof xen_domain_handle_t %zu\n", sizeof(xen_domain_handle_t));

    C(__HYPERVISOR_set_trap_table); C(__HYPERVISOR_mmu_update); C(__HYPERVISOR_set_gdt);
    C(__HYPERVISOR_stack_switch); C(__HYPERVISOR_set_callbacks); C(__HYPERVISOR_fpu_taskswitch);
    C(__HYPERVISOR_platform_op); C(__HYPERVISOR_set_debugreg); C(__HYPERVISOR_get_debugreg);
    C(__HYPERVISOR_update_descriptor); C(__HYPERVISOR_memory_op); C(__HYPERVISOR_multicall);
    C(__HYPERVISOR_update_va_mapping); C(__HYPERVISOR_set_timer_op); C(__HYPERVISOR_xen_version);
    C(__HYPERVISOR_console_io); C(__HYPERVISOR_grant_table_op); C(__HYPERVISOR_vm_assist);
    C(__HYPERVISOR_iret); C(__HYPERVISOR_vcpu_op); C(__HYPERVISOR_mmuext_op);
    C(__HYPERVISOR_xsm_op); C(__HYPERVISOR_nmi_op); C(__HYPERVISOR_sched_op);
    C(__HYPERVISOR_callback_op); C(__HYPERVISOR_xenoprof_op); C(__HYPERVISOR_event_channel_op);
    C(__HYPERVISOR_physdev_op); C(__HYPERVISOR_hvm_op); C(__HYPERVISOR_sysctl);
    C(__HYPERVISOR_domctl);
    C(CONSOLEIO_write); C(CONSOLEIO_read); C(DOMID_SELF); C(XEN_LEGACY_MAX_VCPUS);

    C(XEN_EPERM); C(XEN_ENOENT); C(XEN_ESRCH); C(XEN_EIO); C(XEN_ENXIO);
    C(XEN_E2BIG); C(XEN_ENOEXEC); C(XEN_EBADF); C(XEN_ECHILD); C(XEN_EAGAIN);
    C(XEN_ENOMEM); C(XEN_EACCES); C(XEN_EFAULT); C(XEN_EBUSY); C(XEN_EEXIST);
    C(XEN_EXDEV); C(XEN_ENODEV); C(XEN_EINVAL); C(XEN_ENFILE); C(XEN_ENOSPC);
    C(XEN_ERANGE); C(XEN_ENOSYS);

    C(XENVER_version); C(XENVER_extraversion); C(XENVER_compile_info);
    C(XENVER_capabilities); C(XENVER_changeset); C(XENVER_platform_parameters);
    C(XENVER_get_features); C(XENVER_pagesize); C(XENVER_guest_handle);
    C(XENVER_commandline); C(XEN_EXTRAVERSION_LEN);

    C(SCHEDOP_yield); C(SCHEDOP_block); C(SCHEDOP_shutdown); C(SCHEDOP_poll);
    C(SCHEDOP_remote_shutdown); C(SCHEDOP_shutdown_code); C(SCHEDOP_watchdog);
    C(SCHEDOP_pin_override);
    C(SHUTDOWN_poweroff); C(SHUTDOWN_reboot); C(SHUTDOWN_suspend); C(SHUTDOWN_crash);
    C(SHUTDOWN_watchdog); C(SHUTDOWN_soft_reset);

    C(XENMEM_increase_reservation); C(XENMEM_decrease_reservation);
    C(XENMEM_maximum_ram_page); C(XENMEM_current_reservation);
    C(XENMEM_maximum_reservation); C(XENMEM_populate_physmap); C(XENMEM_add_to_physmap);
    C(XENMEM_memory_map); C(XENMEM_machine_memory_map);
    C(XENMAPSPACE_shared_info); C(XENMAPSPACE_grant_table); C(XENMAPSPACE_gmfn);
    C(XENMAPSPACE_gmfn_range); C(XENMAPSPACE_gmfn_foreign); C(XENMAPSPACE_dev_mmio);

    C(VCPUOP_initialise); C(VCPUOP_up); C(VCPUOP_down); C(VCPUOP_is_up);
    C(VCPUOP_get_runstate_info); C(VCPUOP_register_runstate_memory_area);
    C(VCPUOP_set_periodic_timer); C(VCPUOP_stop_periodic_timer);
    C(VCPUOP_set_singleshot_timer); C(VCPUOP_stop_singleshot_timer);
    C(VCPUOP_register_vcpu_info); C(VCPUOP_send_nmi); C(VCPUOP_get_physid);
    C(VCPUOP_register_vcpu_time_memory_area);
    C(RUNSTATE_running); C(RUNSTATE_runnable); C(RUNSTATE_blocked); C(RUNSTATE_offline);
    C(VCPU_SSHOTTMR_future);

    C(EVTCHNOP_bind_interdomain); C(EVTCHNOP_bind_virq); C(EVTCHNOP_bind_pirq);
    C(EVTCHNOP_close); C(EVTCHNOP_send); C(EVTCHNOP_status); C(EVTCHNOP_alloc_unbound);
    C(EVTCHNOP_bind_ipi); C(EVTCHNOP_bind_vcpu); C(EVTCHNOP_unmask); C(EVTCHNOP_reset);
    C(EVTCHNOP_init_control);
    C(VIRQ_TIMER); C(VIRQ_DEBUG); C(VIRQ_CONSOLE); C(VIRQ_DOM_EXC);

    C(HVMOP_set_param); C(HVMOP_get_param);
    C(HVM_PARAM_CALLBACK_IRQ); C(HVM_PARAM_STORE_PFN); C(HVM_PARAM_STORE_EVTCHN);
    C(HVM_PARAM_CONSOLE_PFN); C(HVM_PARAM_CONSOLE_EVTCHN); C(HVM_NR_PARAMS);
    C(HVM_PARAM_CALLBACK_TYPE_VECTOR);

    C(XEN_CPUID_FIRST_LEAF); C(XEN_CPUID_LEAF(2)); C(XEN_CPUID_SIGNATURE_EBX);
    C(XEN_CPUID_SIGNATURE_ECX); C(XEN_CPUID_SIGNATURE_EDX);

    C(XEN_HVM_START_MAGIC_VALUE); C(XEN_HVM_MEMMAP_TYPE_RAM); C(XEN_HVM_MEMMAP_TYPE_RESERVED);
    C(XEN_HVM_MEMMAP_TYPE_ACPI); C(XEN_HVM_MEMMAP_TYPE_NVS); C(XEN_HVM_MEMMAP_TYPE_UNUSABLE);
    C(XEN_HVM_MEMMAP_TYPE_DISABLED); C(XEN_HVM_MEMMAP_TYPE_PMEM);

    C(XEN_ELFNOTE_INFO); C(XEN_ELFNOTE_ENTRY); C(XEN_ELFNOTE_HYPERCALL_PAGE);
    C(XEN_ELFNOTE_VIRT_BASE); C(XEN_ELFNOTE_PADDR_OFFSET); C(XEN_ELFNOTE_XEN_VERSION);
    C(XEN_ELFNOTE_GUEST_OS); C(XEN_ELFNOTE_GUEST_VERSION); C(XEN_ELFNOTE_LOADER);
    C(XEN_ELFNOTE_PAE_MODE); C(XEN_ELFNOTE_FEATURES); C(XEN_ELFNOTE_BSD_SYMTAB);
    C(XEN_ELFNOTE_HV_START_LOW); C(XEN_ELFNOTE_L1_MFN_VALID); C(XEN_ELFNOTE_SUSPEND_CANCEL);
    C(XEN_ELFNOTE_INIT_P2M); C(XEN_ELFNOTE_MOD_START_PFN); C(XEN_ELFNOTE_SUPPORTED_FEATURES);
    C(XEN_ELFNOTE_PHYS32_ENTRY);
    return 0;
}
