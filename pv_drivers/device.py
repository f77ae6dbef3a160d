"""One backend device (vbd or vif) in xen-backendd: its xenstore keys, its
xenbus state machine and the threads that serve its queues.

The daemon calls `probe()` once and `update()` whenever something under
the device's backend or frontend directory may have changed; both run on
the daemon's main thread, which alone talks to xenstore. Queue threads
report a protocol error through `daemon.post()`, so the device is moved
to Closing from the main thread while every other device keeps serving.
"""
from __future__ import annotations

import logging
import os
import select
import threading

from .xenbus import (BackendXenbus, Connect, Disconnect, Fatal, Switch,
                     Unregister, XenbusState, parse_state)

log = logging.getLogger("xen-backendd")

IDLE_WAKE_S = 1.0       # a queue thread re-checks `stopping` this often


class DeviceError(Exception):
    """A key the frontend or toolstack wrote is unusable: the device fails."""


class QueueThread:
    """Serve one queue: wait for its event channel (or a local wake-up),
    let `serve()` work, kick the frontend when it asks. The channel stays
    masked from its event until the queue is about to sleep again, so a
    busy frontend's kicks cost the backend nothing."""

    def __init__(self, device: "Device", queue, serve, name: str):
        self.device = device
        self.queue = queue
        self.serve = serve            # () -> (notify: bool, more: bool)
        self.stopping = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        try:
            os.write(self.wake_w, b"!")
        except (BlockingIOError, OSError):
            pass

    def _run(self) -> None:
        more = True             # the frontend may have queued before we bound
        try:
            while not self.stopping:
                if not more:
                    r, _, _ = select.select([self.queue.fileno(), self.wake_r], [], [],
                                            IDLE_WAKE_S)
                    if self.queue.fileno() in r:
                        self.queue.ack()
                    if self.wake_r in r:
                        try:
                            os.read(self.wake_r, 4096)
                        except BlockingIOError:
                            pass
                    if self.stopping:
                        break
                notify, more = self.serve()
                if not more:
                    self.queue.rearm(notify)     # unmask + kick: one write
                elif notify:
                    self.queue.notify()
        except Exception as e:          # RingProtocolError and anything unexpected
            if not self.stopping:
                message = str(e)
                log.error("%s: %s; closing the device", self.device.name, message)
                self.device.daemon.post(lambda: self.device.fail(message))

    def stop(self) -> None:
        self.stopping = True
        self.wake()
        if threading.current_thread() is not self.thread and self.thread.is_alive():
            self.thread.join()
        os.close(self.wake_r)
        os.close(self.wake_w)


class Device:
    kind = ""

    def __init__(self, daemon, domid: int, devid: int, bpath: str):
        self.daemon = daemon
        self.xs = daemon.xs
        self.transport = daemon.transport
        self.domid = domid
        self.devid = devid
        self.bpath = bpath
        self.name = f"{self.kind}-{domid}-{devid}"
        self.fpath = self.xs.read(f"{bpath}/frontend")
        self.sm = BackendXenbus()
        self.queues = []
        self.srings = []          # released before their queue unmaps the pages
        self.threads: list[QueueThread] = []
        self.gone = False

    # --- key helpers ------------------------------------------------------

    def fread(self, key: str, default=None):
        v = self.xs.read(f"{self.fpath}/{key}")
        return default if v is None else v

    def fread_int(self, key: str, default=None) -> int:
        v = self.fread(key)
        if v is None:
            if default is None:
                raise DeviceError(f"frontend key {self.fpath}/{key} missing")
            return default
        try:
            return int(v, 0)
        except ValueError:
            raise DeviceError(f"frontend key {self.fpath}/{key}: {v!r} is not a number") from None

    def bwrite(self, key: str, value) -> None:
        self.xs.write(f"{self.bpath}/{key}", str(value))

    # --- life cycle -------------------------------------------------------

    def probe(self) -> None:
        if not self.fpath:
            raise DeviceError(f"{self.bpath}/frontend missing")
        self.setup()
        self.perform(self.sm.probe())

    def update(self) -> None:
        if self.gone:
            return
        fe = parse_state(self.xs.read(f"{self.fpath}/state"))
        online = self.xs.read(f"{self.bpath}/online") == "1"
        own = parse_state(self.xs.read(f"{self.bpath}/state"))
        if own == XenbusState.Unknown and self.sm.state != XenbusState.Initialising:
            # The toolstack removed the backend directory: nothing to answer.
            self.perform(self.sm.frontend_changed(XenbusState.Unknown, online=False),
                         write=False)
            return
        if not online and own == XenbusState.Closing and \
                self.sm.state not in (XenbusState.Closing, XenbusState.Closed):
            self.perform(self.sm.toolstack_close(fe))
            if self.gone:
                return
        self.perform(self.sm.frontend_changed(fe, online))

    def fail(self, message: str) -> None:
        if self.gone:
            return
        self.perform([Fatal(message)] + self.sm.fail())

    def perform(self, actions, write: bool = True) -> None:
        for act in actions:
            if isinstance(act, Switch):
                # As __xenbus_switch_state: never recreate a state node the
                # toolstack has already removed.
                if write and self.xs.read(f"{self.bpath}/state") is not None:
                    self.bwrite("state", int(act.state))
            elif isinstance(act, Connect):
                try:
                    self.connect()
                except DeviceError as e:
                    self.disconnect()
                    self.perform([Fatal(str(e))] + self.sm.fail(), write)
                    return
                self.perform(self.sm.connect_done(), write)
            elif isinstance(act, Disconnect):
                self.disconnect()
            elif isinstance(act, Fatal):
                log.error("%s: %s", self.name, act.message)
                if write:
                    # xenbus_dev_fatal: error/<nodename>/error under dom0's home.
                    self.xs.write(f"/local/domain/0/error{self.bpath[len('/local/domain/0'):]}"
                                  f"/error", act.message)
            elif isinstance(act, Unregister):
                self.disconnect()
                self.teardown()
                self.gone = True
                log.info("%s: removed", self.name)

    def shared_ring(self, pages, entry_size: int):
        from .ring import SharedRing
        ring = SharedRing(pages, entry_size)
        self.srings.append(ring)
        return ring

    def start_queue(self, queue, serve, label: str) -> QueueThread:
        t = QueueThread(self, queue, serve, f"{self.name}-{label}")
        self.threads.append(t)
        t.start()
        return t

    def disconnect(self) -> None:
        for t in self.threads:
            t.stop()
        self.threads = []
        for r in self.srings:
            r.release()
        self.srings = []
        for q in self.queues:
            q.close()
        self.queues = []

    # --- per kind ---------------------------------------------------------

    def setup(self) -> None:
        """Open what the backend keys name; write the features."""

    def connect(self) -> None:
        """Read the frontend's keys, map its rings, start serving."""

    def teardown(self) -> None:
        """Release what setup() opened."""
