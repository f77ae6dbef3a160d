"""The smaller device lists of xl.cfg(5): vfb, vkb, vtpm, p9, pvcalls,
channel and dtdev, as xl's parse_config_data reads them.

Each spec is comma-separated `key=value`.  Where xl skips an unknown key or
stops at a token without `=`, we refuse with a message instead.
"""
from __future__ import annotations

import re

from .errors import ConfigError
from .model import (ChannelPty, ChannelSocket, DeviceChannel, DeviceP9,
                    DevicePvcallsif, DeviceUsbctrl, DeviceUsbdev, DeviceVfb,
                    DeviceVkb, DeviceVtpm, UsbdevHostdev)

USBCTRL_TYPES = ("auto", "pv", "devicemodel", "qusb")      # libxl_usbctrl_type

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _tokens(spec):
    """strtok(spec, ",") with leading blanks skipped: empty tokens vanish."""
    return [t.lstrip(" ") for t in spec.split(",") if t.lstrip(" ")]


def _pairs(spec, what, source):
    for token in _tokens(spec):
        key, eq, value = token.partition("=")
        if not eq:
            raise ConfigError(f"{what}: `{token}' is not key=value in `{spec}'", source)
        yield key, value


def _atoi(text):
    m = re.match(r"[ \t\n\v\f\r]*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def _strtoul0(text):
    m = re.match(r"[ \t\n\v\f\r]*(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)", text)
    if not m:
        return 0
    d = m.group(1)
    return int(d, 16) if d[:2].lower() == "0x" else int(d, 8) if d[0] == "0" else int(d)


def parse_vfb(spec, devid, source=None) -> DeviceVfb:
    vfb = DeviceVfb(devid=devid)
    for key, value in _pairs(spec, "vfb", source):
        if key == "vnc":
            vfb.vnc.enable = bool(_atoi(value))
        elif key == "vnclisten":
            vfb.vnc.listen = value
        elif key == "vncpasswd":
            vfb.vnc.passwd = value
        elif key == "vncdisplay":
            vfb.vnc.display = _atoi(value)
        elif key == "vncunused":
            vfb.vnc.findunused = bool(_atoi(value))
        elif key == "keymap":
            vfb.keymap = value
        elif key == "sdl":
            vfb.sdl.enable = bool(_atoi(value))
        elif key == "opengl":
            vfb.sdl.opengl = bool(_atoi(value))
        elif key == "display":
            vfb.sdl.display = value
        elif key == "xauthority":
            vfb.sdl.xauthority = value
        else:
            raise ConfigError(f"vfb: unknown parameter `{key}' in `{spec}'", source)
    return vfb


_VKB_NUMBERS = {
    "feature-disable-keyboard": ("feature_disable_keyboard", bool),
    "feature-disable-pointer": ("feature_disable_pointer", bool),
    "feature-abs-pointer": ("feature_abs_pointer", bool),
    "feature-raw-pointer": ("feature_raw_pointer", bool),
    "feature-multi-touch": ("feature_multi_touch", bool),
    "multi-touch-width": ("multi_touch_width", int),
    "multi-touch-height": ("multi_touch_height", int),
    "multi-touch-num-contacts": ("multi_touch_num_contacts", int),
    "width": ("width", int), "height": ("height", int),
}


def parse_vkb(spec, devid, source=None) -> DeviceVkb:
    """xl's parse_vkb_config; XENKBD_FIELD_* names from io/kbdif.h."""
    vkb = DeviceVkb(devid=devid)
    for key, value in _pairs(spec, "vkb", source):
        if key == "backend":
            vkb.backend_domname = value
        elif key == "backend-type":
            if value.lower() not in ("qemu", "linux"):
                raise ConfigError(f"Unknown backend_type \"{value}\" in vkb spec", source)
            vkb.backend_type = value.lower()
        elif key == "unique-id":
            vkb.unique_id = value
        elif key in _VKB_NUMBERS:
            attr, kind = _VKB_NUMBERS[key]
            n = _strtoul0(value)
            setattr(vkb, attr, bool(n) if kind is bool else n & 0xffffffff)
        else:
            raise ConfigError(f"Unknown string \"{key}={value}\" in vkb spec", source)
    if vkb.backend_type == "unknown":
        raise ConfigError(f"backend-type should be set in vkb spec `{spec}'", source)
    if vkb.multi_touch_height or vkb.multi_touch_width or vkb.multi_touch_num_contacts:
        vkb.feature_multi_touch = True
    elif vkb.feature_multi_touch:
        raise ConfigError("multi-touch-width, multi-touch-height, "
                          "multi-touch-num-contacts should be set for multi touch "
                          "in vkb spec", source)
    return vkb


def parse_vtpm(spec, devid, source=None) -> DeviceVtpm:
    vtpm = DeviceVtpm(devid=devid)
    got_backend = False
    for key, value in _pairs(spec, "vtpm", source):
        if key == "backend":
            vtpm.backend_domname, got_backend = value, True
        elif key == "uuid":
            if not _UUID_RE.match(value):
                raise ConfigError(f"Failed to parse vtpm UUID: {value}", source)
            vtpm.uuid = value.lower()
        else:
            raise ConfigError(f"Unknown string `{key}' in vtpm spec", source)
    if not got_backend:
        raise ConfigError("vtpm spec missing required backend field!", source)
    return vtpm


def parse_p9(spec, source=None) -> DeviceP9:
    # xl re-initialises each p9 after numbering it, so devid stays unset.
    p9 = DeviceP9()
    for key, value in _pairs(spec, "p9", source):
        if key in ("security_model", "path", "tag"):
            setattr(p9, key, value)
        elif key == "backend":
            p9.backend_domname = value
        else:
            raise ConfigError(f"Unknown string `{key}' in 9pfs spec", source)
    if p9.path is None or p9.security_model is None or p9.tag is None:
        raise ConfigError("9pfs spec missing required field!", source)
    return p9


def parse_pvcalls(spec, devid, source=None) -> DevicePvcallsif:
    dev = DevicePvcallsif(devid=devid)
    for key, value in _pairs(spec, "pvcalls", source):
        if key != "backend":
            raise ConfigError(f"Unknown string `{key}' in pvcalls spec", source)
        dev.backend_domname = value
    return dev


def parse_channel(spec, devid, source=None, warn=None) -> DeviceChannel:
    chn = DeviceChannel(devid=devid)
    path = None
    for pair in (p for p in spec.split(",") if p):
        # split_string_into_pair(pair, "="): strtok semantics, then trimmed.
        parts = [p for p in pair.split("=") if p]
        if len(parts) < 2:
            raise ConfigError(f"failed to parse channel configuration: {pair}", source)
        key, value = parts[0].strip(), parts[1].strip()
        if key == "backend":
            chn.backend_domname = value
        elif key == "name":
            chn.name = value
        elif key == "path":
            path = value
        elif key == "connection":
            if value not in ("pty", "socket"):
                raise ConfigError(f"unknown channel connection '{value}'", source)
            chn.connection = value
        elif warn is not None:
            warn(f"unknown channel parameter '{key}', ignoring")
    if chn.connection == "unknown":
        raise ConfigError(f"channel has unknown 'connection' in `{spec}'", source)
    if chn.connection == "socket":
        if path is None:
            raise ConfigError("channel connection 'socket' requires path=..", source)
        chn.u = ChannelSocket(path=path)
    else:
        chn.u = ChannelPty()
    return chn


def parse_usbctrl(spec, devid, source=None) -> DeviceUsbctrl:
    ctrl = DeviceUsbctrl(devid=devid)
    for key, value in _pairs(spec, "usbctrl", source):
        if key == "type":
            if value.lower() not in USBCTRL_TYPES:
                raise ConfigError(f"Invalid usb controller type '{value}'", source)
            ctrl.type = value.lower()
        elif key == "version":
            ctrl.version = _atoi(value)
        elif key == "ports":
            ctrl.ports = _atoi(value)
        else:
            raise ConfigError(f"Unknown string `{key}={value}' in usbctrl spec", source)
    return ctrl


def parse_usbdev(spec, source=None) -> DeviceUsbdev:
    dev, host = DeviceUsbdev(), UsbdevHostdev()
    for key, value in _pairs(spec, "usbdev", source):
        if key == "type":
            if value.lower() != "hostdev":
                raise ConfigError(f"Invalid usb device type: {value}", source)
            dev.type = "hostdev"
        elif key in ("hostbus", "hostaddr"):
            setattr(host, key, _strtoul0(value) & 0xff)     # uint8_t fields
        elif key == "controller":
            dev.ctrl = _atoi(value)
        elif key == "port":
            dev.port = _atoi(value)
        else:
            raise ConfigError(f"Unknown string `{key}={value}' in usbdev spec", source)
    # The C union holds the host address whatever the type; libxl writes it
    # out only for type=hostdev.
    dev.u = host if dev.type == "hostdev" else None
    return dev
