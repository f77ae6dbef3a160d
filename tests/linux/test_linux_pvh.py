"""Debian's unmodified kernel as a PVH domU on the software CPU (issue 9,
stage A): one boot, shared by the ordered checks below, through the same
path as `python -m toolstack.boot` (private xen-core --accel emu, domain
built from the bzImage, console_io streamed)."""
import re
import struct

import pytest

from toolstack.boot import boot
from toolstack.builder.acpi import MADT_OFF, RSDP_OFF, XSDT_OFF, acpi_tables
from toolstack.builder.elf import BuildError
from toolstack.builder.pvh import accel_refusal, build_pvh
from xen_core.abi import hvm_start_info as si
from xen_core.accel import get_accelerator

from .helpers import LinuxPvh, linux_assets

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not built "
                                "(make linux-assets)")
# A bound for events that must happen, far above the ~25 s this takes here.
BOOT_WAIT = 900


@pytest.fixture(scope="module")
def linux():
    try:
        get_accelerator("emu")
    except RuntimeError as e:
        pytest.skip(str(e))
    g = LinuxPvh(ASSETS).start()
    try:
        yield g
    finally:
        g.close()


def log_of(g) -> str:
    return bytes(g.sink.data).decode(errors="replace")


def test_boots_to_init_marker(linux):
    m = linux.wait_for(rb"PYXEN-INIT-OK (\S+)\s", BOOT_WAIT)
    assert m, f"no /init marker (console ended: {linux.ended}, result {linux.result}):\n" \
              + log_of(linux)[-3000:]
    assert m.group(1).decode() == ASSETS["kernel_release"]


def test_kernel_runs_on_our_xen_platform(linux):
    assert linux.wait_for(rb"PYXEN-INIT-OK", BOOT_WAIT)
    log = log_of(linux)
    for line in ("Hypervisor detected: Xen HVM", "Booting kernel on Xen PVH",
                 "Xen HVM callback vector for event delivery is enabled",
                 "ACPI: Using ACPI for processor (LAPIC) configuration information",
                 "clocksource: xen:", "installing Xen timer for CPU 0",
                 "Grant tables using version 1 layout"):
        assert line in log, line
    # The early #PF of init_mem_mapping used to become #DF (exception
    # in-flight marker left set by a hypercall's memory remap).
    assert "early exception" not in log
    assert "grant table add_to_physmap failed" not in log


def test_timer_ticks_and_domain_keeps_running(linux):
    """Printk time comes from sched_clock clamped by ticks: it only moves
    past a jiffy when VIRQ_TIMER upcalls arrive. After /init, insmod of the
    initramfs' modules runs with the clock well beyond the first second."""
    assert linux.wait_for(rb"xen_netfront: Initialising", BOOT_WAIT), log_of(linux)[-2000:]
    stamps = [float(x) for x in re.findall(r"^\[\s*(\d+\.\d+)\]", log_of(linux), re.M)]
    assert stamps == sorted(stamps)
    assert stamps[-1] - stamps[0] > 1.0
    assert not linux.ended
    info = linux.pc.domain_info(linux.domid)
    assert not info.get("shutdown"), info


def test_kvm_refuses_linux_clearly(capsys):
    img = build_pvh(ASSETS["kernel"], 256 << 20)
    why = accel_refusal(img, "kvm")
    assert why and "vmcall" in why and "--accel emu" in why
    assert accel_refusal(img, "emu") is None
    try:
        get_accelerator("kvm")
    except RuntimeError as e:
        pytest.skip(f"KVM engine unusable here: {e}")
    rc = boot(ASSETS["kernel"], memory_mib=256, accel="kvm", run_dir=None)
    assert rc == 125
    assert "vmcall/vmmcall" in capsys.readouterr().err


def test_acpi_tables_linux_reads():
    base = 0xFFFF000
    page = acpi_tables(base, 3)
    assert page[RSDP_OFF:RSDP_OFF + 8] == b"RSD PTR "
    assert sum(page[RSDP_OFF:RSDP_OFF + 20]) & 0xFF == 0
    assert sum(page[RSDP_OFF:RSDP_OFF + 36]) & 0xFF == 0
    assert struct.unpack_from("<Q", page, RSDP_OFF + 24)[0] == base + XSDT_OFF
    xsdt_len = struct.unpack_from("<I", page, XSDT_OFF + 4)[0]
    entries = struct.unpack_from("<QQ", page, XSDT_OFF + 36)
    assert xsdt_len == 36 + 16
    for addr in entries:
        off = addr - base
        length = struct.unpack_from("<I", page, off + 4)[0]
        assert sum(page[off:off + length]) & 0xFF == 0, page[off:off + 4]
    assert page[MADT_OFF:MADT_OFF + 4] == b"APIC"
    madt_len = struct.unpack_from("<I", page, MADT_OFF + 4)[0]
    lapics = [struct.unpack_from("<BBBBI", page, MADT_OFF + 44 + 8 * i) for i in range(3)]
    assert madt_len == 44 + 8 * 3
    assert [(l[2], l[3], l[4]) for l in lapics] == [(0, 0, 1), (1, 2, 1), (2, 4, 1)]
    with pytest.raises(BuildError):
        acpi_tables(base, 0)


def test_builder_gives_linux_acpi_and_not_the_small_guests(tmp_path):
    img = build_pvh(ASSETS["kernel"], 256 << 20, vcpus=2)
    top = (256 << 20) - 4096
    assert (top, 4096, si.XEN_HVM_MEMMAP_TYPE_ACPI) in img.memmap
    start = dict(img.segments)[img.start_info_gpa]
    assert struct.unpack_from("<Q", start, si.HVM_START_INFO_OFFSETS["rsdp_paddr"])[0] == top
    assert dict(img.segments)[top][:8] == b"RSD PTR "
    off = build_pvh(ASSETS["kernel"], 256 << 20, acpi=False)
    assert all(t != si.XEN_HVM_MEMMAP_TYPE_ACPI for _, _, t in off.memmap)
