"""Disk images behind a vbd: raw files and block devices.

pread/pwrite on one fd; size from stat (or BLKGETSIZE64 for a block
device). Discard punches a hole (fallocate) in a file, BLKDISCARD on a
device; both leave reads as zeroes, which is what discard-zeroes-data
frontends expect.
"""
import fcntl
import os
import stat
import struct

from xen_core.abi.blkif import XEN_SECTOR_SIZE

BLKGETSIZE64 = 0x80081272
BLKDISCARD = 0x1277
BLKSSZGET = 0x1268
BLKPBSZGET = 0x127B
FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


class ImageError(Exception):
    """A disk target that cannot be used (one line, names the path)."""


class RawImage:
    def __init__(self, path: str, read_only: bool = False):
        self.path = path
        self.read_only = read_only
        try:
            self.fd = os.open(path, (os.O_RDONLY if read_only else os.O_RDWR) | os.O_CLOEXEC)
        except OSError as e:
            raise ImageError(f"{path}: {e.strerror}") from None
        st = os.fstat(self.fd)
        self.is_block_device = stat.S_ISBLK(st.st_mode)
        self.sector_size = XEN_SECTOR_SIZE
        self.physical_sector_size = XEN_SECTOR_SIZE
        if self.is_block_device:
            buf = fcntl.ioctl(self.fd, BLKGETSIZE64, b"\0" * 8)
            size = struct.unpack("<Q", buf)[0]
            self.physical_sector_size = struct.unpack(
                "<I", fcntl.ioctl(self.fd, BLKPBSZGET, b"\0" * 4))[0]
        elif stat.S_ISREG(st.st_mode):
            size = st.st_size
        else:
            os.close(self.fd)
            raise ImageError(f"{path}: neither a regular file nor a block device")
        self.sectors = size // XEN_SECTOR_SIZE

    def pread(self, offset: int, length: int) -> bytes:
        data = os.pread(self.fd, length, offset)
        if len(data) != length:
            raise OSError(5, f"short read at {offset}")
        return data

    def pwrite(self, offset: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n

    def preadv(self, offset: int, bufs) -> None:
        """Fill `bufs` (writable views, e.g. of mapped guest pages) in order."""
        _vectored(os.preadv, self.fd, offset, bufs, "read")

    def pwritev(self, offset: int, bufs) -> None:
        _vectored(os.pwritev, self.fd, offset, bufs, "write")

    def flush(self) -> None:
        os.fdatasync(self.fd)

    def discard(self, offset: int, length: int, secure: bool = False) -> None:
        if self.is_block_device:
            fcntl.ioctl(self.fd, BLKDISCARD, struct.pack("<QQ", offset, length))
        else:
            _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _vectored(call, fd: int, offset: int, bufs, what: str) -> None:
    """preadv/pwritev until every buffer is done (they may stop short)."""
    n = call(fd, bufs, offset)
    if n == sum(len(b) for b in bufs):
        return
    bufs = [memoryview(b) for b in bufs]
    try:
        while True:
            if n <= 0:
                raise OSError(5, f"short {what} at {offset}")
            offset += n
            while bufs and n >= len(bufs[0]):
                n -= len(bufs[0])
                bufs.pop(0).release()
            if not bufs:
                return
            if n:
                head = bufs[0]
                bufs[0] = head[n:]
                head.release()
            n = call(fd, bufs, offset)
    finally:
        for b in bufs:
            b.release()


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    import ctypes
    import ctypes.util
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if libc.fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
