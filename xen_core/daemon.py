"""`xen-core`: the hypervisor daemon, serving the privileged interface.

    xen-core [--run-dir D] [--accel auto|kvm|emu] [--log F] [-N]

Without -N it detaches once the socket is ready (the parent exits 0 then, or
1 with the reason). One thread per client connection; a bad frame closes
that connection only.
"""
from __future__ import annotations

import argparse
import array
import base64
import collections
import functools
import logging
import os
import signal
import socket
import sys
import threading

from .abi import privif
from .abi import version
from .abi import xen as xenabi
from .abi.layout import PAGE_SHIFT
from .accel.base import BootState, CpuMode
from .domain import XenError
from .hypercalls import hvm as hvm_calls
from .memory import EngineMapError, GuestFault

log = logging.getLogger("xen-core")

E820MAX = 128
MAX_QUEUED_EVENTS = 4096   # a subscriber this far behind is disconnected


# op name -> handler(connection, body) -> (result dict, fds to send). A handler
# may append cleanups to connection.cancels (run when the client goes away)
# and use connection.core, connection.post_event.
EXTRA_OPS: dict = {}


def register_op(name: str, handler) -> None:
    """Serve `name` with `handler`: how event channels and grant tables add
    their dom0 handles (evtchn_*, gnttab_*) to the privileged interface."""
    if name in privif.OPS:
        raise ValueError(f"{name} is a core operation")
    EXTRA_OPS[name] = handler


class BadRequest(Exception):
    """A request with missing or mistyped arguments: EINVAL to the caller."""


def _int(body: dict, key: str, default=None, lo: int = 0, hi: int = 1 << 64) -> int:
    value = body.get(key, default)
    if value is None:
        raise BadRequest(f"missing integer argument {key!r}")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value < hi:
        raise BadRequest(f"argument {key!r} must be an integer in [{lo}, {hi})")
    return value


def _boot_state(raw) -> BootState:
    if not isinstance(raw, dict):
        raise BadRequest("state must be an object")
    try:
        mode = CpuMode(raw.get("mode"))
    except ValueError:
        raise BadRequest(f"state.mode must be one of {[m.value for m in CpuMode]}") from None
    regs = raw.get("regs", {})
    if not isinstance(regs, dict) or not all(isinstance(v, int) for v in regs.values()):
        raise BadRequest("state.regs must map register names to integers")
    opt = {k: raw.get(k) for k in ("cr0", "cr4", "efer")}
    for k, v in opt.items():
        if v is not None and not isinstance(v, int):
            raise BadRequest(f"state.{k} must be an integer")
    return BootState(mode, _int(raw, "rip"), dict(regs), opt["cr0"],
                     _int(raw, "cr3", 0), opt["cr4"], opt["efer"])


class Connection:
    """One dom0 client: requests in, replies and subscribed events out."""

    def __init__(self, server: "Server", sock: socket.socket):
        self.server = server
        self.core = server.core
        self.sock = sock
        self.send_lock = threading.Lock()
        self.cancels = []
        self.closed = False
        # Events go through a queue and a writer thread, so a dom0 client
        # that stops reading never stalls the vCPU thread that raised them.
        self.events = collections.deque()
        self.events_cond = threading.Condition()
        self.writer: threading.Thread | None = None

    def send(self, body: dict, fds=()) -> None:
        frame = privif.encode(body, len(fds))
        with self.send_lock:
            if self.closed:
                return
            anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            sent = self.sock.sendmsg([frame], anc)
            if sent < len(frame):
                self.sock.sendall(frame[sent:])

    def post_event(self, body: dict) -> None:
        with self.events_cond:
            if self.closed:
                return
            if len(self.events) >= MAX_QUEUED_EVENTS:
                log.warning("client %d events behind: disconnecting it", len(self.events))
                self.events.clear()
                try:
                    self.sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            self.events.append(body)
            if self.writer is None:
                self.writer = threading.Thread(target=self._write_events, daemon=True,
                                               name="privif-events")
                self.writer.start()
            self.events_cond.notify()

    def _write_events(self) -> None:
        while True:
            with self.events_cond:
                while not self.events and not self.closed:
                    self.events_cond.wait()
                if self.closed:
                    return
                body = self.events.popleft()
            try:
                self.send(body)
            except OSError:
                return

    def serve(self) -> None:
        dec = privif.Decoder()
        try:
            while True:
                try:
                    data, anc, _, _ = self.sock.recvmsg(
                        1 << 16, socket.CMSG_SPACE(privif.MAX_FDS_PER_FRAME * 4))
                except TimeoutError:
                    continue
                fds = []
                for level, kind, payload in anc:
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                        a = array.array("i")
                        a.frombytes(payload[:len(payload) - len(payload) % 4])
                        fds.extend(a)
                if not data:
                    break
                try:
                    messages = dec.feed(data, fds)
                except privif.ProtocolError as e:
                    log.warning("client sent a bad frame: %s; closing it", e)
                    self.send(privif.reply_error(None, xenabi.EINVAL, "EINVAL", str(e)))
                    break
                finally:
                    for fd in dec.take_stray_fds():
                        os.close(fd)
                for msg in messages:
                    for fd in msg.fds:   # nothing we serve takes fds from clients yet
                        os.close(fd)
                    self.handle(msg.body)
        except OSError as e:
            log.debug("client connection: %s", e)
        finally:
            self.close()

    def close(self) -> None:
        for cancel in self.cancels:
            try:
                cancel()
            except Exception:   # one layer's cleanup failing must not skip the others
                log.exception("connection cleanup failed")
        with self.events_cond:
            self.closed = True
            self.events_cond.notify_all()
        with self.send_lock:
            self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass

    def handle(self, body: dict) -> None:
        req_id = body.get("id")
        op = body.get("op")
        if op in EXTRA_OPS:
            fn = functools.partial(EXTRA_OPS[op], self)
        else:
            fn = getattr(self, f"op_{op}", None) if op in privif.OPS else None
        try:
            if fn is None:
                raise XenError(xenabi.ENOSYS, f"unknown operation {op!r}")
            result, fds = fn(body)
        except XenError as e:
            self.send(privif.reply_error(req_id, e.errno, xenabi.errno_name(e.errno), str(e)))
            return
        except (BadRequest, GuestFault, EngineMapError) as e:
            self.send(privif.reply_error(req_id, xenabi.EINVAL, "EINVAL", str(e)))
            return
        except Exception as e:  # a bug of ours: report it, keep serving
            log.exception("op %s failed", op)
            self.send(privif.reply_error(req_id, xenabi.EINVAL, "EINVAL", f"internal error: {e}"))
            return
        try:
            self.send(privif.reply_ok(req_id, result), fds)
        finally:
            for fd in fds:   # handlers pass dups made for this reply
                os.close(fd)

    # -- operations -----------------------------------------------------------
    def _domain(self, body):
        return self.core.domain(_int(body, "domid", hi=xenabi.DOMID_FIRST_RESERVED))

    def _domu(self, body):
        d = self._domain(body)
        if d.memory is None:
            raise XenError(xenabi.EINVAL, f"domain {d.domid} has no guest memory")
        return d

    def op_hello(self, body):
        return {"protocol": 1, "accel": self.core.accel.name, "pid": os.getpid()}, ()

    def op_physinfo(self, body):
        """The host as `xl info` reports it (XEN_SYSCTL_physinfo + version)."""
        meminfo = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, value = line.split(":", 1)
                meminfo[key] = int(value.split()[0]) * 1024
        return {"nr_cpus": os.cpu_count(), "total_memory": meminfo.get("MemTotal", 0),
                "free_memory": meminfo.get("MemAvailable", 0),
                "xen_version": (version.VERSION >> 16, version.VERSION & 0xFFFF),
                "xen_extra": version.EXTRAVERSION.decode(),
                "xen_caps": version.CAPABILITIES.decode(),
                "accel": self.core.accel.name,
                "tsc_khz": self.core.tsc_hz // 1000}, ()

    def op_domain_create(self, body):
        flags = body.get("flags", ["pvh"])
        if not isinstance(flags, list) or not set(flags) <= {"pvh", "hvm"}:
            raise BadRequest("flags must be a list of 'pvh'/'hvm'")
        handle = body.get("handle")
        try:
            handle = bytes.fromhex(handle) if handle else None
        except (TypeError, ValueError):
            raise BadRequest("handle must be hex") from None
        d = self.core.create_domain(
            max_vcpus=_int(body, "max_vcpus", 1, 1, 4097),
            max_memory=_int(body, "max_memory"),
            hvm="hvm" in flags,
            domid=body.get("domid") and _int(body, "domid", hi=xenabi.DOMID_FIRST_RESERVED),
            handle=handle)
        return {"domid": d.domid}, ()

    def op_domain_destroy(self, body):
        self.core.destroy_domain(_int(body, "domid", hi=xenabi.DOMID_FIRST_RESERVED))
        return {}, ()

    def op_domain_pause(self, body):
        d = self._domu(body)
        d.pause()
        return {}, ()

    def op_domain_unpause(self, body):
        self._domu(body).unpause()
        return {}, ()

    def op_domain_shutdown(self, body):
        d = self._domu(body)
        d.shutdown(_int(body, "reason", hi=256))
        return {}, ()

    def op_xen_dmesg(self, body):
        """The hypervisor's console ring (`xl dmesg [-c]`)."""
        data = self.core.read_dmesg(clear=bool(body.get("clear", False)))
        return {"data": base64.b64encode(data).decode()}, ()

    def op_domain_set_max_mem(self, body):
        """XEN_DOMCTL_max_mem: the ceiling for populate (below tot_pages is
        allowed, as on Xen: it only stops growth). The memfd holds at most the
        RAM sized at creation."""
        d = self._domu(body)
        pages = (_int(body, "max_memory") + 4095) >> PAGE_SHIFT
        if pages > d.memory.ram_frames:
            raise XenError(xenabi.ENOMEM, f"{pages} pages over the {d.memory.ram_frames} "
                                          "this domain was created with")
        d.max_pages = pages
        return {}, ()

    def op_domain_info(self, body):
        return self._domain(body).info(), ()

    def op_domain_list(self, body):
        return {"domains": [d.info() for d in self.core.list_domains()]}, ()

    def op_populate_physmap(self, body):
        d = self._domu(body)
        ranges = body.get("ranges")
        if not isinstance(ranges, list) or not all(
                isinstance(r, list) and len(r) == 2 and all(isinstance(v, int) and v >= 0 for v in r)
                for r in ranges):
            raise BadRequest("ranges must be a list of [gfn, count]")
        gfns = [g for start, count in ranges for g in range(start, start + count)]
        if any(g >= 1 << 40 for g in gfns):
            raise XenError(xenabi.EINVAL, "gfn beyond the guest-physical address width")
        absent = [g for g in dict.fromkeys(gfns) if g not in d.memory.p2m]
        if d.memory.tot_pages + len(absent) > d.max_pages:
            raise XenError(xenabi.ENOMEM, f"{len(absent)} pages over max_pages {d.max_pages}")
        with d.quiesced():
            done = d.memory.populate(absent)
        if done < len(absent):
            raise XenError(xenabi.ENOMEM, f"populated {done} of {len(absent)} pages")
        return {"done": done, "tot_pages": d.memory.tot_pages}, ()

    def op_set_memory_map(self, body):
        d = self._domu(body)
        entries = body.get("entries")
        if not isinstance(entries, list) or len(entries) > E820MAX or not all(
                isinstance(e, list) and len(e) == 3 and all(isinstance(v, int) and v >= 0 for v in e)
                for e in entries):
            raise BadRequest(f"entries must be at most {E820MAX} [addr, size, type]")
        d.e820 = [tuple(e) for e in entries]
        return {}, ()

    def op_foreign_map(self, body):
        d = self._domu(body)
        gfns = body.get("gfns")
        if not isinstance(gfns, list) or not all(isinstance(g, int) and g >= 0 for g in gfns):
            raise BadRequest("gfns must be a list of frame numbers")
        offsets, errors = [], []
        with d.memory.lock:
            for g in gfns:
                frame = d.memory.p2m.get(g)
                offsets.append(-1 if frame is None else frame << PAGE_SHIFT)
                errors.append(-xenabi.ENOENT if frame is None else 0)
            fd = os.dup(d.memory.fd)
        return {"offsets": offsets, "errors": errors,
                "size": d.memory.nr_frames << PAGE_SHIFT}, [fd]

    def op_vcpu_setcontext(self, body):
        d = self._domu(body)
        vcpu = _int(body, "vcpu", 0, 0, d.max_vcpus)
        d.set_boot_state(vcpu, _boot_state(body.get("state")))
        return {}, ()

    def op_hvm_param_get(self, body):
        d = self._domu(body)
        value = hvm_calls.get_param(d, _int(body, "index", hi=1 << 32))
        if value < 0:
            raise XenError(-value)
        return {"value": value}, ()

    def op_hvm_param_set(self, body):
        d = self._domu(body)
        rc = hvm_calls.set_param(d, _int(body, "index", hi=1 << 32), _int(body, "value"), False)
        ec = getattr(self.core, "_event_core", None)
        if ec is not None:   # the callback vector C deliveries use may have changed
            ec.flush_guest(d.domid)
        if rc < 0:
            raise XenError(-rc)
        return {}, ()

    def op_console_read(self, body):
        d = self._domain(body)
        data, end = d.console_since(_int(body, "offset", 0))
        return {"data": base64.b64encode(data).decode(), "offset": end}, ()

    def op_console_write_input(self, body):
        d = self._domu(body)
        try:
            data = base64.b64decode(body.get("data", ""), validate=True)
        except (TypeError, ValueError):
            raise BadRequest("data must be base64") from None
        with d.lock:
            d.console_input += data
        d.send_virq(None, 2)   # VIRQ_CONSOLE: input for the domain's emergency console
        return {}, ()

    def op_subscribe_dom_exc(self, body):
        self.cancels.append(self.core.subscribe(self.post_event))
        return {}, ()

    def op_subscribe_console(self, body):
        d = self._domain(body)

        def deliver(domid, offset, data):
            self.post_event({"event": "console", "domid": domid, "offset": offset,
                             "data": base64.b64encode(data).decode()})
        self.cancels.append(self.core.subscribe_console(d.domid, deliver))
        data, end = d.console_since(_int(body, "offset", 0))
        return {"data": base64.b64encode(data).decode(), "offset": end}, ()


class Server:
    def __init__(self, core, run_dir: str):
        self.core = core
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, privif.SOCKET_NAME)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if os.path.exists(self.path):
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)   # stale socket of a dead daemon
            else:
                raise RuntimeError(f"{self.path}: another xen-core is serving it")
            finally:
                probe.close()
        self.sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self.sock.listen(64)
        self.stopping = False

    def serve_forever(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.stopping:
                    break
                raise
            c = Connection(self, conn)
            threading.Thread(target=c.serve, name="privif-client", daemon=True).start()

    def stop(self) -> None:
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="xen-core", description="the pyxen hypervisor daemon")
    p.add_argument("--run-dir", default=privif.default_run_dir())
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "emu"))
    p.add_argument("--log", help="log file (default: stderr)")
    p.add_argument("-N", "--no-fork", action="store_true", help="stay in the foreground")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)

    os.makedirs(args.run_dir, mode=0o700, exist_ok=True)
    ready_w = None
    if not args.no_fork:
        r, w = os.pipe()
        if os.fork():
            os.close(w)
            msg = os.read(r, 4096).decode()
            if msg != "ok":
                print(f"xen-core: {msg or 'exited during start-up'}", file=sys.stderr)
                return 1
            return 0
        os.close(r)
        os.setsid()
        ready_w = w
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(devnull, fd)
        if args.log is None:
            args.log = os.path.join(args.run_dir, "xen-core.log")
    logging.basicConfig(filename=args.log, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s: %(message)s")

    from .accel import get_accelerator
    from .hypervisor import Hypervisor
    try:
        core = Hypervisor(get_accelerator(args.accel))
        server = Server(core, args.run_dir)
    except (RuntimeError, OSError, ValueError) as e:
        if ready_w is not None:
            os.write(ready_w, str(e).encode())   # the parent reports it
        else:
            print(f"xen-core: {e}", file=sys.stderr)
        return 1
    with open(os.path.join(args.run_dir, "xen-core.pid"), "w") as f:
        f.write(f"{os.getpid()}\n")
    log.info("serving %s with accel %s", server.path, core.accel.name)

    def on_signal(signum, frame):
        server.stop()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if ready_w is not None:
        os.write(ready_w, b"ok")
        os.close(ready_w)
        os.dup2(os.open(os.devnull, os.O_RDWR), 2)
    else:
        print(f"xen-core: serving {server.path} (accel {core.accel.name})", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        core.close()
        try:
            os.unlink(os.path.join(args.run_dir, "xen-core.pid"))
        except OSError:
            pass
        log.info("stopped")
    return 0


# Event channels and gntdev for dom0 processes (evtchn_*, gntdev_*).
from .dom0_ops import install as _install_dom0_ops  # noqa: E402
_install_dom0_ops(register_op)

if __name__ == "__main__":
    sys.exit(main())
