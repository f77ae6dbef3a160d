"""The xenbus device state machine (io/xenbus.h), both ends, sans-I/O.

Each end publishes its `state` key; each reacts to the other's. The engines
return actions for the caller to perform (write the state key, map the
rings, tear them down, remove the device), so the same logic drives the
backend daemon and the test frontend. The reactions follow Linux's
xen-blkback/xen-netback `frontend_changed` and blkfront/netfront
`backend_changed`.
"""
import enum
from dataclasses import dataclass


class XenbusState(enum.IntEnum):
    Unknown = 0
    Initialising = 1
    InitWait = 2
    Initialised = 3
    Connected = 4
    Closing = 5
    Closed = 6
    Reconfiguring = 7
    Reconfigured = 8


def parse_state(value) -> XenbusState:
    """A state key's text; anything unreadable (or a missing key) is Unknown,
    as xenbus_read_driver_state answers."""
    try:
        return XenbusState(int(value))
    except (TypeError, ValueError):
        return XenbusState.Unknown


@dataclass(frozen=True)
class Switch:
    state: XenbusState


@dataclass(frozen=True)
class Connect:
    """Read the peer's keys and map its rings / publish ours."""


@dataclass(frozen=True)
class Disconnect:
    """Unmap the rings, unbind the event channels."""


@dataclass(frozen=True)
class Unregister:
    """The device is gone: forget it (the toolstack removes the nodes)."""


@dataclass(frozen=True)
class Fatal:
    """xenbus_dev_fatal: write `error` and go to Closing."""
    message: str


S = XenbusState


class BackendXenbus:
    def __init__(self):
        self.state = S.Initialising
        self.connected = False

    def probe(self) -> list:
        """Features are written: tell the frontend we wait for it."""
        self.state = S.InitWait
        return [Switch(S.InitWait)]

    def frontend_changed(self, fe: XenbusState, online: bool) -> list:
        if fe == S.Initialising:
            if self.state == S.Closed:       # the frontend reconnects
                self.state = S.InitWait
                return [Switch(S.InitWait)]
            return []
        if fe in (S.Initialised, S.Connected):
            if self.state == S.Connected or self.state in (S.Closing, S.Closed):
                return []
            out = [Disconnect()] if self.connected else []
            self.connected = False
            return out + [Connect()]
        if fe == S.Closing:
            if self.state == S.Closed:
                return []
            self.state = S.Closing
            return [Switch(S.Closing)]
        if fe in (S.Closed, S.Unknown):
            out = self._disconnect()
            if self.state != S.Closed:
                self.state = S.Closed
                out.append(Switch(S.Closed))
            if fe == S.Unknown or not online:
                out.append(Unregister())
            return out
        if fe == S.InitWait:
            return []                        # frontends may pass through it
        return [Fatal(f"saw state {int(fe)} at frontend")] + self.fail()

    def connect_done(self) -> list:
        self.connected = True
        self.state = S.Connected
        return [Switch(S.Connected)]

    def fail(self) -> list:
        """A connect failure or a protocol error: stop serving, go Closing
        so the frontend closes too."""
        out = self._disconnect()
        if self.state not in (S.Closing, S.Closed):
            self.state = S.Closing
            out.append(Switch(S.Closing))
        return out

    def toolstack_close(self, fe: XenbusState) -> list:
        """libxl wrote online=0 and state=Closing (hot-unplug). A frontend
        that never connected will not answer: finish at once."""
        self.state = S.Closing
        if fe in (S.Unknown, S.Initialising, S.InitWait, S.Closed):
            return self.frontend_changed(S.Closed, online=False)
        return []

    def _disconnect(self) -> list:
        if self.connected:
            self.connected = False
            return [Disconnect()]
        return []


class FrontendXenbus:
    def __init__(self):
        self.state = S.Initialising

    def backend_changed(self, be: XenbusState) -> list:
        if be == S.InitWait:
            if self.state != S.Initialising:
                return []
            return [Connect()]            # publish ring refs, event channel
        if be == S.Connected:
            if self.state == S.Initialised:
                self.state = S.Connected
                return [Switch(S.Connected)]
            return []
        if be in (S.Closing, S.Closed, S.Unknown):
            if self.state == S.Closed:
                return []
            was = self.state
            self.state = S.Closed
            out = [Disconnect()] if was in (S.Initialised, S.Connected) else []
            return out + [Switch(S.Closed)]
        return []

    def published(self) -> list:
        self.state = S.Initialised
        return [Switch(S.Initialised)]
