"""Our ABI modules against Debian's libxen-dev public headers (skipped when
they or gcc are absent): numbers, struct sizes and field offsets."""
import os
import shutil
import subprocess
import tempfile

import pytest

from xen_core.abi import hvm, memory, sched, shared_info, vcpu, version, xen

HEADERS = "/usr/include/xen/xen.h"

# (C expression, our value)
CHECKS = [
    ("__HYPERVISOR_xen_version", xen.HYPERVISOR_xen_version),
    ("__HYPERVISOR_console_io", xen.HYPERVISOR_console_io),
    ("__HYPERVISOR_sched_op", xen.HYPERVISOR_sched_op),
    ("__HYPERVISOR_set_timer_op", xen.HYPERVISOR_set_timer_op),
    ("__HYPERVISOR_vcpu_op", xen.HYPERVISOR_vcpu_op),
    ("__HYPERVISOR_hvm_op", xen.HYPERVISOR_hvm_op),
    ("__HYPERVISOR_memory_op", xen.HYPERVISOR_memory_op),
    ("__HYPERVISOR_event_channel_op", xen.HYPERVISOR_event_channel_op),
    ("__HYPERVISOR_grant_table_op", xen.HYPERVISOR_grant_table_op),
    ("__HYPERVISOR_hypfs_op", xen.HYPERVISOR_hypfs_op),
    ("DOMID_SELF", xen.DOMID_SELF), ("DOMID_INVALID", xen.DOMID_INVALID),
    ("VIRQ_DOM_EXC", xen.VIRQ_DOM_EXC), ("CONSOLEIO_read", xen.CONSOLEIO_read),
    ("XEN_ENOSYS", xen.ENOSYS), ("XEN_EFAULT", xen.EFAULT), ("XEN_ETIME", xen.ETIME),
    ("XEN_ESRCH", xen.ESRCH), ("XEN_EEXIST", xen.EEXIST), ("XEN_ENODATA", xen.ENODATA),
    ("XENVER_guest_handle", version.XENVER_guest_handle),
    ("XENVER_build_id", version.XENVER_build_id),
    ("XENFEAT_linux_rsdp_unrestricted", version.XENFEAT_linux_rsdp_unrestricted),
    ("sizeof(struct xen_compile_info)", version.COMPILE_INFO_SIZE),
    ("sizeof(xen_capabilities_info_t)", version.XEN_CAPABILITIES_INFO_LEN),
    ("SCHEDOP_shutdown_code", sched.SCHEDOP_shutdown_code),
    ("SHUTDOWN_soft_reset", sched.SHUTDOWN_soft_reset),
    ("sizeof(struct sched_poll)", sched.SCHED_POLL.size),
    ("offsetof(struct sched_poll, timeout)", 16),
    ("sizeof(struct sched_remote_shutdown)", sched.SCHED_REMOTE_SHUTDOWN.size),
    ("XENMEM_memory_map", memory.XENMEM_memory_map),
    ("XENMEM_add_to_physmap_batch", memory.XENMEM_add_to_physmap_batch),
    ("XENMAPSPACE_gmfn_foreign", memory.XENMAPSPACE_gmfn_foreign),
    ("sizeof(struct xen_memory_reservation)", memory.MEMORY_RESERVATION.size),
    ("offsetof(struct xen_memory_reservation, domid)", 24),
    ("sizeof(struct xen_add_to_physmap)", memory.ADD_TO_PHYSMAP.size),
    ("offsetof(struct xen_add_to_physmap, gpfn)", 16),
    ("sizeof(struct xen_memory_map)", memory.MEMORY_MAP.size),
    ("VCPUOP_register_vcpu_info", vcpu.VCPUOP_register_vcpu_info),
    ("VCPUOP_register_vcpu_time_memory_area", vcpu.VCPUOP_register_vcpu_time_memory_area),
    ("RUNSTATE_offline", vcpu.RUNSTATE_offline),
    ("sizeof(struct vcpu_runstate_info)", vcpu.RUNSTATE_INFO.size),
    ("sizeof(struct vcpu_set_singleshot_timer)", vcpu.SET_SINGLESHOT_TIMER.size),
    ("sizeof(struct vcpu_register_vcpu_info)", vcpu.REGISTER_VCPU_INFO.size),
    ("sizeof(struct vcpu_hvm_context)", vcpu.VCPU_HVM_CONTEXT_SIZE),
    ("offsetof(struct vcpu_hvm_context, cpu_regs)", vcpu.VCPU_HVM_CONTEXT_HDR.size),
    ("sizeof(struct vcpu_hvm_x86_64)", vcpu.VCPU_HVM_X86_64.size),
    ("VCPU_HVM_MODE_64B", vcpu.VCPU_HVM_MODE_64B),
    ("HVMOP_pagetable_dying", hvm.HVMOP_pagetable_dying),
    ("HVM_PARAM_CONSOLE_EVTCHN", hvm.HVM_PARAM_CONSOLE_EVTCHN),
    ("HVM_PARAM_MCA_CAP", hvm.HVM_PARAM_MCA_CAP),
    ("HVM_NR_PARAMS", hvm.HVM_NR_PARAMS),
    ("sizeof(struct xen_hvm_param)", hvm.HVM_PARAM.size),
    ("sizeof(struct vcpu_info)", shared_info.VCPU_INFO_SIZE),
    ("offsetof(struct vcpu_info, time)", shared_info.VCPU_INFO_TIME),
    ("offsetof(struct vcpu_info, evtchn_pending_sel)", shared_info.VCPU_INFO_PENDING_SEL),
    ("sizeof(struct vcpu_time_info)", shared_info.VCPU_TIME_INFO.size),
    ("offsetof(struct vcpu_time_info, tsc_shift)", 28),
    ("offsetof(struct shared_info, evtchn_pending)", shared_info.SHARED_INFO_EVTCHN_PENDING),
    ("offsetof(struct shared_info, evtchn_mask)", shared_info.SHARED_INFO_EVTCHN_MASK),
    ("offsetof(struct shared_info, wc_version)", shared_info.SHARED_INFO_WC_VERSION),
    ("offsetof(struct shared_info, wc_sec_hi)", shared_info.SHARED_INFO_WC_SEC_HI),
    ("offsetof(struct shared_info, arch)", shared_info.SHARED_INFO_ARCH),
    ("XEN_LEGACY_MAX_VCPUS", shared_info.XEN_LEGACY_MAX_VCPUS),
    ("XEN_PVCLOCK_TSC_STABLE_BIT", shared_info.XEN_PVCLOCK_TSC_STABLE_BIT),
]

PROLOGUE = """
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/errno.h>
#include <xen/version.h>
#include <xen/features.h>
#include <xen/sched.h>
#include <xen/memory.h>
#include <xen/vcpu.h>
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/hvm/hvm_vcpu.h>
int main(void) {
"""


@pytest.fixture(scope="module")
def header_values():
    if not os.path.exists(HEADERS) or not shutil.which("gcc"):
        pytest.skip("libxen-dev headers or gcc not installed")
    body = "".join(f'    printf("%lld\\n", (long long)({expr}));\n' for expr, _ in CHECKS)
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = os.path.join(tmp, "abi.c"), os.path.join(tmp, "abi")
        with open(src, "w") as f:
            f.write(PROLOGUE + body + "    return 0;\n}\n")
        subprocess.run(["gcc", "-D__XEN_TOOLS__", "-o", exe, src], check=True)
        out = subprocess.run([exe], check=True, capture_output=True, text=True).stdout
    return [int(v) for v in out.split()]


@pytest.mark.parametrize("index", range(len(CHECKS)), ids=[c[0] for c in CHECKS])
def test_matches_public_headers(header_values, index):
    expr, ours = CHECKS[index]
    assert header_values[index] == ours, expr
