"""Linux bzImage: find the compressed kernel ELF inside it (boot protocol
>= 2.08 records where: `payload_offset`/`payload_length`), as Xen's
bzImage loader does, so `kernel = "/boot/vmlinuz-..."` works for PVH.
Decompressed payloads are cached (payload_cache.py)."""
from __future__ import annotations

import bz2
import lzma
import struct
import zlib

from .payload_cache import cached_decompress

# struct setup_header fields, offsets into the image.
SETUP_SECTS = 0x1F1
HDR_MAGIC_OFF = 0x202
HDR_MAGIC = b"HdrS"
HDR_VERSION = 0x206
PAYLOAD_OFFSET = 0x248
PAYLOAD_LENGTH = 0x24C
MIN_VERSION = 0x0208  # first protocol with payload_offset/length

_GZIP = b"\x1f\x8b"
_XZ = b"\xfd7zXZ\x00"
_LZMA = b"\x5d\x00\x00"
_BZIP2 = b"BZh"
_ZSTD = b"\x28\xb5\x2f\xfd"
_LZ4 = b"\x02\x21\x4c\x18"
_LZO = b"\x89LZO"


class BzImageError(ValueError):
    pass


def is_bzimage(data: bytes) -> bool:
    return len(data) >= PAYLOAD_LENGTH + 4 and data[HDR_MAGIC_OFF:HDR_MAGIC_OFF + 4] == HDR_MAGIC


def payload_format(payload: bytes) -> str:
    """The compression of a payload, by its magic; BzImageError if we
    cannot decompress it."""
    for magic, name in ((_GZIP, "gzip"), (_XZ, "xz"), (_LZMA, "lzma"), (_BZIP2, "bzip2")):
        if payload.startswith(magic):
            return name
    for magic, name in ((_ZSTD, "zstd"), (_LZ4, "lz4"), (_LZO, "lzo")):
        if payload.startswith(magic):
            raise BzImageError(f"{name}-compressed payload is not supported "
                               f"(gzip, xz, lzma, bzip2 are)")
    raise BzImageError(f"unknown payload compression (magic {payload[:4].hex()})")


def decompress(payload: bytes, fmt: str) -> bytes:
    # The payload may be followed by other data (Linux appends the
    # uncompressed size): every decoder stops at the end of its stream.
    try:
        if fmt == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS).decompress(payload)
        if fmt == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if fmt == "lzma":
            return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
        if fmt == "bzip2":
            return bz2.BZ2Decompressor().decompress(payload)
    except (zlib.error, lzma.LZMAError, OSError, EOFError) as e:
        raise BzImageError(f"corrupt compressed payload: {e}") from None
    raise BzImageError(f"unknown payload compression {fmt!r}")


def extract_payload(data: bytes) -> bytes:
    """The decompressed payload (the kernel ELF) of a bzImage."""
    version, = struct.unpack_from("<H", data, HDR_VERSION)
    if version < MIN_VERSION:
        raise BzImageError(f"boot protocol {version >> 8}.{version & 0xff:02d} "
                           f"is too old (need 2.08 for the payload fields)")
    setup_sects = data[SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", data, PAYLOAD_OFFSET)
    start = (setup_sects + 1) * 512 + offset
    if length == 0 or start + length > len(data):
        raise BzImageError("payload lies outside the file")
    payload = data[start:start + length]
    fmt = payload_format(payload)
    return cached_decompress(payload, fmt, lambda p: decompress(p, fmt))
