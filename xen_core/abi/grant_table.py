"""grant_table_op sub-ops, v1 entries, flags, status codes and argument
structs (public grant_table.h), x86-64 layout."""
import struct

GNTTABOP_map_grant_ref = 0
GNTTABOP_unmap_grant_ref = 1
GNTTABOP_setup_table = 2
GNTTABOP_dump_table = 3
GNTTABOP_transfer = 4
GNTTABOP_copy = 5
GNTTABOP_query_size = 6
GNTTABOP_unmap_and_replace = 7
GNTTABOP_set_version = 8
GNTTABOP_get_status_frames = 9
GNTTABOP_get_version = 10
GNTTABOP_swap_grant_ref = 11
GNTTABOP_cache_flush = 12

# grant_entry_v1 { uint16_t flags; domid_t domid; uint32_t frame; }
GRANT_ENTRY_V1 = struct.Struct("<HHI")
GRANT_ENTRY_V1_SIZE = 8
ENTRIES_PER_FRAME_V1 = 4096 // GRANT_ENTRY_V1_SIZE   # 512

# grant_entry flags
GTF_invalid = 0
GTF_permit_access = 1
GTF_accept_transfer = 2
GTF_transitive = 3
GTF_type_mask = 3
GTF_readonly = 1 << 2
GTF_reading = 1 << 3
GTF_writing = 1 << 4
GTF_PWT = 1 << 5
GTF_PCD = 1 << 6
GTF_PAT = 1 << 7
GTF_sub_page = 1 << 8
GTF_transfer_committed = 1 << 2
GTF_transfer_completed = 1 << 3

# map flags
GNTMAP_device_map = 1 << 0
GNTMAP_host_map = 1 << 1
GNTMAP_readonly = 1 << 2
GNTMAP_application_map = 1 << 3
GNTMAP_contains_pte = 1 << 4

# copy flags
GNTCOPY_source_gref = 1 << 0
GNTCOPY_dest_gref = 1 << 1

# status codes (int16_t)
GNTST_okay = 0
GNTST_general_error = -1
GNTST_bad_domain = -2
GNTST_bad_gntref = -3
GNTST_bad_handle = -4
GNTST_bad_virt_addr = -5
GNTST_bad_dev_addr = -6
GNTST_no_device_space = -7
GNTST_permission_denied = -8
GNTST_bad_page = -9
GNTST_bad_copy_arg = -10
GNTST_address_too_big = -11
GNTST_eagain = -12
GNTST_no_space = -13

GNTST_NAMES = {
    GNTST_okay: "okay", GNTST_general_error: "general_error", GNTST_bad_domain: "bad_domain",
    GNTST_bad_gntref: "bad_gntref", GNTST_bad_handle: "bad_handle",
    GNTST_bad_virt_addr: "bad_virt_addr", GNTST_bad_dev_addr: "bad_dev_addr",
    GNTST_no_device_space: "no_device_space", GNTST_permission_denied: "permission_denied",
    GNTST_bad_page: "bad_page", GNTST_bad_copy_arg: "bad_copy_arg",
    GNTST_address_too_big: "address_too_big", GNTST_eagain: "eagain", GNTST_no_space: "no_space",
}

# Xen 4.17 defaults (xl.cfg max_grant_frames / max_maptrack_frames, and the
# gnttab_max_frames / gnttab_max_maptrack_frames command-line options).
DEFAULT_MAX_GRANT_FRAMES = 64
DEFAULT_MAX_MAPTRACK_FRAMES = 1024
# A maptrack frame holds 4 KiB of struct grant_mapping (ref, flags, domid,
# vcpu, pad/next: 16 bytes).
MAPTRACK_PER_FRAME = 4096 // 16

# setup_table: dom u16, nr_frames u32 @4, OUT status i16 @8, frame_list handle @16
SETUP_TABLE = struct.Struct("<HxxIh6xQ")
# query_size: dom u16, OUT nr_frames u32 @4, OUT max_nr_frames u32 @8, OUT status i16 @12
QUERY_SIZE = struct.Struct("<HxxIIh2x")
# map_grant_ref: host_addr u64, flags u32, ref u32, dom u16, OUT status i16,
# OUT handle u32, OUT dev_bus_addr u64
MAP_GRANT_REF = struct.Struct("<QIIHhIQ")
# unmap_grant_ref: host_addr u64, dev_bus_addr u64, handle u32, OUT status i16
UNMAP_GRANT_REF = struct.Struct("<QQIh2x")
# gnttab_copy: source {u (ref or gmfn) u64, domid u16, offset u16}, dest {...},
# len u16, flags u16, OUT status i16
COPY = struct.Struct("<QHH4xQHH4xHHh2x")
SET_VERSION = struct.Struct("<I")
GET_VERSION = struct.Struct("<HxxI")           # dom, OUT version
# get_status_frames: nr_frames u32, dom u16, OUT status i16, frame_list handle u64
GET_STATUS_FRAMES = struct.Struct("<IHhQ")
