"""The vif backend device: Linux netback's keys, one NetBackend queue, and
where the frames go: a TAP `vif<domid>.<devid>` in the Linux bridge named
by `bridge` when we may create one, else a port of the daemon's built-in
switch of that name (so two guests on one bridge meet with no privilege).

Backend keys read: `frontend`, `mac`, `bridge`, `handle`. Written:
`feature-sg`, `feature-rx-copy`, `feature-rx-flip` (0),
`feature-split-event-channels`, `multi-queue-max-queues` (1),
`hotplug-status` (connected, as vif-bridge). Frontend keys read:
`tx-ring-ref`, `rx-ring-ref`, `event-channel` or `event-channel-tx/-rx`,
`request-rx-copy` (must be 1: no page flipping), `feature-sg`.
"""
from __future__ import annotations

import logging
import os
import threading

from xen_core.abi import netif

from .device import Device, DeviceError
from .netback import NetBackend
from .ring import BackRing
from .switch import Switch
from .tap import TapError, open_tap
from .transport import TransportError

log = logging.getLogger("xen-backendd")
DEFAULT_BRIDGE = "xenbr0"
MAX_FRAME = 65536


class VifDevice(Device):
    kind = "vif"

    def setup(self) -> None:
        self.bridge = self.xs.read(f"{self.bpath}/bridge") or DEFAULT_BRIDGE
        self.ifname = f"vif{self.domid}.{self.devid}"
        self.tap_fd = -1
        self.port = None
        self.back = None
        self.thread = None
        for key, value in [("feature-sg", 1), ("feature-rx-copy", 1), ("feature-rx-flip", 0),
                           ("feature-split-event-channels", 1),
                           ("multi-queue-max-queues", 1)]:
            self.bwrite(key, value)
        if not self.daemon.switch_only:
            try:
                self.tap_fd = open_tap(self.ifname, self.bridge)
                log.info("%s: %s in Linux bridge %s", self.name, self.ifname, self.bridge)
            except TapError as e:
                log.info("%s: no Linux bridge (%s); built-in switch %s", self.name, e, self.bridge)
        if self.tap_fd < 0:
            sw = self.daemon.switches.get(self.bridge)
            if sw is None:
                sw = self.daemon.switches[self.bridge] = Switch(self.bridge)
            self.port = sw.attach(self.ifname, self._from_world)
        else:
            threading.Thread(target=self._tap_reader, args=(self.tap_fd,), daemon=True,
                             name=f"{self.ifname}-tap").start()
        self.bwrite("hotplug-status", "connected")

    # Frames for the guest, from the switch or the TAP (any thread).
    def _from_world(self, frame: bytes) -> None:
        back, thread = self.back, self.thread
        if back is not None and thread is not None:
            back.receive(frame)
            thread.wake()

    def _tap_reader(self, fd: int) -> None:
        while True:
            try:
                frame = os.read(fd, MAX_FRAME)
            except OSError:
                return              # closed by teardown
            if not frame:
                return
            self._from_world(frame)

    def _to_world(self, frame: bytes) -> None:
        if self.port is not None:
            self.port.transmit(frame)
        elif self.tap_fd >= 0:
            try:
                os.write(self.tap_fd, frame)
            except OSError as e:
                log.debug("%s: tap write: %s", self.name, e)

    def connect(self) -> None:
        if self.fread_int("request-rx-copy", 0) != 1:
            raise DeviceError("frontend does not support rx-copy (request-rx-copy)")
        if self.fread_int("multi-queue-num-queues", 1) != 1:
            raise DeviceError("multi-queue-num-queues above multi-queue-max-queues 1")
        tx_ref, rx_ref = self.fread_int("tx-ring-ref"), self.fread_int("rx-ring-ref")
        if self.fread("event-channel-tx") is not None:
            ports = [self.fread_int("event-channel-tx"), self.fread_int("event-channel-rx")]
        else:
            ports = [self.fread_int("event-channel")]
        try:
            q = self.transport.open(self.domid, [[tx_ref], [rx_ref]], ports)
        except TransportError as e:
            raise DeviceError(str(e)) from None
        self.queues.append(q)
        self.back = NetBackend(BackRing(self.shared_ring(q.rings[0], netif.TX_ENTRY_SIZE)),
                               BackRing(self.shared_ring(q.rings[1], netif.RX_ENTRY_SIZE)),
                               q, self._to_world, sg=self.fread_int("feature-sg", 0) == 1,
                               name=self.name)
        back = self.back

        def serve():
            notify, more = back.process_tx()
            return back.process_rx() or notify, more

        self.thread = self.start_queue(q, serve, "q0")

    def disconnect(self) -> None:
        self.thread = None
        super().disconnect()
        self.back = None

    def teardown(self) -> None:
        if self.port is not None:
            self.port.switch.detach(self.port)
            self.port = None
        if self.tap_fd >= 0:
            os.close(self.tap_fd)
            self.tap_fd = -1
