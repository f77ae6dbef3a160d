"""The privileged interface's wire format, sans I/O.

A frame is a 4-byte little-endian length, then that many bytes of UTF-8 JSON
(an object). File descriptors travel as SCM_RIGHTS ancillary data on the
sendmsg that carries the frame's first byte; the JSON says how many belong to
the frame (`"nfds"`), so a reader can attach them to the right message.

Requests:  {"id": n, "op": "<name>", ...arguments}
Replies:   {"id": n, "ok": true, "result": {...}}
           {"id": n, "ok": false, "errno": 3, "error": "ESRCH", "message": "..."}
Events:    {"event": "<name>", ...} (subscriptions; no id)

This module only turns bytes into messages and back; sockets live in the
daemon (`xen_core.daemon`) and the client (`dom0.privcmd`). It lives in
`xen_core.abi` because it is the contract between them, as privcmd.h is.
"""
from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field

HEADER = struct.Struct("<I")
MAX_FRAME = 4 << 20      # a reply listing many gfns stays well below
MAX_FDS_PER_FRAME = 16
SOCKET_NAME = "privcmd.sock"

# Operations of the core itself; later layers (evtchn_*, gnttab_*) register
# theirs with `xen_core.daemon.register_op`.
OPS = (
    "hello", "physinfo", "xen_dmesg",
    "domain_create", "domain_destroy", "domain_pause", "domain_unpause", "domain_shutdown",
    "domain_info", "domain_list", "domain_set_max_mem",
    "populate_physmap", "set_memory_map", "foreign_map", "vcpu_setcontext",
    "hvm_param_get", "hvm_param_set",
    "console_read", "console_write_input", "subscribe_dom_exc", "subscribe_console",
)


def default_run_dir() -> str:
    """$XEN_RUN_DIR, else /run/pyxen as root, else $XDG_RUNTIME_DIR/pyxen."""
    env = os.environ.get("XEN_RUN_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return "/run/pyxen"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/pyxen-{os.getuid()}"
    return os.path.join(base, "pyxen")


class ProtocolError(Exception):
    """The peer sent something that is not a frame of this protocol."""


@dataclass
class Message:
    body: dict
    fds: list[int] = field(default_factory=list)


def encode(body: dict, nfds: int = 0) -> bytes:
    """One frame. With fds, send them with the first byte of these bytes."""
    if nfds:
        body = dict(body, nfds=nfds)
    payload = json.dumps(body, separators=(",", ":")).encode()
    if len(payload) > MAX_FRAME:
        raise ValueError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME}")
    return HEADER.pack(len(payload)) + payload


class Decoder:
    """Feed bytes and received fds; take complete messages out."""

    def __init__(self):
        self._buf = bytearray()
        self._fds: list[int] = []

    def feed(self, data: bytes, fds: list[int] = ()) -> list[Message]:
        self._buf += data
        self._fds.extend(fds)
        out = []
        while len(self._buf) >= HEADER.size:
            (length,) = HEADER.unpack_from(self._buf)
            if length > MAX_FRAME or length == 0:
                raise ProtocolError(f"bad frame length {length}")
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size:HEADER.size + length])
            del self._buf[:HEADER.size + length]
            try:
                body = json.loads(payload)
            except (UnicodeDecodeError, ValueError) as e:
                raise ProtocolError(f"frame is not JSON: {e}") from None
            if not isinstance(body, dict):
                raise ProtocolError("frame is not a JSON object")
            nfds = body.pop("nfds", 0)
            if not isinstance(nfds, int) or not 0 <= nfds <= MAX_FDS_PER_FRAME \
                    or nfds > len(self._fds):
                raise ProtocolError(f"frame announces {nfds!r} fds, {len(self._fds)} received")
            fds, self._fds = self._fds[:nfds], self._fds[nfds:]
            out.append(Message(body, fds))
        return out

    def take_stray_fds(self) -> list[int]:
        """Fds received but claimed by no frame (the caller closes them)."""
        fds, self._fds = self._fds, []
        return fds

    @property
    def pending(self) -> int:
        return len(self._buf)


def reply_ok(req_id, result: dict | None = None) -> dict:
    return {"id": req_id, "ok": True, "result": result or {}}


def reply_error(req_id, errno: int, name: str, message: str = "") -> dict:
    return {"id": req_id, "ok": False, "errno": errno, "error": name, "message": message}


# -- an evtchn handle's records -----------------------------------------------
# What the dom0 process writes to its evtchn handle (dom0_ops): (command,
# port), u32 each. The fast path reads them in C too (evtchn_fast.h EVF_CMD_*).
EVTCHN_CMD = struct.Struct("<II")
EVTCHN_CMD_UNMASK = 1
EVTCHN_CMD_NOTIFY = 2

# -- a gntdev handle's own channel --------------------------------------------
# gntdev_open passes, after the bounce memfd, one end of a SOCK_SEQPACKET
# pair: map, unmap and copy go there as binary records (no JSON, no
# dispatch), one packet per request and per reply, as ioctls on
# /dev/xen/gntdev would. A request is GNTDEV_REQ then `count` records of the
# command's struct; a reply is GNTDEV_REP (0 or -errno for the whole
# request, count) then `count` reply records, then the memfd serials passed
# with it (SCM_RIGHTS, in that order) and the serials whose domain is gone,
# each list a u32 count then u32s.
GNTDEV_REQ = struct.Struct("<II")                 # command, count
GNTDEV_REP = struct.Struct("<iI")                 # result, count
GNTDEV_CMD_MAP = 1
GNTDEV_CMD_UNMAP = 2
GNTDEV_CMD_COPY = 3
GNTDEV_MAP = struct.Struct("<IH?x")               # ref, domid, readonly
GNTDEV_MAP_REP = struct.Struct("<hxxIIQ")         # GNTST_*, handle, memfd serial, offset
GNTDEV_UNMAP = struct.Struct("<I")                # handle
GNTDEV_STATUS = struct.Struct("<h")               # GNTST_* per unmap / copy
# gnttab_copy's fields: (ref or bounce page, domid, offset) each side, len,
# flags (GNTCOPY_source_gref / dest_gref); DOMID_SELF for the bounce side.
GNTDEV_COPY = struct.Struct("<IHHIHHHH")
GNTDEV_U32 = struct.Struct("<I")
GNTDEV_MAX_RECORDS = 1024
GNTDEV_MAX_PACKET = GNTDEV_REQ.size + GNTDEV_MAX_RECORDS * GNTDEV_COPY.size
