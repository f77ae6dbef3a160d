"""Event round trip guest <-> dom0 (evtchn-ping on the software CPU and a
dom0 process on a dom0 evtchn handle) and guest <-> guest, next to an
eventfd ping-pong between two host processes, in the same run.

The issue's reference is the eventfd ping-pong across the two CPUs (the
host's limit for two processes that wake each other); it is also shown
unpinned and with both processes on one CPU, where a wake-up needs no IPI.
Two more rows bound the dom0 path: the same ping-pong over a pair of pipes
(a dom0 evtchn handle's transport: ports in, commands out) and those pipes
with a relay process in the path (the core's handle thread).

CPU per round trip counts every process involved (for ours: the dom0
process and xen-core), next to the two eventfd processes'. Halt polling
(emu.c halt_poll, KVM's halt_poll_ns) trades CPU for latency: a halted vCPU
watches for its wake-up for up to 50 us, yielding to anything runnable.
PYXEN_EMU_HALT_POLL_NS=0 in the environment turns it off for comparison.

A guest <-> dom0 round trip now has the reference's two wake-ups: dom0's
write wakes the handle thread, which sets the guest's bits and flags its
polling vCPU (no sleep, no futex); the guest's send wakes dom0. Before the
pipes, halt polling and posted events (an event for a guest whose CPU lock
is busy is applied by its vCPU, not by Python) it had three, plus a Python
detour for 6-40% of notifies: 45 us, of which the socket hops 13-15 us each
way, the condition variable 4.5 us, the guest's upcall and send 9-11 us.
The host is noisy: compare the rows of one run."""
import os
import re
import resource
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dom0.evtchn import Evtchn                      # noqa: E402
from tests.core.conftest import CoreProcess, console, start_guest   # noqa: E402

N = 1000
RUNS = 5


def eventfd_rtt(n: int, cpus: tuple[int, int] | None = None) -> float:
    """`cpus`: pin the two processes (the issue's reference is across the
    two CPUs; on one CPU a wake-up needs no IPI and costs about half)."""
    a, b = os.eventfd(0), os.eventfd(0)
    mask = os.sched_getaffinity(0)
    pid = os.fork()
    if pid == 0:
        if cpus:
            os.sched_setaffinity(0, {cpus[1]})
        for _ in range(n):
            os.eventfd_read(a)
            os.eventfd_write(b, 1)
        os._exit(0)
    if cpus:
        os.sched_setaffinity(0, {cpus[0]})
    t0 = time.perf_counter()
    for _ in range(n):
        os.eventfd_write(a, 1)
        os.eventfd_read(b)
    dt = time.perf_counter() - t0
    os.sched_setaffinity(0, mask)
    os.waitpid(pid, 0)
    return dt / n


def pipe_rtt(n: int, relay: bool = False) -> float:
    """The eventfd ping-pong's loop on two pipes, 8-byte records out and
    4-byte ones back as on a handle; `relay`: the records go out through a
    relay process to the answering one, whose reply comes straight back
    (the core's handle thread; the guest's send)."""
    out_r, out_w = os.pipe()
    back_r, back_w = os.pipe()
    rpid = None
    if relay:
        mid_r, mid_w = os.pipe()
        rpid = os.fork()
        if rpid == 0:
            for _ in range(n):
                os.write(mid_w, os.read(out_r, 8))
            os._exit(0)
        out_r = mid_r
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            os.read(out_r, 8)
            os.write(back_w, b"\0" * 4)
        os._exit(0)
    t0 = time.perf_counter()
    for _ in range(n):
        os.write(out_w, b"\0" * 8)
        os.read(back_r, 4)
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    if rpid:
        os.waitpid(rpid, 0)
    return dt / n


def cpu_s(pid: int) -> float:
    """CPU seconds of a process's live threads (schedstat: nanoseconds)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass                       # a thread that just ended
    return total / 1e9


def own_cpu_s() -> float:
    """This process's CPU and its reaped children's (microseconds)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def guest_dom0_rtt(core, n: int) -> tuple[float, float]:
    """(round trip, CPU seconds per round trip of this process + xen-core)."""
    pc = core.privcmd()
    dom = start_guest(pc, "evtchn-ping", cmdline=f"peer=0 count={n}")
    pc.domain_unpause(dom)
    while not re.search(r"port (\d+) for", console(pc, dom)):
        time.sleep(0.005)
    gport = int(re.search(r"port (\d+) for", console(pc, dom)).group(1))
    xe = Evtchn(pc)
    lp = xe.bind_interdomain(dom, gport)
    xe.pending()
    xe.unmask(lp)
    c0 = own_cpu_s() + cpu_s(core.pid)
    t0 = time.perf_counter()
    xe.notify(lp)
    for i in range(n):
        xe.pending()
        if i < n - 1:
            xe.unmask_and_notify(lp, lp)
        else:
            xe.unmask(lp)
    dt = time.perf_counter() - t0
    cpu = own_cpu_s() + cpu_s(core.pid) - c0
    xe.close()
    pc.domain_destroy(dom)
    pc.close()
    return dt / n, cpu / n


def dom0_dom0_rtt(core, n: int) -> tuple[float, float]:
    """Two handles of one dom0 process, connected through the core alone: a
    round trip is two passes through the core's handle threads, no vCPU."""
    pc = core.privcmd()
    a, b = Evtchn(pc), Evtchn(pc)
    pa = a.bind_unbound_port(0)
    pb = b.bind_interdomain(0, pa)
    b.pending()
    b.unmask(pb)
    c0 = own_cpu_s() + cpu_s(core.pid)
    t0 = time.perf_counter()
    for _ in range(n):
        a.notify(pa)
        b.pending()
        b.unmask_and_notify(pb, pb)
        a.pending()
        a.unmask(pa)
    dt = time.perf_counter() - t0
    cpu = own_cpu_s() + cpu_s(core.pid) - c0
    a.close()
    b.close()
    pc.close()
    return dt / n, cpu / n


def guest_guest_rtt(core, n: int) -> tuple[float, float]:
    """Two evtchn-ping guests; the connecting one reports the elapsed time
    (CPU: xen-core's from the connection to the report, a slight over-count)."""
    pc = core.privcmd()
    a = start_guest(pc, "evtchn-ping", cmdline=f"count={n}")
    b = start_guest(pc, "evtchn-ping", cmdline=f"count={n}")
    pc.domain_unpause(a)
    pc.domain_unpause(b)
    pc.console_write_input(a, f"peer={b}\n".encode())
    while not re.search(rf"port (\d+) for domain {b}", console(pc, a)):
        time.sleep(0.005)
    port = re.search(rf"port (\d+) for domain {b}", console(pc, a)).group(1)
    c0 = cpu_s(core.pid)
    pc.console_write_input(b, f"peer={a} port={port}\n".encode())
    while not (m := re.search(r"(\d+) events in (\d+) us", console(pc, b))):
        time.sleep(0.002)
    cpu = cpu_s(core.pid) - c0
    for d in (a, b):
        pc.domain_destroy(d)
    pc.close()
    return int(m.group(2)) / 1e6 / int(m.group(1)), cpu / int(m.group(1))


def measured(fn, *args) -> tuple[float, float]:
    """(round trip, CPU per round trip) of a host-only ping-pong."""
    c0 = own_cpu_s()
    rtt = fn(*args)
    return rtt, (own_cpu_s() - c0) / args[0]


def main():
    # Best of RUNS: two shared, often busy cores make single runs noisy; each
    # row (references included) takes its best run, interleaved in one run.
    rows: dict[str, list[tuple[float, float]]] = {}
    add = lambda name, v: rows.setdefault(name, []).append(v)   # noqa: E731
    cpus = sorted(os.sched_getaffinity(0))
    cross = (cpus[0], cpus[-1]) if len(cpus) > 1 else None
    for _ in range(RUNS):
        core = CoreProcess("emu")
        try:
            add("guest <-> dom0 (evtchn, emu)", guest_dom0_rtt(core, N))
            add("guest <-> guest (evtchn, emu)", guest_guest_rtt(core, N))
            add("dom0 <-> dom0 through the core", dom0_dom0_rtt(core, N))
        finally:
            core.stop()
        add("pipe ping-pong (a handle's transport)", measured(pipe_rtt, N))
        add("  the same through a relay process", measured(pipe_rtt, N, True))
        add("eventfd ping-pong, unpinned", measured(eventfd_rtt, N))
        add("eventfd ping-pong, one CPU", measured(eventfd_rtt, N, (cpus[0], cpus[0])))
        if cross:
            add("eventfd ping-pong, across the two CPUs", measured(eventfd_rtt, N, cross))
    best = {k: min(v) for k, v in rows.items()}
    median = {k: statistics.median(t for t, _ in v) for k, v in rows.items()}
    ref_name = "eventfd ping-pong, across the two CPUs" if cross else "eventfd ping-pong, unpinned"
    ref, ref_med = best[ref_name][0], median[ref_name]
    print(f"{RUNS} runs of {N} round trips, interleaved; halt polling up to "
          f"{os.environ.get('PYXEN_EMU_HALT_POLL_NS', '50000')} ns; reference: {ref_name}")
    print(f"{'path':<42} {'best':>8} {'median':>8} {'CPU/trip':>9} {'ratio':>6}")
    for name, (rtt, cpu) in best.items():
        print(f"{name:<42} {rtt * 1e6:>5.1f} us {median[name] * 1e6:>5.1f} us "
              f"{cpu * 1e6:>6.1f} us {rtt / ref:>5.2f}x")
    gd, gd_med = best["guest <-> dom0 (evtchn, emu)"][0], median["guest <-> dom0 (evtchn, emu)"]
    free = best["eventfd ping-pong, unpinned"][0]
    print(f"guest <-> dom0 / {ref_name}: best {gd / ref:.2f}x, median {gd_med / ref_med:.2f}x "
          f"(goal <= 1.5x); / unpinned eventfd: {gd / free:.2f}x")


if __name__ == "__main__":
    main()
