"""The cache of decompressed bzImage payloads (toolstack/builder/
payload_cache.py): a repeated create of the same kernel skips the
decompression, and a missing, corrupt, unwritable or disabled cache only
costs that decompression again."""
import gzip
import os

import pytest

from tests.linux.helpers import linux_assets
from toolstack.builder import bzimage, payload_cache
from toolstack.builder.bzimage import extract_payload
from toolstack.builder.elf import BuildError, load_kernel
from toolstack.builder.payload_cache import MAX_ENTRIES, cached_decompress, entry_path

from .test_bzimage import bzimage as make_bzimage
from .test_bzimage import elf_bytes, xz


@pytest.fixture(autouse=True)
def cache_home(tmp_path, monkeypatch):
    """A private cache: never the user's."""
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.delenv("PYXEN_KERNEL_CACHE", raising=False)
    return home


class Counting:
    """A decoder that counts its calls (gzip, so the output is real)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, payload: bytes) -> bytes:
        self.calls += 1
        return gzip.decompress(payload)


def entries(home):
    d = home / "pyxen"
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def test_miss_then_hit(cache_home):
    data = os.urandom(5000)
    payload = gzip.compress(data)
    dec = Counting()
    assert cached_decompress(payload, "gzip", dec) == data
    assert dec.calls == 1
    assert len(entries(cache_home)) == 1
    assert cached_decompress(payload, "gzip", dec) == data
    assert dec.calls == 1, "second call decompressed again"


def test_key_is_content_and_format(cache_home):
    dec = Counting()
    a, b = gzip.compress(b"a" * 100), gzip.compress(b"b" * 100)
    assert cached_decompress(a, "gzip", dec) == b"a" * 100
    assert cached_decompress(b, "gzip", dec) == b"b" * 100
    assert cached_decompress(a, "gzip-other", dec) == b"a" * 100
    assert dec.calls == 3
    assert len(entries(cache_home)) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate", "header", "empty", "longer"])
def test_corrupt_entry_ignored_and_replaced(cache_home, damage):
    data = os.urandom(4000)
    payload = gzip.compress(data)
    dec = Counting()
    cached_decompress(payload, "gzip", dec)
    path = entry_path(str(cache_home / "pyxen"), payload, "gzip")
    blob = bytearray(open(path, "rb").read())
    if damage == "flip":
        blob[-100] ^= 0x40
    elif damage == "truncate":
        del blob[-1:]
    elif damage == "header":
        blob[0:8] = b"NOTMAGIC"
    elif damage == "empty":
        blob = bytearray()
    else:
        blob += b"\0"
    open(path, "wb").write(blob)
    assert cached_decompress(payload, "gzip", dec) == data
    assert dec.calls == 2, "a damaged entry was used"
    # ... and rewritten: the next call hits again.
    assert cached_decompress(payload, "gzip", dec) == data
    assert dec.calls == 2


def test_unwritable_cache_falls_back(cache_home):
    # A file where the directory should be: mkdir fails even for root
    # (which permission bits would not stop).
    cache_home.write_bytes(b"not a directory")
    data = os.urandom(3000)
    dec = Counting()
    assert cached_decompress(gzip.compress(data), "gzip", dec) == data
    assert cached_decompress(gzip.compress(data), "gzip", dec) == data
    assert dec.calls == 2
    assert cache_home.read_bytes() == b"not a directory"


def test_entry_path_is_a_directory_falls_back(cache_home):
    payload = gzip.compress(b"x" * 1000)
    os.makedirs(entry_path(str(cache_home / "pyxen"), payload, "gzip"))
    dec = Counting()
    assert cached_decompress(payload, "gzip", dec) == b"x" * 1000
    assert cached_decompress(payload, "gzip", dec) == b"x" * 1000
    assert dec.calls == 2
    assert not [n for n in entries(cache_home) if n.startswith(".tmp-")], "temp file left"


def test_disabled_by_env(cache_home, monkeypatch):
    monkeypatch.setenv("PYXEN_KERNEL_CACHE", "0")
    dec = Counting()
    payload = gzip.compress(b"y" * 1000)
    assert cached_decompress(payload, "gzip", dec) == b"y" * 1000
    assert cached_decompress(payload, "gzip", dec) == b"y" * 1000
    assert dec.calls == 2
    assert not cache_home.exists()


def test_default_dir_is_under_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert payload_cache.cache_dir() == str(tmp_path / ".cache" / "pyxen")


def test_eviction_keeps_most_recently_used(cache_home):
    dec = Counting()
    payloads = [gzip.compress(bytes([i]) * 500) for i in range(MAX_ENTRIES + 2)]
    d = str(cache_home / "pyxen")
    for i, p in enumerate(payloads[:MAX_ENTRIES]):
        cached_decompress(p, "gzip", dec)
        os.utime(entry_path(d, p, "gzip"), ns=(i * 10**9, i * 10**9))  # distinct ages
    assert len(entries(cache_home)) == MAX_ENTRIES
    # A hit makes the oldest entry the most recent one.
    cached_decompress(payloads[0], "gzip", dec)
    assert dec.calls == MAX_ENTRIES
    cached_decompress(payloads[MAX_ENTRIES], "gzip", dec)
    names = entries(cache_home)
    assert len(names) == MAX_ENTRIES
    assert os.path.basename(entry_path(d, payloads[1], "gzip")) not in names, "LRU kept"
    for p in (payloads[0], payloads[MAX_ENTRIES]):
        assert os.path.basename(entry_path(d, p, "gzip")) in names
    # Temporary files of a killed writer go once stale, not while fresh.
    stale, fresh = os.path.join(d, ".tmp-stale"), os.path.join(d, ".tmp-fresh")
    for p in (stale, fresh):
        open(p, "wb").write(b"partial")
    os.utime(stale, (1, 1))
    cached_decompress(payloads[MAX_ENTRIES + 1], "gzip", dec)
    assert not os.path.exists(stale)
    assert os.path.exists(fresh)


def test_decoder_error_is_not_cached(cache_home):
    def broken(_payload):
        raise ValueError("bad stream")
    with pytest.raises(ValueError, match="bad stream"):
        cached_decompress(b"\x1f\x8bjunk", "gzip", broken)
    assert entries(cache_home) == []


def test_corrupt_bzimage_payload_still_an_error(tmp_path, cache_home):
    good = xz(elf_bytes())
    p = tmp_path / "corrupt"
    p.write_bytes(make_bzimage(good[:12] + bytes(len(good) - 12)))
    for _ in range(2):
        with pytest.raises(BuildError, match="corrupt compressed payload"):
            load_kernel(str(p))
    assert entries(cache_home) == []


def test_bzimage_cached_payload_is_identical(tmp_path, cache_home, monkeypatch):
    img = make_bzimage(xz(elf_bytes()))
    cold = extract_payload(img)
    assert cold == elf_bytes()
    assert len(entries(cache_home)) == 1

    def no_decoder(*_):
        raise AssertionError("decompressed on a warm cache")
    monkeypatch.setattr(bzimage, "decompress", no_decoder)
    assert extract_payload(img) == cold
    p = tmp_path / "vmlinuz"
    p.write_bytes(img)
    assert load_kernel(str(p)).phys32_entry == 0x1000040


def test_real_kernel_cached_payload_is_identical(cache_home, monkeypatch):
    assets = linux_assets()
    if assets is None:
        pytest.skip("no real bzImage: Linux guest assets not built (make linux-assets)")
    img = open(assets["kernel"], "rb").read()
    monkeypatch.setenv("PYXEN_KERNEL_CACHE", "0")
    fresh = extract_payload(img)
    monkeypatch.delenv("PYXEN_KERNEL_CACHE")
    assert extract_payload(img) == fresh          # cold: decompressed and stored
    calls = []
    real = bzimage.decompress
    monkeypatch.setattr(bzimage, "decompress", lambda *a: calls.append(a) or real(*a))
    assert extract_payload(img) == fresh          # warm: read back
    assert calls == []
