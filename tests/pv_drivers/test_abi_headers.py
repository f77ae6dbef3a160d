"""xen_core/abi/{ring,blkif,netif}.py against Debian's libxen-dev io/
headers (skipped when they or gcc are absent)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from xen_core.abi import blkif, netif, ring

CHECKS = [
    ("BLKIF_OP_READ", blkif.BLKIF_OP_READ), ("BLKIF_OP_WRITE", blkif.BLKIF_OP_WRITE),
    ("BLKIF_OP_WRITE_BARRIER", blkif.BLKIF_OP_WRITE_BARRIER),
    ("BLKIF_OP_FLUSH_DISKCACHE", blkif.BLKIF_OP_FLUSH_DISKCACHE),
    ("BLKIF_OP_RESERVED_1", blkif.BLKIF_OP_RESERVED_1),
    ("BLKIF_OP_DISCARD", blkif.BLKIF_OP_DISCARD), ("BLKIF_OP_INDIRECT", blkif.BLKIF_OP_INDIRECT),
    ("BLKIF_RSP_EOPNOTSUPP", blkif.BLKIF_RSP_EOPNOTSUPP), ("BLKIF_RSP_ERROR", blkif.BLKIF_RSP_ERROR),
    ("BLKIF_MAX_SEGMENTS_PER_REQUEST", blkif.BLKIF_MAX_SEGMENTS_PER_REQUEST),
    ("BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST", blkif.BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST),
    ("BLKIF_DISCARD_SECURE", blkif.BLKIF_DISCARD_SECURE),
    ("VDISK_CDROM", blkif.VDISK_CDROM), ("VDISK_REMOVABLE", blkif.VDISK_REMOVABLE),
    ("VDISK_READONLY", blkif.VDISK_READONLY),
    ("sizeof(struct blkif_request)", blkif.REQUEST_SIZE),
    ("sizeof(struct blkif_response)", blkif.RESPONSE_SIZE),
    ("sizeof(union blkif_sring_entry)", blkif.ENTRY_SIZE),
    ("sizeof(struct blkif_request_segment)", blkif.SEGMENT.size),
    ("offsetof(struct blkif_request, id)", 8),
    ("offsetof(struct blkif_request, sector_number)", 16),
    ("offsetof(struct blkif_request, seg)", blkif.SEGMENTS_OFFSET),
    ("offsetof(struct blkif_request_discard, nr_sectors)", 24),
    ("offsetof(struct blkif_request_indirect, id)", 8),
    ("offsetof(struct blkif_request_indirect, handle)", 24),
    ("offsetof(struct blkif_request_indirect, indirect_grefs)", blkif.INDIRECT_GREFS_OFFSET),
    ("offsetof(struct blkif_response, status)", 10),
    ("offsetof(struct blkif_sring, ring)", ring.HEADER_SIZE),
    ("offsetof(struct blkif_sring, req_event)", ring.REQ_EVENT),
    ("offsetof(struct blkif_sring, rsp_event)", ring.RSP_EVENT),
    ("__CONST_RING_SIZE(blkif, 4096)", 32),
    ("__CONST_RING_SIZE(netif_tx, 4096)", 256),
    ("__CONST_RING_SIZE(netif_rx, 4096)", 256),
    ("sizeof(union netif_tx_sring_entry)", netif.TX_ENTRY_SIZE),
    ("sizeof(union netif_rx_sring_entry)", netif.RX_ENTRY_SIZE),
    ("sizeof(struct netif_tx_request)", netif.TX_REQUEST.size),
    ("sizeof(struct netif_tx_response)", netif.TX_RESPONSE.size),
    ("sizeof(struct netif_rx_request)", netif.RX_REQUEST.size),
    ("sizeof(struct netif_rx_response)", netif.RX_RESPONSE.size),
    ("sizeof(struct netif_extra_info)", netif.EXTRA_INFO.size),
    ("offsetof(struct netif_tx_request, size)", 10),
    ("offsetof(struct netif_rx_request, gref)", 4),
    ("offsetof(struct netif_rx_response, status)", 6),
    ("NETTXF_more_data", netif.NETTXF_more_data), ("NETTXF_extra_info", netif.NETTXF_extra_info),
    ("NETRXF_more_data", netif.NETRXF_more_data), ("NETRXF_gso_prefix", netif.NETRXF_gso_prefix),
    ("NETIF_RSP_DROPPED", netif.NETIF_RSP_DROPPED), ("NETIF_RSP_NULL", netif.NETIF_RSP_NULL),
    ("XEN_NETIF_NR_SLOTS_MIN", netif.XEN_NETIF_NR_SLOTS_MIN),
    ("XEN_NETIF_MAX_TX_SIZE", netif.XEN_NETIF_MAX_TX_SIZE),
    ("XEN_NETIF_EXTRA_FLAG_MORE", netif.XEN_NETIF_EXTRA_FLAG_MORE),
    ("sizeof(struct blkif_request_discard)", 32),
    ("sizeof(struct blkif_request_indirect)", 64),
]

PROLOGUE = """
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/io/blkif.h>
#include <xen/io/netif.h>
#include <xen/io/xenbus.h>
int main(void) {
"""


@pytest.fixture(scope="module")
def header_values():
    if not os.path.exists("/usr/include/xen/io/blkif.h") or not shutil.which("gcc"):
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
