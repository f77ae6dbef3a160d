"""Kernel ELF loading for the domain builder (pyelftools; no guest memory).

Finds the PT_LOAD segments (placed at their physical addresses, as Xen's
loader does for PVH) and the `Xen` ELF notes: from PT_NOTE segments first
and, only when those hold no Xen note, from SHT_NOTE sections (some kernels
carry their notes only there). A Linux bzImage is opened to its ELF payload
(`bzimage.py`). Xen accepts a 32-bit ELF container for an
x86-64 kernel and, for PVH, any x86 machine: the entry is 32-bit code anyway.
"""
from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field

from elftools.common.exceptions import ELFError, ELFParseError
from elftools.elf.elffile import ELFFile

from xen_core.abi import elfnote

from .bzimage import BzImageError, extract_payload, is_bzimage

PT_LOAD = "PT_LOAD"
PT_NOTE = "PT_NOTE"
SHT_NOTE = "SHT_NOTE"
X86_MACHINES = ("EM_X86_64", "EM_386")


class BuildError(ValueError):
    """A kernel, ramdisk or memory size the builder cannot use; the message
    is one line that names the file and the problem."""


@dataclass
class Segment:
    paddr: int
    data: bytes       # p_filesz bytes from the file
    memsz: int        # >= len(data); the rest is zero (bss)

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


@dataclass
class KernelElf:
    path: str
    from_bzimage: bool
    elfclass: int                 # 32 or 64
    machine: str                  # "EM_X86_64" | "EM_386"
    entry: int                    # e_entry (not used for PVH boot)
    segments: list[Segment]
    notes: dict[str, int | str | bytes] = field(default_factory=dict)

    @property
    def phys32_entry(self) -> int | None:
        v = self.notes.get("PHYS32_ENTRY")
        return v if isinstance(v, int) else None


def _decode_note(ntype: int, desc: bytes) -> int | str | bytes:
    if ntype in elfnote.XEN_ELFNOTE_STRINGS:
        return desc.split(b"\0", 1)[0].decode("ascii", "replace")
    if ntype in elfnote.XEN_ELFNOTE_NUMBERS and len(desc) in (1, 2, 4, 8):
        return int.from_bytes(desc, "little")
    return bytes(desc)


def parse_notes(blob: bytes) -> list[tuple[str, int, bytes]]:
    """(name, type, desc) for each note in an ELF note area (4-byte aligned
    namesz/descsz/type headers, in both ELF classes). Raises ValueError on a
    truncated note."""
    notes, off = [], 0
    while off + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, off)
        off += 12
        name_end = off + namesz
        desc_off = off + ((namesz + 3) & ~3)
        desc_end = desc_off + descsz
        if desc_end > len(blob):
            raise ValueError(f"note at offset {off - 12} runs past its area")
        name = blob[off:name_end].split(b"\0", 1)[0].decode("ascii", "replace")
        notes.append((name, ntype, blob[desc_off:desc_end]))
        off = desc_off + ((descsz + 3) & ~3)
    return notes


def _xen_notes(blobs: list[bytes]) -> dict[str, int | str | bytes]:
    found: dict[str, int | str | bytes] = {}
    for blob in blobs:
        for name, ntype, desc in parse_notes(blob):
            if name == "Xen" and ntype in elfnote.XEN_ELFNOTE_NAMES:
                found[elfnote.XEN_ELFNOTE_NAMES[ntype]] = _decode_note(ntype, desc)
    return found


def load_kernel(path: str) -> KernelElf:
    """Read and check a kernel ELF, or the ELF inside a Linux bzImage;
    BuildError names anything wrong."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise BuildError(f"kernel {path}: {e.strerror or e}") from None
    from_bzimage = is_bzimage(data)
    if from_bzimage:
        try:
            data = extract_payload(data)
        except BzImageError as e:
            raise BuildError(f"kernel {path}: bzImage: {e}") from None
    try:
        return _load(path, data, from_bzimage)
    except BuildError:
        raise
    except (ELFError, ELFParseError) as e:
        raise BuildError(f"kernel {path}: malformed ELF: {e}") from None
    except Exception as e:  # noqa: BLE001 — pyelftools on hostile input can raise anything
        raise BuildError(f"kernel {path}: malformed ELF: {type(e).__name__}: {e}") from None


def _load(path: str, data: bytes, from_bzimage: bool) -> KernelElf:
    if data[:4] != b"\x7fELF":
        what = "bzImage payload is not an ELF file" if from_bzimage else "not an ELF file"
        raise BuildError(f"kernel {path}: {what}")
    elf = ELFFile(io.BytesIO(data))
    machine = elf["e_machine"]
    if machine not in X86_MACHINES:
        raise BuildError(f"kernel {path}: machine {machine} is not x86")
    if not elf.little_endian:
        raise BuildError(f"kernel {path}: big-endian ELF")

    segments, note_blobs = [], []
    for seg in elf.iter_segments():
        if seg["p_type"] == PT_LOAD and seg["p_memsz"]:
            if seg["p_filesz"] > seg["p_memsz"]:
                raise BuildError(f"kernel {path}: PT_LOAD at {seg['p_paddr']:#x} "
                                 f"has filesz > memsz")
            blob = seg.data()
            if len(blob) != seg["p_filesz"]:
                raise BuildError(f"kernel {path}: PT_LOAD at {seg['p_paddr']:#x} "
                                 f"runs past the end of the file")
            segments.append(Segment(seg["p_paddr"], blob, seg["p_memsz"]))
        elif seg["p_type"] == PT_NOTE:
            note_blobs.append(seg.data())
    notes = _xen_notes(note_blobs)
    if not notes:
        notes = _xen_notes([s.data() for s in elf.iter_sections()
                            if s["sh_type"] == SHT_NOTE])

    if not segments:
        raise BuildError(f"kernel {path}: no PT_LOAD segment")
    segments.sort(key=lambda s: s.paddr)
    for a, b in zip(segments, segments[1:]):
        if b.paddr < a.end:
            raise BuildError(f"kernel {path}: PT_LOAD segments overlap at {b.paddr:#x}")
    return KernelElf(path=path, from_bzimage=from_bzimage, elfclass=elf.elfclass, machine=machine,
                     entry=elf["e_entry"], segments=segments, notes=notes)
