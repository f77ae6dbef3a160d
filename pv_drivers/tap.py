"""A TAP device `vif<domid>.<devid>` enslaved to a Linux bridge, as Xen's
vif-bridge hotplug script does it (the bridge is created if absent).
Needs CAP_NET_ADMIN and /dev/net/tun; `TapError` says why not, and the
caller falls back to the built-in switch."""
import fcntl
import os
import struct
import subprocess

TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
IFNAMSIZ = 16


class TapError(Exception):
    pass


def _ip(*args) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode:
        raise TapError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def open_tap(name: str, bridge: str, mac: str | None = None) -> int:
    if len(name) >= IFNAMSIZ:
        raise TapError(f"interface name {name} too long")
    try:
        fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        raise TapError(f"/dev/net/tun: {e.strerror}") from None
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI))
        # `ip link show`, not /sys: sysfs may belong to another netns.
        if subprocess.run(["ip", "link", "show", "dev", bridge],
                          capture_output=True).returncode:
            _ip("link", "add", "name", bridge, "type", "bridge")
        _ip("link", "set", bridge, "up")
        # vif-bridge gives the dom0 side fe:ff:ff:ff:ff:ff so the bridge
        # never takes the guest's own address.
        _ip("link", "set", "dev", name, "address", "fe:ff:ff:ff:ff:ff")
        _ip("link", "set", "dev", name, "master", bridge)
        _ip("link", "set", "dev", name, "up")
    except (OSError, TapError) as e:
        os.close(fd)
        raise TapError(f"{name} on {bridge}: {e}") from None
    return fd
