"""`xenconsoled`: every domain's console to a log file and a pty.

    xenconsoled [--run-dir D] [--pid-file F] [--log F]

Domains are found as Xen's xenconsoled finds them: watches on
`@introduceDomain` and `@releaseDomain` (plus `/local/domain`, so a domain
the store could not attach still gets its console), then the frontend keys
`/local/domain/<id>/console/{ring-ref,port,type}`. For each domain:

- the PV ring (`xencons_interface` in the page named by `ring-ref`) is
  drained; input read from the pty goes into its `in` ring;
- the hypervisor's `console_io` output for the domain (a subscription on
  the privileged interface) is merged into the same stream;
- the stream goes to `<run dir>/console/guest-<name>.log` and to a pty whose
  slave path is written to `console/tty` (what `xl console` opens).

The pty's slave end stays open here in raw mode: no echo, and output
written before anyone attaches is kept (up to `console/limit` bytes).
"""
from __future__ import annotations

import argparse
import base64
import errno
import logging
import os
import selectors
import signal
import sys
import threading
import tty

import pyxs

from dom0 import rundir
from dom0.evtchn import Evtchn
from dom0.foreignmemory import ForeignMapping
from dom0.privcmd import Privcmd, XenError
from xen_core.abi import console as cabi
from xen_core.abi import xen as xenabi

from .console import ConsoleRing

log = logging.getLogger("xenconsoled")

POLL_S = 0.02          # ring poll period for a console without an event channel


class DomainConsole:
    """One domain's console: sources (ring, console_io) -> sinks (log, pty)."""

    def __init__(self, daemon: "Consoled", domid: int, name: str, limit: int):
        self.daemon = daemon
        self.domid = domid
        self.name = name
        self.limit = limit
        self.lock = threading.Lock()
        self.pending = bytearray()     # written to the pty when it has room
        self.ring: ConsoleRing | None = None
        self.mapping: ForeignMapping | None = None
        self.port: int | None = None       # our end of the console event channel
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.tty = os.ttyname(self.slave)
        os.makedirs(rundir.console_log_dir(daemon.rdir), exist_ok=True)
        self.log = open(os.path.join(rundir.console_log_dir(daemon.rdir),
                                     f"guest-{name}.log"), "ab", buffering=0)
        self.io_conn: Privcmd | None = None
        self.io_thread: threading.Thread | None = None
        self.closed = False

    # -- sources -----------------------------------------------------------
    def attach_ring(self, gfn: int, remote_port: int | None) -> None:
        try:
            self.mapping = ForeignMapping(self.daemon.pc, self.domid, [gfn])
            self.ring = ConsoleRing(self.mapping.page(gfn))
        except (XenError, OSError) as e:
            log.warning("dom%d: console ring at gfn %#x not mapped: %s", self.domid, gfn, e)
            return
        if remote_port:
            try:
                self.port = self.daemon.xe.bind_interdomain(self.domid, remote_port)
            except (XenError, OSError) as e:
                log.warning("dom%d: console port %d not bound: %s", self.domid, remote_port, e)

    def notify(self) -> None:
        if self.port is not None:
            try:
                self.daemon.xe.notify(self.port)
            except (XenError, OSError):
                pass

    def start_console_io(self) -> None:
        self.io_thread = threading.Thread(target=self._console_io, daemon=True,
                                          name=f"console-io-{self.domid}")
        self.io_thread.start()

    def _console_io(self) -> None:
        try:
            conn = Privcmd(self.daemon.rdir)
        except ConnectionError as e:
            log.warning("dom%d: console_io: %s", self.domid, e)
            return
        self.io_conn = conn
        try:
            if self.closed:
                return
            conn.subscribe_dom_exc()
            data, seen = conn.subscribe_console(self.domid)
            self.output(data)
            while not self.closed:
                ev = conn.next_event()
                if ev.get("domid") != self.domid:
                    continue
                if ev["event"] == "console":
                    chunk = base64.b64decode(ev["data"])
                    skip = max(0, seen - ev["offset"])
                    self.output(chunk[skip:])
                    seen = max(seen, ev["offset"] + len(chunk))
                elif ev["event"] == "dom_exc" and ev["kind"] == "destroyed":
                    break
        except (ConnectionError, OSError, XenError):
            pass
        finally:
            conn.close()

    def poll_ring(self) -> None:
        if self.ring is not None:
            try:
                data = self.ring.read_output()
            except ValueError:          # mapping closed under us
                return
            if data:
                self.output(data)
                self.notify()          # room in `out` again

    # -- sinks -------------------------------------------------------------
    def output(self, data: bytes) -> None:
        if not data:
            return
        with self.lock:
            if self.closed:
                return
            self.log.write(data)
            self.pending += data
            if len(self.pending) > self.limit:     # oldest output goes first
                del self.pending[:len(self.pending) - self.limit]
            self._flush_locked()
            stalled = bool(self.pending)
        if stalled:
            self.daemon.wake()        # the main loop polls until the pty takes it

    def _flush_locked(self) -> None:
        while self.pending:
            try:
                n = os.write(self.master, self.pending)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno in (errno.EIO, errno.EAGAIN):
                    return
                raise
            del self.pending[:n]

    def flush(self) -> None:
        with self.lock:
            if not self.closed:
                self._flush_locked()

    def input(self) -> None:
        """Bytes typed at `xl console` go into the guest's `in` ring."""
        try:
            data = os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return
        if self.ring is not None:
            self.ring.write_input(data)   # a full ring drops input, as a UART would
            self.notify()
        else:
            try:
                self.daemon.pc.console_write_input(self.domid, data)
            except (XenError, OSError):
                pass

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.log.close()
        if self.io_conn is not None:
            try:
                self.io_conn.sock.shutdown(2)
            except OSError:
                pass
        if self.io_thread is not None:
            self.io_thread.join(5)
        self.ring = None
        if self.port is not None:
            try:
                self.daemon.xe.unbind(self.port)
            except (XenError, OSError):
                pass
        if self.mapping is not None:
            self.mapping.close()
        os.close(self.master)
        os.close(self.slave)


class Consoled:
    def __init__(self, rdir: str):
        self.rdir = rdir
        self.pc = Privcmd(rdir)
        self.xe = Evtchn(self.pc)
        self.hv_seen = 0
        try:    # Xen raises VIRQ_CONSOLE when its own console has new text
            self.virq_port = self.xe.bind_virq(xenabi.VIRQ_CONSOLE)
        except (XenError, OSError):
            self.virq_port = None
        self.xs = pyxs.Client(unix_socket_path=rundir.xenstored_socket(rdir))
        self.xs.connect()
        self.domains: dict[int, DomainConsole] = {}
        self.lock = threading.Lock()
        self.sel = selectors.DefaultSelector()
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, None)
        self.sel.register(self.xe.fd(), selectors.EVENT_READ, "evtchn")
        self.rescan_needed = threading.Event()
        self.stopping = False

    def _read(self, path: str) -> str | None:
        try:
            v = self.xs.read(path.encode())
        except pyxs.PyXSError:
            return None
        return None if v is None else v.decode(errors="replace")

    def _domids_in_store(self) -> set[int]:
        try:
            names = self.xs.list(b"/local/domain")
        except pyxs.PyXSError:
            return set()
        return {int(n) for n in names if n.isdigit() and int(n) != 0}

    def rescan(self) -> None:
        """Attach new domains with a console, drop gone ones."""
        live = self._domids_in_store()
        try:
            in_core = {d["domid"] for d in self.pc.domain_list()}
        except (XenError, OSError):
            in_core = live
        for domid in sorted(set(self.domains) - (live & in_core)):
            log.info("dom%d: console released", domid)
            self.sel.unregister(self.domains[domid].master)
            self.domains.pop(domid).close()
        for domid in sorted((live & in_core) - set(self.domains)):
            self._attach(domid)

    def _attach(self, domid: int) -> None:
        base = f"/local/domain/{domid}"
        ctype = self._read(f"{base}/console/type")
        if ctype is None:
            return          # not written yet: a later watch event brings us back
        if ctype != "xenconsoled":
            return          # another backend (ioemu) serves this console
        name = self._read(f"{base}/name") or f"dom{domid}"
        try:
            limit = int(self._read(f"{base}/console/limit") or cabi.LIBXL_XENCONSOLE_LIMIT)
        except ValueError:
            limit = cabi.LIBXL_XENCONSOLE_LIMIT
        con = DomainConsole(self, domid, name, limit)
        ref = self._read(f"{base}/console/ring-ref")
        port = self._read(f"{base}/console/port")
        if ref and ref.isdigit():
            con.attach_ring(int(ref), int(port) if port and port.isdigit() else None)
        self.domains[domid] = con
        self.sel.register(con.master, selectors.EVENT_READ, con)
        con.start_console_io()
        try:
            self.xs.write(f"{base}/console/tty".encode(), con.tty.encode())
        except pyxs.PyXSError as e:
            log.warning("dom%d: writing console/tty: %s", domid, e)
        log.info("dom%d (%s): console on %s", domid, name, con.tty)

    def watch_store(self) -> None:
        """Watch thread: any relevant event asks the main loop to rescan."""
        client = pyxs.Client(unix_socket_path=rundir.xenstored_socket(self.rdir))
        client.connect()
        try:
            with client.monitor() as m:
                m.watch(b"@introduceDomain", b"intro")
                m.watch(b"@releaseDomain", b"release")
                m.watch(b"/local/domain", b"domains")
                for path, token in m.wait():
                    if self.stopping:
                        return
                    parts = path.decode(errors="replace").split("/")
                    # /local/domain/<id> itself, or its console/type key.
                    if token != b"domains" or len(parts) == 4 or parts[4:6] == ["console", "type"]:
                        self.rescan_needed.set()
                        os.write(self.wake_w, b"!")
        except (pyxs.PyXSError, OSError, ConnectionError) as e:
            if not self.stopping:
                log.error("xenstore watch ended: %s", e)
                self.stop()
        finally:
            try:
                client.close()
            except Exception:
                pass

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"!")
        except OSError:
            pass

    def stop(self) -> None:
        self.stopping = True
        try:
            os.write(self.wake_w, b"!")
        except OSError:
            pass

    def run(self) -> None:
        threading.Thread(target=self.watch_store, daemon=True, name="xs-watch").start()
        self.rescan()
        while not self.stopping:
            # Rings with an event channel are drained when kicked; polling is
            # only for a ring without one, or output the pty had no room for.
            idle = all((c.port is not None or c.ring is None) and not c.pending
                       for c in self.domains.values())
            for key, _ in self.sel.select(None if idle else POLL_S):
                if key.data == "evtchn":
                    self.evtchn_pending()
                elif key.data is None:
                    try:
                        os.read(self.wake_r, 4096)
                    except BlockingIOError:
                        pass
                else:
                    key.data.input()
            if self.rescan_needed.is_set():
                self.rescan_needed.clear()
                self.rescan()
            if not idle:
                for con in list(self.domains.values()):
                    if con.port is None:
                        con.poll_ring()
                    if con.pending:
                        con.flush()

    def evtchn_pending(self) -> None:
        """A guest kicked its console port (or VIRQ_CONSOLE fired)."""
        port = self.xe.pending(timeout=0)
        if port is None:
            return
        if port == self.virq_port:
            self.hypervisor_log()
        else:
            for con in self.domains.values():
                if con.port == port:
                    con.poll_ring()
                    break
        self.xe.unmask(port)

    def hypervisor_log(self) -> None:
        """The hypervisor's console ring, appended to console/hypervisor.log."""
        try:
            data = self.pc.xen_dmesg()
        except (XenError, OSError):
            return
        if len(data) < self.hv_seen:      # the ring was cleared or wrapped
            self.hv_seen = 0
        new, self.hv_seen = data[self.hv_seen:], len(data)
        if new:
            os.makedirs(rundir.console_log_dir(self.rdir), exist_ok=True)
            with open(os.path.join(rundir.console_log_dir(self.rdir), "hypervisor.log"),
                      "ab") as f:
                f.write(new)

    def close(self) -> None:
        for con in self.domains.values():
            con.close()
        self.domains.clear()
        self.xe.close()
        try:
            self.xs.close()
        except Exception:
            pass
        self.pc.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="xenconsoled", description="the PV console daemon")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--pid-file")
    p.add_argument("--log", help="log file (default stderr)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    rdir = args.run_dir or rundir.run_dir()
    logging.basicConfig(filename=args.log, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s xenconsoled: %(message)s")
    try:
        d = Consoled(rdir)
    except (ConnectionError, OSError, pyxs.PyXSError) as e:
        print(f"xenconsoled: {e}", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    signal.signal(signal.SIGINT, lambda *_: d.stop())
    try:
        with rundir.pid_file(args.pid_file):
            d.run()
    finally:
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
