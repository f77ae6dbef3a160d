"""xen_version sub-ops and their buffers (public version.h, features.h)."""
from .cpuid import XEN_VERSION_MAJOR, XEN_VERSION_MINOR

XENVER_version = 0
XENVER_extraversion = 1
XENVER_compile_info = 2
XENVER_capabilities = 3
XENVER_changeset = 4
XENVER_platform_parameters = 5
XENVER_get_features = 6
XENVER_pagesize = 7
XENVER_guest_handle = 8
XENVER_commandline = 9
XENVER_build_id = 10

XEN_EXTRAVERSION_LEN = 16       # xen_extraversion_t
XEN_CAPABILITIES_INFO_LEN = 1024  # xen_capabilities_info_t
XEN_CHANGESET_INFO_LEN = 64     # xen_changeset_info_t
XEN_COMMANDLINE_LEN = 1024      # xen_commandline_t
XEN_DOMAIN_HANDLE_LEN = 16      # xen_domain_handle_t (uint8_t[16])
# xen_compile_info: compiler[64] compile_by[16] compile_domain[32] compile_date[32]
COMPILE_INFO_FIELDS = (("compiler", 64), ("compile_by", 16),
                       ("compile_domain", 32), ("compile_date", 32))
COMPILE_INFO_SIZE = 144
PLATFORM_PARAMETERS_SIZE = 8    # { xen_ulong_t virt_start; }
FEATURE_INFO_FMT = "<II"        # { unsigned int submap_idx; uint32_t submap; }

XENFEAT_writable_page_tables = 0
XENFEAT_writable_descriptor_tables = 1
XENFEAT_auto_translated_physmap = 2
XENFEAT_supervisor_mode_kernel = 3
XENFEAT_pae_pgdir_above_4gb = 4
XENFEAT_mmu_pt_update_preserve_ad = 5
XENFEAT_highmem_assist = 6
XENFEAT_gnttab_map_avail_bits = 7
XENFEAT_hvm_callback_vector = 8
XENFEAT_hvm_safe_pvclock = 9
XENFEAT_hvm_pirqs = 10
XENFEAT_dom0 = 11
XENFEAT_grant_map_identity = 12
XENFEAT_memory_op_vnode_supported = 13
XENFEAT_linux_rsdp_unrestricted = 15
XENFEAT_NR_SUBMAPS = 1

VERSION = (XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR
EXTRAVERSION = b".0-pyxen"
# Capabilities of an x86-64 host with HVM support, as Xen reports them.
CAPABILITIES = b"xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64"
