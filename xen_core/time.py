"""Xen system time for guests: the host TSC, its rate and the pvclock scale.

A guest computes system time (ns) from `vcpu_time_info` as
    system_time + ((rdtsc - tsc_timestamp) << tsc_shift) * tsc_to_system_mul >> 32
(a negative shift shifts right). The software CPU's `rdtsc` returns the host
TSC, so the core publishes host TSC readings; system time is the host's
CLOCK_MONOTONIC (one clock for every domain, as Xen's is since its boot).
"""
from __future__ import annotations

import ctypes
import mmap
import time

NSEC_PER_SEC = 1_000_000_000

# rdtsc; shl $32,%rdx; or %rdx,%rax; ret
_RDTSC_CODE = bytes([0x0F, 0x31, 0x48, 0xC1, 0xE2, 0x20, 0x48, 0x09, 0xD0, 0xC3])
_rdtsc_page = None
_rdtsc_fn = None


def rdtsc() -> int:
    """The host TSC. A ten-byte function in an executable page: Python has
    no rdtsc of its own and this costs one ctypes call."""
    global _rdtsc_page, _rdtsc_fn
    if _rdtsc_fn is None:
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(_RDTSC_CODE)
        addr = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _rdtsc_page = page
        _rdtsc_fn = ctypes.CFUNCTYPE(ctypes.c_uint64)(addr)
    return _rdtsc_fn()


def system_time_ns() -> int:
    return time.monotonic_ns()


def sample() -> tuple[int, int]:
    """(tsc, system_time_ns) read as close together as possible: the pair
    with the shortest bracket out of a few tries."""
    best = None
    for _ in range(5):
        t0 = time.monotonic_ns()
        tsc = rdtsc()
        t1 = time.monotonic_ns()
        if best is None or t1 - t0 < best[0]:
            best = (t1 - t0, tsc, (t0 + t1) // 2)
    return best[1], best[2]


def _cpuinfo_tsc_hz() -> int | None:
    """The kernel's TSC rate when it says it (a `tsc_khz`-style sysfs file
    some kernels expose); None otherwise."""
    for path in ("/sys/devices/system/cpu/cpu0/tsc_freq_khz",):
        try:
            with open(path) as f:
                return int(f.read().strip()) * 1000
        except (OSError, ValueError):
            pass
    return None


_tsc_hz: int | None = None


def tsc_hz(calibration_ns: int = 50_000_000) -> int:
    """The host TSC frequency: sysfs if present, else measured against
    CLOCK_MONOTONIC over `calibration_ns` (once per process)."""
    global _tsc_hz
    if _tsc_hz is None:
        hz = _cpuinfo_tsc_hz()
        if hz is None:
            tsc0, ns0 = sample()
            time.sleep(calibration_ns / NSEC_PER_SEC)
            tsc1, ns1 = sample()
            hz = (tsc1 - tsc0) * NSEC_PER_SEC // max(1, ns1 - ns0)
        _tsc_hz = hz
    return _tsc_hz


def time_scale(ticks_per_sec: int) -> tuple[int, int]:
    """(tsc_to_system_mul, tsc_shift) turning ticks into ns, as Xen computes
    them: normalise the rate into (1e9, 2e9] by shifting, then the 32-bit
    fraction 1e9 / rate."""
    if ticks_per_sec <= 0:
        raise ValueError("tick rate must be positive")
    tps, shift = ticks_per_sec, 0
    while tps > 2 * NSEC_PER_SEC:
        tps >>= 1
        shift -= 1
    while tps <= NSEC_PER_SEC:
        tps <<= 1
        shift += 1
    mul = (NSEC_PER_SEC << 32) // tps
    return mul, shift


def scale_delta(delta: int, mul: int, shift: int) -> int:
    """The guest's side of the scale (pvclock_scale_delta)."""
    delta = delta << shift if shift >= 0 else delta >> -shift
    return (delta * mul) >> 32
