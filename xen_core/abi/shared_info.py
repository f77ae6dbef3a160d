"""The shared-info page and vcpu_time_info (public xen.h, arch-x86/xen.h), x86-64."""
import struct

XEN_LEGACY_MAX_VCPUS = 32
VCPU_INFO_SIZE = 64
# vcpu_info: evtchn_upcall_pending u8 @0, evtchn_upcall_mask u8 @1,
# evtchn_pending_sel xen_ulong_t @8, arch_vcpu_info (cr2, pad) @16,
# vcpu_time_info @32.
VCPU_INFO_UPCALL_PENDING = 0
VCPU_INFO_UPCALL_MASK = 1
VCPU_INFO_PENDING_SEL = 8
VCPU_INFO_TIME = 32

# vcpu_time_info: version u32, pad0 u32, tsc_timestamp u64, system_time u64,
# tsc_to_system_mul u32, tsc_shift i8, flags u8, pad1[2].
VCPU_TIME_INFO = struct.Struct("<IIQQIbB2x")
XEN_PVCLOCK_TSC_STABLE_BIT = 1 << 0
XEN_PVCLOCK_GUEST_STOPPED = 1 << 1

SHARED_INFO_EVTCHN_PENDING = 2048  # xen_ulong_t evtchn_pending[64]
SHARED_INFO_EVTCHN_MASK = 2560     # xen_ulong_t evtchn_mask[64]
SHARED_INFO_WC_VERSION = 3072      # uint32_t wc_version
SHARED_INFO_WC_SEC = 3076          # uint32_t wc_sec
SHARED_INFO_WC_NSEC = 3080         # uint32_t wc_nsec
SHARED_INFO_WC_SEC_HI = 3084       # uint32_t wc_sec_hi (x86-64)
SHARED_INFO_ARCH = 3088            # arch_shared_info (max_pfn, p2m refs)
EVTCHN_2L_NR_CHANNELS = 64 * 64    # 4096 ports for a 64-bit guest
