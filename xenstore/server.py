"""xenstored's transports: a Unix socket for dom0 clients and shared rings
for introduced domains, both over one asyncio loop and one Store.

Each transport feeds bytes to a MessageReader, hands each request to the
RequestHandler and writes the reply; watch events the request caused are
routed to the connections they belong to.  A client that breaks framing, or
stops reading while flooding us, loses its own connection and nothing else.
"""

import asyncio
import logging
import os
import socket

from xen_core.abi import xs_wire as w

from .errors import XsError
from .protocol import (MessageReader, ProtocolError, RequestHandler,
                       encode_event)
from .ring import RingError, XsRingBackend

log = logging.getLogger("xenstored")

# A socket client that does not read its replies is not read either once
# this much output waits for it; past MAX_SOCKET_BACKLOG (events keep
# coming) it is dropped.
PAUSE_READING_AT = 256 << 10
MAX_SOCKET_BACKLOG = 16 << 20


class XenStoreServer:
    """Both transports over one Store.  ``loop`` needs only add_reader /
    remove_reader / add_writer / remove_writer (asyncio's loop by default)."""

    def __init__(self, store, attacher=None, loop=None):
        self.store = store
        self.attacher = attacher
        self.handler = RequestHandler(store, self._introduce, self._release)
        self.transports: dict[int, object] = {}     # engine conn id -> transport
        self.rings: dict[int, "RingConnection"] = {}
        self.listeners: list = []
        self.loop = loop
        self.debug = log.isEnabledFor(logging.DEBUG)

    # ---- request path shared by both transports ---------------------------
    def run_requests(self, transport, msgs) -> bytes:
        """Process requests from one connection; return its output bytes."""
        conn = transport.conn
        store = self.store
        trace = store.trace or self.debug
        if len(msgs) == 1 and not trace:
            # The common case: one request, no events, nothing to log.
            reply = self.handler.process(conn, *msgs[0])
            if not store.watch_table.event_conns and not store.messages:
                return reply
            return self._after(conn, msgs[0][0], reply)
        process = self.handler.process
        out = []
        for mtype, req_id, tx_id, payload in msgs:
            if trace:
                self._trace("IN", conn, mtype, req_id, tx_id, payload)
            reply = process(conn, mtype, req_id, tx_id, payload)
            if trace:
                self._trace("OUT", conn, *w.XSD_SOCKMSG.unpack_from(reply)[:3], reply[16:])
            out.append(self._after(conn, mtype, reply))
        return b"".join(out)

    def _after(self, conn, mtype, reply) -> bytes:
        """The reply with the events it caused for its own connection (the
        others' are sent to them), and CONTROL print/check output logged."""
        store = self.store
        out = [reply]
        if store.watch_table.event_conns:
            # xenstored queues a WATCH's first event after its reply and
            # every other event ahead of the reply that caused it.
            if mtype == w.XS_WATCH:
                self._route_events(conn, out)
            else:
                out.pop()
                self._route_events(conn, out)
                out.append(reply)
        if store.messages:
            for m in store.messages:
                log.warning("%s", m)
            store.messages.clear()
        return b"".join(out)

    def _route_events(self, conn, out):
        for c, events in self.store.take_events():
            data = b"".join(encode_event(p, t) for p, t in events)
            if c is conn:
                out.append(data)
            else:
                t = self.transports.get(c.id)
                if t is not None:
                    t.send(data)

    def _trace(self, direction, conn, mtype, req_id, tx_id, payload):
        name = w.XSD_TYPE_NAMES.get(mtype, str(mtype))
        shown = payload[:128].replace(b"\0", b" ")
        log.info("%s conn %d dom%d %s req %d tx %d (%s)", direction, conn.id,
                 conn.domid, name, req_id, tx_id, shown.decode("latin-1"))

    # ---- Unix socket -------------------------------------------------------
    async def start_unix(self, path: str):
        """Listen on ``path``.  Connections use the loop's reader/writer
        callbacks on raw non-blocking sockets: about twice the request rate
        of asyncio's Protocol/Transport layer for this one-small-message
        request/reply traffic."""
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if os.path.lexists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Bind and listen under a temporary name, then rename: clients never
        # see a socket file that refuses connections.
        tmp = f"{path}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        ls.bind(tmp)
        os.chmod(tmp, 0o600)
        ls.listen(128)
        os.rename(tmp, path)
        ls.setblocking(False)
        self.listeners.append(ls)
        self.loop.add_reader(ls.fileno(), self._accept, ls)
        return ls

    def _accept(self, ls):
        for _ in range(32):
            try:
                sock, _ = ls.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("accept: %s", e)
                return
            SocketConnection(self, sock)

    async def close(self):
        for ls in self.listeners:
            self.loop.remove_reader(ls.fileno())
            ls.close()
        self.listeners.clear()
        for ring in list(self.rings.values()):
            ring.close()
        for t in list(self.transports.values()):
            t.close()

    # ---- domains -------------------------------------------------------------
    def _introduce(self, domid, gfn, port, new):
        if self.attacher is None:
            raise XsError("ENOSYS", "no domain attacher configured")
        ring = self.rings.get(domid)
        if not new and ring is not None:
            # A repeat INTRODUCE recreates the event channel (xenstored does
            # this for a guest that rebound its end, e.g. after kexec).
            try:
                notify, source = self.attacher.bind_evtchn(domid, port)
            except OSError as e:
                raise XsError("EIO", str(e)) from None
            ring.rebind(notify, source)
            return
        try:
            page = self.attacher.map_store_page(domid, gfn)
            notify, source = self.attacher.bind_evtchn(domid, port)
        except OSError as e:
            log.error("introduce dom%d: %s", domid, e)
            self.attacher.release(domid)
            raise XsError("EIO", str(e)) from None
        conn = self.store.introduce(None, domid, gfn, port)
        ring = RingConnection(self, conn, page, notify, source)
        self.rings[domid] = ring
        self.transports[conn.id] = ring
        ring.start()

    def _release(self, domid, conn):
        ring = self.rings.pop(domid, None)
        if ring is not None:
            ring.close()


class SocketConnection:
    """A dom0 client on the Unix socket: privileged, as on xenstored's
    read-write socket."""

    def __init__(self, server: XenStoreServer, sock):
        self.server = server
        self.sock = sock
        self.fd = sock.fileno()
        sock.setblocking(False)
        self.conn = server.store.connect(server.store.priv_domid)
        server.transports[self.conn.id] = self
        self.reader = MessageReader()
        self.wbuf = bytearray()
        self.reading = True
        self.closed = False
        server.loop.add_reader(self.fd, self._readable)

    def _readable(self):
        try:
            data = self.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        try:
            msgs = self.reader.feed(data)
        except ProtocolError as e:
            log.warning("conn %d: %s; closing it", self.conn.id, e)
            self.close()
            return
        if msgs:
            self._write(self.server.run_requests(self, msgs))

    def _write(self, data):
        if self.wbuf:
            self.wbuf += data
        else:
            try:
                n = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self.close()
                return
            if n == len(data):
                return
            self.wbuf += data[n:]
            self.server.loop.add_writer(self.fd, self._writable)
        if self.reading and len(self.wbuf) > PAUSE_READING_AT:
            # The client does not read its replies: stop reading its requests.
            self.server.loop.remove_reader(self.fd)
            self.reading = False

    def _writable(self):
        try:
            n = self.sock.send(self.wbuf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        del self.wbuf[:n]
        if not self.wbuf:
            self.server.loop.remove_writer(self.fd)
        if not self.reading and len(self.wbuf) <= PAUSE_READING_AT:
            self.reading = True
            self.server.loop.add_reader(self.fd, self._readable)

    def send(self, data: bytes):
        """Watch events for this client, from other connections' requests."""
        if self.closed:
            return
        if len(self.wbuf) > MAX_SOCKET_BACKLOG:
            log.warning("conn %d does not read its events; closing it", self.conn.id)
            self.close()
            return
        self._write(data)

    def close(self):
        if self.closed:
            return
        self.closed = True
        loop = self.server.loop
        loop.remove_reader(self.fd)
        loop.remove_writer(self.fd)
        self.sock.close()
        self.server.store.disconnect(self.conn)
        self.server.transports.pop(self.conn.id, None)


class RingConnection:
    """An introduced domain's connection over its xenstore page.

    Replies wait in ``outq`` while the rsp ring is full; past the
    ``outstanding`` quota the domain's further requests stay in its ring.
    """

    def __init__(self, server, conn, page, notify, source):
        self.server = server
        self.conn = conn
        self.page = page
        self.ring = XsRingBackend(page)
        self.notify = notify
        self.source = source
        self.reader = MessageReader()
        self.outq = bytearray()
        self.pending = 0            # replies queued but not yet in the ring
        self.closed = False
        self.warned = False
        self.loop = None

    def start(self):
        self.ring.init()
        self._watch_source()
        self.kick()

    def rebind(self, notify, source):
        self._unwatch_source()
        self.notify = notify
        self.source = source
        self._watch_source()
        self.kick()

    def _watch_source(self):
        if isinstance(self.source, int):
            self.loop = self.server.loop or asyncio.get_running_loop()
            self.loop.add_reader(self.source, self._kicked)
        else:
            self.source(self.kick)

    def _unwatch_source(self):
        if isinstance(self.source, int) and self.loop is not None:
            self.loop.remove_reader(self.source)

    def _kicked(self):
        try:
            while os.read(self.source, 4096):
                pass
        except BlockingIOError:
            pass
        self.kick()

    def kick(self):
        """The guest notified us: move what we can in both directions."""
        if self.closed:
            return
        try:
            moved = False
            if self.ring.reconnect_requested():
                self._reconnect()
                moved = True
            moved = self._flush() or moved
            store = self.server.store
            quota = store.quota.outstanding
            privileged = self.conn.privileged
            # One message at a time, so that past the outstanding quota (or
            # the memory quota) the rest stays in the guest's ring.
            while privileged or (self.pending < quota and self._memory_ok(store)):
                data = self.ring.read_requests(self.reader.wanted())
                if not data:
                    break
                moved = True
                msgs = self.reader.feed(data)
                if msgs:
                    self.outq += self.server.run_requests(self, msgs)
                    self.pending += 1
                    self._flush()
        except RingError as e:
            self._fatal(w.XENSTORE_ERROR_RINGIDX, str(e))
            return
        except ProtocolError as e:
            self._fatal(w.XENSTORE_ERROR_PROTO, str(e))
            return
        if moved:
            self.notify()

    def _memory_ok(self, store) -> bool:
        """The memory quotas: past the soft one we warn, past the hard one
        xenstored stops talking to the domain until it is under again."""
        used = store.memory.get(self.conn.domid, 0)
        soft = store.quota_soft.get("memory", 0)
        if soft and used > soft:
            if not self.warned:
                log.warning("dom%d uses %d bytes, over the soft memory quota %d",
                            self.conn.domid, used, soft)
                self.warned = True
        else:
            self.warned = False
        hard = store.quota.memory
        return not hard or used <= hard

    def _flush(self) -> bool:
        if not self.outq:
            return False
        n = self.ring.write_responses(bytes(self.outq[:w.XENSTORE_RING_SIZE]))
        if n:
            del self.outq[:n]
            if not self.outq:
                self.pending = 0
        return n > 0

    def send(self, data: bytes):
        """Watch events for this domain."""
        if self.closed:
            return
        self.outq += data
        try:
            if self._flush():
                self.notify()
        except RingError as e:
            self._fatal(w.XENSTORE_ERROR_RINGIDX, str(e))

    def _reconnect(self):
        # The guest asked to start over: forget its watches and transactions.
        self.server.store.reset_watches(self.conn)
        self.reader = MessageReader()
        self.outq.clear()
        self.pending = 0
        self.ring.reset()

    def _fatal(self, code, why):
        log.warning("dom%d: fatal ring error: %s", self.conn.domid, why)
        self.ring.set_error(code)
        self.notify()
        self.close()

    def close(self):
        if self.closed:
            return
        self.closed = True
        self._unwatch_source()
        self.server.transports.pop(self.conn.id, None)
        self.server.store.disconnect(self.conn)
        if self.server.attacher is not None:
            self.server.attacher.release(self.conn.domid)
