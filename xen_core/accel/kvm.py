"""The KVM engine: `Accelerator`/`Machine`/`Vcpu` over /dev/kvm.

The run loop is C (`kvm.c`, module `_kvm`); it releases the GIL in KVM_RUN
and comes back to Python only for exits the core must answer (hypercall,
port I/O, the hypercall-page MSR, hlt). Everything else (interrupt windows,
signals, unbacked MMIO, rdmsr of Xen's range) stays in C.

kvm_pvm (this fleet's software KVM, no vmx/svm) emulates ring-0 code and
fails with KVM_EXIT_INTERNAL_ERROR (emulation failure; RunResult.ERROR) on:
`int $n` in 32- and 64-bit mode, 32-bit `iret`, `ldmxcsr`, `xgetbv`. It
delivers exceptions and KVM_INTERRUPT vectors through a 64-bit IDT and runs
`iretq`, `fxsave`, SSE moves, `swapgs`, `rdtsc`, `wrmsr`. Its interrupt
window opens a few emulated instructions after `sti`, not right after the
shadow. tests/accel/test_kvm.py pins the first of these.
"""
from __future__ import annotations

import errno
import logging
import os
import threading

from ..abi.cpuid import HYPERCALL_PAGE_MSR, xen_cpuid_leaves
from ..abi.layout import LOWMEM_LIMIT, PAGE_SIZE, SPECIAL_REGION_END
from .base import (GENERAL_REGS, HYPERCALL_PORT, BootState, CpuMode,
                   ExitHandler, RunResult, SpecialRegs)

try:
    from ._kvm import ffi, lib
    _IMPORT_ERROR = ""
except ImportError as e:  # not built: usable() says so
    ffi = lib = None
    _IMPORT_ERROR = str(e)

log = logging.getLogger(__name__)

# Intel VMX runs unpaged and real-mode guests through a TSS (3 pages) and an
# identity page table (1 page) in guest-physical space. Both sit above RAM
# (LOWMEM_LIMIT) and the special pages (which end at SPECIAL_REGION_END), below
# 4 GiB, where Firecracker keeps its TSS too.
KVM_IDENTITY_MAP_ADDR = 0xFFFBC000
KVM_TSS_ADDR = 0xFFFBD000
assert SPECIAL_REGION_END <= KVM_IDENTITY_MAP_ADDR and LOWMEM_LIMIT <= KVM_IDENTITY_MAP_ADDR

# linux/kvm.h sync-regs field bits (KVM_SYNC_X86_REGS / _SREGS).
_SYNC_REGS = 1 << 0
_SYNC_SREGS = 1 << 1
_SYNC_DEFAULT = _SYNC_REGS | _SYNC_SREGS  # what xk_vcpu_create() sets

_MASK64 = (1 << 64) - 1
_CR0_PE, _CR0_ET, _CR0_PG = 1 << 0, 1 << 4, 1 << 31
_CR4_PAE = 1 << 5
_EFER_LME, _EFER_LMA = 1 << 8, 1 << 10
_RFLAGS_FIXED = 1 << 1

# kvm_run.exit_reason names for error messages (linux/kvm.h numbers).
_EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG",
               5: "HLT", 6: "MMIO", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR",
               17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT"}

_EXIT_INTERNAL_ERROR = 17
_INTERNAL_ERROR_EMULATION = 1

KVM_MEM_READONLY = 1 << 1       # linux/kvm.h
MAX_VCPU_ID = 1023


class KvmError(OSError):
    """A KVM ioctl failed; errno and a message naming the operation."""

    def __init__(self, what: str, neg_errno: int):
        code = -neg_errno
        super().__init__(code, f"{what}: {os.strerror(code)}")


def _check(what: str, r: int) -> int:
    if r < 0:
        raise KvmError(what, r)
    return r


KVM_DEVICE = "/dev/kvm"


def _open_kvm(device: str) -> int:
    if lib is None:
        raise OSError(errno.ENOSYS, f"xen_core.accel._kvm is not built ({_IMPORT_ERROR})")
    fd = lib.xk_kvm_open(device.encode())
    if fd == -errno.ENOTTY:
        raise OSError(errno.ENOTTY, f"{device}: not a KVM device")
    if fd == -errno.EPROTO:
        raise OSError(errno.EPROTO, f"{device}: KVM API version is not 12 (KVM_API_VERSION)")
    if fd < 0:
        raise OSError(-fd, f"{device}: {os.strerror(-fd)}")
    return fd


class KvmAccelerator:
    name = "kvm"
    _probes: dict[str, tuple[bool, str]] = {}
    _probe_lock = threading.Lock()

    def __init__(self, device: str = KVM_DEVICE):
        self.device = device

    def usable(self) -> tuple[bool, str]:
        """Open the device and run a three-instruction probe guest (once per
        process and device): `auto` and the tests rely on the answer."""
        with KvmAccelerator._probe_lock:
            if self.device not in self._probes:
                self._probes[self.device] = _probe(self.device)
            return self._probes[self.device]

    def create_machine(self) -> "KvmMachine":
        return KvmMachine(self.device)


class _ProbeHandler:
    def __init__(self):
        self.nr = None

    def hypercall(self, vcpu, nr, args):
        self.nr = nr
        vcpu.request_stop()
        return 0


def _probe(device: str) -> tuple[bool, str]:
    import mmap
    try:
        machine = KvmMachine(device)
    except OSError as e:
        return False, e.strerror or str(e)
    mem = mmap.mmap(-1, PAGE_SIZE)
    try:
        # mov $0x1234, %eax; out %eax, $HYPERCALL_PORT; hlt
        mem[0:8] = bytes([0xB8, 0x34, 0x12, 0, 0, 0xE7, HYPERCALL_PORT, 0xF4])
        machine.map_memory(0, PAGE_SIZE, _host_addr(mem))
        vcpu = machine.create_vcpu(0)
        vcpu.set_boot_state(BootState(CpuMode.FLAT32, rip=0))
        handler = _ProbeHandler()
        result = vcpu.run(handler)
        if result is not RunResult.STOPPED or handler.nr != 0x1234:
            return False, f"KVM probe guest failed: {result.value} {vcpu.last_error}".strip()
        return True, ""
    except OSError as e:
        return False, f"KVM probe guest failed: {e}"
    finally:
        machine.close()
        mem.close()


class _StopAfter:
    def __init__(self, n: int):
        self.left = n

    def hypercall(self, vcpu, nr, args):
        self.left -= 1
        if not self.left:
            vcpu.request_stop()
        return 0


def raw_out_trap_ns(n: int = 20_000) -> float:
    """ns per `out` to HYPERCALL_PORT answered entirely in C (KVM exit, rax
    written back through the run page, no Python): the reference the
    hypercall benchmarks compare against."""
    import mmap
    # 1: mov $0xff, %eax; out %eax, $HYPERCALL_PORT; jmp 1b   (flat 32-bit)
    loop = bytes([0xB8, 0xFF, 0, 0, 0, 0xE7, HYPERCALL_PORT, 0xEB, 0xF7])
    mem = mmap.mmap(-1, 2 * PAGE_SIZE)
    mem[PAGE_SIZE:PAGE_SIZE + len(loop)] = loop
    machine = KvmMachine()
    try:
        machine.map_memory(0, len(mem), _host_addr(mem))
        vcpu = machine.create_vcpu(0)
        vcpu.set_boot_state(BootState(CpuMode.FLAT32, rip=PAGE_SIZE))
        vcpu.run(_StopAfter(1))  # first entry binds the thread, faults pages in
        ns = _check("KVM_RUN", lib.xk_bench_out_loop(vcpu._v, n, 0))
        vcpu.run(_StopAfter(1))  # settle the last exit
        return ns / n
    finally:
        machine.close()
        mem.close()


def _host_addr(buf) -> int:
    """Host address of a writable buffer (an mmap of guest memory)."""
    return int(ffi.cast("uintptr_t", ffi.from_buffer(buf)))


class KvmMachine:
    """One VM: memory slots over the core's mapping, and its vCPUs."""

    def __init__(self, device: str = KVM_DEVICE):
        self._kvm_fd = _open_kvm(device)
        try:
            self._vm_fd = _check("KVM_CREATE_VM", lib.xk_vm_create(
                self._kvm_fd, KVM_TSS_ADDR, KVM_IDENTITY_MAP_ADDR, HYPERCALL_PAGE_MSR))
        except OSError:
            os.close(self._kvm_fd)
            raise
        self._slots: dict[int, tuple[int, int, int]] = {}  # slot -> gpa, size, host
        self._slot_flags: dict[int, int] = {}              # slot -> KVM_MEM_* (when not 0)
        self._vcpus: dict[int, KvmVcpu] = {}
        self._closed = False

    # -- memory ---------------------------------------------------------
    def map_memory(self, gpa: int, size: int, host_addr: int, readonly: bool = False) -> None:
        """readonly: a KVM_MEM_READONLY slot; guest writes exit as MMIO and
        are dropped there (Xen would inject #GP for a read-only grant)."""
        self._check_open()
        for name, value in (("gpa", gpa), ("size", size), ("host address", host_addr)):
            if value < 0 or value % PAGE_SIZE:
                raise ValueError(f"map_memory: {name} {value:#x} is not page aligned")
        if size == 0:
            raise ValueError("map_memory: empty range")
        for sgpa, ssize, _ in self._slots.values():
            if gpa < sgpa + ssize and sgpa < gpa + size:
                raise ValueError(f"map_memory: gpa {gpa:#x}+{size:#x} overlaps mapped "
                                 f"{sgpa:#x}+{ssize:#x}: unmap it first")
        self._add_slot(gpa, size, host_addr, KVM_MEM_READONLY if readonly else 0)

    def unmap_memory(self, gpa: int, size: int) -> None:
        """Unmap [gpa, gpa+size), which must be fully mapped; slots that
        extend beyond it keep their remaining parts. KVM cannot split a slot
        atomically: while it is deleted and re-added, another running vCPU
        reading its remaining parts sees unbacked memory (all ones), so pause
        the other vCPUs around an unmap that splits a slot."""
        self._check_open()
        if gpa % PAGE_SIZE or size % PAGE_SIZE or size <= 0 or gpa < 0:
            raise ValueError(f"unmap_memory: {gpa:#x}+{size:#x} is not a page-aligned range")
        hit = sorted((s for s, (sg, ss, _) in self._slots.items()
                      if gpa < sg + ss and sg < gpa + size),
                     key=lambda s: self._slots[s][0])
        cursor = gpa
        for s in hit:
            sgpa, ssize, _ = self._slots[s]
            if sgpa > cursor:
                break
            cursor = max(cursor, sgpa + ssize)
        if cursor < gpa + size:
            raise ValueError(f"unmap_memory: gpa {cursor:#x} in {gpa:#x}+{size:#x} is not mapped")
        for s in hit:
            sgpa, ssize, host = self._slots.pop(s)
            flags = self._slot_flags.pop(s, 0)
            _check("KVM_SET_USER_MEMORY_REGION (delete)",
                   lib.xk_set_user_memory(self._vm_fd, s, sgpa, 0, host))
            if sgpa < gpa:
                self._add_slot(sgpa, gpa - sgpa, host, flags)
            end, send = gpa + size, sgpa + ssize
            if send > end:
                self._add_slot(end, send - end, host + (end - sgpa), flags)

    def _add_slot(self, gpa: int, size: int, host: int, flags: int = 0) -> None:
        slot = next(i for i in range(len(self._slots) + 1) if i not in self._slots)
        _check(f"KVM_SET_USER_MEMORY_REGION {gpa:#x}+{size:#x}",
               lib.xk_set_user_memory_flags(self._vm_fd, slot, gpa, size, host, flags))
        self._slots[slot] = (gpa, size, host)
        if flags:
            self._slot_flags[slot] = flags

    def invalidate_code(self, gpa: int, size: int) -> None:
        """KVM runs guest code from guest memory directly: nothing cached."""

    # -- vCPUs ------------------------------------------------------------
    def create_vcpu(self, vcpu_id: int) -> "KvmVcpu":
        self._check_open()
        if not 0 <= vcpu_id <= MAX_VCPU_ID:
            raise ValueError(f"create_vcpu: vcpu id {vcpu_id} out of range 0..{MAX_VCPU_ID}")
        if vcpu_id in self._vcpus:
            raise ValueError(f"create_vcpu: vcpu {vcpu_id} exists")
        vcpu = KvmVcpu(self, vcpu_id)
        self._vcpus[vcpu_id] = vcpu
        return vcpu

    def close(self) -> None:
        if self._closed:
            return
        running = [v.id for v in self._vcpus.values() if v.running]
        if running:
            raise RuntimeError(f"close: vcpus {running} are running; stop them first")
        for v in list(self._vcpus.values()):
            v.close()
        self._vcpus.clear()
        self._slots.clear()
        self._slot_flags.clear()
        os.close(self._vm_fd)
        os.close(self._kvm_fd)
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("KVM machine is closed")


_HANDLER_EXITS = frozenset()  # filled below once lib is known

if lib is not None:
    _HANDLER_EXITS = frozenset((lib.XK_EXIT_HYPERCALL, lib.XK_EXIT_IO_IN, lib.XK_EXIT_IO_OUT,
                                lib.XK_EXIT_WRMSR, lib.XK_EXIT_HALT))

    @ffi.def_extern()
    def xk_py_exit(handle, ex):
        return ffi.from_handle(handle)._callback(ex)


def _describe_error(ex) -> str:
    if ex.hw_errno:
        return f"KVM_RUN: {os.strerror(ex.hw_errno)} at rip {ex.hw_rip:#x}"
    reason = _EXIT_NAMES.get(ex.hw_exit_reason, str(ex.hw_exit_reason))
    d = ex.hw_detail
    if ex.hw_exit_reason == _EXIT_INTERNAL_ERROR and d[0] == _INTERNAL_ERROR_EMULATION:
        text = f"KVM_EXIT_INTERNAL_ERROR: emulation failure at rip {ex.hw_rip:#x}"
        if d[1] & 1:  # KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES
            raw = (d[2] | d[3] << 64).to_bytes(16, "little")
            text += f", instruction bytes {raw[1:1 + min(raw[0], 15)].hex(' ')}"
        return text
    return (f"KVM_EXIT_{reason} at rip {ex.hw_rip:#x} "
            f"({' '.join(f'{x:#x}' for x in d)})")


class KvmVcpu:
    """One vCPU. `run()` blocks in C on the calling thread (the vCPU thread).

    `dispatch` picks how exits reach the handler: "return" (C returns to the
    Python loop in run() per exit) or "callback" (C calls into Python from the
    KVM_RUN loop through an extern "Python" function). bench/accel_kvm.py
    measures both: within 0.1-0.5 us per exit of each other here (about 7.9
    vs 8.1 us against a 6.2 us raw exit), "return" cheaper in most runs, and
    it keeps a handler exception a plain exception.
    """
    dispatch = "return"

    def __init__(self, machine: KvmMachine, vcpu_id: int):
        self.id = vcpu_id
        leaves = xen_cpuid_leaves()
        flat = [x for leaf, regs in sorted(leaves.items()) for x in (leaf, *regs)]
        err = ffi.new("int *")
        v = lib.xk_vcpu_create(machine._kvm_fd, machine._vm_fd, vcpu_id, HYPERCALL_PORT,
                               ffi.new("uint32_t[]", flat), len(leaves), err)
        if v == ffi.NULL:
            raise KvmError(f"KVM_CREATE_VCPU {vcpu_id}", err[0])
        self._v = v
        self._ex = ffi.new("struct xk_exit *")
        self._regs = lib.xk_vcpu_regs(v)
        self._handle = ffi.new_handle(self)
        self._handler: ExitHandler | None = None
        self._exc: BaseException | None = None
        self.running = False
        self.last_error = ""
        # run()/close() against each other, and kicks against close()
        self._lock = threading.Lock()

    # -- state ------------------------------------------------------------
    def set_boot_state(self, state: BootState) -> None:
        self._check_idle("set_boot_state")
        regs = dict.fromkeys(GENERAL_REGS, 0)
        regs["rflags"] = _RFLAGS_FIXED
        unknown = set(state.regs) - set(GENERAL_REGS)
        if unknown:
            raise ValueError(f"set_boot_state: unknown registers {sorted(unknown)}")
        regs.update(state.regs)
        regs["rip"] = state.rip
        if state.mode is CpuMode.FLAT32:
            cr0 = _CR0_PE | _CR0_ET if state.cr0 is None else state.cr0
            cr4 = 0 if state.cr4 is None else state.cr4
            efer = 0 if state.efer is None else state.efer
            long64 = 0
        elif state.mode is CpuMode.LONG64:
            if not state.cr3:
                raise ValueError("set_boot_state: LONG64 needs cr3 (paging is on)")
            cr0 = _CR0_PE | _CR0_ET | _CR0_PG if state.cr0 is None else state.cr0
            cr4 = _CR4_PAE if state.cr4 is None else state.cr4
            efer = _EFER_LME | _EFER_LMA if state.efer is None else state.efer
            long64 = 1
        else:
            raise ValueError(f"set_boot_state: unknown mode {state.mode!r}")
        _check("KVM_SET_SREGS", lib.xk_vcpu_set_boot(self._v, long64, cr0, state.cr3, cr4, efer))
        self._write_regs(regs)

    def get_regs(self) -> dict[str, int]:
        self._check_open("get_regs")
        return dict(zip(GENERAL_REGS, ffi.unpack(self._regs, len(GENERAL_REGS))))

    def set_regs(self, regs: dict[str, int]) -> None:
        unknown = set(regs) - set(GENERAL_REGS)
        if unknown:
            raise ValueError(f"set_regs: unknown registers {sorted(unknown)}")
        self._check_open("set_regs")
        self._write_regs(regs)

    def _write_regs(self, regs: dict[str, int]) -> None:
        index = {name: i for i, name in enumerate(GENERAL_REGS)}
        for name, value in regs.items():
            self._regs[index[name]] = value & _MASK64
        lib.xk_vcpu_regs_dirty(self._v)

    def get_sregs(self) -> SpecialRegs:
        self._check_open("get_sregs")
        out = ffi.new("uint64_t[6]")
        _check("KVM_GET_SREGS", lib.xk_vcpu_get_sregs(self._v, out))
        return SpecialRegs(cr0=out[0], cr2=out[1], cr3=out[2], cr4=out[3],
                           efer=out[4], cpl=out[5])

    # -- running ----------------------------------------------------------
    def run(self, handler: ExitHandler) -> RunResult:
        with self._lock:
            self._check_idle("run")
            self.running = True
        self._handler = handler
        try:
            if self.dispatch == "callback":
                kind = lib.xk_vcpu_run(self._v, self._ex, self._handle)
                if self._exc is not None:
                    exc, self._exc = self._exc, None
                    raise exc
            else:
                while True:
                    kind = lib.xk_vcpu_run(self._v, self._ex, ffi.NULL)
                    if kind not in _HANDLER_EXITS:
                        break
                    self._dispatch(handler, self._ex)
            return self._result(kind)
        finally:
            self._handler = None
            self.running = False

    def _callback(self, ex) -> int:
        try:
            self._dispatch(self._handler, ex)
            return 0
        except BaseException as e:  # re-raised by run() on its own frame
            self._exc = e
            return 1

    def _dispatch(self, handler: ExitHandler, ex) -> None:
        kind = ex.kind
        if kind == lib.XK_EXIT_HYPERCALL:
            ex.result = handler.hypercall(self, ex.nr, tuple(ex.args)) & _MASK64
        elif kind == lib.XK_EXIT_HALT:
            handler.halt(self)
        elif kind == lib.XK_EXIT_WRMSR:
            # An explicit False refuses the write: #GP, as Xen does for a bad
            # hypercall-page request.
            ex.fault = handler.wrmsr(self, ex.msr, ex.value) is False
        elif kind == lib.XK_EXIT_IO_OUT:
            size = ex.size
            data = ffi.buffer(ex.data, size * ex.count)
            for i in range(ex.count):
                value = int.from_bytes(data[i * size:(i + 1) * size], "little")
                handler.io_out(self, ex.port, size, value)
        elif kind == lib.XK_EXIT_IO_IN:
            size = ex.size
            data = ffi.buffer(ex.data, size * ex.count)
            mask = (1 << (8 * size)) - 1
            for i in range(ex.count):
                value = handler.io_in(self, ex.port, size) & mask
                data[i * size:(i + 1) * size] = value.to_bytes(size, "little")

    def _result(self, kind: int) -> RunResult:
        if kind == lib.XK_EXIT_STOPPED:
            return RunResult.STOPPED
        if kind == lib.XK_EXIT_SHUTDOWN:
            self.last_error = "KVM_EXIT_SHUTDOWN (triple fault)"
            return RunResult.TRIPLE_FAULT
        self.last_error = _describe_error(self._ex)
        log.warning("vcpu %d: %s", self.id, self.last_error)
        return RunResult.ERROR

    def request_stop(self) -> None:
        """From any thread; a no-op once the vCPU is closed."""
        with self._lock:
            if self._v is not None:
                lib.xk_vcpu_request_stop(self._v)

    def request_interrupt(self, vector: int) -> None:
        if not 0 <= vector <= 255:
            raise ValueError(f"request_interrupt: vector {vector} out of range 0..255")
        with self._lock:
            if self._v is not None:
                lib.xk_vcpu_request_interrupt(self._v, vector)

    @property
    def pending_interrupt(self) -> int | None:
        with self._lock:
            vec = -1 if self._v is None else lib.xk_vcpu_pending_interrupt(self._v)
        return None if vec < 0 else vec

    def close(self) -> None:
        with self._lock:
            if self._v is None:
                return
            self._check_idle("close")
            lib.xk_vcpu_destroy(self._v)
            self._v = None

    def _check_open(self, what: str) -> None:
        if self._v is None:
            raise RuntimeError(f"{what}: vcpu {self.id} is closed")

    def _check_idle(self, what: str) -> None:
        self._check_open(what)
        if self.running:
            raise RuntimeError(f"{what}: vcpu {self.id} is running")
