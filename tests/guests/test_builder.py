"""The PVH domain builder as a pure function: ELF parsing, layout of
hvm_start_info and its arrays, errors for bad input."""
import struct

import pytest

from toolstack.builder.elf import BuildError, load_kernel, parse_notes
from toolstack.builder.pvh import build_pvh
from xen_core.abi import elfnote
from xen_core.abi import hvm_start_info as abi
from xen_core.abi.layout import SPECIAL_REGION_END, SPECIAL_REGION_START
from xen_core.accel.base import CpuMode

from .elfgen import EM_386, EM_AARCH64, make_elf, note, phys32

MiB = 1 << 20
CODE = bytes(range(256)) * 4


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


@pytest.fixture
def kernel(tmp_path):
    """A 64-bit kernel: code at 1 MiB with 0x3000 bytes of bss after it."""
    notes = (note("Xen", elfnote.XEN_ELFNOTE_GUEST_OS, b"testos\0")
             + note("Xen", elfnote.XEN_ELFNOTE_LOADER, b"generic\0")
             + phys32(0x100010))
    return write(tmp_path, "k.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE) + 0x3000)], phdr_notes=notes, entry=0x100000))


def segment_at(image, gpa):
    return next(data for addr, data in image.segments if addr == gpa)


def unpack_start_info(image):
    blob = segment_at(image, image.start_info_gpa)
    return dict(zip(abi.HVM_START_INFO_OFFSETS, abi.HVM_START_INFO.unpack_from(blob))), blob


def read_gpa(image, gpa, size):
    for addr, data in image.segments:
        if addr <= gpa and gpa + size <= addr + len(data):
            return data[gpa - addr:gpa - addr + size]
    raise AssertionError(f"{gpa:#x}+{size} not in any segment")


def test_struct_sizes_match_the_abi():
    assert abi.HVM_START_INFO.size == 56
    assert abi.HVM_MODLIST_ENTRY.size == 32
    assert abi.HVM_MEMMAP_TABLE_ENTRY.size == 24
    blob = abi.pack_start_info(memmap_paddr=0x1234, memmap_entries=2)
    assert blob[0:4] == struct.pack("<I", 0x336EC578)
    assert struct.unpack_from("<Q", blob, abi.HVM_START_INFO_OFFSETS["memmap_paddr"])[0] == 0x1234
    assert struct.unpack_from("<I", blob, abi.HVM_START_INFO_OFFSETS["memmap_entries"])[0] == 2


def test_kernel_segments_with_zeroed_bss_and_boot_state(kernel):
    im = build_pvh(kernel, 16 * MiB)
    assert segment_at(im, 0x100000) == CODE + bytes(0x3000)
    assert im.entry == 0x100010
    assert im.boot_state.mode is CpuMode.FLAT32
    assert im.boot_state.rip == 0x100010
    assert im.boot_state.regs == {"rbx": im.start_info_gpa}
    assert im.notes["GUEST_OS"] == "testos"
    assert im.notes["LOADER"] == "generic"
    assert im.notes["PHYS32_ENTRY"] == 0x100010


def test_start_info_is_page_aligned_above_the_kernel(kernel):
    im = build_pvh(kernel, 16 * MiB)
    kernel_end = 0x100000 + len(CODE) + 0x3000
    assert im.start_info_gpa % 4096 == 0
    assert kernel_end <= im.start_info_gpa < kernel_end + 4096
    si, _ = unpack_start_info(im)
    assert si["magic"] == 0x336EC578 and si["version"] == 1
    assert si["flags"] == 0 and si["reserved"] == 0 and si["rsdp_paddr"] == 0


def test_memmap_ram_and_reserved_special_region(kernel):
    im = build_pvh(kernel, 32 * MiB)
    si, _ = unpack_start_info(im)
    assert si["memmap_entries"] == 2
    raw = read_gpa(im, si["memmap_paddr"], 2 * 24)
    entries = [abi.HVM_MEMMAP_TABLE_ENTRY.unpack_from(raw, i * 24) for i in range(2)]
    assert entries[0] == (0, 32 * MiB, abi.XEN_HVM_MEMMAP_TYPE_RAM, 0)
    assert entries[1] == (SPECIAL_REGION_START, SPECIAL_REGION_END - SPECIAL_REGION_START,
                          abi.XEN_HVM_MEMMAP_TYPE_RESERVED, 0)
    assert im.memmap == [e[:3] for e in entries]


def test_cmdline_is_a_nul_terminated_string_in_ram(kernel):
    im = build_pvh(kernel, 16 * MiB, cmdline="loops=42 console=hvc0")
    si, _ = unpack_start_info(im)
    assert si["cmdline_paddr"] == im.cmdline_gpa != 0
    assert read_gpa(im, si["cmdline_paddr"], 22) == b"loops=42 console=hvc0\0"


def test_no_cmdline_means_paddr_zero(kernel):
    si, _ = unpack_start_info(build_pvh(kernel, 16 * MiB))
    assert si["cmdline_paddr"] == 0


def test_ramdisk_is_module_zero(kernel, tmp_path):
    rd = write(tmp_path, "initrd", b"RAMDISK!" * 1000)
    im = build_pvh(kernel, 16 * MiB, ramdisk=rd)
    si, _ = unpack_start_info(im)
    assert si["nr_modules"] == 1
    paddr, size, cmdline, reserved = abi.HVM_MODLIST_ENTRY.unpack(
        read_gpa(im, si["modlist_paddr"], 32))
    assert (paddr, size, cmdline, reserved) == (im.ramdisk_gpa, 8000, 0, 0)
    assert paddr % 4096 == 0 and paddr >= 0x100000 + len(CODE) + 0x3000
    assert segment_at(im, paddr) == b"RAMDISK!" * 1000
    assert im.start_info_gpa >= paddr + size


def test_no_ramdisk_no_modules(kernel):
    si, _ = unpack_start_info(build_pvh(kernel, 16 * MiB))
    assert si["nr_modules"] == 0 and si["modlist_paddr"] == 0


def test_segments_do_not_overlap(kernel, tmp_path):
    rd = write(tmp_path, "initrd", bytes(5000))
    im = build_pvh(kernel, 16 * MiB, cmdline="x=1", ramdisk=rd)
    spans = sorted((a, a + len(d)) for a, d in im.segments)
    for (a0, a1), (b0, _) in zip(spans, spans[1:]):
        assert a1 <= b0
    assert spans[-1][1] <= 16 * MiB


def test_32bit_elf_with_em_x86_64_is_accepted(tmp_path):
    k = write(tmp_path, "k32.elf", make_elf(
        elfclass=32, segments=[(0x200000, CODE, len(CODE))], phdr_notes=phys32(0x200000)))
    im = build_pvh(k, 16 * MiB)
    assert im.entry == 0x200000
    assert load_kernel(k).elfclass == 32


def test_em_386_pvh_kernel_is_accepted(tmp_path):
    k = write(tmp_path, "k386.elf", make_elf(
        elfclass=32, machine=EM_386, segments=[(0x100000, CODE, len(CODE))],
        phdr_notes=phys32(0x100000)))
    assert build_pvh(k, 16 * MiB).entry == 0x100000


def test_other_machine_is_refused(tmp_path):
    k = write(tmp_path, "arm.elf", make_elf(
        machine=EM_AARCH64, segments=[(0x100000, CODE, len(CODE))], phdr_notes=phys32(0x100000)))
    with pytest.raises(BuildError, match="not x86"):
        build_pvh(k, 16 * MiB)


def test_notes_from_sections_when_no_pt_note(tmp_path):
    k = write(tmp_path, "sec.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))], section_notes=phys32(0x100004)))
    assert build_pvh(k, 16 * MiB).entry == 0x100004


def test_pt_note_wins_over_sections(tmp_path):
    k = write(tmp_path, "both.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))], phdr_notes=phys32(0x100008),
        section_notes=phys32(0x100004)))
    assert build_pvh(k, 16 * MiB).entry == 0x100008


def test_non_xen_notes_are_ignored(tmp_path):
    notes = note("GNU", 18, struct.pack("<I", 0x100004)) + phys32(0x100008)
    k = write(tmp_path, "gnu.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))], phdr_notes=notes))
    assert build_pvh(k, 16 * MiB).entry == 0x100008


def test_not_an_elf(tmp_path):
    k = write(tmp_path, "junk", b"MZ this is not an ELF file at all" * 10)
    with pytest.raises(BuildError, match=r"kernel .*junk: not an ELF file"):
        build_pvh(k, 16 * MiB)


def test_truncated_elf(tmp_path):
    good = make_elf(segments=[(0x100000, CODE, len(CODE))], phdr_notes=phys32(0x100000))
    k = write(tmp_path, "trunc.elf", good[:100])
    with pytest.raises(BuildError, match="trunc.elf"):
        build_pvh(k, 16 * MiB)


def test_missing_kernel_file(tmp_path):
    with pytest.raises(BuildError, match="No such file"):
        build_pvh(str(tmp_path / "nope.elf"), 16 * MiB)


def test_missing_phys32_entry(tmp_path):
    k = write(tmp_path, "nopvh.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))],
        phdr_notes=note("Xen", elfnote.XEN_ELFNOTE_GUEST_OS, b"linux\0")))
    with pytest.raises(BuildError, match="PHYS32_ENTRY"):
        build_pvh(k, 16 * MiB)


def test_entry_outside_the_image(tmp_path):
    k = write(tmp_path, "wild.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))], phdr_notes=phys32(0x500000)))
    with pytest.raises(BuildError, match="not inside a loaded segment"):
        build_pvh(k, 16 * MiB)


def test_memory_too_small_for_the_kernel(kernel):
    with pytest.raises(BuildError, match="beyond RAM"):
        build_pvh(kernel, 1 * MiB)


def test_memory_too_small_for_the_boot_data(tmp_path):
    # The kernel fills RAM exactly: no room for hvm_start_info.
    k = write(tmp_path, "full.elf", make_elf(
        segments=[(0x100000, CODE, 0x100000)], phdr_notes=phys32(0x100000)))
    with pytest.raises(BuildError, match="too small"):
        build_pvh(k, 2 * MiB)


def test_ramdisk_too_big(kernel, tmp_path):
    rd = write(tmp_path, "big", bytes(3 * MiB))
    with pytest.raises(BuildError, match="too small"):
        build_pvh(kernel, 4 * MiB, ramdisk=rd)


def test_missing_ramdisk(kernel, tmp_path):
    with pytest.raises(BuildError, match=r"ramdisk .*nope"):
        build_pvh(kernel, 16 * MiB, ramdisk=str(tmp_path / "nope"))


@pytest.mark.parametrize("memory", [0, -4096, 4097, 0x100000000])
def test_bad_memory_sizes(kernel, memory):
    with pytest.raises(BuildError, match="memory"):
        build_pvh(kernel, memory)


def test_segment_overlapping_the_special_region(tmp_path):
    k = write(tmp_path, "special.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE)), (SPECIAL_REGION_START - 0x1000, CODE, 0x2000)],
        phdr_notes=phys32(0x100000)))
    with pytest.raises(BuildError, match="special pages"):
        build_pvh(k, 0xF0000000)


def test_overlapping_segments(tmp_path):
    k = write(tmp_path, "ovl.elf", make_elf(
        segments=[(0x100000, CODE, 0x2000), (0x101000, CODE, len(CODE))],
        phdr_notes=phys32(0x100000)))
    with pytest.raises(BuildError, match="overlap"):
        build_pvh(k, 16 * MiB)


def test_filesz_beyond_memsz(tmp_path):
    k = write(tmp_path, "fm.elf", make_elf(
        segments=[(0x100000, CODE, 16)], phdr_notes=phys32(0x100000)))
    with pytest.raises(BuildError, match="filesz > memsz"):
        build_pvh(k, 16 * MiB)


def test_cmdline_with_nul(kernel):
    with pytest.raises(BuildError, match="NUL"):
        build_pvh(kernel, 16 * MiB, cmdline="a\0b")


def test_truncated_note_is_an_error(tmp_path):
    bad = phys32(0x100000)[:-2]
    with pytest.raises(ValueError):
        parse_notes(bad + struct.pack("<III", 4, 64, 18) + b"Xen\0")
    k = write(tmp_path, "badnote.elf", make_elf(
        segments=[(0x100000, CODE, len(CODE))],
        phdr_notes=struct.pack("<III", 4, 64, 18) + b"Xen\0" + bytes(8)))
    with pytest.raises(BuildError, match="badnote.elf"):
        build_pvh(k, 16 * MiB)


def test_numeric_note_sizes():
    for size in (1, 2, 4, 8):
        (name, t, desc), = parse_notes(note("Xen", 18, (0x12).to_bytes(size, "little")))
        assert (name, t, desc) == ("Xen", 18, (0x12).to_bytes(size, "little"))
