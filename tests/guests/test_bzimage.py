"""A Linux bzImage given as the kernel: the builder opens it to the ELF
payload (boot protocol >= 2.08), as Xen's bzImage loader does."""
import bz2
import gzip
import lzma
import struct

import pytest

from toolstack.builder.elf import BuildError, load_kernel
from toolstack.builder.pvh import build_pvh

from .elfgen import make_elf, phys32

MiB = 1 << 20
CODE = bytes(range(256)) * 8


@pytest.fixture(autouse=True)
def private_payload_cache(tmp_path, monkeypatch):
    # Decompressed payloads are cached (payload_cache.py): in a tmp dir,
    # never the user's.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("PYXEN_KERNEL_CACHE", raising=False)


def elf_bytes():
    return make_elf(segments=[(0x1000000, CODE, len(CODE) + 0x1000)],
                    phdr_notes=phys32(0x1000040))


def bzimage(payload: bytes, version: int = 0x020F, setup_sects: int = 3,
            length: int | None = None) -> bytes:
    setup = bytearray((setup_sects + 1) * 512)
    setup[0x1F1] = setup_sects
    setup[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", setup, 0x206, version)
    offset = 0x80  # payload starts this far into the protected-mode part
    struct.pack_into("<II", setup, 0x248, offset,
                     len(payload) if length is None else length)
    pm = bytearray(offset) + payload + struct.pack("<I", 123456)  # trailing size, as Linux
    return bytes(setup) + bytes(pm)


def xz(data):
    # Linux's xz payloads use the x86 BCJ filter before LZMA2.
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32,
                         filters=[{"id": lzma.FILTER_X86}, {"id": lzma.FILTER_LZMA2}])


@pytest.mark.parametrize("compress", [xz, gzip.compress, bz2.compress,
                                      lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE)],
                         ids=["xz", "gzip", "bzip2", "lzma"])
def test_bzimage_payload_is_loaded(tmp_path, compress):
    p = tmp_path / "vmlinuz"
    p.write_bytes(bzimage(compress(elf_bytes())))
    k = load_kernel(str(p))
    assert k.from_bzimage
    assert k.phys32_entry == 0x1000040
    im = build_pvh(str(p), 64 * MiB)
    assert im.entry == 0x1000040
    assert dict(im.segments)[0x1000000] == CODE + bytes(0x1000)


def test_setup_sects_zero_means_four(tmp_path):
    img = bytearray(bzimage(gzip.compress(elf_bytes()), setup_sects=4))
    img[0x1F1] = 0
    p = tmp_path / "vmlinuz"
    p.write_bytes(bytes(img))
    assert load_kernel(str(p)).phys32_entry == 0x1000040


def test_old_boot_protocol(tmp_path):
    p = tmp_path / "old"
    p.write_bytes(bzimage(gzip.compress(elf_bytes()), version=0x0206))
    with pytest.raises(BuildError, match=r"bzImage: boot protocol 2.06 is too old"):
        load_kernel(str(p))


def test_zstd_payload_is_named(tmp_path):
    p = tmp_path / "zst"
    p.write_bytes(bzimage(b"\x28\xb5\x2f\xfd" + bytes(64)))
    with pytest.raises(BuildError, match="zstd-compressed payload is not supported"):
        load_kernel(str(p))


def test_corrupt_payload(tmp_path):
    good = xz(elf_bytes())
    bad = good[:12] + bytes(len(good) - 12)
    p = tmp_path / "corrupt"
    p.write_bytes(bzimage(bad))
    with pytest.raises(BuildError, match="corrupt compressed payload"):
        load_kernel(str(p))


def test_payload_outside_file(tmp_path):
    p = tmp_path / "short"
    p.write_bytes(bzimage(gzip.compress(elf_bytes()), length=1 << 30))
    with pytest.raises(BuildError, match="outside the file"):
        load_kernel(str(p))


def test_payload_not_an_elf(tmp_path):
    p = tmp_path / "notelf"
    p.write_bytes(bzimage(gzip.compress(b"just some bytes, not an ELF" * 10)))
    with pytest.raises(BuildError, match="payload is not an ELF"):
        load_kernel(str(p))
