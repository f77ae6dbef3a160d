"""Event round trip guest <-> dom0 (evtchn-ping on the software CPU and a
dom0 process on a dom0 evtchn handle) and guest <-> guest, next to an eventfd ping-pong between
two host processes, in the same run."""
import os
import re
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dom0.evtchn import Evtchn                      # noqa: E402
from tests.core.conftest import CoreProcess, console, start_guest   # noqa: E402

N = 1000


def eventfd_rtt(n: int) -> float:
    a, b = os.eventfd(0), os.eventfd(0)
    pid = os.fork()
    if pid == 0:
        for _ in range(n):
            os.eventfd_read(a)
            os.eventfd_write(b, 1)
        os._exit(0)
    t0 = time.perf_counter()
    for _ in range(n):
        os.eventfd_write(a, 1)
        os.eventfd_read(b)
    dt = time.perf_counter() - t0
    os.waitpid(pid, 0)
    return dt / n


def guest_dom0_rtt(core, n: int) -> float:
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
    t0 = time.perf_counter()
    xe.notify(lp)
    for i in range(n):
        xe.pending()
        if i < n - 1:
            xe.unmask_and_notify(lp, lp)
        else:
            xe.unmask(lp)
    dt = time.perf_counter() - t0
    xe.close()
    pc.domain_destroy(dom)
    pc.close()
    return dt / n


def guest_guest_rtt(core, n: int) -> float:
    """Two evtchn-ping guests; the connecting one reports the elapsed time."""
    pc = core.privcmd()
    a = start_guest(pc, "evtchn-ping", cmdline=f"count={n}")
    b = start_guest(pc, "evtchn-ping", cmdline=f"count={n}")
    pc.domain_unpause(a)
    pc.domain_unpause(b)
    pc.console_write_input(a, f"peer={b}\n".encode())
    while not re.search(rf"port (\d+) for domain {b}", console(pc, a)):
        time.sleep(0.005)
    port = re.search(rf"port (\d+) for domain {b}", console(pc, a)).group(1)
    pc.console_write_input(b, f"peer={a} port={port}\n".encode())
    while not (m := re.search(r"(\d+) events in (\d+) us", console(pc, b))):
        time.sleep(0.01)
    for d in (a, b):
        pc.domain_destroy(d)
    pc.close()
    return int(m.group(2)) / 1e6 / int(m.group(1))


def main():
    core = CoreProcess("emu")
    try:
        ours = guest_dom0_rtt(core, N)
        gg = guest_guest_rtt(core, N)
    finally:
        core.stop()
    ref = eventfd_rtt(N)
    print(f"{'path':<40} {'round trip':>12}")
    print(f"{'guest <-> dom0 (evtchn, emu)':<40} {ours * 1e6:>9.1f} us")
    print(f"{'guest <-> guest (evtchn, emu)':<40} {gg * 1e6:>9.1f} us  ({gg / ref:.2f}x)")
    print(f"{'eventfd ping-pong, two host processes':<40} {ref * 1e6:>9.1f} us")
    print(f"ratio (ours / eventfd): {ours / ref:.2f}x  (goal <= 1.5x)")


if __name__ == "__main__":
    main()
