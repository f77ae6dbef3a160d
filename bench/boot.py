"""Domain start-up through the privileged socket, per engine.

- create -> first console byte of `hello` (domain_create, populate, load
  the image through the foreign map, vCPU state, unpause, first byte);
- create+destroy per second (16 MiB, populated), and bare create+destroy;
- reference measured in the same run: the engine alone (machine + vCPU +
  16 MiB mapping, then close) with no core, socket or Python domain state.
Anchors from the literature (not measured here): Firecracker boots a Linux
to init in 125 ms; a LightVM unikernel boots in 2.3 ms.

    python bench/boot.py [--engines emu,kvm]
"""
from __future__ import annotations

import argparse
import base64
import mmap
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dom0.privcmd import Privcmd  # noqa: E402
from toolstack.boot import PrivateCore, create_pvh_domain  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HELLO = os.path.join(ROOT, "guests", "build", "hello.elf")
MEM = 16 << 20
BOOTS = {"emu": 10, "kvm": 3}
CYCLES = {"emu": 50, "kvm": 20}


def first_byte_ms(pc: Privcmd, events: Privcmd) -> float:
    t0 = time.perf_counter()
    domid = create_pvh_domain(pc, HELLO, MEM)
    data, _ = events.subscribe_console(domid)
    pc.domain_unpause(domid)
    while not data:
        ev = events.next_event()
        if ev["event"] == "console" and ev["domid"] == domid:
            data = base64.b64decode(ev["data"])
    t1 = time.perf_counter()
    while True:   # let it finish (the console subscription ends with the domain)
        ev = events.next_event()
        if ev["event"] == "dom_exc" and ev["domid"] == domid:
            break
    pc.domain_destroy(domid)
    return (t1 - t0) * 1e3


def cycles_per_s(pc: Privcmd, n: int, populate: bool) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        d = pc.domain_create(max_memory=MEM)
        if populate:
            pc.populate_physmap(d, [(0, MEM >> 12)])
        pc.domain_destroy(d)
    return n / (time.perf_counter() - t0)


def engine_floor_per_s(name: str, n: int) -> float:
    if name == "emu":
        from xen_core.accel.emu import EmuAccelerator as A
    else:
        from xen_core.accel.kvm import KvmAccelerator as A
    accel = A()
    buf = mmap.mmap(-1, MEM)
    import ctypes
    host = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    t0 = time.perf_counter()
    for _ in range(n):
        m = accel.create_machine()
        m.map_memory(0, MEM, host)
        v = m.create_vcpu(0)
        v.close()
        m.close()
    return n / (time.perf_counter() - t0)


def bench_engine(name: str) -> list[str]:
    core = PrivateCore(name)
    try:
        pc, events = Privcmd(core.run_dir), Privcmd(core.run_dir)
        if pc.hello()["accel"] != name:
            return [f"{name:<5} skipped: core runs {pc.hello()['accel']}"]
        events.subscribe_dom_exc()
        boots = [first_byte_ms(pc, events) for _ in range(BOOTS[name])]
        full = cycles_per_s(pc, CYCLES[name], populate=True)
        bare = cycles_per_s(pc, CYCLES[name], populate=False)
        floor = engine_floor_per_s(name, CYCLES[name])
        pc.close()
        events.close()
    finally:
        core.close()
    return [
        f"{name:<5} create -> first console byte   {statistics.median(boots):8.2f} ms "
        f"(best {min(boots):.2f}, n={len(boots)})",
        f"{name:<5} create+populate+destroy        {full:8.1f} /s   ({1e3 / full:.2f} ms each)",
        f"{name:<5} create+destroy (no memory)     {bare:8.1f} /s   ({1e3 / bare:.2f} ms each)",
        f"{name:<5} reference: engine alone        {floor:8.1f} /s   ({1e3 / floor:.2f} ms each)"
        f"   ratio {floor / full:.1f}x",
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--engines", default="emu,kvm")
    args = p.parse_args()
    if not os.path.exists(HELLO):
        print(f"{HELLO} missing: run make -C guests")
        return 1
    for name in args.engines.split(","):
        try:
            lines = bench_engine(name)
        except ConnectionError as e:
            lines = [f"{name:<5} skipped: {e}"]
        print("\n".join(lines))
    print("anchors (literature): Firecracker Linux to init 125 ms; LightVM unikernel boot 2.3 ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
