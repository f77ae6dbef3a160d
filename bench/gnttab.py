"""Grant map+unmap per second (dom0 gntdev on a page a guest granted), one
grant per request and BATCH grants per request (map_grant_refs), next to
mmap+munmap of a memfd page; grant copy bandwidth (SEGS pages per request)
next to a host memcpy of the same size, in the same run."""
import mmap
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dom0.gntdev import Gntdev                                     # noqa: E402
from tests.core.conftest import CoreProcess, console, start_guest  # noqa: E402

N_MAP = 1000
N_COPY = 500
SEGS = 16          # one request copies SEGS pages
BATCH = 16         # one request maps (then unmaps) BATCH grants


def rate(fn, n, runs=3):
    """Calls per second, best of `runs` (the machine is shared and noisy)."""
    best = 0.0
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def main():
    core = CoreProcess("emu")
    try:
        pc = core.privcmd()
        dom = start_guest(pc, "grant-share")
        pc.domain_unpause(dom)
        while not re.search(r"gref (\d+)", console(pc, dom)):
            time.sleep(0.005)
        ref = int(re.search(r"gref (\d+)", console(pc, dom)).group(1))
        # The guest polls for its peer every millisecond; paused, its timer
        # and hypercalls stop competing with the figures for the 2 CPUs.
        pc.domain_pause(dom)
        gd = Gntdev(pc)
        maps = rate(lambda: gd.map(dom, [ref]).unmap(), N_MAP)
        # a grant is pinned at most 127 times by one domain (Xen's pin
        # counter): a batch maps the one granted page BATCH times.
        batch = [(dom, ref, False)] * BATCH

        def map_batch():
            gd.unmap_grant_refs([h for h, _ in gd.map_grant_refs(batch)])
        batched = rate(map_batch, N_MAP // 4) * BATCH
        seg = [{"source": {"ref": ref, "domid": dom, "offset": 0},
                "dest": {"buf": i * 4096}, "len": 4096} for i in range(SEGS)]
        copies = rate(lambda: gd.copy(seg), N_COPY) * SEGS * 4096
        gd.close()
        pc.domain_destroy(dom)
    finally:
        core.stop()
    fd = os.memfd_create("bench")
    os.ftruncate(fd, 4096)

    def mm():
        m = mmap.mmap(fd, 4096)
        m[0] = 1
        m.close()
    ref_maps = rate(mm, N_MAP * 10)
    src, dst = bytearray(SEGS * 4096), bytearray(SEGS * 4096)

    def cp():
        dst[:] = src
    ref_copy = rate(cp, N_COPY * 10) * SEGS * 4096
    print(f"{'operation':<36} {'ours':>14} {'reference':>14} {'ratio':>8}")
    print(f"{'map+unmap / s (vs mmap+munmap)':<36} {maps:>14.0f} {ref_maps:>14.0f} "
          f"{ref_maps / maps:>7.1f}x")
    print(f"{f'  in batches of {BATCH} (per grant)':<36} {batched:>14.0f} {ref_maps:>14.0f} "
          f"{ref_maps / batched:>7.1f}x")
    print(f"{'copy MB/s (vs memcpy)':<36} {copies / 1e6:>14.1f} {ref_copy / 1e6:>14.1f} "
          f"{ref_copy / copies:>7.1f}x")


if __name__ == "__main__":
    main()
