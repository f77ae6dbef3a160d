"""Writes small ELF files for the builder tests: chosen class, machine,
PT_LOAD segments, and Xen notes in a PT_NOTE segment and/or a SHT_NOTE
section. Test input for a parser, not a guest: nothing here runs."""
from __future__ import annotations

import struct

EM_386, EM_X86_64, EM_AARCH64 = 3, 62, 183
PT_LOAD, PT_NOTE = 1, 4
SHT_NOTE, SHT_STRTAB = 7, 3


def note(name: str, ntype: int, desc: bytes) -> bytes:
    n = name.encode() + b"\0"
    pad = lambda b: b + bytes(-len(b) % 4)
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def phys32(addr: int) -> bytes:
    return note("Xen", 18, struct.pack("<I", addr))


def make_elf(*, elfclass: int = 64, machine: int = EM_X86_64,
             segments: list[tuple[int, bytes, int]] = (),
             phdr_notes: bytes | None = None, section_notes: bytes | None = None,
             entry: int = 0) -> bytes:
    """segments: (paddr, file bytes, memsz)."""
    is64 = elfclass == 64
    ehsize, phentsize, shentsize = (64, 56, 64) if is64 else (52, 32, 40)
    nph = len(segments) + (phdr_notes is not None)
    phoff = ehsize
    body_off = phoff + nph * phentsize

    blobs, body = [], b""

    def place(data: bytes) -> int:
        nonlocal body
        body += bytes(-len(body) % 16)
        off = body_off + len(body)
        body += data
        return off

    phdrs = []
    for paddr, data, memsz in segments:
        phdrs.append((PT_LOAD, place(data), paddr, len(data), memsz, 7, 0x1000))
    if phdr_notes is not None:
        phdrs.append((PT_NOTE, place(phdr_notes), 0, len(phdr_notes), len(phdr_notes), 4, 4))

    shdrs = []
    if section_notes is not None:
        shstr = b"\0.note\0.shstrtab\0"
        note_off = place(section_notes)
        str_off = place(shstr)
        shdrs = [(0, 0, 0, 0, 0), (1, SHT_NOTE, note_off, len(section_notes), 4),
                 (7, SHT_STRTAB, str_off, len(shstr), 1)]
    shoff = 0
    if shdrs:
        body += bytes(-len(body) % 8)
        shoff = body_off + len(body)

    out = bytearray()
    ident = b"\x7fELF" + bytes([2 if is64 else 1, 1, 1]) + bytes(9)
    hdr_fmt = "<HHIQQQIHHHHHH" if is64 else "<HHIIIIIHHHHHH"
    out += ident + struct.pack(hdr_fmt, 2, machine, 1, entry, phoff, shoff, 0,
                               ehsize, phentsize, nph, shentsize, len(shdrs),
                               2 if shdrs else 0)
    for ptype, off, paddr, filesz, memsz, flags, align in phdrs:
        if is64:
            out += struct.pack("<IIQQQQQQ", ptype, flags, off, paddr, paddr, filesz, memsz, align)
        else:
            out += struct.pack("<IIIIIIII", ptype, off, paddr, paddr, filesz, memsz, flags, align)
    out += body
    for name, stype, off, size, align in shdrs:
        if is64:
            out += struct.pack("<IIQQQQIIQQ", name, stype, 0, 0, off, size, 0, 0, align, 0)
        else:
            out += struct.pack("<IIIIIIIIII", name, stype, 0, 0, off, size, 0, 0, align, 0)
    return bytes(out)
