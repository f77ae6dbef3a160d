"""Boot one PVH kernel before `xl` exists:

    python -m toolstack.boot KERNEL [--accel auto|kvm|emu] [--memory MiB]
                                    [--cmdline ...] [--ramdisk FILE] [--run-dir D]

Uses the xen-core serving the run directory (--run-dir, else $XEN_RUN_DIR,
else /run/pyxen as root or $XDG_RUNTIME_DIR/pyxen), or starts a private one
in a temporary directory (stopped on exit). Builds the domain as xl would (create,
populate, memory map, load, vCPU state, unpause), streams its console to
stdout, and exits with the guest's shutdown reason:

    exit status = SHUTDOWN_* reason: 0 poweroff, 1 reboot (also a triple
                  fault, as on Xen), 2 suspend, 3 crash, 4 watchdog, 5 soft_reset;
    125 when the domain could not be built, the core not reached, or
        the domain was destroyed from elsewhere,
    130 on Ctrl-C (the domain is destroyed).
"""
from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time

from dom0.foreignmemory import ForeignMapping
from dom0.privcmd import Privcmd, XenError, run_dir_socket
from xen_core.abi import privif
from toolstack.builder.elf import BuildError
from toolstack.builder.pvh import accel_refusal, build_pvh

EXIT_BUILD_FAILED = 125
EXIT_INTERRUPTED = 130
PAGE_SIZE = 4096


class PrivateCore:
    """A xen-core of our own in a temporary run directory."""

    def __init__(self, accel: str = "auto"):
        self.run_dir = tempfile.mkdtemp(prefix="pyxen-boot-")
        self.log = os.path.join(self.run_dir, "xen-core.log")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xen_core.daemon", "-N", "--run-dir", self.run_dir,
             "--accel", accel, "--log", self.log],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        sock = run_dir_socket(self.run_dir)
        while not os.path.exists(sock):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode().strip()
                self.close()
                raise ConnectionError(err or f"xen-core exited with {self.proc.returncode}")
            time.sleep(0.01)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def boot_state_json(state) -> dict:
    return {"mode": state.mode.value, "rip": state.rip, "regs": dict(state.regs),
            "cr0": state.cr0, "cr3": state.cr3, "cr4": state.cr4, "efer": state.efer}


def create_pvh_domain(pc: Privcmd, kernel: str, memory_bytes: int, cmdline: str = "",
                      ramdisk: str | None = None, max_vcpus: int = 1) -> int:
    """Build a paused PVH domain; returns its domid (destroyed on failure)."""
    image = build_pvh(kernel, memory_bytes, cmdline=cmdline, ramdisk=ramdisk, vcpus=max_vcpus)
    why = accel_refusal(image, pc.hello().get("accel", ""))
    if why:
        raise BuildError(why)
    domid = pc.domain_create(max_memory=memory_bytes, max_vcpus=max_vcpus)
    try:
        pc.populate_physmap(domid, [(0, memory_bytes // PAGE_SIZE)])
        pc.set_memory_map(domid, image.memmap)
        for gpa, data in image.segments:
            first, last = gpa // PAGE_SIZE, (gpa + max(len(data), 1) - 1) // PAGE_SIZE
            with ForeignMapping(pc, domid, list(range(first, last + 1))) as m:
                m.write(gpa, data)
        pc.vcpu_setcontext(domid, 0, boot_state_json(image.boot_state))
    except BaseException:
        pc.domain_destroy(domid)
        raise
    return domid


def run_console(pc: Privcmd, events: Privcmd, domid: int, out) -> int:
    """Stream the console until the domain shuts down; its reason."""
    events.subscribe_dom_exc()
    data, seen = events.subscribe_console(domid)
    out.write(data)
    out.flush()
    pc.domain_unpause(domid)
    while True:
        ev = events.next_event()
        if ev["event"] == "console" and ev["domid"] == domid:
            chunk = base64.b64decode(ev["data"])
            skip = max(0, seen - ev["offset"])   # already printed from the snapshot
            out.write(chunk[skip:])
            out.flush()
            seen = max(seen, ev["offset"] + len(chunk))
        elif ev["event"] == "dom_exc" and ev["domid"] == domid:
            if ev["kind"] == "destroyed":
                print(f"boot: domain {domid} was destroyed", file=sys.stderr)
                return EXIT_BUILD_FAILED
            rest, _ = pc.console_read(domid, seen)
            out.write(rest)
            out.flush()
            return pc.domain_info(domid)["shutdown_reason"]


def boot(kernel: str, memory_mib: int = 32, cmdline: str = "", ramdisk: str | None = None,
         accel: str = "auto", run_dir: str | None = None, out=None) -> int:
    out = out or sys.stdout.buffer
    explicit = run_dir is not None
    run_dir = run_dir or privif.default_run_dir()
    core = None
    try:
        try:
            pc, events = Privcmd(run_dir), Privcmd(run_dir)
        except ConnectionError:
            if explicit:
                raise
            core = PrivateCore(accel)   # none running: a private one
            pc, events = Privcmd(core.run_dir), Privcmd(core.run_dir)
    except ConnectionError as e:
        print(f"boot: {e}", file=sys.stderr)
        return EXIT_BUILD_FAILED
    domid = None
    try:
        try:
            domid = create_pvh_domain(pc, kernel, memory_mib << 20, cmdline, ramdisk)
        except (BuildError, XenError, OSError) as e:
            print(f"boot: {kernel}: {e}", file=sys.stderr)
            return EXIT_BUILD_FAILED
        return run_console(pc, events, domid, out)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        if domid is not None:
            try:
                pc.domain_destroy(domid)
            except (XenError, OSError):
                pass
        pc.close()
        events.close()
        if core is not None:
            core.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m toolstack.boot",
                                description="boot a PVH kernel and stream its console")
    p.add_argument("kernel")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "emu"))
    p.add_argument("--memory", type=int, default=32, metavar="MiB")
    p.add_argument("--cmdline", default="")
    p.add_argument("--ramdisk")
    p.add_argument("--run-dir", help="use the xen-core serving this run directory")
    args = p.parse_args(argv)
    if args.memory <= 0:
        p.error("--memory must be positive")
    return boot(args.kernel, args.memory, args.cmdline, args.ramdisk, args.accel, args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
