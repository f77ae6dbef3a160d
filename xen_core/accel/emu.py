"""Software-CPU engine: unicorn, one engine per vCPU, driven from C (emu.c).

A unicorn engine is one CPU, so a domain's vCPUs are several engines that
all map the same host memory with `uc_mem_map_ptr` (no copies) and take
turns on one CPU lock (unicorn's `lock` prefix is not atomic across engines).
`run()` blocks in C with the GIL released; C calls back here
(`emu_py_exit`, a cffi extern "Python") only for exits the core must answer:
hypercalls (`out` to HYPERCALL_PORT, vmcall, vmmcall), other port I/O, writes
to the hypervisor MSR range, hlt.

Environment (read once, at import):
  PYXEN_EMU_ASYNC_IRQ=0  deliver interrupts (the callback vector) only at
      hypercalls and hlt, never at a block boundary while the guest is busy
      (default 1: both). A guest must behave the same either way; the
      `async_irq_stops` counter says how many deliveries the block hook made.
  PYXEN_EMU_CPU_STATE=snapshot  reach unicorn's internal CPU state (the
      interrupt shadow, the exception-in-flight marker, segment caches)
      through uc_context_save/restore copies only, never in place (default
      "in-place" where the engine found it: the `state_in_place` counter).
      Same behaviour, slower; the check that both ways agree.
"""
from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import struct
import threading
import time

from xen_core.abi import msr
from xen_core.abi.cpuid import xen_cpuid_leaves
from xen_core.accel.base import (GENERAL_REGS, HYPERCALL_PORT, BootState, CpuMode,
                                 ExitHandler, RunResult, SpecialRegs)

try:
    from xen_core.accel._emu_c import ffi, lib
except ImportError as e:  # not built: `make venv` compiles it
    ffi = lib = None
    _IMPORT_ERROR = f"xen_core.accel._emu_c not built ({e})"
else:
    _IMPORT_ERROR = ""

PAGE_SIZE = 4096
# Engine-private page (boot trampoline and flat GDT), see emu.h.
EMU_PRIV_GPA = 0xFFFFF000
# Per-vCPU local APIC register page (emu.h EMU_LAPIC_GPA).
EMU_LAPIC_GPA = 0xFEE00000

# What the software CPU tells a guest in MSR_ARCH_CAPABILITIES: unicorn
# executes no instruction speculatively, so none of these side channels
# exists in the CPU the guest sees (as KVM synthesises such bits for a CPU
# that is not affected). Without the MSR, Linux assumes a vulnerable Intel
# part and runs page-table isolation, retpolines and ITS return thunks:
# ~17% more guest blocks through its boot here, for nothing.
SOFTWARE_CPU_ARCH_CAPS = (
    msr.ARCH_CAP_RDCL_NO | msr.ARCH_CAP_IBRS_ALL | msr.ARCH_CAP_SKIP_L1DFL_VMENTRY
    | msr.ARCH_CAP_SSB_NO | msr.ARCH_CAP_MDS_NO | msr.ARCH_CAP_PSCHANGE_MC_NO
    | msr.ARCH_CAP_TAA_NO | msr.ARCH_CAP_SBDR_SSDP_NO | msr.ARCH_CAP_FBSDP_NO
    | msr.ARCH_CAP_PSDP_NO | msr.ARCH_CAP_BHI_NO | msr.ARCH_CAP_PBRSB_NO
    | msr.ARCH_CAP_GDS_NO | msr.ARCH_CAP_RFDS_NO | msr.ARCH_CAP_ITS_NO)

_RESULTS = {}
if lib is not None:
    _RESULTS = {lib.EMU_RUN_STOPPED: RunResult.STOPPED,
                lib.EMU_RUN_TRIPLE_FAULT: RunResult.TRIPLE_FAULT,
                lib.EMU_RUN_ERROR: RunResult.ERROR}

# struct emu_exit (emu.h): kind port size msr nr args[6] value, read with
# struct because each cffi field access costs ~0.1-0.2 us here.
_EXIT = struct.Struct("<iIIIQ6QQ")
_HEAD = struct.Struct("<i12xQ")      # kind, nr
_ARGS = struct.Struct("<6Q")
_ARGS_OFF = 24
_VALUE = struct.Struct("<Q")
_VALUE_OFF = 72
_MASK64 = 0xFFFFFFFFFFFFFFFF

# A hlt with interrupts on first waits this long in C (no GIL, no Python)
# for an interrupt or a kick, then goes to the core's halt (blocked
# runstate, timers): most wake-ups of a busy vCPU come well within it.
HALT_WAIT_NS = 2_000_000

# Halt polling's longest window (emu.c halt_poll; KVM's halt_poll_ns, 200 us
# there): the guest <-> dom0 round trip's reply comes within ~20 us here.
# PYXEN_EMU_HALT_POLL_NS=0 turns it off.
HALT_POLL_NS = int(os.environ.get("PYXEN_EMU_HALT_POLL_NS", "50000"))

_ASYNC_IRQ_ENV = "PYXEN_EMU_ASYNC_IRQ"
_ASYNC_IRQ_VALUE = os.environ.get(_ASYNC_IRQ_ENV, "1").strip()
ASYNC_IRQ = _ASYNC_IRQ_VALUE != "0"
_CPU_STATE_ENV = "PYXEN_EMU_CPU_STATE"
_CPU_STATE_VALUE = os.environ.get(_CPU_STATE_ENV, "in-place")   # emu_x86.c reads it too

# C names a vCPU by a token (an int converts faster than a cffi handle).
_LIVE: dict[int, "EmuVcpu"] = {}
_TOKENS = itertools.count(1)

_calibrated: tuple[bool, str] | None = None
_cal_lock = threading.Lock()


def _calibrate() -> tuple[bool, str]:
    """Locate unicorn's internal CPU state once per process (emu_x86.c)."""
    global _calibrated
    with _cal_lock:
        if _calibrated is None:
            if lib is None:
                _calibrated = (False, _IMPORT_ERROR)
            else:
                err = ffi.new("char[256]")
                ok = lib.emu_calibrate(err, 256) == 0
                _calibrated = (ok, "" if ok else "unicorn: " + ffi.string(err).decode())
        return _calibrated


if ffi is not None:
    @ffi.def_extern()
    def emu_py_exit(token):
        vcpu = _LIVE[token]
        try:
            vcpu._dispatch()
            return 0
        except BaseException as exc:  # reported by run(), never lost in C
            vcpu._exc = exc
            return 1


class EmuVcpu:
    """One vCPU = one unicorn engine (see `xen_core.accel.base.Vcpu`)."""

    def __init__(self, machine: "EmuMachine", vcpu_id: int):
        self.id = vcpu_id
        self._machine = machine
        self._token = next(_TOKENS)
        self._handler: ExitHandler | None = None
        self._hypercall = None
        self._exc: BaseException | None = None
        self._running = False
        # kick() comes from timer and event threads; close() frees the C
        # vCPU under this lock so a late kick finds None, not freed memory.
        self._free_lock = threading.Lock()
        self.error = ""
        err = ffi.new("char[256]")
        self._v = lib.emu_vcpu_new(machine._m, vcpu_id, self._token, err, 256)
        if self._v == ffi.NULL:
            raise OSError(f"emu vcpu {vcpu_id}: {ffi.string(err).decode()}")
        _LIVE[self._token] = self
        lib.emu_set_async_irq(self._v, int(ASYNC_IRQ))
        self.set_halt_wait(HALT_WAIT_NS, HALT_POLL_NS)
        self._regs = ffi.new("uint64_t[18]")
        assert ffi.offsetof("struct emu_exit", "value") == _VALUE_OFF
        self._exit = memoryview(ffi.buffer(lib.emu_exit_of(self._v), _EXIT.size))

    # -- exits (called from C on the vCPU thread, GIL held) --
    def _dispatch(self) -> None:
        buf = self._exit
        kind, nr = _HEAD.unpack_from(buf)
        if kind == 1:    # EMU_EXIT_HYPERCALL: the hot path
            rv = self._hypercall(self, nr, _ARGS.unpack_from(buf, _ARGS_OFF))
            _VALUE.pack_into(buf, _VALUE_OFF, rv & _MASK64)
            return
        h = self._handler
        kind, port, size, msr, nr, a0, a1, a2, a3, a4, a5, value = _EXIT.unpack_from(buf)
        if kind == 3:    # EMU_EXIT_IO_IN
            _VALUE.pack_into(buf, _VALUE_OFF, h.io_in(self, port, size) & 0xFFFFFFFF)
        elif kind == 4:  # EMU_EXIT_IO_OUT
            h.io_out(self, port, size, value)
        elif kind == 2:  # EMU_EXIT_WRMSR
            h.wrmsr(self, msr, value)
        elif kind == 5:  # EMU_EXIT_HALT
            h.halt(self)
        elif kind == 6:  # EMU_EXIT_EVTCHN_KICK: a send answered in C wakes a vCPU in Python
            self._machine._evtchn.kick(a0, a1, a2, a3)
        else:
            raise RuntimeError(f"emu: unknown exit kind {kind}")

    def set_boot_state(self, state: BootState) -> None:
        regs = [0] * len(GENERAL_REGS)
        regs[GENERAL_REGS.index("rflags")] = 0x2
        for name, value in state.regs.items():
            if name not in GENERAL_REGS or name == "rip":
                raise ValueError(f"boot state: unknown register {name!r}")
            regs[GENERAL_REGS.index(name)] = value
        if state.mode is CpuMode.REAL16:
            if state.rip >= 1 << 20:
                raise ValueError(f"real16 entry {state.rip:#x} is above 1 MiB")
            mode, cr0, cr4, efer = lib.EMU_MODE_REAL16, 0x10, 0, 0
        elif state.mode is CpuMode.FLAT32:
            if state.rip >= 1 << 32:
                raise ValueError(f"flat32 entry {state.rip:#x} is above 4 GiB")
            mode, cr0, cr4, efer = lib.EMU_MODE_FLAT32, 0x11, 0, 0
            if state.cr0 is not None:
                cr0 = state.cr0
        else:
            if not state.cr3:
                raise ValueError("long64 boot state needs cr3")
            mode = lib.EMU_MODE_LONG64
            cr0 = 0x80050033 if state.cr0 is None else state.cr0  # PG WP NE ET MP PE
            cr4 = 0x20 if state.cr4 is None else state.cr4        # PAE
            efer = 0x500 if state.efer is None else state.efer    # LME LMA
        rc = lib.emu_set_boot(self._v, mode, state.rip, regs, cr0, state.cr3, cr4, efer)
        if rc:
            raise OSError(f"emu vcpu {self.id}: set_boot_state failed (unicorn error {rc})")

    def run(self, handler: ExitHandler) -> RunResult:
        if self._v is None:
            raise RuntimeError(f"emu vcpu {self.id} is closed")
        if self._running:
            raise RuntimeError(f"emu vcpu {self.id} is already running")
        self._handler = handler
        self._hypercall = handler.hypercall
        # Linux's failed PIT calibration alone reads port 0x42 ~100k times.
        lib.emu_set_io_in_ones(self._v, int(getattr(handler, "io_in_all_ones", False)))
        self._exc = None
        self._running = True
        try:
            rc = lib.emu_run(self._v)
        finally:
            self._handler = self._hypercall = None
            self._running = False
        self.error = ffi.string(lib.emu_error(self._v)).decode()
        if self._exc is not None:
            exc, self._exc = self._exc, None
            raise exc
        return _RESULTS[rc]

    def request_stop(self) -> None:
        with self._free_lock:      # other threads: a no-op once closed
            if self._v is not None:
                lib.emu_request_stop(self._v)

    def request_interrupt(self, vector: int) -> None:
        if not 0 <= vector <= 255:
            raise ValueError(f"interrupt vector {vector} out of range 0..255")
        with self._free_lock:
            if self._v is not None:
                lib.emu_request_interrupt(self._v, vector)

    def set_halt_wait(self, wait_ns: int, poll_max_ns: int) -> None:
        """How long a hlt waits in C (HALT_WAIT_NS) and halt polling's
        cap (HALT_POLL_NS; 0: off) for this vCPU."""
        with self._free_lock:
            if self._v is not None:
                lib.emu_set_halt_wait(self._v, wait_ns)
                lib.emu_set_halt_poll(self._v, poll_max_ns)

    def events_posted(self) -> bool:
        """Events wait for this vCPU to apply them in C (posted while its
        machine's CPU lock was busy): a block in Python ends."""
        with self._free_lock:
            return self._v is not None and bool(lib.emu_events_posted(self._v))

    def kick(self) -> None:
        """The core woke this vCPU (an event, its timer): ends a hlt that
        waits in C (see HALT_WAIT_NS). A no-op once the vCPU is closed."""
        with self._free_lock:
            if self._v is not None:
                lib.emu_kick(self._v)

    def flush_code(self) -> None:
        """Another vCPU may have rewritten guest code: drop this engine's
        translations before it runs again (emu_flush_code)."""
        with self._free_lock:
            if self._v is not None:
                lib.emu_flush_code(self._v)

    def get_regs(self) -> dict[str, int]:
        lib.emu_get_regs(self._v, self._regs)
        return dict(zip(GENERAL_REGS, self._regs))

    def set_regs(self, regs: dict[str, int]) -> None:
        unknown = set(regs) - set(GENERAL_REGS)
        if unknown:
            raise ValueError(f"unknown registers {sorted(unknown)}")
        lib.emu_get_regs(self._v, self._regs)
        for i, name in enumerate(GENERAL_REGS):
            if name in regs:
                self._regs[i] = regs[name] & 0xFFFFFFFFFFFFFFFF
        lib.emu_set_regs(self._v, self._regs)

    def get_sregs(self) -> SpecialRegs:
        s = ffi.new("uint64_t[6]")
        lib.emu_get_sregs(self._v, s)
        return SpecialRegs(cr0=s[0], cr2=s[1], cr3=s[2], cr4=s[3], efer=s[4], cpl=s[5])

    def counters(self) -> dict[str, int]:
        """Engine statistics (hypercalls, scanned blocks, wrmsr sites, ...)."""
        names = ("hypercalls", "blocks_scanned", "wrmsr_sites", "exceptions",
                 "interrupts", "block_stops", "async_irq_stops", "fast_hypercalls",
                 "halt_poll_hits", "halt_poll_misses", "python_exits", "state_in_place",
                 "posted_event_drains")
        with self._free_lock:
            if self._v is None:
                return {n: 0 for n in names}
            return {n: lib.emu_counter(self._v, i) for i, n in enumerate(names)}

    def close(self) -> None:
        if self._running:
            raise RuntimeError(f"emu vcpu {self.id} is running: stop it before close")
        with self._free_lock:
            if self._v is not None and self._v != ffi.NULL:
                if self._machine._evtchn is not None:   # C must not wake it any more
                    self._machine._evtchn.forget_vcpu(self.id)
                lib.emu_vcpu_free(self._v)
            self._v = None
        _LIVE.pop(self._token, None)
        self._machine._vcpus.pop(self.id, None)


class EmuMachine:
    """A domain on the software CPU (see `xen_core.accel.base.Machine`)."""

    def __init__(self, cpuid_leaves: dict[int, tuple[int, int, int, int]] | None = None):
        leaves = xen_cpuid_leaves() if cpuid_leaves is None else cpuid_leaves
        arr = ffi.new("struct emu_cpuid_leaf[]", max(1, len(leaves)))
        for i, (leaf, regs) in enumerate(sorted(leaves.items())):
            arr[i].leaf = leaf
            arr[i].eax, arr[i].ebx, arr[i].ecx, arr[i].edx = regs
        self._m = lib.emu_machine_new(arr, len(leaves), HYPERCALL_PORT)
        if self._m == ffi.NULL:
            raise MemoryError("emu machine")
        lib.emu_machine_set_arch_caps(self._m, SOFTWARE_CPU_ARCH_CAPS)
        self._regions: dict[int, tuple[int, int, bool]] = {}   # gpa -> (size, host, ro)
        self._vcpus: dict[int, EmuVcpu] = {}
        self._evtchn = None   # the event-channel fast-path table C points to
        self._life = threading.Lock()   # close() never frees the machine under paused()

    def _check_range(self, gpa: int, size: int) -> None:
        if gpa % PAGE_SIZE or size % PAGE_SIZE or size <= 0:
            raise ValueError(f"range {gpa:#x}+{size:#x} is not page aligned")
        for page in (EMU_PRIV_GPA, EMU_LAPIC_GPA):
            if gpa < page + PAGE_SIZE and gpa + size > page:
                raise ValueError(f"range {gpa:#x}+{size:#x} overlaps the engine page "
                                 f"at {page:#x}")

    def map_memory(self, gpa: int, size: int, host_addr: int, readonly: bool = False) -> None:
        self._check_range(gpa, size)
        for g, (s, _, _) in self._regions.items():
            if gpa < g + s and g < gpa + size:
                raise ValueError(f"range {gpa:#x}+{size:#x} overlaps mapped "
                                 f"{g:#x}+{s:#x}: unmap first")
        fn = lib.emu_mem_map_ro if readonly else lib.emu_mem_map
        for v in self._vcpus.values():
            rc = fn(v._v, gpa, size, host_addr)
            if rc:
                raise OSError(f"emu: mapping {gpa:#x}+{size:#x} failed (unicorn error {rc})")
        self._regions[gpa] = (size, host_addr, readonly)

    def unmap_memory(self, gpa: int, size: int) -> None:
        if self._regions.get(gpa, (None,))[0] != size:
            raise ValueError(f"range {gpa:#x}+{size:#x} is not a mapped region")
        for v in self._vcpus.values():
            lib.emu_mem_unmap(v._v, gpa, size)
        del self._regions[gpa]

    def invalidate_code(self, gpa: int, size: int) -> None:
        for v in self._vcpus.values():
            lib.emu_invalidate(v._v, gpa, size)

    @contextlib.contextmanager
    def paused(self):
        """No vCPU of this machine is inside guest code meanwhile: for the
        core's read-modify-writes of words the guest changes with `lock`
        instructions (event-channel bitmaps), which unicorn does not make
        atomic against another thread (emu_machine_pause in emu.c)."""
        with self._life:
            m = self._m
            taken = lib.emu_machine_pause(m, 1) if m is not None else 0
            try:
                yield
            finally:
                if taken == 1:
                    lib.emu_machine_resume(m)

    def set_evtchn_fast(self, table) -> None:
        """Answer EVTCHNOP_send in C from `table` (xen_core.evtchn_fast.FastPorts)."""
        self._evtchn = table
        if self._m is not None:
            if table is not None:
                table.attach_machine(self._m)
            lib.emu_machine_set_evtchn(self._m, table.cdata if table is not None else ffi.NULL)

    def create_vcpu(self, vcpu_id: int) -> EmuVcpu:
        if vcpu_id in self._vcpus:
            raise ValueError(f"vcpu {vcpu_id} exists")
        if not 0 <= vcpu_id < 4096:
            raise ValueError(f"vcpu id {vcpu_id} out of range")
        v = EmuVcpu(self, vcpu_id)
        for gpa, (size, host, ro) in self._regions.items():
            if (lib.emu_mem_map_ro if ro else lib.emu_mem_map)(v._v, gpa, size, host):
                v.close()
                raise OSError(f"emu: mapping {gpa:#x} into vcpu {vcpu_id} failed")
        self._vcpus[vcpu_id] = v
        return v

    def close(self) -> None:
        running = [v.id for v in self._vcpus.values() if v._running]
        if running:
            raise RuntimeError(f"emu machine: vcpus {running} still running")
        if self._evtchn is not None:   # before the memory goes (Domain._release)
            self._evtchn.gone()
        for v in list(self._vcpus.values()):
            v.close()
        with self._life:
            if self._m is not None:
                lib.emu_machine_free(self._m)
                self._m = None


class EmuAccelerator:
    name = "emu"

    def usable(self) -> tuple[bool, str]:
        if _ASYNC_IRQ_VALUE not in ("0", "1"):
            return False, f"{_ASYNC_IRQ_ENV} must be 0 or 1, not {_ASYNC_IRQ_VALUE!r}"
        if _CPU_STATE_VALUE not in ("in-place", "snapshot"):
            return False, (f"{_CPU_STATE_ENV} must be in-place or snapshot, "
                           f"not {_CPU_STATE_VALUE!r}")
        return _calibrate()

    def create_machine(self) -> EmuMachine:
        ok, why = self.usable()
        if not ok:
            raise OSError(f"emu accelerator unusable: {why}")
        return EmuMachine()


def raw_out_trap_ns(n: int = 200_000) -> float:
    """ns per `out` to HYPERCALL_PORT answered entirely in C (no Python):
    the reference the hypercall benchmarks compare against."""
    body = (b"\xb8\x11\x00\x00\x00"                  # 1: mov eax, 17
            + bytes([0xE7, HYPERCALL_PORT])              # out imm8, eax
            + b"\x48\xff\xc9")                          # dec rcx
    code = body + bytes([0x75, (-(len(body) + 2)) & 0xFF]) + b"\xf4"  # jnz 1b; hlt
    t = _run_snippet(code, {"rcx": n}, c_hypercalls=True)
    return t * 1e9 / n


class _HaltStops:
    def hypercall(self, vcpu, nr, args):
        return 0

    def halt(self, vcpu):
        vcpu.request_stop()


def _run_snippet(code: bytes, regs: dict[str, int], c_hypercalls: bool = False,
                 handler=None) -> float:
    """Run 64-bit `code` at 0x1000 (paging off) on a throwaway vCPU; seconds."""
    buf = mmap.mmap(-1, 0x10000)
    buf[0x1000:0x1000 + len(code)] = code
    view = ffi.from_buffer(buf)
    m = EmuAccelerator().create_machine()
    try:
        m.map_memory(0, len(buf), int(ffi.cast("uintptr_t", view)))
        v = m.create_vcpu(0)
        lib.emu_set_c_hypercalls(v._v, int(c_hypercalls))
        v.set_regs({**regs, "rip": 0x1000, "rsp": 0x8000})
        t0 = time.perf_counter()
        v.run(handler or _HaltStops())
        return time.perf_counter() - t0
    finally:
        m.close()
        ffi.release(view)
        buf.close()
