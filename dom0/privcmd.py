"""Client of xen-core's privileged interface: dom0's privcmd.

Everything dom0 asks of the hypervisor goes through here (Xen's libxenctrl /
privcmd ioctls). Errors come back as `XenError` carrying Xen's errno.
"""
from __future__ import annotations

import array
import base64
import os
import socket
import threading

from xen_core.abi import privif
from xen_core.abi import xen as xenabi


class XenError(OSError):
    """A failed request: errno is Xen's (ESRCH for a missing domain, ...)."""

    def __init__(self, errno: int, name: str, message: str = ""):
        super().__init__(errno, f"{name}: {message}" if message else name)
        self.name = name


def run_dir_socket(run_dir: str) -> str:
    return os.path.join(run_dir, privif.SOCKET_NAME)


class Privcmd:
    """One connection. Requests are synchronous and may come from several
    threads; events (subscriptions) go to `on_event` on the reader side."""

    def __init__(self, run_dir: str | None = None, path: str | None = None):
        if path is None:
            path = run_dir_socket(run_dir or privif.default_run_dir())
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
        except OSError as e:
            self.sock.close()
            raise ConnectionError(f"xen-core not reachable at {path}: {e.strerror}") from None
        self._dec = privif.Decoder()
        self._lock = threading.Lock()
        self._next_id = 1
        self._pending: list[privif.Message] = []
        self.events: list[dict] = []

    def close(self) -> None:
        self.sock.close()
        for m in self._pending:
            for fd in m.fds:
                os.close(fd)
        self._pending.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- transport -------------------------------------------------------------
    def _recv_message(self) -> privif.Message:
        while not self._pending:
            data, anc, _, _ = self.sock.recvmsg(1 << 16, socket.CMSG_SPACE(privif.MAX_FDS_PER_FRAME * 4))
            fds = []
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload[:len(payload) - len(payload) % 4])
                    fds.extend(a)
            if not data:
                for fd in fds:
                    os.close(fd)
                raise ConnectionError("xen-core closed the connection")
            self._pending.extend(self._dec.feed(data, fds))
        return self._pending.pop(0)

    def next_event(self) -> dict:
        """Block for the next subscription event (events that arrived while
        waiting for a reply are returned first)."""
        if self.events:
            return self.events.pop(0)
        while True:
            m = self._recv_message()
            if "event" in m.body:
                return m.body

    def call(self, op: str, **args):
        """(result dict, fds) of one request; raises XenError."""
        with self._lock:
            req_id = self._next_id
            self._next_id += 1
            self.sock.sendall(privif.encode(dict(args, op=op, id=req_id)))
            while True:
                m = self._recv_message()
                if "event" in m.body:
                    self.events.append(m.body)
                    continue
                if m.body.get("id") != req_id:
                    for fd in m.fds:
                        os.close(fd)
                    if m.body.get("id") is None and not m.body.get("ok", True):
                        raise XenError(m.body.get("errno", xenabi.EINVAL),
                                       m.body.get("error", "EINVAL"), m.body.get("message", ""))
                    continue
                break
        if not m.body.get("ok"):
            for fd in m.fds:
                os.close(fd)
            raise XenError(m.body.get("errno", xenabi.EINVAL), m.body.get("error", "EINVAL"),
                           m.body.get("message", ""))
        return m.body.get("result", {}), m.fds

    def _call(self, op: str, **args) -> dict:
        result, fds = self.call(op, **args)
        for fd in fds:
            os.close(fd)
        return result

    # -- operations --------------------------------------------------------------
    def hello(self) -> dict:
        return self._call("hello")

    def physinfo(self) -> dict:
        return self._call("physinfo")

    def xen_dmesg(self, clear: bool = False) -> bytes:
        return base64.b64decode(self._call("xen_dmesg", clear=clear)["data"])

    def domain_create(self, max_memory: int, max_vcpus: int = 1, hvm: bool = False,
                      domid: int | None = None, handle: bytes | None = None) -> int:
        args = dict(max_memory=max_memory, max_vcpus=max_vcpus, flags=["hvm" if hvm else "pvh"])
        if domid:
            args["domid"] = domid
        if handle:
            args["handle"] = handle.hex()
        return self._call("domain_create", **args)["domid"]

    def domain_destroy(self, domid: int) -> None:
        self._call("domain_destroy", domid=domid)

    def domain_pause(self, domid: int) -> None:
        self._call("domain_pause", domid=domid)

    def domain_unpause(self, domid: int) -> None:
        self._call("domain_unpause", domid=domid)

    def domain_shutdown(self, domid: int, reason: int) -> None:
        self._call("domain_shutdown", domid=domid, reason=reason)

    def domain_set_max_mem(self, domid: int, max_memory: int) -> None:
        self._call("domain_set_max_mem", domid=domid, max_memory=max_memory)

    def domain_info(self, domid: int) -> dict:
        return self._call("domain_info", domid=domid)

    def domain_list(self) -> list[dict]:
        return self._call("domain_list")["domains"]

    def populate_physmap(self, domid: int, ranges: list[tuple[int, int]]) -> int:
        return self._call("populate_physmap", domid=domid,
                          ranges=[list(r) for r in ranges])["done"]

    def set_memory_map(self, domid: int, entries: list[tuple[int, int, int]]) -> None:
        self._call("set_memory_map", domid=domid, entries=[list(e) for e in entries])

    def foreign_map_fd(self, domid: int, gfns: list[int]) -> tuple[int, list[int], list[int], int]:
        """(memfd, offsets, per-gfn errors, memfd size); the caller owns the fd."""
        result, fds = self.call("foreign_map", domid=domid, gfns=list(gfns))
        if len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise XenError(xenabi.EINVAL, "EINVAL", "foreign_map reply without a memfd")
        return fds[0], result["offsets"], result["errors"], result["size"]

    def vcpu_setcontext(self, domid: int, vcpu: int, state: dict) -> None:
        self._call("vcpu_setcontext", domid=domid, vcpu=vcpu, state=state)

    def hvm_param_get(self, domid: int, index: int) -> int:
        return self._call("hvm_param_get", domid=domid, index=index)["value"]

    def hvm_param_set(self, domid: int, index: int, value: int) -> None:
        self._call("hvm_param_set", domid=domid, index=index, value=value)

    def console_read(self, domid: int, offset: int = 0) -> tuple[bytes, int]:
        r = self._call("console_read", domid=domid, offset=offset)
        return base64.b64decode(r["data"]), r["offset"]

    def console_write_input(self, domid: int, data: bytes) -> None:
        self._call("console_write_input", domid=domid, data=base64.b64encode(data).decode())

    def subscribe_dom_exc(self) -> None:
        """After this, `next_event()` yields {"event": "dom_exc", "kind":
        "shutdown"|"destroyed", "domid", "state", "shutdown_reason"}."""
        self._call("subscribe_dom_exc")

    def subscribe_console(self, domid: int, offset: int = 0) -> tuple[bytes, int]:
        """Output so far (from `offset`) and its end; later output arrives as
        {"event": "console", "domid", "offset", "data"} events."""
        r = self._call("subscribe_console", domid=domid, offset=offset)
        return base64.b64decode(r["data"]), r["offset"]
