"""The vbd backend device: libxl's backend keys in, Linux blkback's keys
out, one BlkBackend per queue.

Backend keys read: `params` (the target; `fmt:path` as libxl writes it for
qdisk), `mode` (r/w), `type`, `device-type` (disk/cdrom), `format` if the
toolstack wrote one. Written: `sectors`, `sector-size`,
`physical-sector-size`, `info` (VDISK_*), `feature-flush-cache`,
`feature-barrier`, `feature-discard` (+ granularity/alignment),
`feature-persistent` (1: with a frontend that offers it too, each queue
keeps the grefs it sees mapped until disconnect; otherwise grant copy),
`feature-max-indirect-segments`, `max-ring-page-order`,
`multi-queue-max-queues`.
"""
from __future__ import annotations

from xen_core.abi import blkif
from xen_core.abi.ring import XENBUS_MAX_RING_GRANT_ORDER

from .blkback import BlkBackend, Features
from .grants import PersistentGrants
from .device import Device, DeviceError
from .image import ImageError, RawImage
from .nbd import NbdImage
from .ring import BackRing
from .transport import TransportError

MAX_QUEUES = 4
QEMU_FORMATS = ("qcow2", "qcow", "vhd", "vpc", "vmdk", "qed", "vdi")


def parse_params(params: str, fmt: str | None) -> tuple[str, str]:
    """-> (format, path). libxl's qdisk form is `qcow2:/path`; `aio:` and
    `raw:` prefixes mean raw."""
    head, sep, tail = params.partition(":")
    if sep and head in ("raw", "aio") + QEMU_FORMATS:
        return ("raw" if head == "aio" else head), tail
    return (fmt or "raw"), params


class VbdDevice(Device):
    kind = "vbd"

    def setup(self) -> None:
        params = self.xs.read(f"{self.bpath}/params")
        if not params:
            raise DeviceError(f"{self.bpath}/params missing")
        fmt, path = parse_params(params, self.xs.read(f"{self.bpath}/format"))
        self.cdrom = self.xs.read(f"{self.bpath}/device-type") == "cdrom"
        read_only = self.xs.read(f"{self.bpath}/mode") != "w" or self.cdrom
        try:
            if fmt == "raw":
                self.image = RawImage(path, read_only=read_only)
            elif fmt in QEMU_FORMATS:
                self.image = NbdImage(path, fmt, read_only=read_only)
            else:
                raise DeviceError(f"{self.bpath}: format {fmt!r} not supported")
        except ImageError as e:
            raise DeviceError(str(e)) from None
        writable = not read_only
        self.features = Features(flush=writable, barrier=writable,
                                 discard=writable and getattr(self.image, "can_discard", True))
        info = (blkif.VDISK_READONLY if read_only else 0) | \
            (blkif.VDISK_CDROM | blkif.VDISK_REMOVABLE if self.cdrom else 0)
        for key, value in [
                ("feature-max-indirect-segments", self.features.max_indirect_segments),
                ("feature-persistent", 1),
                ("max-ring-page-order", XENBUS_MAX_RING_GRANT_ORDER),
                ("multi-queue-max-queues", MAX_QUEUES),
                ("feature-flush-cache", int(self.features.flush)),
                ("feature-barrier", int(self.features.barrier)),
                ("feature-discard", int(self.features.discard)),
                ("discard-granularity", 4096), ("discard-alignment", 0),
                ("discard-secure", 0),
                ("sectors", self.image.sectors),
                ("sector-size", self.image.sector_size),
                ("physical-sector-size", self.image.physical_sector_size),
                ("info", info)]:
            self.bwrite(key, value)

    def _queue_keys(self, prefix: str, order: int) -> tuple[list[int], int]:
        if order == 0:
            refs = [self.fread_int(f"{prefix}ring-ref")]
        else:
            refs = [self.fread_int(f"{prefix}ring-ref{i}") for i in range(1 << order)]
        return refs, self.fread_int(f"{prefix}event-channel")

    def connect(self) -> None:
        protocol = self.fread("protocol", blkif.PROTOCOL_X86_64)
        if protocol != blkif.PROTOCOL_X86_64:
            raise DeviceError(f"unsupported protocol {protocol!r}")
        order = self.fread_int("ring-page-order", 0)
        if not 0 <= order <= XENBUS_MAX_RING_GRANT_ORDER:
            raise DeviceError(f"ring-page-order {order} above max-ring-page-order "
                              f"{XENBUS_MAX_RING_GRANT_ORDER}")
        nq = self.fread_int("multi-queue-num-queues", 1)
        if not 1 <= nq <= MAX_QUEUES:
            raise DeviceError(f"multi-queue-num-queues {nq} not in 1..{MAX_QUEUES}")
        # As blkback's connect_ring: persistent only if the frontend asks too.
        self.persistent = self.fread_int("feature-persistent", 0) != 0
        prefixes = [""] if nq == 1 else [f"queue-{i}/" for i in range(nq)]
        for i, prefix in enumerate(prefixes):
            refs, port = self._queue_keys(prefix, order)
            try:
                q = self.transport.open(self.domid, [refs], [port])
            except TransportError as e:
                raise DeviceError(f"queue {i}: {e}") from None
            self.queues.append(q)              # closed on failure from here on
            ring = BackRing(self.shared_ring(q.rings[0], blkif.ENTRY_SIZE))
            back = BlkBackend(ring, q, self.image, self.features, name=f"{self.name}q{i}",
                              persistent=PersistentGrants(q.map_grants) if self.persistent
                              else None)
            self.start_queue(q, back.process, f"q{i}")

    def teardown(self) -> None:
        image = getattr(self, "image", None)
        if image is not None:
            image.close()
            self.image = None
