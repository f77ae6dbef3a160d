"""KVM or TCG for QEMU: the same rule as the core's `auto` engine choice.

KVM only where the CPU has hardware virtualization (`vmx`/`svm`) and
/dev/kvm answers KVM_GET_API_VERSION; a software KVM backend without those
flags (kvm_pvm here) emulates real-mode and ring-0 code instruction by
instruction, far slower than TCG.
"""
from __future__ import annotations

import fcntl
import os

from xen_core.accel import cpu_has_hardware_virt

KVM_GET_API_VERSION = 0xAE00          # _IO(KVMIO, 0x00)
KVM_API_VERSION = 12


def kvm_device_works(path="/dev/kvm") -> tuple[bool, str]:
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return False, f"{path}: {e.strerror}"
    try:
        v = fcntl.ioctl(fd, KVM_GET_API_VERSION)
    except OSError as e:
        return False, f"{path}: KVM_GET_API_VERSION: {e.strerror}"
    finally:
        os.close(fd)
    if v != KVM_API_VERSION:
        return False, f"{path}: KVM API version {v}, expected {KVM_API_VERSION}"
    return True, "ok"


def choose_accel(requested: str = "auto") -> tuple[str, str]:
    """("kvm" | "tcg", why).  An explicit "kvm" that /dev/kvm cannot serve
    raises RuntimeError; "kvm" without vmx/svm is honoured (slow, but asked)."""
    if requested == "tcg":
        return "tcg", "asked for"
    if requested not in ("auto", "kvm"):
        raise ValueError(f"unknown accelerator {requested!r} (auto, kvm or tcg)")
    ok, why = kvm_device_works()
    if requested == "kvm":
        if not ok:
            raise RuntimeError(f"accelerator kvm unusable: {why}")
        return "kvm", "asked for"
    if not cpu_has_hardware_virt():
        return "tcg", "no vmx/svm flag in /proc/cpuinfo (a software KVM would emulate ring 0)"
    if not ok:
        return "tcg", why
    return "kvm", "hardware virtualization present and /dev/kvm usable"
