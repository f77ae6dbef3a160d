"""The privileged interface's event-channel and gntdev operations: what
Linux's /dev/xen/evtchn and /dev/xen/gntdev give dom0 processes.

An evtchn handle is two pipes. On the report pipe xen-core writes each
pending port (u32), masking that port until the process unmasks it, as the
evtchn device does; on the command pipe the process writes its unmask and
notify requests, `privif.EVTCHN_CMD` = (command, port), so the hot path
never waits for a reply. Pipes, not a socketpair: a pipe's wake-up costs
what an eventfd's does, a unix socket's twice that (bench/evtchn.py), and
one direction's reads do not wake the other direction's sleeper. A port
bound with `eventfd` counts its events on an eventfd instead (no mask:
xenstored's kick model). xen-core keeps a writer of the command pipe to
wake its reader at close, so the handle lives until `evtchn_close` or the
end of the connection.

A gntdev handle holds dom0's maptrack entries and a small bounce memfd for
grant copies. Closing a handle, or the connection, undoes everything it
held. `Dom0Ops` is mixed into the daemon's Connection.
"""
from __future__ import annotations

import array
import logging
import os
import socket
import struct
import threading

from . import events, evtchn_fast
from .abi import grant_table as g
from .abi import privif as pv
from .abi import xen as x
from .abi.layout import PAGE_SHIFT
from .memory import GuestFault, GuestMemory
from .vcpu import XenError

log = logging.getLogger(__name__)

PORT = struct.Struct("<I")
GNTDEV_BUF_PAGES = 64          # bounce buffer for grant copies (256 KiB)
MAX_MAP_REFS = 1024
MAX_FDS_PER_REPLY = 16         # privif.MAX_FDS_PER_FRAME


class EvtchnHandle:
    def __init__(self, core, hid: int):
        self.events = events.of(core)
        self.ev = self.events.evtchn
        self.id = hid
        # Ours: the report pipe's writer (non-blocking: a reader that fell
        # behind loses ports, the sender never waits), the command pipe's
        # reader (the command thread's; it closes it) and a writer of it to
        # wake that thread at close. The process's: the other two ends.
        cmd_r, cmd_w = os.pipe2(os.O_CLOEXEC)
        rep_r, self.rep_w = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(self.rep_w, False)
        self.peer_fds = [rep_r, cmd_w]
        self.cmd_wake = os.dup(cmd_w)
        self.efds: dict[int, int] = {}
        self._binding_efd: int | None = None
        self.closed = False
        state = self.events.dom0_state
        self.server = None if state is None else evtchn_fast.CommandServer(
            state, cmd_r, self.rep_w)
        threading.Thread(target=self._commands, args=(cmd_r,), daemon=True,
                         name=f"evtchn-h{hid}").start()

    # -- events out ------------------------------------------------------------
    def deliver(self, port: int):
        """Called under the event lock (as close is)."""
        efd = self.efds.get(port, self._binding_efd)
        if efd is not None:
            os.eventfd_write(efd, 1)
            return False          # counted, not queued: no mask
        if self.closed:
            return True
        state = self.events.dom0_state
        if state is not None:   # serialized with the fast path's writes
            err = state.write_port(self.rep_w, port)
            if err:
                log.warning("evtchn handle %d: port %d lost: %s", self.id, port, os.strerror(err))
            return True
        try:
            os.write(self.rep_w, PORT.pack(port))
        except OSError as e:
            log.warning("evtchn handle %d: port %d lost: %s", self.id, port, e)
        return True

    def fast_fd(self, port: int) -> int | None:
        """The report pipe the fast path may write `port` to (None: an
        eventfd port, or the handle is closing)."""
        if self.closed or port in self.efds:
            return None
        return self.rep_w

    # -- commands in -------------------------------------------------------------
    def _commands(self, rfd: int) -> None:
        buf = b""
        try:
            if self.server is not None:
                self._serve()
                return
            while True:
                data = os.read(rfd, 4096)
                if not data or self.closed:
                    break
                buf += data
                n = len(buf) - len(buf) % pv.EVTCHN_CMD.size
                # One hold of the event lock per batch (unmask + notify come
                # together): a contended acquire costs a GIL and futex
                # hand-off with the vCPU thread that just sent.
                with self.ev.lock:
                    for cmd, port in pv.EVTCHN_CMD.iter_unpack(buf[:n]):
                        self._command(cmd, port)
                buf = buf[n:]
        except OSError:
            pass
        finally:
            os.close(rfd)
            self.close()

    def _serve(self) -> None:
        """The command stream served in C (evtchn_fast.CommandServer): Python
        only for records it leaves (ports it does not know, first notifies
        of a channel) and for waking vCPUs that wait in Python."""
        srv = self.server
        while True:
            work = srv.next()
            if work is None:
                return
            if work[0] == "slow":
                with self.ev.lock:
                    self._command(work[1], work[2])
            else:
                self.events.fast_kick(*work[1:])

    def _command(self, cmd: int, port: int) -> None:
        if self.ev.owner_of(0, port) is not self:
            return               # not this handle's port: ignored, as the device does
        try:
            if cmd == pv.EVTCHN_CMD_UNMASK:
                self.ev.unmask(0, port)
            elif cmd == pv.EVTCHN_CMD_NOTIFY:
                self.ev.send(0, port)
        except XenError:
            pass
        except Exception:
            log.exception("evtchn handle %d: command %d port %d", self.id, cmd, port)

    # -- binding -------------------------------------------------------------------
    def bind(self, fn, eventfd: bool) -> tuple[int, int | None]:
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) if eventfd else None
        try:
            with self.ev.lock:
                if self.closed:
                    raise XenError(x.EBADF, "handle closed")
                self._binding_efd = efd
                try:
                    port = fn(self)
                finally:
                    self._binding_efd = None
                if efd is not None:
                    self.efds[port] = efd
                elif self.server is not None:
                    self.server.state.own(port, self.server.token)
        except BaseException:
            if efd is not None:
                os.close(efd)
            raise
        return port, efd

    def unbind(self, port: int) -> None:
        with self.ev.lock:
            if self.ev.owner_of(0, port) is not self:
                raise XenError(x.EINVAL, f"port {port} is not bound by this handle")
            self.ev.close(0, port)
            efd = self.efds.pop(port, None)
        if efd is not None:
            os.close(efd)

    def close(self) -> None:
        with self.ev.lock:
            if self.closed:
                return
            self.closed = True
            for port in self.ev.owned_by(0, self):
                try:
                    self.ev.close(0, port)
                except XenError:
                    pass
            efds, self.efds = list(self.efds.values()), {}
            self.events.forget_fd(self.rep_w)
            if self.server is not None:   # C serves none of its records again
                self.server.state.handle_gone(self.server.token)
                self.server.stop()
            os.close(self.rep_w)          # the process reads EOF
        for efd in efds:
            os.close(efd)
        try:                              # wake the command thread: it sees `closed`
            os.write(self.cmd_wake, pv.EVTCHN_CMD.pack(0, 0))
        except OSError:
            pass
        os.close(self.cmd_wake)
        for fd in self.peer_fds:          # not passed (the open failed)
            os.close(fd)
        self.peer_fds = []


class GntdevHandle:
    def __init__(self, core, hid: int):
        self.gc = events.of(core).gnttab
        self.gc.table(0)
        self.id = hid
        self.handles: set[int] = set()
        self.buf = GuestMemory(f"gntdev-buf{hid}", 0, GNTDEV_BUF_PAGES)
        self.lock = threading.Lock()
        self.closed = False
        # Memories whose fd this handle passed (serial -> GuestMemory): the
        # process keeps one mapping of each, so later maps pass no fd.
        self.sent: dict[int, GuestMemory] = {}
        self.sock, self.peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        threading.Thread(target=self._channel, daemon=True, name=f"gntdev-h{hid}").start()

    # -- the handle's own channel (xen_core.abi.privif GNTDEV_*) -------------------
    def _channel(self) -> None:
        sock = self.sock.dup()
        try:
            while True:
                req = sock.recv(pv.GNTDEV_MAX_PACKET + 1)
                if not req:
                    break
                fds = []
                try:
                    try:
                        rep, fds = self._request(req)
                    except Exception:   # a bug of ours: this request fails, the handle lives
                        log.exception("gntdev handle %d: request failed", self.id)
                        rep = pv.GNTDEV_REP.pack(-x.EINVAL, 0)
                    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
                    sock.sendmsg([rep], anc)
                finally:
                    for fd in fds:
                        os.close(fd)
        except OSError:
            pass
        finally:
            sock.close()
            self.close()

    def _request(self, req: bytes) -> tuple[bytes, list[int]]:
        try:
            cmd, count = pv.GNTDEV_REQ.unpack_from(req)
            size = {pv.GNTDEV_CMD_MAP: pv.GNTDEV_MAP, pv.GNTDEV_CMD_UNMAP: pv.GNTDEV_UNMAP,
                    pv.GNTDEV_CMD_COPY: pv.GNTDEV_COPY}[cmd].size
            if not 0 < count <= pv.GNTDEV_MAX_RECORDS or len(req) != pv.GNTDEV_REQ.size + count * size:
                raise ValueError
        except (KeyError, ValueError, struct.error):
            return pv.GNTDEV_REP.pack(-x.EINVAL, 0), []
        body = memoryview(req)[pv.GNTDEV_REQ.size:]
        fds, serials = [], []
        if cmd == pv.GNTDEV_CMD_MAP:
            maps, serials, fds = self.map_refs(
                [(domid, ref, ro) for ref, domid, ro in pv.GNTDEV_MAP.iter_unpack(body)])
            recs = b"".join(pv.GNTDEV_MAP_REP.pack(*(m if len(m) == 4 else (m[0], 0, 0, 0)))
                            for m in maps)
        elif cmd == pv.GNTDEV_CMD_UNMAP:
            recs = b"".join(pv.GNTDEV_STATUS.pack(st) for st in self.unmap(
                [h for (h,) in pv.GNTDEV_UNMAP.iter_unpack(body)]))
        else:
            recs = b"".join(pv.GNTDEV_STATUS.pack(st) for st in self.copy(
                list(pv.GNTDEV_COPY.iter_unpack(body))))
        gone = self.gone()
        return b"".join((pv.GNTDEV_REP.pack(0, count), recs,
                         pv.GNTDEV_U32.pack(len(serials)), *map(pv.GNTDEV_U32.pack, serials),
                         pv.GNTDEV_U32.pack(len(gone)), *map(pv.GNTDEV_U32.pack, gone))), fds

    def map(self, domid: int, refs: list[int], readonly: bool):
        from grant_tables.table import GrantError
        self.gc.table(domid)
        flags = g.GNTMAP_host_map | (g.GNTMAP_readonly if readonly else 0)
        done, offsets, mem = [], [], None
        try:
            for ref in refs:
                h, (mem, frame) = self.gc.tables.map(0, domid, ref, flags)
                done.append(h)
                offsets.append(frame << PAGE_SHIFT)
        except GrantError as e:
            for h in done:
                self.gc.tables.unmap(0, h)
            raise XenError(x.EINVAL, f"ref {refs[len(done)]}: GNTST_{g.GNTST_NAMES[e.status]}"
                           f" ({e.status}): {e}") from None
        with self.lock:
            self.handles.update(done)
            with mem.lock:
                fd = os.dup(mem.fd)
        return done, offsets, fd, mem.nr_frames << PAGE_SHIFT

    def map_refs(self, entries) -> tuple[list, list[int], list[int]]:
        """Map [(domid, ref, readonly)], each on its own: ([status] or
        [0, handle, serial, offset] per entry, serials of the fds passed
        (one dup each, for memories this handle has not passed before), fds)."""
        from grant_tables.table import GrantError
        tables = self.gc.tables
        out, serials, fds = [], [], []
        try:
            for domid, ref, readonly in entries:
                flags = g.GNTMAP_host_map | (g.GNTMAP_readonly if readonly else 0)
                try:
                    if tables.table(domid) is None:
                        self.gc.table(domid)
                    h, (mem, frame) = tables.map(0, domid, ref, flags)
                except GrantError as e:
                    out.append([e.status])
                    continue
                except GuestFault:          # the granter's memory went meanwhile
                    out.append([g.GNTST_general_error])
                    continue
                status = self._pass_memory(mem, serials, fds)
                if status != g.GNTST_okay:
                    tables.unmap(0, h)
                    out.append([status])
                    continue
                with self.lock:
                    self.handles.add(h)
                out.append([g.GNTST_okay, h, mem.serial, frame << PAGE_SHIFT])
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return out, serials, fds

    def _pass_memory(self, mem, serials, fds) -> int:
        with self.lock:
            if mem.serial in self.sent:
                return g.GNTST_okay
            if len(fds) >= MAX_FDS_PER_REPLY:
                return g.GNTST_no_device_space     # too many new domains in one batch
            with mem.lock:
                if mem.closed:
                    return g.GNTST_bad_domain      # destroyed under our feet
                fds.append(os.dup(mem.fd))
            serials.append(mem.serial)
            self.sent[mem.serial] = mem
            return g.GNTST_okay

    def gone(self) -> list[int]:
        """Serials of passed memories whose domain is gone: the process
        drops its mapping of each once nothing of it is mapped."""
        with self.lock:
            dead = [s for s, mem in self.sent.items() if mem.closed]
            for s in dead:
                del self.sent[s]
            return dead

    def unmap(self, handles: list[int]) -> list[int]:
        from grant_tables.table import GrantError
        out = []
        for h in handles:
            with self.lock:
                mine = h in self.handles
                self.handles.discard(h)
            if not mine:
                out.append(g.GNTST_bad_handle)
                continue
            try:
                self.gc.tables.unmap(0, h)
                out.append(g.GNTST_okay)
            except GrantError as e:
                out.append(e.status)
        return out

    def copy(self, segments: list) -> list[int]:
        def local(gmfn):
            if not 0 <= gmfn < GNTDEV_BUF_PAGES:
                return None
            return self.buf, self.buf.xenheap_frame(gmfn)

        return self.gc.copy_many(0, segments, local=local)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            handles, self.handles = list(self.handles), set()
        self.unmap_all(handles)
        self.buf.close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        if self.peer.fileno() >= 0:
            self.peer.close()

    def unmap_all(self, handles) -> None:
        from grant_tables.table import GrantError
        for h in handles:
            try:
                self.gc.tables.unmap(0, h)
            except GrantError:
                pass


def _int(body, key, lo=0, hi=1 << 32):
    v = body.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        raise XenError(x.EINVAL, f"argument {key!r} must be an integer in [{lo}, {hi})")
    return v


def _copy_seg(seg) -> tuple:
    """A gntdev copy segment -> gnttab_copy fields (local side: bounce page)."""
    if not isinstance(seg, dict):
        raise XenError(x.EINVAL, "copy segment must be an object")
    sides, flags = [], 0
    for name, flag in (("source", g.GNTCOPY_source_gref), ("dest", g.GNTCOPY_dest_gref)):
        side = seg.get(name)
        if not isinstance(side, dict):
            raise XenError(x.EINVAL, f"copy segment needs {name!r}")
        if "ref" in side:
            flags |= flag
            sides.append((_int(side, "ref"), _int(side, "domid", hi=1 << 16),
                          _int(side, "offset", hi=1 << 16)))
        else:
            off = _int(side, "buf", hi=GNTDEV_BUF_PAGES << PAGE_SHIFT)
            sides.append((off >> PAGE_SHIFT, x.DOMID_SELF, off & 0xFFF))
    (su, sd, so), (du, dd, do) = sides
    return su, sd, so, du, dd, do, _int(seg, "len", hi=1 << 16), flags


def _handles(conn) -> dict:
    """The handles a connection opened; closed with it."""
    hs = getattr(conn, "_dom0_handles", None)
    if hs is None:
        hs = conn._dom0_handles = {}
        conn.cancels.append(lambda: [h.close() for h in list(hs.values())])
    return hs


def _handle(conn, body, kind):
    h = _handles(conn).get(body.get("handle"))
    if not isinstance(h, kind):
        raise XenError(x.EBADF, f"no {kind.__name__} {body.get('handle')!r} on this connection")
    return h


def _new_id(conn) -> int:
    conn._dom0_next = getattr(conn, "_dom0_next", 0) + 1
    return conn._dom0_next


def _bound(port, efd):
    return {"port": port}, ([os.dup(efd)] if efd is not None else [])


class Dom0Ops:
    """op_evtchn_* and op_gntdev_*, called with the daemon's Connection as
    `self` (its `core` and `cancels`)."""

    # -- evtchn ----------------------------------------------------------------------
    def op_evtchn_open(self, body):
        h = EvtchnHandle(self.core, _new_id(self))
        _handles(self)[h.id] = h
        fds, h.peer_fds = h.peer_fds, []       # only the process holds them now
        return {"handle": h.id}, fds             # [report pipe, command pipe]

    def op_evtchn_bind_interdomain(self, body):
        h = _handle(self, body, EvtchnHandle)
        domid, rport = _int(body, "domid", hi=1 << 16), _int(body, "remote_port")
        return _bound(*h.bind(lambda o: h.ev.bind_interdomain(0, domid, rport, owner=o),
                                   bool(body.get("eventfd"))))

    def op_evtchn_bind_unbound_port(self, body):
        h = _handle(self, body, EvtchnHandle)
        domid = _int(body, "domid", hi=1 << 16)
        return _bound(*h.bind(lambda o: h.ev.alloc_unbound(0, x.DOMID_SELF, domid, owner=o),
                                   bool(body.get("eventfd"))))

    def op_evtchn_bind_virq(self, body):
        h = _handle(self, body, EvtchnHandle)
        virq = _int(body, "virq")
        return _bound(*h.bind(lambda o: h.ev.bind_virq(0, virq, 0, owner=o),
                                   bool(body.get("eventfd"))))

    def op_evtchn_unbind(self, body):
        _handle(self, body, EvtchnHandle).unbind(_int(body, "port"))
        return {}, ()

    def op_evtchn_notify(self, body):
        h = _handle(self, body, EvtchnHandle)
        port = _int(body, "port")
        if h.ev.owner_of(0, port) is not h:
            raise XenError(x.ENOTCONN, f"port {port} is not bound by this handle")
        h.ev.send(0, port)
        return {}, ()

    def op_evtchn_close(self, body):
        h = _handle(self, body, EvtchnHandle)
        _handles(self).pop(h.id, None)
        h.close()
        return {}, ()

    def op_evtchn_alloc_unbound(self, body):
        """The toolstack's xc_evtchn_alloc_unbound: a port of `domid` that
        `remote_domid` may bind (console and store channels)."""
        port = events.of(self.core).evtchn.alloc_unbound(
            0, _int(body, "domid", hi=1 << 16), _int(body, "remote_domid", hi=1 << 16))
        return {"port": port}, ()

    def op_evtchn_status(self, body):
        st, vcpu, a, b = events.of(self.core).evtchn.status(
            0, _int(body, "domid", hi=1 << 16), _int(body, "port"))
        return {"status": st, "vcpu": vcpu, "a": a, "b": b}, ()

    def op_evtchn_reset(self, body):
        domid = _int(body, "domid", hi=1 << 16)
        d = self.core.domain(domid)
        events.of(self.core).evtchn.reset(0, domid, target_paused=d.pause_count > 0)
        return {}, ()

    def op_debug_keys(self, body):
        keys = body.get("keys", "")
        if not isinstance(keys, str):
            raise XenError(x.EINVAL, "keys must be a string")
        if "q" in keys:
            events.of(self.core).debug_virq()
        return {}, ()

    # -- gntdev ------------------------------------------------------------------------
    def op_gntdev_open(self, body):
        h = GntdevHandle(self.core, _new_id(self))
        _handles(self)[h.id] = h
        # the bounce memfd, then the handle's channel (only the process holds it now)
        return {"handle": h.id, "buf_size": GNTDEV_BUF_PAGES << PAGE_SHIFT}, [
            os.dup(h.buf.fd), h.peer.detach()]

    def op_gntdev_map(self, body):
        h = _handle(self, body, GntdevHandle)
        refs = body.get("refs")
        if not isinstance(refs, list) or not 0 < len(refs) <= MAX_MAP_REFS or not all(
                isinstance(r, int) and not isinstance(r, bool) and 0 <= r < 1 << 32 for r in refs):
            raise XenError(x.EINVAL, f"refs must be 1..{MAX_MAP_REFS} grant references")
        handles, offsets, fd, size = h.map(_int(body, "domid", hi=1 << 16), refs,
                                           bool(body.get("readonly")))
        return {"handles": handles, "offsets": offsets, "size": size}, [fd]

    def op_gntdev_unmap(self, body):
        h = _handle(self, body, GntdevHandle)
        handles = body.get("handles")
        if not isinstance(handles, list) or not all(isinstance(v, int) for v in handles):
            raise XenError(x.EINVAL, "handles must be a list of integers")
        return {"status": h.unmap(handles)}, ()

    def op_gntdev_copy(self, body):
        h = _handle(self, body, GntdevHandle)
        segs = body.get("segments")
        if not isinstance(segs, list):
            raise XenError(x.EINVAL, "segments must be a list")
        return {"status": h.copy([_copy_seg(s) for s in segs])}, ()

    def op_gntdev_close(self, body):
        h = _handle(self, body, GntdevHandle)
        _handles(self).pop(h.id, None)
        h.close()
        return {}, ()


DOM0_OPS = tuple(name[3:] for name in vars(Dom0Ops) if name.startswith("op_"))


def install(register_op) -> None:
    """Serve every op_* above through the daemon's `register_op`."""
    for name in DOM0_OPS:
        register_op(name, getattr(Dom0Ops, f"op_{name}"))
