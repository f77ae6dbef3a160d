"""A learning Ethernet switch inside xen-backendd, named after the bridge.

Used when `bridge=NAME` cannot be a Linux bridge (no privilege): the vifs
naming the same bridge become ports of one switch, so guests reach each
other with no privileges at all. Source MACs are learnt per port;
broadcast, multicast and unknown destinations are flooded; a frame never
goes back out of the port it came in on.
"""
import threading

ETH_HLEN = 14


class Port:
    def __init__(self, switch: "Switch", name: str, deliver):
        self.switch = switch
        self.name = name
        self.deliver = deliver

    def transmit(self, frame: bytes) -> None:
        self.switch.forward(self, frame)


class Switch:
    def __init__(self, name: str):
        self.name = name
        self.ports: dict[str, Port] = {}
        self.fdb: dict[bytes, Port] = {}
        self.dropped = 0
        self.lock = threading.Lock()       # ports forward from their own threads

    def attach(self, name: str, deliver) -> Port:
        with self.lock:
            if name in self.ports:
                raise ValueError(f"{self.name}: port {name} already attached")
            port = self.ports[name] = Port(self, name, deliver)
            return port

    def detach(self, port: Port) -> None:
        with self.lock:
            self.ports.pop(port.name, None)
            for mac in [m for m, p in self.fdb.items() if p is port]:
                del self.fdb[mac]

    def forward(self, src: Port, frame: bytes) -> None:
        with self.lock:
            targets = self._targets(src, frame)
        for port in targets:
            port.deliver(frame)

    def _targets(self, src: Port, frame: bytes) -> list:
        if len(frame) < ETH_HLEN or src.name not in self.ports:
            self.dropped += 1
            return []
        dst, smac = frame[0:6], frame[6:12]
        if not smac[0] & 1:
            self.fdb[smac] = src
        out = None if dst[0] & 1 else self.fdb.get(dst)
        if out is not None:
            return [] if out is src else [out]
        return [p for p in self.ports.values() if p is not src]
