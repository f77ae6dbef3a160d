"""Debian Linux behaves the same with and without asynchronous delivery
points (issue 9: "A guest run must behave identically with and without
asynchronous delivery points being exercised"; LINUX-PVH-NOTES.md, the trap
of unicorn's time-out stop).

The emu engine delivers the callback vector while the guest is busy by
stopping at a basic-block boundary from its C block hook.
PYXEN_EMU_ASYNC_IRQ=0 (xen_core/accel/emu.py) turns that off: vectors then
wait for a hypercall or hlt. The same guest boots both ways through
`xl create`, runs the same deterministic workload (integer arithmetic in
awk, sha256 of a computed file, that file through xvda and back with
O_DIRECT), and powers off on `xl shutdown`; the results must match each
other and the values computed here. The engine's counter proves the
block-hook deliveries happened in the "on" run and never in the "off" one."""
import hashlib
import os
import re
import threading

import pytest

from dom0.privcmd import Privcmd
from xen_core.accel.base import RunResult
from tests.dom0.conftest import Dom0, wait_for

from .helpers import ROOT, console_shell, linux_assets, make_disk, xl_create_linux

ASSETS = linux_assets()
needs_linux = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                 "(make linux-assets)")
NAME = "linux-async"
BOOT_WAIT = 1800       # a bound for what must happen, never a speed limit
DISK_BYTES = 4 << 20
SEQ_N = 40000          # `seq 1 SEQ_N` is the computed file
AWK_N = 150000         # iterations of the CPU-bound awk loop
SEEK = 64              # 4 KiB blocks into xvda where the file goes


def seq_bytes() -> bytes:
    return "".join(f"{i}\n" for i in range(1, SEQ_N + 1)).encode()


def awk_value() -> int:
    s = 0
    for i in range(1, AWK_N + 1):
        s = (s * 31 + i) % 1000003
    return s


WORKLOAD = (
    f"awk 'BEGIN{{s=0; for(i=1;i<={AWK_N};i++) s=(s*31+i)%1000003; print \"AWK=\" s}}'; "
    f"seq 1 {SEQ_N} > /tmp/w; echo FILE=$(sha256sum < /tmp/w); "
    f"dd if=/tmp/w of=/dev/xvda bs=4096 seek={SEEK} conv=fsync 2>/dev/null; "
    f"echo DISK=$(dd if=/dev/xvda bs=4096 skip={SEEK} count={-(-len(seq_bytes()) // 4096)} "
    f"iflag=direct 2>/dev/null | head -c {len(seq_bytes())} | sha256sum); "
    f"echo PART=$(grep -w xvda /proc/partitions)")


def boot_and_run(tmp, async_irq: str) -> dict:
    """One guest with PYXEN_EMU_ASYNC_IRQ=async_irq in the core's
    environment: what it showed, its engine counters, how it ended."""
    disk = make_disk(tmp / f"xvda-{async_irq}.img", b"PYXEN-ASYNC-DISK", DISK_BYTES)
    d = Dom0()
    d.env["PYXEN_EMU_ASYNC_IRQ"] = async_irq
    obs = {"disk": disk}
    try:
        xl_create_linux(d, f'name="{NAME}"', "memory=128",
                        f"disk=['format=raw, vdev=xvda, access=rw, target={disk}']",
                        'cmdline="console=hvc0 pyxen.disk=xvda"')
        wait_for(lambda: "PYXEN-SHELL" in d.console_log(NAME), "the /init shell", BOOT_WAIT)
        domid = d.domains()[NAME][0]
        obs["markers"] = re.findall(r"^(PYXEN-[A-Z-]+)", d.console_log(NAME), re.M)
        out = console_shell(d, NAME, WORKLOAD, BOOT_WAIT)
        obs["work"] = dict(re.findall(r"^(AWK|FILE|DISK|PART)=(.*?)\s*$", out, re.M))
        pc = Privcmd(d.dir)
        try:
            obs["engine"] = pc.domain_info(domid)["vcpus"][0].get("engine", {})
        finally:
            pc.close()
        d.xl("shutdown", "-w", NAME, timeout=BOOT_WAIT)
        obs["gone"] = NAME not in d.domains()
        obs["halted"] = "reboot: System halted" in d.console_log(NAME)
        obs["poweroff"] = bool(re.search(rf"d{domid} shut down: poweroff",
                                         d.xl("dmesg").stdout))
        return obs
    finally:
        d.kill_all()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    if ASSETS is None:
        pytest.skip("Linux guest assets not built (make linux-assets)")
    tmp = tmp_path_factory.mktemp("linux-async")
    return {mode: boot_and_run(tmp, mode) for mode in ("1", "0")}


@needs_linux
def test_both_reach_the_init_shell_the_same_way(runs):
    on, off = runs["1"]["markers"], runs["0"]["markers"]
    assert on[0] == "PYXEN-INIT-OK" and on[-1] == "PYXEN-SHELL", on
    assert on == off


@needs_linux
def test_workload_gives_the_same_and_right_results(runs):
    want = {"AWK": str(awk_value()),
            "FILE": f"{hashlib.sha256(seq_bytes()).hexdigest()} -",   # echo $(...) joins
            "DISK": f"{hashlib.sha256(seq_bytes()).hexdigest()} -"}
    for mode in ("1", "0"):
        work = runs[mode]["work"]
        assert {k: work.get(k) for k in want} == want, (mode, work)
        assert re.fullmatch(rf"202\s+0\s+{DISK_BYTES // 1024}\s+xvda", work["PART"].strip()), work
        with open(runs[mode]["disk"], "rb") as f:
            f.seek(SEEK * 4096)
            assert f.read(len(seq_bytes())) == seq_bytes()
    assert runs["1"]["work"] == runs["0"]["work"]


@needs_linux
def test_both_power_off_cleanly(runs):
    for mode in ("1", "0"):
        r = runs[mode]
        assert (r["gone"], r["halted"], r["poweroff"]) == (True, True, True), mode


@needs_linux
def test_async_delivery_points_counted_only_when_on(runs):
    on, off = runs["1"]["engine"], runs["0"]["engine"]
    if "async_irq_stops" not in on:
        pytest.skip(f"the core's engine keeps no delivery counters ({on})")
    assert on["async_irq_stops"] > 0
    assert off["async_irq_stops"] == 0
    # The "off" guest still took interrupts (at hypercalls and hlt).
    assert off["interrupts"] > 0 and on["interrupts"] > 0


def test_a_bad_knob_value_is_refused_with_its_name(tmp_path):
    """Not 0 or 1: xen-core does not start, and says which setting is wrong
    (no guest is needed for this one)."""
    import subprocess
    import sys
    env = dict(os.environ, PYXEN_EMU_ASYNC_IRQ="maybe")
    p = subprocess.run([sys.executable, "-m", "xen_core.daemon", "-N", "--run-dir",
                        str(tmp_path), "--accel", "emu"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "PYXEN_EMU_ASYNC_IRQ must be 0 or 1, not 'maybe'" in p.stderr, p.stderr


# ---- the mechanism itself, on the engine (no Linux) -------------------------

# Spins with interrupts on until the test sets FLAG (after asking for the
# vector), then reports the handler's count twice around a hypercall.
SPIN = """
    SETGATE 0x45, irq_handler
    xor r13, r13
    mov r12, 4000000000              # bounded: report failure, never hang
    sti
1:  cmp dword ptr [FLAG], 0
    jne 2f
    dec r12
    jnz 1b
2:  mov rdi, r13                     # count before any hypercall
    mov rsi, r12
    HCALL 0x100
    mov rdi, r13                     # count after one
    HCALL 0x100
    jmp stop
irq_handler:
    inc r13
    iretq
"""


@pytest.mark.parametrize("async_irq", [1, 0])
def test_engine_delivers_while_busy_only_when_on(async_irq):
    """A vector asked for while the guest spins with IF=1 and makes no
    hypercall: "on" takes it at a block boundary inside or right after the
    loop (counted), "off" holds it for the next hypercall (not counted).
    The guest's result after the hypercall is the same either way."""
    ta = pytest.importorskip("tests.accel.test_emu")
    if not ta._USABLE or not ta._TOOLS:
        pytest.skip(f"emu or binutils unusable: {ta._WHY}")
    flag = ta.DATA + 0x100
    g = ta.Guest(ta.GATES + SPIN.replace("FLAG", str(flag)) + ta.HANDLERS)
    try:
        ta.emu.lib.emu_set_async_irq(g.vcpu._v, async_irq)

        def fire():
            g.vcpu.request_interrupt(0x45)
            g.mem[flag:flag + 4] = (1).to_bytes(4, "little")   # after the request

        t = threading.Timer(0.05, fire)
        t.start()
        assert g.run() is RunResult.STOPPED, g.vcpu.error
        t.join()
        (before, left, *_), (after, *_) = g.rec.reports[:2]
        assert left > 0, "the spin loop ran out before the flag"
        stops = g.vcpu.counters()["async_irq_stops"]
        if async_irq:
            assert (before, after) == (1, 1) and stops >= 1
        else:
            assert (before, after) == (0, 1) and stops == 0
    finally:
        g.close()
