"""Network backend ring processing (Linux xen-netback's semantics), sans-I/O.

Tx: a packet is a first request whose `size` is the whole packet, then
NETTXF_more_data-chained fragments; the first slot's own data length is
its size minus the fragments'. Every slot gets a response with its id;
an extra_info slot gets NETIF_RSP_NULL. Bad sizes and bad grants drop
that packet (NETIF_RSP_ERROR); a slot crossing its page, an overlong or
unfinished chain are protocol errors (RingProtocolError: the device is
closed, as xenvif_fatal_tx_err disables it).
Rx, copy mode: queued frames are copied into the pages the frontend
posted, one page per slot, NETRXF_more_data between slots of a frame.
"""
import collections
import logging

from xen_core.abi import netif
from xen_core.abi.netif import (NETIF_RSP_ERROR, NETIF_RSP_NULL,
                                NETIF_RSP_OKAY, NETRXF_more_data,
                                NETTXF_extra_info, NETTXF_more_data)

from .csum import complete_checksum
from .grants import PAGE_SIZE, GrantAccess, GrantError, copy_from_many, copy_to_many
from .ring import BackRing, RingProtocolError

log = logging.getLogger("xen-backendd.vif")

RX_QUEUE_MAX = 256


class NetBackend:
    def __init__(self, tx: BackRing, rx: BackRing, grants: GrantAccess,
                 deliver, sg: bool = True, name: str = "vif"):
        self.tx = tx
        self.rx = rx
        self.grants = grants
        self.deliver = deliver          # called with each frame the guest sends
        self.sg = sg                    # the frontend's feature-sg
        self.name = name
        self.rx_queue = collections.deque()
        self.stats = {"tx_packets": 0, "tx_errors": 0, "rx_packets": 0, "rx_dropped": 0}

    # --- tx: guest -> world ----------------------------------------------

    def process_tx(self, budget: int = 64) -> tuple[bool, bool]:
        notify = False
        done = 0
        while True:
            batch = []
            while done < budget and self.tx.unconsumed_requests():
                batch.append(self._tx_parse())
                done += 1
            self._tx_finish(batch)
            notify |= self.tx.push_responses_and_check_notify()
            if done >= budget:
                return notify, self.tx.unconsumed_requests() > 0
            if not self.tx.final_check_for_requests():
                return notify, False

    def _tx_parse(self):
        """Consume one packet's slots; (first request, responses, copy
        segments or the reason it is dropped)."""
        avail = self.tx.unconsumed_requests()
        first = netif.TX_REQUEST.unpack(self.tx.get_request()[:netif.TX_REQUEST.size])
        slots = [first]
        responses = [(first[3], None)]
        avail -= 1
        if first[2] & NETTXF_extra_info:
            while True:
                if not avail:
                    raise RingProtocolError("extra info slot missing")
                typ, flags = netif.EXTRA_INFO.unpack(self.tx.get_request()[:8])
                avail -= 1
                responses.append((0, NETIF_RSP_NULL))
                if not flags & netif.XEN_NETIF_EXTRA_FLAG_MORE:
                    break
        flags = first[2]
        while flags & NETTXF_more_data:
            if not avail:
                raise RingProtocolError(f"asked for {len(slots) + 1} slots but the ring "
                                        f"holds only {len(slots)}")
            if len(slots) >= netif.XEN_NETIF_NR_SLOTS_MIN + 2:
                raise RingProtocolError(f"too many slots ({len(slots) + 1}) in one packet")
            req = netif.TX_REQUEST.unpack(self.tx.get_request()[:netif.TX_REQUEST.size])
            avail -= 1
            slots.append(req)
            responses.append((req[3], None))
            flags = req[2]
        for gref, offset, _, _, size in slots:
            if offset + size > PAGE_SIZE:
                raise RingProtocolError(f"cross page boundary, offset {offset}, size {size}")
        try:
            segs = self._segments(slots)
        except ValueError as e:
            segs = str(e)
        return first, responses, segs

    def _tx_finish(self, batch) -> None:
        """Copy every good packet of the batch in one grant-copy call (one
        by one again if a grant is bad, to fail only its packet), answer
        every slot, hand the frames on."""
        good = [segs for _, _, segs in batch if not isinstance(segs, str)]
        try:
            flat = copy_from_many(self.grants, [s for segs in good for s in segs])
        except GrantError:
            flat = None
        pos = 0
        for first, responses, segs in batch:
            frame, status = None, NETIF_RSP_OKAY
            if isinstance(segs, str):
                log.warning("%s: tx packet dropped: %s", self.name, segs)
                status = NETIF_RSP_ERROR
            elif flat is not None:
                frame = b"".join(flat[pos:pos + len(segs)])
                pos += len(segs)
            else:
                try:
                    frame = b"".join(copy_from_many(self.grants, segs))
                except GrantError as e:
                    log.warning("%s: tx packet dropped: %s", self.name, e)
                    status = NETIF_RSP_ERROR
            if status != NETIF_RSP_OKAY:
                self.stats["tx_errors"] += 1
            for rid, st in responses:
                self.tx.put_response(netif.TX_RESPONSE.pack(rid, status if st is None else st))
            if status != NETIF_RSP_OKAY:
                continue
            if first[2] & netif.NETTXF_csum_blank:
                try:
                    frame = complete_checksum(frame)
                except ValueError as e:
                    # netback answers OKAY and drops it (checksum_setup failed)
                    log.debug("%s: tx packet dropped: %s", self.name, e)
                    self.stats["tx_errors"] += 1
                    continue
            self.stats["tx_packets"] += 1
            self.deliver(frame)

    def _segments(self, slots) -> list:
        total = slots[0][4]
        rest = sum(s[4] for s in slots[1:])
        if total < netif.ETH_HLEN:
            raise ValueError(f"bad packet size {total}")
        if len(slots) > netif.XEN_NETIF_NR_SLOTS_MIN:
            raise ValueError(f"packet of {len(slots)} slots")
        if rest > total:
            raise ValueError("packet is bigger than frame")
        sizes = [total - rest] + [s[4] for s in slots[1:]]
        return [(s[0], s[1], n) for s, n in zip(slots, sizes)]

    # --- rx: world -> guest ----------------------------------------------

    def receive(self, frame: bytes) -> None:
        """Queue a frame for the guest (from the switch or the TAP)."""
        if len(self.rx_queue) >= RX_QUEUE_MAX or (len(frame) > PAGE_SIZE and not self.sg):
            self.stats["rx_dropped"] += 1
            return
        self.rx_queue.append(frame)

    def process_rx(self) -> bool:
        """Copy queued frames into posted rx buffers (one grant-copy call
        for all of them; one by one if a buffer's grant is bad); returns
        notify. A frame waits until the frontend has posted enough buffers;
        the frontend is then asked to kick us when it posts the next one
        (xenvif_rx_ring_slots_available), so the wait ends without polling."""
        plan = []                       # (rid, gref, chunk, flags)
        while self.rx_queue:
            frame = self.rx_queue[0]
            need = max(1, (len(frame) + PAGE_SIZE - 1) // PAGE_SIZE)
            if not self.rx.requests_available(need):
                break
            self.rx_queue.popleft()
            for i in range(need):
                rid, gref = netif.RX_REQUEST.unpack(self.rx.get_request()[:8])
                plan.append((rid, gref, frame[i * PAGE_SIZE:(i + 1) * PAGE_SIZE],
                             NETRXF_more_data if i + 1 < need else 0))
            self.stats["rx_packets"] += 1
        if not plan:
            return False
        try:
            copy_to_many(self.grants, [(gref, 0, chunk) for _, gref, chunk, _ in plan])
            failed = set()
        except GrantError:
            failed = set()
            for n, (rid, gref, chunk, _) in enumerate(plan):
                try:
                    self.grants.copy_to(gref, 0, chunk)
                except GrantError as e:
                    log.warning("%s: rx buffer %d: %s", self.name, rid, e)
                    failed.add(n)
        for n, (rid, _, chunk, flags) in enumerate(plan):
            status = NETIF_RSP_ERROR if n in failed else len(chunk)
            self.rx.put_response(netif.RX_RESPONSE.pack(rid, 0, flags, status))
        return self.rx.push_responses_and_check_notify()
