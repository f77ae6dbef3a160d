"""vbd and vif devices of a domain in xenstore, as libxl writes them
(libxl__device_disk_add, libxl__device_nic_add, libxl__device_generic_add)
and removes them (libxl__initiate_device_generic_remove). xen-backendd
serves what appears under /local/domain/0/backend.

Directories and permissions: the backend directory is dom0's, readable by
the guest; the frontend directory is the guest's, readable by dom0 (the
backend domain).
"""
from __future__ import annotations

import os
import time

from .config.model import DeviceDisk, DeviceNic
from .config.vif import random_mac
from .devicemodel.cmdline import disk_dev_number

XenbusStateInitialising, XenbusStateInitWait, XenbusStateConnected = 1, 2, 4
XenbusStateClosing, XenbusStateClosed = 5, 6
LIBXL_DESTROY_TIMEOUT = 10          # seconds libxl waits for a backend to close
DEFAULT_BRIDGE = "xenbr0"


class DeviceError(Exception):
    pass


def _paths(domid: int, kind: str, devid: int, backend_domid: int = 0):
    return (f"/local/domain/{backend_domid}/backend/{kind}/{domid}/{devid}",
            f"/local/domain/{domid}/device/{kind}/{devid}")


def _generic_add(xs, domid: int, kind: str, devid: int, back: dict, front: dict) -> None:
    bpath, fpath = _paths(domid, kind, devid)

    def tx():
        if xs.read(f"{fpath}/backend") is not None:
            raise DeviceError(f"{kind} {devid} of domain {domid} already exists")
        xs.mknod(fpath, [f"n{domid}", "r0"])
        xs.mknod(bpath, ["n0", f"r{domid}"])
        for k, v in {**front, "backend": bpath, "backend-id": 0,
                     "state": XenbusStateInitialising}.items():
            xs.write(f"{fpath}/{k}", str(v))
        for k, v in {**back, "frontend": fpath, "frontend-id": domid, "online": 1,
                     "state": XenbusStateInitialising}.items():
            xs.write(f"{bpath}/{k}", str(v))
        xs.write(f"/libxl/{domid}/device/{kind}/{devid}/frontend", fpath)
        xs.write(f"/libxl/{domid}/device/{kind}/{devid}/backend", bpath)
    xs.transaction(tx)


def disk_devid(vdev: str) -> int:
    if vdev.isdigit():
        return int(vdev)
    n = disk_dev_number(vdev)
    if n is None:
        raise DeviceError(f"invalid or unsupported virtual disk identifier {vdev}")
    return n[0]


def disk_add(xs, domid: int, disk: DeviceDisk) -> int:
    devid = disk_devid(disk.vdev)
    fmt = disk.format or "raw"
    if fmt != "empty" and not os.path.exists(disk.pdev_path):
        # libxl__device_disk_set_backend's stat of the target
        raise DeviceError(f"Disk vdev={disk.vdev} failed to stat: {disk.pdev_path}: "
                          "No such file or directory")
    if fmt == "empty":
        params, btype = "", "phy"
    elif fmt == "raw":
        params, btype = disk.pdev_path, "phy"
    else:               # libxl's qdisk form: "<format>:<path>"
        params, btype = f"{fmt}:{disk.pdev_path}", "qdisk"
    device_type = "cdrom" if disk.is_cdrom else "disk"
    back = {"params": params, "type": btype, "mode": "w" if disk.readwrite else "r",
            "removable": disk.removable, "bootable": 1, "dev": disk.vdev,
            "device-type": device_type,
            "discard-enable": int(disk.discard_enable is not False)}
    front = {"virtual-device": devid, "device-type": device_type}
    _generic_add(xs, domid, "vbd", devid, back, front)
    return devid


def _next_devid(xs, domid: int, kind: str) -> int:
    ids = [int(d) for d in xs.ls(f"/local/domain/{domid}/device/{kind}") if d.isdigit()]
    return max(ids) + 1 if ids else 0


def nic_add(xs, domid: int, nic: DeviceNic) -> int:
    devid = nic.devid if nic.devid >= 0 else _next_devid(xs, domid, "vif")
    mac = nic.mac or random_mac()
    back = {"script": nic.script or "vif-bridge", "mac": mac,
            "bridge": nic.bridge or DEFAULT_BRIDGE, "handle": devid, "type": "vif"}
    if nic.mtu:
        back["mtu"] = nic.mtu
    front = {"handle": devid, "mac": mac}
    _generic_add(xs, domid, "vif", devid, back, front)
    return devid


def add_all(xs, domid: int, d_config) -> None:
    """xl create: every disk, then every vif (libxl's domcreate order)."""
    for disk in d_config.disks:
        disk_add(xs, domid, disk)
    for i, nic in enumerate(d_config.nics):
        if nic.devid < 0:
            nic.devid = i
        nic_add(xs, domid, nic)


def remove(xs, domid: int, kind: str, devid: int, force: bool = False,
           timeout: float = LIBXL_DESTROY_TIMEOUT) -> bool:
    """Hot-unplug: online=0, state=Closing; wait for the backend to reach
    Closed (a guest that never answers is waited for `timeout` seconds,
    libxl's destroy timeout), then remove both directories. True if the
    backend closed cleanly."""
    bpath, fpath = _paths(domid, kind, devid)
    if xs.read(f"{bpath}/state") is None:
        raise DeviceError(f"no {kind} {devid} in domain {domid}")

    def tx():
        xs.write(f"{bpath}/online", "0")
        state = xs.read(f"{bpath}/state")
        if state not in (str(XenbusStateClosed), str(XenbusStateInitialising)):
            xs.write(f"{bpath}/state", str(XenbusStateClosing))
    xs.transaction(tx)
    clean = True
    if not force:
        deadline = time.monotonic() + timeout
        while xs.read(f"{bpath}/state") not in (str(XenbusStateClosed), None):
            if time.monotonic() > deadline:
                clean = False
                break
            time.sleep(0.02)
    for path in (fpath, bpath, f"/libxl/{domid}/device/{kind}/{devid}"):
        xs.rm(path)
    return clean


def find_devid(xs, domid: int, kind: str, ident: str) -> int:
    """A device by number, by vdev name (vbd) or by MAC (vif)."""
    if ident.isdigit():
        return int(ident)
    if kind == "vbd":
        return disk_devid(ident)
    for d in xs.ls(f"/local/domain/{domid}/device/vif"):
        if (xs.read(f"/local/domain/{domid}/device/vif/{d}/mac") or "").lower() == ident.lower():
            return int(d)
    raise DeviceError(f"no vif with MAC {ident} in domain {domid}")


def _int(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1


def list_devices(xs, domid: int, kind: str) -> list[dict]:
    rows = []
    base = f"/local/domain/{domid}/device/{kind}"
    for d in sorted(xs.ls(base), key=lambda s: int(s) if s.isdigit() else -1):
        if not d.isdigit():
            continue
        f = f"{base}/{d}"
        backend = xs.read(f"{f}/backend") or ""
        rows.append({
            "devid": int(d), "backend_id": _int(xs.read(f"{f}/backend-id")),
            "frontend_id": domid, "state": _int(xs.read(f"{f}/state")),
            "evtch": _int(xs.read(f"{f}/event-channel")),
            "rref": _int(xs.read(f"{f}/ring-ref")),
            "rref_tx": _int(xs.read(f"{f}/tx-ring-ref")),
            "rref_rx": _int(xs.read(f"{f}/rx-ring-ref")),
            "mac": xs.read(f"{f}/mac") or "", "backend": backend})
    return rows
