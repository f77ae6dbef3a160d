"""The test guests build, and each ELF is a PVH kernel the builder accepts:
Xen notes in a PT_NOTE segment and a .note section, PHYS32_ENTRY at the
32-bit entry code, linked at 1 MiB, no SSE/MMX instructions."""
import shutil
import subprocess

import pytest
from elftools.elf.elffile import ELFFile

from toolstack.builder.elf import load_kernel, parse_notes
from toolstack.builder.pvh import build_pvh
from xen_core.abi import elfnote

from .conftest import GUEST_NAMES, GUESTS_DIR

MiB = 1 << 20


def symbol(path, name):
    with open(path, "rb") as f:
        sym = ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)
        assert sym, f"{name} not in {path}"
        return sym[0]["st_value"]


def test_all_guests_built(built_guests):
    for name in GUEST_NAMES:
        assert built_guests[name].is_file(), name


def test_make_is_idempotent(built_guests):
    before = {n: p.stat().st_mtime_ns for n, p in built_guests.items()}
    r = subprocess.run(["make", "-C", str(GUESTS_DIR)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "Nothing to be done" in r.stdout
    assert before == {n: p.stat().st_mtime_ns for n, p in built_guests.items()}


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_elf_shape(built_guests, name):
    path = built_guests[name]
    with open(path, "rb") as f:
        elf = ELFFile(f)
        assert elf.elfclass == 64 and elf["e_machine"] == "EM_X86_64"
        loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
        assert min(s["p_paddr"] for s in loads) == 0x100000
        pt_notes = [s for s in elf.iter_segments() if s["p_type"] == "PT_NOTE"]
        assert len(pt_notes) == 1
        sec = elf.get_section_by_name(".note")
        assert sec is not None and sec["sh_type"] == "SHT_NOTE"
        # The same Xen notes are reachable both ways.
        assert parse_notes(sec.data()) == parse_notes(pt_notes[0].data())


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_builder_finds_notes_and_entry(built_guests, name):
    k = load_kernel(str(built_guests[name]))
    assert k.notes["GUEST_OS"] == "pyxen-test"
    assert k.notes["XEN_VERSION"] == "xen-3.0"
    assert k.notes["LOADER"] == "generic"
    assert k.phys32_entry == symbol(built_guests[name], "pvh_start")
    im = build_pvh(str(built_guests[name]), 16 * MiB, cmdline="loops=10")
    assert im.boot_state.rip == k.phys32_entry
    assert im.start_info_gpa >= symbol(built_guests[name], "_end")


@pytest.mark.parametrize("name", GUEST_NAMES)
def test_no_sse_or_mmx_instructions(built_guests, name):
    # kvm_pvm does not emulate ldmxcsr, and nothing sets up SSE state.
    if shutil.which("objdump") is None:
        pytest.skip("objdump not installed")
    dis = subprocess.run(["objdump", "-d", str(built_guests[name])],
                         capture_output=True, text=True, check=True).stdout
    assert "pvh_start" in dis
    for bad in ("%xmm", "%mm", "mxcsr", "%ymm"):
        assert bad not in dis, f"{name} uses {bad}"


def test_hypercall_page_is_page_aligned(built_guests):
    for name in GUEST_NAMES:
        assert symbol(built_guests[name], "hypercall_page") % 4096 == 0
        assert symbol(built_guests[name], "shared_info_page") % 4096 == 0


def test_phys32_note_is_4_bytes_like_linux(built_guests):
    k = load_kernel(str(built_guests["hello"]))
    with open(built_guests["hello"], "rb") as f:
        sec = ELFFile(f).get_section_by_name(".note")
        notes = {t: d for n, t, d in parse_notes(sec.data()) if n == "Xen"}
    assert len(notes[elfnote.XEN_ELFNOTE_PHYS32_ENTRY]) == 4
    assert int.from_bytes(notes[elfnote.XEN_ELFNOTE_PHYS32_ENTRY], "little") == k.phys32_entry
