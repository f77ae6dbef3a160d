import pytest


def engine_or_skip(name: str):
    """The accelerator `name`, or skip with the engine's own reason."""
    try:
        if name == "emu":
            from xen_core.accel.emu import EmuAccelerator as A
        else:
            from xen_core.accel.kvm import KvmAccelerator as A
    except ImportError as e:
        pytest.skip(f"{name} engine not importable: {e}")
    accel = A()
    ok, why = accel.usable()
    if not ok:
        pytest.skip(f"{name} engine unusable: {why}")
    return accel
