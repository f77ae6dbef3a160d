"""Both xenbus state machines played against each other, as blkback and
blkfront negotiate, plus hot-unplug and reconnect."""
from pv_drivers.xenbus import (BackendXenbus, Connect, Disconnect, Fatal,
                               FrontendXenbus, Switch, Unregister, XenbusState as S,
                               parse_state)


def test_parse_state():
    assert parse_state("4") == S.Connected
    assert parse_state(b"6") == S.Closed
    assert parse_state(None) == S.Unknown
    assert parse_state("junk") == S.Unknown
    assert parse_state("42") == S.Unknown


def connected_pair():
    be, fe = BackendXenbus(), FrontendXenbus()
    assert be.probe() == [Switch(S.InitWait)]
    assert fe.backend_changed(S.InitWait) == [Connect()]
    assert fe.published() == [Switch(S.Initialised)]
    assert be.frontend_changed(S.Initialised, online=True) == [Connect()]
    assert be.connect_done() == [Switch(S.Connected)]
    assert fe.backend_changed(S.Connected) == [Switch(S.Connected)]
    assert be.frontend_changed(S.Connected, online=True) == []
    return be, fe


def test_negotiation():
    be, fe = connected_pair()
    assert (be.state, fe.state) == (S.Connected, S.Connected)


def test_hot_unplug_through_closing_and_closed():
    be, fe = connected_pair()
    assert be.toolstack_close(fe.state) == []            # wait for the frontend
    assert fe.backend_changed(S.Closing) == [Disconnect(), Switch(S.Closed)]
    assert be.frontend_changed(S.Closed, online=False) == \
        [Disconnect(), Switch(S.Closed), Unregister()]


def test_unplug_of_a_device_no_frontend_drives():
    be = BackendXenbus()
    be.probe()
    assert be.toolstack_close(S.Initialising) == [Switch(S.Closed), Unregister()]


def test_frontend_closes_and_reconnects_while_online():
    be, fe = connected_pair()
    assert be.frontend_changed(S.Closing, online=True) == [Switch(S.Closing)]
    assert be.frontend_changed(S.Closed, online=True) == [Disconnect(), Switch(S.Closed)]
    assert be.frontend_changed(S.Initialising, online=True) == [Switch(S.InitWait)]
    assert be.frontend_changed(S.Connected, online=True) == [Connect()]


def test_frontend_vanishing_unregisters():
    be, _ = connected_pair()
    assert be.frontend_changed(S.Unknown, online=True)[-1] == Unregister()


def test_protocol_error_moves_to_closing():
    be, fe = connected_pair()
    assert be.fail() == [Disconnect(), Switch(S.Closing)]
    assert fe.backend_changed(S.Closing) == [Disconnect(), Switch(S.Closed)]
    assert be.frontend_changed(S.Reconfiguring, online=True)[0] == \
        Fatal("saw state 7 at frontend")
