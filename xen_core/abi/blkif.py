"""Block device I/O interface (Xen public io/blkif.h), x86-64 layouts.

A request is the union of the read/write, discard and indirect forms, all
112 bytes; `id` is at offset 8 in each so a backend can always answer. The
response is {id u64, operation u8, status i16} (16 bytes). Sectors are 512
bytes; first_sect/last_sect index the 512-byte sectors of one 4 KiB page.
"""
import struct

BLKIF_OP_READ = 0
BLKIF_OP_WRITE = 1
BLKIF_OP_WRITE_BARRIER = 2
BLKIF_OP_FLUSH_DISKCACHE = 3
BLKIF_OP_RESERVED_1 = 4
BLKIF_OP_DISCARD = 5
BLKIF_OP_INDIRECT = 6

BLKIF_RSP_EOPNOTSUPP = -2
BLKIF_RSP_ERROR = -1
BLKIF_RSP_OKAY = 0

BLKIF_MAX_SEGMENTS_PER_REQUEST = 11
BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST = 8
BLKIF_DISCARD_SECURE = 1

# `info` key bits (VDISK_* in io/blkif.h)
VDISK_CDROM = 0x1
VDISK_REMOVABLE = 0x2
VDISK_READONLY = 0x4

XEN_SECTOR_SIZE = 512
SECTORS_PER_PAGE = 4096 // XEN_SECTOR_SIZE

REQUEST_SIZE = 112
RESPONSE_SIZE = 16
ENTRY_SIZE = REQUEST_SIZE          # sizeof(union blkif_sring_entry)

# blkif_request: operation, nr_segments, handle, pad, id, sector_number
REQUEST_HDR = struct.Struct("<BBHIQQ")
# blkif_request_segment: gref u32, first_sect u8, last_sect u8, pad u16
SEGMENT = struct.Struct("<IBBH")
SEGMENTS_OFFSET = 24
# blkif_request_discard: operation, flag, handle, pad, id, sector_number, nr_sectors
DISCARD = struct.Struct("<BBHIQQQ")
# blkif_request_indirect: operation, indirect_op, nr_segments u16, pad, id,
# sector_number, handle u16, pad u16, indirect_grefs[8]
INDIRECT_HDR = struct.Struct("<BBHIQQHH")
INDIRECT_GREFS_OFFSET = 28
SEGMENTS_PER_INDIRECT_FRAME = 4096 // SEGMENT.size   # 512
RESPONSE = struct.Struct("<QBxh")

# What Linux's xen-blkback advertises as feature-max-indirect-segments.
MAX_INDIRECT_SEGMENTS = 256

PROTOCOL_X86_64 = "x86_64-abi"
