"""A cache of decompressed bzImage payloads, so that creating a domain from
the same kernel again skips the decompression (about 1.1 s of Python's lzma
for Debian's XZ payload, most of a PVH domain build).

Entries are content-addressed: the name is the sha256 of the compressed
payload bytes plus its format, so a changed kernel file never hits a stale
entry. Each entry carries a header with the length and sha256 of the
decompressed bytes and is read back only if both match (a guard against
damage, not tampering: the directory is the user's own). Entries are
written to a temporary file and renamed into place (a reader never sees a
partial one), and only the MAX_ENTRIES most recently used are kept.

The cache is an optimisation and never an error: any failure to read or
write it falls back to decompressing. It lives in
$XDG_CACHE_HOME/pyxen/ (default ~/.cache/pyxen/); PYXEN_KERNEL_CACHE=0
turns it off."""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
from typing import Callable

# A Debian kernel's payload is ~65 MB: a few kernels' worth (the running
# one and an upgrade or two) bounds the cache at ~200 MB.
MAX_ENTRIES = 3

_MAGIC = b"PYXENPL1"
_HEADER = struct.Struct("<8sQ32s")   # magic, decompressed length, its sha256
_PREFIX = "payload-"
_SUFFIX = ".elf"
_TMP_PREFIX = ".tmp-"
_STALE_TMP_S = 3600   # far longer than any write takes


def cache_dir() -> str | None:
    """Where entries live, or None when PYXEN_KERNEL_CACHE=0."""
    if os.environ.get("PYXEN_KERNEL_CACHE", "").strip() == "0":
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pyxen")


def entry_path(directory: str, payload: bytes, fmt: str) -> str:
    key = hashlib.sha256(payload).hexdigest()
    return os.path.join(directory, f"{_PREFIX}{key}-{fmt}{_SUFFIX}")


def _read(path: str) -> bytes | None:
    """The entry's content if it is intact, else None."""
    try:
        with open(path, "rb") as f:
            header = f.read(_HEADER.size)
            if len(header) < _HEADER.size:
                return None
            data = f.read()   # read apart from the header: no 65 MB slice copy
    except OSError:
        return None
    magic, length, digest = _HEADER.unpack(header)
    if magic != _MAGIC or length != len(data) or hashlib.sha256(data).digest() != digest:
        return None
    try:
        os.utime(path)   # most recently used: kept by _evict
    except OSError:
        pass
    return data


def _write(directory: str, path: str, data: bytes) -> None:
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_HEADER.pack(_MAGIC, len(data), hashlib.sha256(data).digest()))
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _evict(directory: str, keep: str) -> None:
    """Remove all but the MAX_ENTRIES most recently used entries (never
    `keep`), and temporary files a killed writer left behind."""
    entries = []
    now = time.time()
    for name in os.listdir(directory):
        p = os.path.join(directory, name)
        try:
            st = os.stat(p)
        except OSError:
            continue
        if name.startswith(_PREFIX) and name.endswith(_SUFFIX):
            entries.append((st.st_mtime_ns, p))
        elif name.startswith(_TMP_PREFIX) and now - st.st_mtime > _STALE_TMP_S:
            try:
                os.unlink(p)
            except OSError:
                pass
    entries.sort(reverse=True)
    for _, p in entries[MAX_ENTRIES:]:
        if p != keep:
            try:
                os.unlink(p)
            except OSError:
                pass


def cached_decompress(payload: bytes, fmt: str, decompress: Callable[[bytes], bytes]) -> bytes:
    """decompress(payload), or its result from an earlier call with the same
    payload and format."""
    directory = cache_dir()
    if directory is None:
        return decompress(payload)
    path = entry_path(directory, payload, fmt)
    data = _read(path)
    if data is not None:
        return data
    data = decompress(payload)   # its errors are the caller's, never cached
    try:
        _write(directory, path, data)
        _evict(directory, keep=path)
    except OSError:
        pass   # unwritable or full: the next create decompresses again
    return data
