"""A minimal stand-in for the hypervisor core, for booting the test guests
directly on an engine (`xen_core.accel` contract) before and beside the
real core: guest memory in a memfd, the builder's PvhImage written into it,
a hypercall page of `out` stubs, and an ExitHandler answering the handful of
hypercalls the guests make, with Xen's numbers and errno values. It is the
guests' peer for these tests, not a guest: the guests are the ELF files."""
from __future__ import annotations

import ctypes
import mmap
import os
import struct
import threading
import time

from xen_core.abi.cpuid import HYPERCALL_PAGE_MSR, XEN_VERSION_MAJOR, XEN_VERSION_MINOR
from xen_core.accel.base import HYPERCALL_PORT, RunResult

EFAULT, EINVAL, ENOENT, ESRCH, ENOSYS = 14, 22, 2, 3, 38
DOMID_SELF = 0x7FF0
PAGE = 4096
HVM_NR_PARAMS = 39


class Fault(Exception):
    pass


# rdtsc; shl $32,%rdx; or %rdx,%rax; ret — the host TSC the guest also reads.
_RDTSC = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])
_rdtsc_keep = []


def host_rdtsc():
    if not _rdtsc_keep:
        page = mmap.mmap(-1, PAGE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_RDTSC)
        fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(page)))
        _rdtsc_keep.extend([page, fn])
    return _rdtsc_keep[1]()


def tsc_scale(hz: int) -> tuple[int, int]:
    """(mul, shift) with ns = ((delta << shift) * mul) >> 32, mul < 2^32."""
    shift, ratio = 0, 1e9 / hz
    while ratio >= 1.0:
        ratio /= 2
        shift += 1
    while ratio < 0.5:
        ratio *= 2
        shift -= 1
    return int(ratio * (1 << 32)), shift


class MiniXen:
    def __init__(self, accel, memory_bytes: int):
        self.size = memory_bytes
        self.fd = os.memfd_create("minixen-guest")
        os.ftruncate(self.fd, memory_bytes)
        self.mem = mmap.mmap(self.fd, memory_bytes, mmap.MAP_SHARED)
        self._anchor = ctypes.c_char.from_buffer(self.mem)
        self.machine = accel.create_machine()
        self.machine.map_memory(0, memory_bytes, ctypes.addressof(self._anchor))
        self.vcpu = self.machine.create_vcpu(0)
        self.console = bytearray()
        self.shutdown_reason: int | None = None
        self.hypercalls = 0
        self.polls: list[tuple[int, int]] = []   # (requested timeout, woken at)
        self.stop_on: bytes | None = None
        t0 = time.monotonic_ns()
        c0 = host_rdtsc()
        time.sleep(0.02)
        self.tsc_hz = int((host_rdtsc() - c0) * 1e9 / (time.monotonic_ns() - t0))

    # -- memory --
    def load(self, image) -> None:
        for gpa, data in image.segments:
            self.mem[gpa:gpa + len(data)] = data
        self.vcpu.set_boot_state(image.boot_state)

    def _gpa_read(self, gpa, n):
        if gpa < 0 or gpa + n > self.size:
            raise Fault
        return self.mem[gpa:gpa + n]

    def _translate(self, va: int) -> int:
        s = self.vcpu.get_sregs()
        if not s.cr0 & (1 << 31):
            return va
        top = va >> 47
        if top not in (0, 0x1FFFF):
            raise Fault                          # non-canonical
        table = s.cr3 & 0x000FFFFFFFFFF000
        for level, shift in enumerate((39, 30, 21, 12)):
            e, = struct.unpack("<Q", self._gpa_read(table + 8 * ((va >> shift) & 511), 8))
            if not e & 1:
                raise Fault
            base = e & 0x000FFFFFFFFFF000
            if level in (1, 2) and e & 0x80:     # 1 GiB / 2 MiB page
                size = 1 << shift
                return (base & ~(size - 1)) + (va & (size - 1))
            table = base
        return table + (va & 0xFFF)

    def copy_from(self, va: int, n: int) -> bytes:
        out = b""
        while n:
            chunk = min(n, PAGE - (va & 0xFFF))
            out += self._gpa_read(self._translate(va), chunk)
            va, n = va + chunk, n - chunk
        return out

    def copy_to(self, va: int, data: bytes) -> None:
        # Check every page first: a bad pointer writes nothing.
        pieces, off = [], 0
        while off < len(data):
            chunk = min(len(data) - off, PAGE - ((va + off) & 0xFFF))
            gpa = self._translate(va + off)
            self._gpa_read(gpa, chunk)
            pieces.append((gpa, data[off:off + chunk]))
            off += chunk
        for gpa, piece in pieces:
            self.mem[gpa:gpa + len(piece)] = piece

    # -- ExitHandler --
    def wrmsr(self, vcpu, msr, value):
        if msr != HYPERCALL_PAGE_MSR:
            return
        gpa = value & ~0xFFF
        page = bytearray(PAGE)
        for nr in range(PAGE // 32):
            page[32 * nr:32 * nr + 8] = (b"\xb8" + struct.pack("<I", nr)
                                         + bytes([0xE7, HYPERCALL_PORT, 0xC3]))
        self.mem[gpa:gpa + PAGE] = bytes(page)
        self.machine.invalidate_code(gpa, PAGE)

    def io_in(self, vcpu, port, size):
        return (1 << (8 * size)) - 1

    def io_out(self, vcpu, port, size, value):
        pass

    def halt(self, vcpu):
        vcpu.request_stop()

    def hypercall(self, vcpu, nr, args):
        self.hypercalls += 1
        try:
            return self._hypercall(vcpu, nr, args)
        except Fault:
            return -EFAULT

    def _hypercall(self, vcpu, nr, a):
        if nr == 17:                                     # xen_version
            if a[0] == 0:
                return (XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR
            if a[0] == 1:
                self.copy_to(a[1], b"-minixen".ljust(16, b"\0"))
                return 0
            if a[0] == 2:
                self.copy_to(a[1], bytes(144))
                return 0
            if a[0] == 6:                                # get_features
                idx, = struct.unpack("<I", self.copy_from(a[1], 4))
                if idx != 0:
                    return -EINVAL
                self.copy_to(a[1] + 4, bytes(4))
                return 0
            if a[0] == 7:                                # pagesize
                return -EINVAL if a[1] else PAGE
            return -ENOSYS
        if nr == 18:                                     # console_io
            if a[0] == 0:
                self.console += self.copy_from(a[2], a[1])
                if self.stop_on and self.stop_on in self.console:
                    threading.Timer(0.2, vcpu.request_stop).start()
                    self.stop_on = None
                return 0
            return -ENOSYS
        if nr == 29:                                     # sched_op
            if a[0] == 0:
                return 0
            if a[0] == 2:
                self.shutdown_reason, = struct.unpack("<I", self.copy_from(a[1], 4))
                vcpu.request_stop()
                return 0
            if a[0] == 5:                                # shutdown_code
                self.copy_from(a[1], 4)
                return 0
            if a[0] == 3:
                _, nr_ports, timeout = struct.unpack("<QI4xQ", self.copy_from(a[1], 24))
                if nr_ports > 128:
                    return -EINVAL
                delay = (timeout - time.monotonic_ns()) / 1e9
                if timeout and delay > 0:
                    time.sleep(min(delay, 1.0))
                self.polls.append((timeout, time.monotonic_ns()))
                return 0
            return -ENOSYS
        if nr == 15:                                     # set_timer_op
            return 0
        if nr == 12:                                     # memory_op
            if a[0] == 7:
                _, _, space, idx, gpfn = struct.unpack("<HHIQQ", self.copy_from(a[1], 24))
                if space != 0 or idx != 0 or (gpfn + 1) * PAGE > self.size:
                    return -EINVAL
                mul, shift = tsc_scale(self.tsc_hz)
                tsc, now = host_rdtsc(), time.monotonic_ns()
                off = gpfn * PAGE
                self.mem[off:off + PAGE] = bytes(PAGE)
                self.mem[off + 32:off + 64] = struct.pack("<IIQQIbB2x", 2, 0, tsc, now,
                                                          mul, shift, 1)
                return 0
            if a[0] == 3:                                # current_reservation
                self.copy_from(a[1], 2)
                return self.size // PAGE
            if a[0] == 9:                                # memory_map
                self.copy_from(a[1], 16)
                return 0
            return -ENOSYS
        if nr == 34:                                     # hvm_op
            if a[0] in (0, 1):
                domid, index, value = struct.unpack("<HxxIQ", self.copy_from(a[1], 16))
                if index >= HVM_NR_PARAMS:
                    return -EINVAL
                if domid not in (DOMID_SELF, 1):
                    return -ESRCH
                if a[0] == 1:
                    self.copy_to(a[1], struct.pack("<HxxIQ", domid, index, 0))
                return 0
            return -ENOSYS
        if nr == 24:                                     # vcpu_op
            if a[1] != 0:
                return -ENOENT
            if a[0] == 4:                                # get_runstate_info
                self.copy_to(a[2], bytes(48))
                return 0
            return -ENOSYS
        return -ENOSYS

    def run(self) -> RunResult:
        return self.vcpu.run(self)

    def close(self) -> None:
        self.machine.close()
        del self._anchor
        self.mem.close()
        os.close(self.fd)
