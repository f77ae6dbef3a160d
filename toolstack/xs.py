"""A str-based xenstore handle for the toolstack (pyxs underneath), with
libxl's idioms: mknod with permissions, writes in a retried transaction."""
from __future__ import annotations

import errno
import random
import time

import pyxs
from pyxs._internal import NUL, Op

from dom0 import rundir

PyXSError = pyxs.PyXSError


class XsError(Exception):
    pass


class Xs:
    def __init__(self, rdir: str):
        path = rundir.xenstored_socket(rdir)
        self.client = pyxs.Client(unix_socket_path=path)
        try:
            self.client.connect()
        except (OSError, pyxs.PyXSError) as e:
            raise ConnectionError(f"xenstored not reachable at {path}: {e}") from None

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read(self, path: str, default: str | None = None) -> str | None:
        try:
            v = self.client.read(path.encode())
        except pyxs.PyXSError as e:
            if e.args and e.args[0] in (errno.ENOENT, errno.EACCES):
                return default
            raise
        return default if v is None else v.decode(errors="replace")

    def write(self, path: str, value: str) -> None:
        value = str(value).encode()
        if value:
            self.client.write(path.encode(), value)
        else:       # pyxs refuses an empty payload; XS_MKDIR makes an empty node
            self.client.mkdir(path.encode())

    def mknod(self, path: str, perms: list[str], value: str = "") -> None:
        self.write(path, value)
        self.client.set_perms(path.encode(), [p.encode() for p in perms])

    def rm(self, path: str) -> None:
        try:
            self.client.delete(path.encode())
        except pyxs.PyXSError as e:
            if not e.args or e.args[0] != errno.ENOENT:
                raise

    def ls(self, path: str) -> list[str]:
        try:
            return [n.decode() for n in self.client.list(path.encode())]
        except pyxs.PyXSError as e:
            if e.args and e.args[0] == errno.ENOENT:
                return []
            raise

    def transaction(self, fn, retries: int = 200):
        """Run fn() inside a transaction, again on EAGAIN (as libxl does),
        after a short random pause so that racing writers spread out."""
        for attempt in range(retries):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))
            self.client.transaction()
            try:
                result = fn()
            except BaseException:
                try:
                    self.client.rollback()
                except pyxs.PyXSError:
                    pass
                raise
            if self.client.commit():
                return result
        raise XsError("xenstore transaction kept conflicting")

    def introduce(self, domid: int, gfn: int, port: int) -> None:
        self.client.introduce_domain(domid, gfn, port)

    def release(self, domid: int) -> None:
        # pyxs refuses RELEASE unless /proc/xen says we are dom0; we are the
        # privileged socket client, so send it ourselves.
        self.client.ack(Op.RELEASE, str(domid).encode() + NUL)
