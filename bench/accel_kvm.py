"""KVM engine costs: the `out` exit round trip with no Python, the same exit
through the Python ExitHandler (both dispatch modes), and register access
through KVM_GET/SET_REGS against the run page (sync_regs).

Prints a table: our figure, the reference measured in the same run, the ratio.
Skips with a message where KVM is unusable.
"""
from __future__ import annotations

import mmap
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from xen_core.accel import cpu_has_hardware_virt, kvm  # noqa: E402
from xen_core.accel.base import HYPERCALL_PORT, BootState, CpuMode, RunResult  # noqa: E402

N = int(os.environ.get("BENCH_N", "10000"))
REPEAT = 5
# 1: mov $0xff, %eax; out %eax, $HYPERCALL_PORT; jmp 1b   (flat 32-bit, ring 0)
LOOP = bytes([0xB8, 0xFF, 0, 0, 0, 0xE7, HYPERCALL_PORT, 0xEB, 0xF7])


class CountingHandler:
    def __init__(self, n):
        self.left = n

    def hypercall(self, vcpu, nr, args):
        self.left -= 1
        if not self.left:
            vcpu.request_stop()
        return 0


class Bench:
    def __init__(self):
        self.mem = mmap.mmap(-1, 1 << 16)
        self.mem[0x1000:0x1000 + len(LOOP)] = LOOP
        self.machine = kvm.KvmAccelerator().create_machine()
        self.machine.map_memory(0, len(self.mem), kvm._host_addr(self.mem))
        self.vcpu = self.machine.create_vcpu(0)
        self.vcpu.set_boot_state(BootState(CpuMode.FLAT32, rip=0x1000))
        self.vcpu.run(CountingHandler(1))  # first entry: thread binding, faults

    def raw_out(self, sync_mask: int, ioctl_regs: bool = False) -> float:
        """us per exit, answered in C; sync_mask = run-page register sets."""
        lib = kvm.lib
        assert lib.xk_vcpu_set_sync(self.vcpu._v, sync_mask) == 0
        ns = lib.xk_bench_out_loop(self.vcpu._v, N, int(ioctl_regs))
        assert lib.xk_vcpu_set_sync(self.vcpu._v, kvm._SYNC_DEFAULT) == 0
        assert ns > 0, os.strerror(-ns)
        self.vcpu.run(CountingHandler(1))  # settle the pending exit
        return ns / N / 1000

    def python_out(self, dispatch: str) -> float:
        self.vcpu.dispatch = dispatch
        t0 = time.perf_counter_ns()
        assert self.vcpu.run(CountingHandler(N)) is RunResult.STOPPED
        return (time.perf_counter_ns() - t0) / N / 1000

    def regs_ioctl(self, set_: bool) -> float:
        ns = kvm.lib.xk_bench_regs_ioctl(self.vcpu._v, N, int(set_))
        assert ns > 0, os.strerror(-ns)
        return ns / N / 1000

    def close(self):
        self.machine.close()
        self.mem.close()


def main() -> int:
    ok, why = kvm.KvmAccelerator().usable()
    if not ok:
        print(f"accel_kvm: skipped, KVM unusable: {why}")
        return 0
    b = Bench()
    try:
        measures = (lambda: b.raw_out(0, ioctl_regs=True),
                    lambda: b.raw_out(kvm._SYNC_REGS),
                    lambda: b.raw_out(kvm._SYNC_DEFAULT),
                    lambda: b.python_out("return"),
                    lambda: b.python_out("callback"),
                    lambda: b.regs_ioctl(False),
                    lambda: b.regs_ioctl(True))
        # Interleaved rounds, best of each: the two cores are shared, and
        # noise only ever adds time.
        rounds = [[f() for f in measures] for _ in range(REPEAT)]
        raw_ioctl, raw, raw_s, py_ret, py_cb, get, set_ = (min(col) for col in zip(*rounds))
    finally:
        b.close()
    rows = [
        ("out exit via Python handler, return dispatch", py_ret, "raw out exit in C (default)", raw_s),
        ("out exit via Python handler, callback dispatch", py_cb, "raw out exit in C (default)", raw_s),
        ("raw out exit in C, KVM_GET_REGS+KVM_SET_REGS", raw_ioctl, "raw out exit in C, sync REGS", raw),
        ("raw out exit in C, sync REGS+SREGS (default)", raw_s, "raw out exit in C, sync REGS", raw),
        ("KVM_GET_REGS", get, "raw out exit in C, sync REGS", raw),
        ("KVM_SET_REGS", set_, "raw out exit in C, sync REGS", raw),
    ]
    hw = "hardware virt" if cpu_has_hardware_virt() else "no vmx/svm: kvm_pvm-style software KVM"
    print(f"KVM engine, best of {REPEAT} x {N} iterations ({hw}); "
          "guest loop: mov, out, jmp at ring 0")
    print(f"{'measure':50} {'us':>8}  {'reference':32} {'us':>8} {'ratio':>7}")
    for name, ours, ref_name, ref in rows:
        ratio = f"{ours / ref:7.2f}" if ref > 0 else "    n/a"
        print(f"{name:50} {ours:8.2f}  {ref_name:32} {ref:8.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
