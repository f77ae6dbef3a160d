"""Software-CPU engine costs, each next to a reference measured in the same run.

- tight guest loop (`dec rcx; jnz`) on our engine (all hooks installed)
  vs. a bare unicorn engine with no hook, and with only an empty block hook;
- hypercall trap (`out` to HYPERCALL_PORT) answered in C (no Python), the raw
  trap the core's hypercall benchmark compares against;
- vmcall (Linux's hypercall instruction: unicorn raises #UD, so it takes
  the exception path) answered in C;
- the `out` trap and vmcall answered by a Python ExitHandler.

Best of several runs (the machine has 2 noisy cores).
"""
from __future__ import annotations

import sys

from xen_core.accel import emu
from xen_core.accel.base import HYPERCALL_PORT

REPEAT = 5
LOOP_N = 20_000_000
TRAP_N = 500_000
PY_N = 100_000


def best(fn, n: int) -> float:
    return min(fn(n) for _ in range(REPEAT))


def loop_code(body: bytes) -> bytes:
    """`1: body; dec rcx; jnz 1b; hlt`"""
    body = body + b"\x48\xff\xc9"
    return body + bytes([0x75, (-(len(body) + 2)) & 0xFF]) + b"\xf4"


OUT = b"\xb8\x11\x00\x00\x00" + bytes([0xE7, HYPERCALL_PORT])   # mov eax,17; out
VMCALL = b"\xb8\x11\x00\x00\x00\x0f\x01\xc1"                      # mov eax,17; vmcall


class NullHandler:
    """The cheapest possible Python answer (what the core adds goes on top)."""

    def hypercall(self, vcpu, nr, args):
        return 0

    def halt(self, vcpu):
        vcpu.request_stop()


def engine_ns(code: bytes, n: int, c_hypercalls=False, handler=None) -> float:
    return emu._run_snippet(code, {"rcx": n}, c_hypercalls, handler) * 1e9 / n


def main() -> int:
    ok, why = emu.EmuAccelerator().usable()
    if not ok:
        print(f"emu unusable: {why}")
        return 1
    bare = best(lambda n: emu.lib.emu_bench_bare_loop(n, 0), LOOP_N)
    bare_blk = best(lambda n: emu.lib.emu_bench_bare_loop(n, 1), LOOP_N)
    ours = best(lambda n: engine_ns(loop_code(b""), n), LOOP_N)
    raw = best(lambda n: emu.raw_out_trap_ns(n), TRAP_N)
    raw_vmcall = best(lambda n: engine_ns(loop_code(VMCALL), n, c_hypercalls=True), TRAP_N)
    py_out = best(lambda n: engine_ns(loop_code(OUT), n, handler=NullHandler()), PY_N)
    py_vmcall = best(lambda n: engine_ns(loop_code(VMCALL), n, handler=NullHandler()), PY_N)
    rows = [
        ("tight loop iteration, our engine (all hooks)", ours,
         "bare unicorn, no hooks", bare),
        ("tight loop iteration, bare + empty C block hook", bare_blk,
         "bare unicorn, no hooks", bare),
        ("out hypercall answered in C (raw trap)", raw,
         "tight loop iteration, our engine", ours),
        ("vmcall hypercall answered in C", raw_vmcall,
         "raw trap (C, out)", raw),
        ("out hypercall via Python ExitHandler", py_out,
         "raw trap (C)", raw),
        ("vmcall hypercall via Python ExitHandler", py_vmcall,
         "raw trap (C)", raw),
    ]
    print(f"{'path':<50} {'ns/op':>9}  {'reference':<34} {'ns/op':>9} {'ratio':>7}")
    for name, ns, ref, ref_ns in rows:
        print(f"{name:<50} {ns:9.1f}  {ref:<34} {ref_ns:9.1f} {ns / ref_ns:7.2f}")
    print(f"\nhypercalls/s: raw C {1e9 / raw:,.0f}; via Python {1e9 / py_out:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
