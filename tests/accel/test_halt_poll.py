"""Halt polling on the software CPU (emu.c halt_poll, as KVM's
halt_poll_ns): a hlt watches for its wake-up for a window that grows while
wake-ups come soon after the hlt and drops to 0 after a longer sleep."""
import queue
import threading

from xen_core.accel.base import RunResult

from tests.accel.test_emu import GATES, HANDLERS, guest, pytestmark  # noqa: F401 (fixture, marks)

CAP_NS = 20_000_000          # the window's cap here: well above a thread's wake-up
LONG_S = 0.06                # a sleep beyond the cap
QUICK_S = 0.0003             # under the cap, but after the guest's hlt

BODY = GATES + """
    SETGATE 0x43, irq_handler
    xor r13, r13
    mov r12, {count}
1:  HCALL 0x200                      # the host arms a wake-up for this hlt
    sti
    hlt
    cli
    dec r12
    jnz 1b
    mov rdi, r13
    HCALL 0x100
    jmp stop
irq_handler:
    inc r13
    iretq
""" + HANDLERS


def run_halts(g, delays: list[float]) -> dict[int, dict]:
    """Each hlt of the guest is woken by an interrupt from another thread
    `delays[i]` seconds after its arming hypercall; the vCPU's counters
    after each hlt, by index."""
    arms: queue.Queue = queue.Queue()
    seen: dict[int, dict] = {}

    def waker():
        while (item := arms.get()) is not None:
            threading.Event().wait(item)
            g.vcpu.request_interrupt(0x43)

    t = threading.Thread(target=waker)
    t.start()
    step = iter(range(len(delays)))

    def arm(vcpu, args):
        i = next(step)
        if i:
            seen[i - 1] = vcpu.counters()
        arms.put(delays[i])

    g.rec.on_call[0x200] = arm
    try:
        assert g.run() is RunResult.STOPPED, g.vcpu.error
    finally:
        arms.put(None)
        t.join()
    seen[len(delays) - 1] = g.vcpu.counters()
    assert g.rec.reports[0][0] == len(delays)          # every hlt ended by its interrupt
    return seen


def test_window_grows_for_quick_wakeups_and_resets_after_a_long_sleep(guest):
    quick, pairs = 40, 3
    delays = [QUICK_S] * quick + [LONG_S, QUICK_S] * pairs
    g = guest(BODY.format(count=len(delays)))
    g.vcpu.set_halt_wait(10 * CAP_NS, CAP_NS)          # every wake-up comes in C
    c = run_halts(g, delays)
    # Quick wake-ups (a thread's hand-off, well under the cap) are caught.
    assert c[quick - 1]["halt_poll_hits"] > 0, c[quick - 1]
    # A long sleep starts with whatever window there is (the first one
    # with a grown one: a miss) and ends it: the quick hlt after it sleeps
    # without polling, so nothing is caught any more.
    after = c[len(delays) - 1]
    assert after["halt_poll_hits"] == c[quick - 1]["halt_poll_hits"], (c[quick - 1], after)
    assert 1 <= after["halt_poll_misses"] - c[quick - 1]["halt_poll_misses"] <= pairs


def test_no_polling_when_off(guest):
    delays = [QUICK_S] * 20
    g = guest(BODY.format(count=len(delays)))
    g.vcpu.set_halt_wait(10 * CAP_NS, 0)
    c = run_halts(g, delays)[len(delays) - 1]
    assert c["halt_poll_hits"] == c["halt_poll_misses"] == 0, c
