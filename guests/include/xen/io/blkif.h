/* Block device I/O interface (Xen public io/blkif.h), x86-64, and the
 * generic shared-ring header (io/ring.h). Written from the published ABI. */
#ifndef GUEST_XEN_IO_BLKIF_H
#define GUEST_XEN_IO_BLKIF_H

#include <xen/types.h>

/* io/ring.h: indexes, then padding to 64 bytes; entries follow. */
struct xen_sring_hdr {
    uint32_t req_prod, req_event;
    uint32_t rsp_prod, rsp_event;
    uint8_t pad[48];
};

#define BLKIF_OP_READ            0
#define BLKIF_OP_WRITE           1
#define BLKIF_OP_WRITE_BARRIER   2
#define BLKIF_OP_FLUSH_DISKCACHE 3
#define BLKIF_OP_DISCARD         5
#define BLKIF_OP_INDIRECT        6

#define BLKIF_RSP_EOPNOTSUPP (-2)
#define BLKIF_RSP_ERROR      (-1)
#define BLKIF_RSP_OKAY         0

#define BLKIF_MAX_SEGMENTS_PER_REQUEST 11
#define BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST 8
#define BLKIF_SEGS_PER_INDIRECT_FRAME 512

#define VDISK_CDROM     0x1
#define VDISK_REMOVABLE 0x2
#define VDISK_READONLY  0x4

struct blkif_request_segment {
    uint32_t gref;
    uint8_t first_sect, last_sect;   /* 512-byte sectors within the page */
    uint16_t pad;
};

struct blkif_request {
    uint8_t operation;
    uint8_t nr_segments;
    uint16_t handle;
    uint32_t pad;
    uint64_t id;
    uint64_t sector_number;
    struct blkif_request_segment seg[BLKIF_MAX_SEGMENTS_PER_REQUEST];
};

struct blkif_request_indirect {
    uint8_t operation;               /* BLKIF_OP_INDIRECT */
    uint8_t indirect_op;             /* READ or WRITE */
    uint16_t nr_segments;
    uint32_t pad1;
    uint64_t id;
    uint64_t sector_number;
    uint16_t handle;
    uint16_t pad2;
    uint32_t indirect_grefs[BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST];
    uint32_t pad3;
};

struct blkif_response {
    uint64_t id;
    uint8_t operation;
    int16_t status;
};

#define BLKIF_RING_ENTRY_SIZE 112    /* sizeof(union blkif_sring_entry) */
#define BLKIF_RING_SIZE_1PAGE 32

#endif
