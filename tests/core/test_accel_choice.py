"""`auto` picks KVM only with hardware virtualization (xen_core.accel)."""
import pytest

from xen_core import accel


def test_flags_parsing():
    assert accel.cpu_has_hardware_virt("processor: 0\nflags\t\t: fpu vme svm sse\n")
    assert accel.cpu_has_hardware_virt("flags : fpu vmx\n")
    assert not accel.cpu_has_hardware_virt("flags : fpu vme sse svm_lock\n")
    assert not accel.cpu_has_hardware_virt("no flags line here\n")


def test_auto_follows_the_cpu_flags(caplog, monkeypatch):
    monkeypatch.setattr(accel, "cpu_has_hardware_virt", lambda cpuinfo=None: False)
    caplog.set_level("INFO")
    chosen = accel.get_accelerator("auto")
    assert chosen.name == "emu"
    assert any("no vmx/svm" in r.message for r in caplog.records)


def test_unknown_name_refused():
    with pytest.raises(ValueError):
        accel.get_accelerator("tcg")
