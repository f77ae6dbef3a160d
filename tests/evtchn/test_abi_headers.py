"""xen_core.abi.event_channel / grant_table against Debian's libxen-dev
headers (skipped when they or gcc are absent)."""
import os
import shutil
import subprocess
import tempfile

import pytest

from xen_core.abi import event_channel as e
from xen_core.abi import grant_table as g

HEADERS = "/usr/include/xen/grant_table.h"

CHECKS = [
    ("EVTCHNOP_bind_interdomain", e.EVTCHNOP_bind_interdomain),
    ("EVTCHNOP_init_control", e.EVTCHNOP_init_control),
    ("EVTCHNOP_set_priority", e.EVTCHNOP_set_priority),
    ("EVTCHNSTAT_ipi", e.EVTCHNSTAT_ipi), ("EVTCHNSTAT_virq", e.EVTCHNSTAT_virq),
    ("VIRQ_CON_RING", e.VIRQ_CON_RING), ("VIRQ_XENPMU", e.VIRQ_XENPMU),
    ("VIRQ_ARCH_0", e.VIRQ_ARCH_0), ("NR_VIRQS", e.NR_VIRQS),
    ("sizeof(struct evtchn_alloc_unbound)", e.ALLOC_UNBOUND.size),
    ("sizeof(struct evtchn_bind_interdomain)", e.BIND_INTERDOMAIN.size),
    ("offsetof(struct evtchn_bind_interdomain, local_port)", 8),
    ("sizeof(struct evtchn_bind_virq)", e.BIND_VIRQ.size),
    ("sizeof(struct evtchn_bind_ipi)", e.BIND_IPI.size),
    ("sizeof(struct evtchn_status)", e.STATUS.size),
    ("offsetof(struct evtchn_status, u.interdomain.port)", 20),
    ("sizeof(struct evtchn_bind_vcpu)", e.BIND_VCPU.size),
    ("offsetof(struct evtchn_op, u)", e.COMPAT_HEADER.size),
    ("sizeof(struct evtchn_op)", e.COMPAT_SIZE),
    ("GNTTABOP_copy", g.GNTTABOP_copy), ("GNTTABOP_get_version", g.GNTTABOP_get_version),
    ("GNTTABOP_cache_flush", g.GNTTABOP_cache_flush),
    ("sizeof(struct grant_entry_v1)", g.GRANT_ENTRY_V1.size),
    ("GTF_sub_page", g.GTF_sub_page), ("GTF_writing", g.GTF_writing),
    ("GNTMAP_contains_pte", g.GNTMAP_contains_pte), ("GNTCOPY_dest_gref", g.GNTCOPY_dest_gref),
    ("GNTST_no_space", g.GNTST_no_space), ("GNTST_eagain", g.GNTST_eagain),
    ("GNTST_bad_copy_arg", g.GNTST_bad_copy_arg),
    ("sizeof(struct gnttab_setup_table)", g.SETUP_TABLE.size),
    ("offsetof(struct gnttab_setup_table, status)", 8),
    ("sizeof(struct gnttab_query_size)", g.QUERY_SIZE.size),
    ("sizeof(struct gnttab_map_grant_ref)", g.MAP_GRANT_REF.size),
    ("offsetof(struct gnttab_map_grant_ref, status)", 18),
    ("offsetof(struct gnttab_map_grant_ref, handle)", 20),
    ("sizeof(struct gnttab_unmap_grant_ref)", g.UNMAP_GRANT_REF.size),
    ("offsetof(struct gnttab_unmap_grant_ref, status)", 20),
    ("sizeof(struct gnttab_copy)", g.COPY.size),
    ("offsetof(struct gnttab_copy, dest)", 16),
    ("offsetof(struct gnttab_copy, status)", 36),
    ("sizeof(struct gnttab_set_version)", g.SET_VERSION.size),
    ("sizeof(struct gnttab_get_version)", g.GET_VERSION.size),
    ("sizeof(struct gnttab_get_status_frames)", g.GET_STATUS_FRAMES.size),
    ("offsetof(struct gnttab_get_status_frames, status)", 6),
]

PROLOGUE = """
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>
#include <xen/xen.h>
#include <xen/event_channel.h>
#include <xen/grant_table.h>
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
