"""Choosing the vCPU engine: KVM where the CPU has hardware virtualization and
/dev/kvm works, the software CPU (unicorn) everywhere else."""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def cpu_has_hardware_virt(cpuinfo: str | None = None) -> bool:
    """`vmx` (Intel VT-x) or `svm` (AMD-V) among the CPU flags."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags = line.split(":", 1)[1].split()
            return "vmx" in flags or "svm" in flags
    return False


# Named so as not to collide with the engines' cffi modules (`_kvm`, ...):
# importing a submodule binds its name in this package's namespace.
def _new_kvm():
    from .kvm import KvmAccelerator
    return KvmAccelerator()


def _new_emu():
    from .emu import EmuAccelerator
    return EmuAccelerator()


def get_accelerator(name: str = "auto"):
    """The engine for `name` ("auto", "kvm" or "emu"). An explicit choice that
    is unusable raises RuntimeError with the engine's reason."""
    if name not in ("auto", "kvm", "emu"):
        raise ValueError(f"unknown accelerator {name!r} (auto, kvm or emu)")
    if name != "auto":
        accel = _new_kvm() if name == "kvm" else _new_emu()
        ok, why = accel.usable()
        if not ok:
            raise RuntimeError(f"accelerator {name} unusable: {why}")
        return accel
    if not cpu_has_hardware_virt():
        why = "no vmx/svm flag in /proc/cpuinfo (a software KVM backend would emulate ring 0)"
    else:
        try:
            kvm = _new_kvm()
            ok, why = kvm.usable()
        except Exception as e:  # not built, or the module failed to load
            ok, why = False, f"KVM engine unavailable: {e}"
        if ok:
            log.info("accel: kvm (hardware virtualization present and /dev/kvm usable)")
            return kvm
    log.info("accel: emu (software CPU), because %s", why)
    return _new_emu()
