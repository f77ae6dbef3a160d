"""Property tests: any layout the builder returns is sound, and no input
file makes it fail with anything but BuildError."""
import struct

from hypothesis import HealthCheck, given, settings, strategies as st

from toolstack.builder.elf import BuildError
from toolstack.builder.pvh import build_pvh
from xen_core.abi import elfnote
from xen_core.abi import hvm_start_info as abi

from .elfgen import EM_386, EM_X86_64, make_elf, note, phys32

MiB = 1 << 20
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def kernels(draw):
    nseg = draw(st.integers(1, 4))
    segs, addr = [], draw(st.integers(0, 64)) * 0x1000
    for _ in range(nseg):
        data = draw(st.binary(min_size=1, max_size=300))
        memsz = len(data) + draw(st.integers(0, 0x3000))
        segs.append((addr, data, memsz))
        addr += memsz + draw(st.integers(0, 4)) * 0x1000
    seg = draw(st.sampled_from(segs))
    entry = seg[0] + draw(st.integers(0, seg[2] - 1))
    extra = draw(st.sampled_from([b"", note("Xen", elfnote.XEN_ELFNOTE_GUEST_OS, b"os\0")]))
    where = draw(st.sampled_from(["phdr", "section"]))
    notes = extra + phys32(entry)
    elf = make_elf(elfclass=draw(st.sampled_from([32, 64])),
                   machine=draw(st.sampled_from([EM_X86_64, EM_386])), segments=segs,
                   phdr_notes=notes if where == "phdr" else None,
                   section_notes=notes if where == "section" else None)
    return elf, segs, entry


@SETTINGS
@given(k=kernels(), cmdline=st.text(st.characters(blacklist_characters="\0"), max_size=64),
       rd=st.one_of(st.none(), st.binary(max_size=9000)),
       mem_pages=st.integers(1, 4096))
def test_layout_invariants(tmp_path, k, cmdline, rd, mem_pages):
    elf, segs, entry = k
    kp = tmp_path / "k.elf"
    kp.write_bytes(elf)
    rp = None
    if rd is not None:
        rp = tmp_path / "rd"
        rp.write_bytes(rd)
    memory = mem_pages * 4096
    try:
        im = build_pvh(str(kp), memory, cmdline, str(rp) if rp else None)
    except BuildError as e:
        # Only a lack of room may refuse this well-formed kernel.
        assert "beyond RAM" in str(e) or "too small" in str(e) or "not encodable" in str(e), e
        return
    assert im.entry == entry and im.boot_state.regs == {"rbx": im.start_info_gpa}
    spans = sorted((a, a + len(d)) for a, d in im.segments)
    assert all(a1 <= b0 for (_, a1), (b0, _) in zip(spans, spans[1:]))
    assert spans[0][0] >= 0 and spans[-1][1] <= memory
    mem = bytearray(memory)
    for a, d in im.segments:
        mem[a:a + len(d)] = d
    si = abi.HVM_START_INFO.unpack_from(mem, im.start_info_gpa)
    magic, version, flags, nr_modules, modlist, cmd_pa, rsdp, memmap_pa, n_memmap, _ = si
    assert (magic, version, flags, rsdp) == (abi.XEN_HVM_START_MAGIC_VALUE, 1, 0, 0)
    if cmdline:
        end = mem.index(b"\0", cmd_pa)
        assert mem[cmd_pa:end].decode() == cmdline
    else:
        assert cmd_pa == 0
    assert nr_modules == (rd is not None)
    if rd is not None:
        paddr, size, _, _ = abi.HVM_MODLIST_ENTRY.unpack_from(mem, modlist)
        assert mem[paddr:paddr + size] == rd and paddr % 4096 == 0
    ram = [abi.HVM_MEMMAP_TABLE_ENTRY.unpack_from(mem, memmap_pa + 24 * i) for i in range(n_memmap)]
    assert (0, memory, abi.XEN_HVM_MEMMAP_TYPE_RAM, 0) in ram
    for a, data, memsz in segs:
        assert mem[a:a + len(data)] == data


GOOD = make_elf(segments=[(0x100000, bytes(range(256)), 0x2000)],
                phdr_notes=phys32(0x100000) + note("Xen", 6, b"os\0"),
                section_notes=phys32(0x100000))


@SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)),
                      min_size=1, max_size=8),
       cut=st.integers(1, len(GOOD)))
def test_corrupt_elf_only_raises_build_error(tmp_path, edits, cut):
    data = bytearray(GOOD)
    for off, val in edits:
        data[off] = val
    p = tmp_path / "fuzz.elf"
    p.write_bytes(bytes(data[:cut]))
    try:
        build_pvh(str(p), 16 * MiB)
    except BuildError as e:
        assert "\n" not in str(e)


@SETTINGS
@given(data=st.binary(max_size=2048))
def test_random_bytes_only_raise_build_error(tmp_path, data):
    p = tmp_path / "random"
    p.write_bytes(b"\x7fELF" + data)
    try:
        build_pvh(str(p), 16 * MiB)
    except BuildError:
        pass


def test_header_fields_are_little_endian():
    blob = abi.pack_start_info(cmdline_paddr=0x11223344)
    assert struct.unpack_from("<Q", blob, 24)[0] == 0x11223344
