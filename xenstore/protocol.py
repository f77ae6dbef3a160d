"""The xs_wire protocol: framing, argument parsing and request dispatch.

Sans-I/O: ``MessageReader`` turns bytes into messages, ``RequestHandler``
turns one request into one reply (bytes, header included) by calling the
store.  Transports feed the first and write what the second returns.
"""

import logging

from xen_core.abi import xs_wire as w
from xen_core.abi.xs_wire import XENSTORE_PAYLOAD_MAX, XSD_SOCKMSG

from .errors import XsError
from .quota import QUOTA_NAMES

log = logging.getLogger("xenstored")
_pack = XSD_SOCKMSG.pack
_unpack_from = XSD_SOCKMSG.unpack_from
HDR = w.XSD_SOCKMSG_SIZE
OK = b"OK\0"


class ProtocolError(Exception):
    """The peer broke framing (e.g. a length over XENSTORE_PAYLOAD_MAX): the
    connection cannot be resynchronised and is closed."""


def encode(mtype: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
    return _pack(mtype, req_id, tx_id, len(payload)) + payload


def encode_error(req_id: int, tx_id: int, name: str) -> bytes:
    payload = name.encode() + b"\0"
    return _pack(w.XS_ERROR, req_id, tx_id, len(payload)) + payload


def encode_event(path: bytes, token: bytes) -> bytes:
    payload = path + b"\0" + token + b"\0"
    return _pack(w.XS_WATCH_EVENT, 0, 0, len(payload)) + payload


class MessageReader:
    """Accumulates bytes; ``feed`` returns the complete messages."""

    __slots__ = ("buf",)

    def __init__(self):
        self.buf = b""

    def wanted(self) -> int:
        """Bytes still missing for the next complete message (or header)."""
        n = len(self.buf)
        if n < HDR:
            return HDR - n
        length = _unpack_from(self.buf)[3]
        return max(HDR + min(length, XENSTORE_PAYLOAD_MAX + 1) - n, 1)

    def feed(self, data: bytes) -> list:
        if self.buf:
            data = self.buf + data
        elif len(data) >= HDR:
            # The common case: exactly one whole message.
            mtype, req_id, tx_id, length = _unpack_from(data)
            if len(data) == HDR + length and length <= XENSTORE_PAYLOAD_MAX:
                return [(mtype, req_id, tx_id, data[HDR:])]
        out = []
        pos = 0
        n = len(data)
        while n - pos >= HDR:
            mtype, req_id, tx_id, length = _unpack_from(data, pos)
            if length > XENSTORE_PAYLOAD_MAX:
                self.buf = b""
                raise ProtocolError(f"payload length {length} over {XENSTORE_PAYLOAD_MAX}")
            end = pos + HDR + length
            if end > n:
                break
            out.append((mtype, req_id, tx_id, data[pos + HDR:end]))
            pos = end
        self.buf = data[pos:] if pos < n else b""
        return out


# ---- argument parsing (C's onearg / get_strings) ----------------------
def _strings(payload: bytes) -> list[bytes]:
    """NUL-terminated strings; trailing bytes without a NUL are dropped."""
    parts = payload.split(b"\0")
    parts.pop()
    return parts


def _text(b: bytes) -> str:
    try:
        return b.decode("ascii")
    except UnicodeDecodeError:
        raise XsError("EINVAL", "non-ASCII bytes in argument") from None


def _onearg(payload: bytes) -> str:
    """Exactly one string, NUL-terminated."""
    if payload.find(b"\0") != len(payload) - 1 or not payload:
        raise XsError("EINVAL", "expected one NUL-terminated argument")
    try:
        return payload[:-1].decode("ascii")
    except UnicodeDecodeError:
        raise XsError("EINVAL", "non-ASCII bytes in argument") from None


def _nargs(payload: bytes, n: int) -> list[bytes]:
    parts = _strings(payload)
    if len(parts) < n:
        raise XsError("EINVAL", f"expected {n} arguments")
    return parts


def _int(b: bytes) -> int:
    if not b.isdigit() or len(b) > 10:
        raise XsError("EINVAL", f"not a number: {b[:20]!r}")
    return int(b)


def _domid(b: bytes) -> int:
    v = _int(b)
    if v > 0xFFFF:
        raise XsError("EINVAL", f"bad domid {v}")
    return v


# Operations that take the header's tx_id (the others ignore it, as
# xenstored's XS_FLAG_NOTID ones do).
TX_OPS = frozenset((w.XS_READ, w.XS_WRITE, w.XS_MKDIR, w.XS_RM,
                    w.XS_DIRECTORY, w.XS_DIRECTORY_PART, w.XS_GET_PERMS,
                    w.XS_SET_PERMS, w.XS_TRANSACTION_START,
                    w.XS_TRANSACTION_END))

CONTROL_HELP = (
    "check\n"
    "help\n"
    "log [on|off]\n"
    "print <string>\n"
    "quota [[<domid>]|[<quota> <value>]]\n"
    "quota-soft [[<quota> <value>]]\n"
)


class RequestHandler:
    """Executes requests against a Store for the transports.

    ``on_introduce(domid, gfn, port, new)`` (attach a domain's ring, or for
    a repeat only rebind its event channel) and ``on_release(domid, conn)``
    are the transport's hooks.
    """

    def __init__(self, store, on_introduce=None, on_release=None):
        self.store = store
        self.on_introduce = on_introduce
        self.on_release = on_release
        s = store
        self.ops = {
            w.XS_READ: self._read,
            w.XS_WRITE: self._write,
            w.XS_MKDIR: lambda c, t, p: (s.mkdir(c, t, _onearg(p)), OK)[1],
            w.XS_RM: lambda c, t, p: (s.rm(c, t, _onearg(p)), OK)[1],
            w.XS_DIRECTORY: self._directory,
            w.XS_DIRECTORY_PART: self._directory_part,
            w.XS_GET_PERMS: self._get_perms,
            w.XS_SET_PERMS: self._set_perms,
            w.XS_WATCH: self._watch,
            w.XS_UNWATCH: self._unwatch,
            w.XS_RESET_WATCHES: lambda c, t, p: (s.reset_watches(c), OK)[1],
            w.XS_TRANSACTION_START: self._transaction_start,
            w.XS_TRANSACTION_END: self._transaction_end,
            w.XS_INTRODUCE: self._introduce,
            w.XS_RELEASE: self._release,
            w.XS_IS_DOMAIN_INTRODUCED: self._is_domain_introduced,
            w.XS_GET_DOMAIN_PATH: self._get_domain_path,
            w.XS_RESUME: lambda c, t, p: (s.resume(c, _domid(_onearg(p).encode())), OK)[1],
            w.XS_SET_TARGET: self._set_target,
            w.XS_CONTROL: self._control,
        }

    def process(self, conn, mtype: int, req_id: int, tx_id: int, payload: bytes) -> bytes:
        """One request in, one complete reply message out."""
        op = self.ops.get(mtype)
        try:
            if op is None:
                raise XsError("ENOSYS", f"unknown message type {mtype}")
            tx = self.store.lookup_tx(conn, tx_id) if tx_id and mtype in TX_OPS else None
            reply = op(conn, tx, payload)
        except XsError as e:
            return encode_error(req_id, tx_id, e.name)
        except Exception:       # a bug of ours: this request fails, we stay up
            log.exception("request type %d failed", mtype)
            return encode_error(req_id, tx_id, "EIO")
        if len(reply) > XENSTORE_PAYLOAD_MAX:
            # e.g. DIRECTORY of a node with many children: clients then
            # fall back to DIRECTORY_PART.
            return encode_error(req_id, tx_id, "E2BIG")
        return _pack(mtype, req_id, tx_id, len(reply)) + reply

    # ---- handlers: (conn, tx, payload) -> reply payload -------------------
    def _read(self, conn, tx, payload):
        return self.store.read(conn, tx, _onearg(payload))

    def _write(self, conn, tx, payload):
        i = payload.find(b"\0")
        if i < 0:
            raise XsError("EINVAL", "WRITE without a NUL after the path")
        try:
            path = payload[:i].decode("ascii")
        except UnicodeDecodeError:
            raise XsError("EINVAL", "non-ASCII bytes in path") from None
        self.store.write(conn, tx, path, payload[i + 1:])
        return OK

    def _directory(self, conn, tx, payload):
        s = self.store
        children = s.directory(conn, tx, _onearg(payload))
        return "".join(c + "\0" for c in children).encode()

    def _directory_part(self, conn, tx, payload):
        path, off = _nargs(payload, 2)[:2]
        s = self.store
        gen, blob = s.directory_part(conn, tx, _text(path))
        off = _int(off)
        genb = str(gen).encode() + b"\0"
        if off >= len(blob):
            return genb + b"\0"
        # Whole child names only, as many as fit in one payload; a final
        # empty string marks the end of the list.
        maxlen = XENSTORE_PAYLOAD_MAX - len(genb) - 1
        end = off
        while end < len(blob):
            nxt = blob.index(b"\0", end) + 1
            if nxt - off > maxlen:
                break
            end = nxt
        part = blob[off:end]
        if end == len(blob):
            part += b"\0"
        return genb + part

    def _get_perms(self, conn, tx, payload):
        s = self.store
        perms = s.get_perms(conn, tx, _onearg(payload))
        return "".join(p + "\0" for p in perms).encode()

    def _set_perms(self, conn, tx, payload):
        parts = _nargs(payload, 2)
        s = self.store
        s.set_perms(conn, tx, _text(parts[0]),
                    [_text(p) for p in parts[1:]])
        return OK

    def _watch(self, conn, tx, payload):
        path, token = _nargs(payload, 2)[:2]
        self.store.watch(conn, _text(path), token)
        return OK

    def _unwatch(self, conn, tx, payload):
        path, token = _nargs(payload, 2)[:2]
        self.store.unwatch(conn, _text(path), token)
        return OK

    def _transaction_start(self, conn, tx, payload):
        return b"%d\0" % self.store.transaction_start(conn, tx)

    def _transaction_end(self, conn, tx, payload):
        arg = _onearg(payload)
        if arg not in ("T", "F"):
            raise XsError("EINVAL", "TRANSACTION_END takes T or F")
        self.store.transaction_end(conn, tx, arg == "T")
        return OK

    def _introduce(self, conn, tx, payload):
        d, gfn, port = _nargs(payload, 3)[:3]
        domid, gfn, port = _domid(d), _int(gfn), _int(port)
        new = self.store.check_introduce(conn, domid, gfn, port)
        if self.on_introduce is None:
            raise XsError("ENOSYS", "no domain attacher configured")
        self.on_introduce(domid, gfn, port, new)
        return OK

    def _release(self, conn, tx, payload):
        domid = _domid(_onearg(payload).encode())
        dconn = self.store.release(conn, domid)
        if self.on_release is not None:
            self.on_release(domid, dconn)
        return OK

    def _is_domain_introduced(self, conn, tx, payload):
        domid = _domid(_onearg(payload).encode())
        return b"T\0" if self.store.is_domain_introduced(conn, domid) else b"F\0"

    def _get_domain_path(self, conn, tx, payload):
        domid = _domid(_onearg(payload).encode())
        return self.store.get_domain_path(conn, domid).encode() + b"\0"

    def _set_target(self, conn, tx, payload):
        d, t = _nargs(payload, 2)[:2]
        self.store.set_target(conn, _domid(d), _domid(t))
        return OK

    # ---- CONTROL ----------------------------------------------------------
    def _control(self, conn, tx, payload):
        if not conn.privileged:
            raise XsError("EACCES")
        args = _strings(payload)
        if not args:
            raise XsError("EINVAL", "CONTROL without a command")
        try:
            args = [a.decode("utf-8") for a in args]
        except UnicodeDecodeError:
            raise XsError("EINVAL", "CONTROL argument is not UTF-8") from None
        cmd, rest = args[0], args[1:]
        fn = {"check": self._ctl_check, "help": lambda r: CONTROL_HELP,
              "log": self._ctl_log, "print": self._ctl_print,
              "quota": self._ctl_quota,
              "quota-soft": self._ctl_quota_soft}.get(cmd)
        if fn is None:
            raise XsError("EINVAL", f"unknown CONTROL command {cmd!r}")
        return fn(rest).encode() + b"\0"

    def _ctl_check(self, rest):
        problems = self.store.check()
        for p in problems:
            self.store.messages.append(f"check: {p}")
        return "OK" if not problems else "\n".join(problems)

    def _ctl_log(self, rest):
        if rest and rest[0] in ("on", "off"):
            self.store.trace = rest[0] == "on"
            return "OK"
        if not rest:
            return "log is " + ("on" if self.store.trace else "off")
        raise XsError("EINVAL", "log takes on or off")

    def _ctl_print(self, rest):
        if not rest:
            raise XsError("EINVAL", "print needs a string")
        self.store.messages.append(" ".join(rest))
        return "OK"

    def _ctl_quota(self, rest):
        q = self.store.quota
        if not rest:
            return "".join(f"{name:<17}: {q.get(name):8d} {desc}\n"
                           for name, (_, desc) in QUOTA_NAMES.items())
        if len(rest) == 2:
            name, val = rest
            if name not in QUOTA_NAMES or not val.isdigit():
                raise XsError("EINVAL", f"bad quota setting {name}={val}")
            q.set(name, int(val))
            return "OK"
        if len(rest) == 1:
            domid = _domid(rest[0].encode())
            return self._domain_usage(domid)
        raise XsError("EINVAL", "quota takes no, one or two arguments")

    def _domain_usage(self, domid):
        s = self.store
        dom = s.domains.get(domid)
        if dom is None and domid != s.priv_domid:
            raise XsError("ENOENT", f"domain {domid} not introduced")
        conns = [c for c in s.connections.values() if c.domid == domid]
        usage = {
            "nodes": s.nodecount.get(domid, 0),
            "watches": sum(len(c.watches) for c in conns),
            "transactions": sum(len(c.transactions) for c in conns),
            "memory": s.memory.get(domid, 0),
        }
        return "".join(f"{k:<17}: {v:8d} (max {s.quota.get(k):8d})\n"
                       for k, v in usage.items())

    def _ctl_quota_soft(self, rest):
        soft = self.store.quota_soft
        if not rest:
            return "".join(f"{k:<17}: {v:8d} {QUOTA_NAMES[k][1]}\n"
                           for k, v in soft.items())
        if len(rest) == 2 and rest[0] in soft and rest[1].isdigit():
            soft[rest[0]] = int(rest[1])
            return "OK"
        raise XsError("EINVAL", "quota-soft takes <quota> <value>")
