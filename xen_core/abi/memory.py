"""memory_op sub-ops and argument structs (public memory.h), x86-64 layout."""
import struct

XENMEM_increase_reservation = 0
XENMEM_decrease_reservation = 1
XENMEM_maximum_ram_page = 2
XENMEM_current_reservation = 3
XENMEM_maximum_reservation = 4
XENMEM_machphys_mfn_list = 5
XENMEM_populate_physmap = 6
XENMEM_add_to_physmap = 7
XENMEM_memory_map = 9
XENMEM_machine_memory_map = 10
XENMEM_exchange = 11
XENMEM_machphys_mapping = 12
XENMEM_set_memory_map = 13
XENMEM_maximum_gpfn = 14
XENMEM_remove_from_physmap = 15
XENMEM_get_pod_target = 17
XENMEM_add_to_physmap_batch = 23

# The sub-op is cmd & MEMOP_CMD_MASK; the rest carries a continuation start.
MEMOP_EXTENT_SHIFT = 6
MEMOP_CMD_MASK = (1 << MEMOP_EXTENT_SHIFT) - 1

XENMAPSPACE_shared_info = 0
XENMAPSPACE_grant_table = 1
XENMAPSPACE_gmfn = 2
XENMAPSPACE_gmfn_range = 3
XENMAPSPACE_gmfn_foreign = 4
XENMAPSPACE_dev_mmio = 5

# struct xen_memory_reservation { handle extent_start; xen_ulong_t nr_extents;
#   unsigned int extent_order; unsigned int mem_flags; domid_t domid; }
MEMORY_RESERVATION = struct.Struct("<QQIIH6x")
# struct xen_add_to_physmap { domid_t domid; uint16_t size; unsigned int space;
#   xen_ulong_t idx; xen_pfn_t gpfn; }
ADD_TO_PHYSMAP = struct.Struct("<HHIQQ")
# struct xen_memory_map { unsigned int nr_entries; handle buffer; }
MEMORY_MAP = struct.Struct("<I4xQ")
# An e820 entry: addr u64, size u64, type u32 (packed, 20 bytes).
E820_ENTRY = struct.Struct("<QQI")
E820_RAM = 1
E820_RESERVED = 2
DOMID = struct.Struct("<H")
XEN_PFN = struct.Struct("<Q")
