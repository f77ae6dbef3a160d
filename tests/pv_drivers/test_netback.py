"""netback over real tx/rx rings with a frontend double: more_data chains,
extra_info slots, rx copy, and the errors that drop a packet versus those
that close the device."""
import os

import pytest

from pv_drivers.netback import NetBackend
from pv_drivers.ring import BackRing, RingProtocolError, SharedRing
from xen_core.abi import netif
from xen_core.abi.netif import (NETIF_RSP_ERROR, NETIF_RSP_NULL, NETIF_RSP_OKAY,
                                NETRXF_more_data, NETTXF_extra_info, NETTXF_more_data)

from .doubles import PageGrants, new_front, tx_request


def make(sg=True):
    txbuf, txf = new_front(netif.TX_ENTRY_SIZE)
    rxbuf, rxf = new_front(netif.RX_ENTRY_SIZE)
    grants = PageGrants()
    sent = []
    back = NetBackend(BackRing(SharedRing(txbuf, netif.TX_ENTRY_SIZE)),
                      BackRing(SharedRing(rxbuf, netif.RX_ENTRY_SIZE)), grants, sent.append, sg=sg)
    return txf, rxf, grants, back, sent


def tx_responses(front):
    out = []
    while front.unconsumed_responses():
        out.append(netif.TX_RESPONSE.unpack(front.get_response()[:4]))
    return out


def test_tx_chain_with_extra_info():
    txf, _, grants, back, sent = make()
    frame = os.urandom(3000)
    p1 = bytearray(4096)
    p1[100:100 + 1000] = frame[:1000]
    p2 = bytearray(4096)
    p2[:2000] = frame[1000:]
    g1, g2 = grants.grant(p1, readonly=True), grants.grant(p2, readonly=True)
    txf.put_request(tx_request(g1, 100, NETTXF_more_data | NETTXF_extra_info, 5, 3000))
    txf.put_request(netif.EXTRA_INFO.pack(netif.XEN_NETIF_EXTRA_TYPE_GSO, 0) + bytes(4))
    txf.put_request(tx_request(g2, 0, 0, 6, 2000))
    assert txf.push_requests_and_check_notify()
    notify, more = back.process_tx()
    assert notify and not more
    assert sent == [frame]
    assert tx_responses(txf) == [(5, NETIF_RSP_OKAY), (0, NETIF_RSP_NULL), (6, NETIF_RSP_OKAY)]


def test_tx_bad_packets_dropped_alone():
    txf, _, grants, back, sent = make()
    g = grants.grant(bytearray(b"\x01" * 4096), readonly=True)
    txf.put_request(tx_request(g, 0, 0, 1, 10))          # shorter than an Ethernet header
    txf.put_request(tx_request(777, 0, 0, 2, 60))        # not granted
    txf.put_request(tx_request(g, 0, NETTXF_more_data, 3, 60))
    txf.put_request(tx_request(g, 0, 0, 4, 100))         # fragment bigger than the packet
    txf.put_request(tx_request(g, 0, 0, 5, 60))          # good
    txf.push_requests_and_check_notify()
    back.process_tx()
    assert tx_responses(txf) == [(1, NETIF_RSP_ERROR), (2, NETIF_RSP_ERROR),
                                 (3, NETIF_RSP_ERROR), (4, NETIF_RSP_ERROR),
                                 (5, NETIF_RSP_OKAY)]
    assert sent == [b"\x01" * 60]


@pytest.mark.parametrize("case", ["cross-page", "unfinished-chain", "long-chain", "bogus-index"])
def test_tx_protocol_errors(case):
    txf, _, grants, back, _ = make()
    g = grants.grant(readonly=True)
    if case == "cross-page":
        txf.put_request(tx_request(g, 4000, 0, 1, 200))
    elif case == "unfinished-chain":
        txf.put_request(tx_request(g, 0, NETTXF_more_data, 1, 200))
    elif case == "long-chain":
        for i in range(30):
            txf.put_request(tx_request(g, 0, NETTXF_more_data, i, 60))
    else:
        txf.sring.req_prod = 100000
    if case != "bogus-index":
        txf.push_requests_and_check_notify()
    with pytest.raises(RingProtocolError):
        back.process_tx()


def post_rx(rxf, grants, n):
    refs = []
    for i in range(n):
        ref = grants.grant()
        refs.append(ref)
        rxf.put_request(netif.RX_REQUEST.pack(i, ref))
    rxf.push_requests_and_check_notify()
    return refs


def rx_responses(front):
    out = []
    while front.unconsumed_responses():
        out.append(netif.RX_RESPONSE.unpack(front.get_response()[:8]))
    return out


def test_rx_copy_waits_for_buffers_and_splits_big_frames():
    _, rxf, grants, back, _ = make()
    small, big = os.urandom(60), os.urandom(9000)
    back.receive(small)
    back.receive(big)
    assert not back.process_rx()                  # no buffers posted yet
    refs = post_rx(rxf, grants, 2)
    assert back.process_rx()
    assert rx_responses(rxf) == [(0, 0, 0, 60)]   # big waits for 3 buffers
    assert bytes(grants.pages[refs[0]][:60]) == small
    refs = post_rx(rxf, grants, 3)                # 1 left + 3 new
    back.process_rx()
    got = rx_responses(rxf)
    assert [(r[2], r[3]) for r in got] == [(NETRXF_more_data, 4096), (NETRXF_more_data, 4096),
                                           (0, 808)]
    pages = [grants.pages[r] for r in [refs[0] - 1] + refs[:2]]
    assert bytes(pages[0][:4096]) + bytes(pages[1][:4096]) + bytes(pages[2][:808]) == big


def test_rx_waiting_for_buffers_asks_for_a_kick():
    """A frame that finds no buffer sets req_event so that the frontend's
    next posted buffer notifies (xenvif_rx_ring_slots_available); while
    buffers are there, the frontend posts without notifying."""
    _, rxf, grants, back, _ = make()
    post_rx(rxf, grants, 1)
    assert back.process_rx() is False                     # nothing queued yet
    back.receive(os.urandom(60))
    back.receive(os.urandom(60))
    back.process_rx()                                     # one buffer, two frames
    assert rxf.sring.req_event == rxf.sring.req_prod + 1
    rxf.put_request(netif.RX_REQUEST.pack(0, grants.grant()))
    assert rxf.push_requests_and_check_notify()            # the kick we asked for
    back.process_rx()
    assert rx_responses(rxf) == [(0, 0, 0, 60), (0, 0, 0, 60)]
    # Buffers to spare: posting more needs no kick.
    post_rx(rxf, grants, 4)
    back.receive(os.urandom(60))
    back.process_rx()
    rxf.put_request(netif.RX_REQUEST.pack(9, grants.grant()))
    assert not rxf.push_requests_and_check_notify()


def test_rx_without_sg_drops_big_frames_and_bad_buffers_error():
    _, rxf, grants, back, _ = make(sg=False)
    back.receive(os.urandom(5000))
    assert back.stats["rx_dropped"] == 1
    rxf.put_request(netif.RX_REQUEST.pack(9, 4242))   # not granted
    rxf.push_requests_and_check_notify()
    back.receive(b"y" * 60)
    back.process_rx()
    assert rx_responses(rxf) == [(9, 0, 0, NETIF_RSP_ERROR)]
