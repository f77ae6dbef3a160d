"""qcow2 (and any format QEMU reads) behind a vbd: `qemu-nbd` from Debian's
qemu-utils serves the image on a private Unix socket, and this NBD client
(fixed newstyle handshake, NBD_OPT_EXPORT_NAME, simple replies) gives
blkback the same pread/pwrite/flush/discard surface as a raw file. No
qcow2 parsing of our own: QEMU's block layer owns the format.
"""
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time

from .image import ImageError

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
NBD_FLAG_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_NO_ZEROES = 1 << 1
NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0
NBD_FLAG_C_NO_ZEROES = 1 << 1
NBD_OPT_EXPORT_NAME = 1
NBD_FLAG_READ_ONLY = 1 << 1
NBD_FLAG_SEND_FLUSH = 1 << 2
NBD_FLAG_SEND_TRIM = 1 << 5
NBD_REQUEST_MAGIC = 0x25609513
NBD_SIMPLE_REPLY_MAGIC = 0x67446698
NBD_CMD_READ, NBD_CMD_WRITE, NBD_CMD_DISC, NBD_CMD_FLUSH, NBD_CMD_TRIM = 0, 1, 2, 3, 4
REQUEST = struct.Struct(">IHHQQI")
REPLY = struct.Struct(">IIQ")


class NbdClient:
    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.cookie = 0
        magic, opt, hflags = struct.unpack(">QQH", self._recv(18))
        if magic != NBDMAGIC or opt != IHAVEOPT or not hflags & NBD_FLAG_FIXED_NEWSTYLE:
            raise ImageError(f"{path}: not a newstyle NBD server")
        cflags = NBD_FLAG_C_FIXED_NEWSTYLE | (hflags & NBD_FLAG_NO_ZEROES and NBD_FLAG_C_NO_ZEROES)
        self.sock.sendall(struct.pack(">IQII", cflags, IHAVEOPT, NBD_OPT_EXPORT_NAME, 0))
        self.size, self.flags = struct.unpack(">QH", self._recv(10))
        if not cflags & NBD_FLAG_C_NO_ZEROES:
            self._recv(124)

    def _recv(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise OSError(5, "NBD server closed the connection")
            buf += chunk
        return bytes(buf)

    def request(self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"") -> bytes:
        self.cookie += 1
        self.sock.sendall(REQUEST.pack(NBD_REQUEST_MAGIC, 0, cmd, self.cookie, offset, length) + data)
        if cmd == NBD_CMD_DISC:
            return b""
        magic, error, cookie = REPLY.unpack(self._recv(REPLY.size))
        if magic != NBD_SIMPLE_REPLY_MAGIC or cookie != self.cookie:
            raise OSError(5, "NBD reply out of sequence")
        if error:
            raise OSError(error, os.strerror(error))
        return self._recv(length) if cmd == NBD_CMD_READ else b""

    def close(self) -> None:
        try:
            self.request(NBD_CMD_DISC)
        except OSError:
            pass
        self.sock.close()


class NbdImage:
    """An image in any QEMU format, served by a private qemu-nbd."""

    def __init__(self, path: str, fmt: str, read_only: bool = False):
        if not shutil.which("qemu-nbd"):
            raise ImageError(f"{path}: format={fmt} needs qemu-nbd (Debian package qemu-utils)")
        if not os.path.exists(path):
            raise ImageError(f"{path}: No such file or directory")
        self.path = path
        self.read_only = read_only
        self.dir = tempfile.mkdtemp(prefix="vbd-nbd-")
        sock = os.path.join(self.dir, "nbd.sock")
        cmd = ["qemu-nbd", "-k", sock, "-f", fmt, "--cache=writeback", "--discard=unmap"]
        if read_only:
            cmd.append("-r")
        self.proc = subprocess.Popen(cmd + [path], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.client = None
        try:
            while not os.path.exists(sock):
                if self.proc.poll() is not None:
                    raise OSError("exited")
                time.sleep(0.01)
            self.client = NbdClient(sock)
        except OSError as e:
            # qemu-nbd may listen before it opens the image: its own message
            # says what is wrong with the file.
            self.close()
            err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
            raise ImageError(f"{path}: qemu-nbd: {err[-1] if err else e}") from None
        self.sectors = self.client.size // 512
        self.sector_size = self.physical_sector_size = 512
        self.is_block_device = False
        self.can_discard = bool(self.client.flags & NBD_FLAG_SEND_TRIM)

    def pread(self, offset: int, length: int) -> bytes:
        return self.client.request(NBD_CMD_READ, offset, length)

    def pwrite(self, offset: int, data: bytes) -> None:
        self.client.request(NBD_CMD_WRITE, offset, len(data), bytes(data))

    def flush(self) -> None:
        if self.client.flags & NBD_FLAG_SEND_FLUSH:
            self.client.request(NBD_CMD_FLUSH)

    def discard(self, offset: int, length: int, secure: bool = False) -> None:
        if self.can_discard:
            self.client.request(NBD_CMD_TRIM, offset, length)

    def close(self) -> None:
        if self.client:
            self.client.close()
            self.client = None
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait()
        self._cleanup()

    def _cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
