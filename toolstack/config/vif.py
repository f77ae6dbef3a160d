"""Network interface specifications, per xl-network-configuration(5).

`parse_nic()` follows xl's parse_nic_config (comma-separated `key=value`
tokens) and libxlutil's xlu_vif_parse_rate; `random_mac()` is libxl's
choice when no mac is given (00:16:3e, the Xen OUI, with random low bits),
applied by the builder, not at parse time, just as `xl -N` leaves it unset.
"""
from __future__ import annotations

import os
import re

from .errors import ConfigError
from .model import DeviceNic

UINT32_MAX = (1 << 32) - 1
_RATE_RE = re.compile(r"[0-9]+[GMK]?[Bb]/s\Z")
_INTERVAL_RE = re.compile(r"[0-9]+[mu]?s?\Z")
_MAC_RE = re.compile(r"[0-9a-fA-F]{1,2}(?::[0-9a-fA-F]{1,2}){5}\Z")

_STRING_KEYS = {"bridge": "bridge", "gatewaydev": "gatewaydev", "ip": "ip",
                "script": "script", "backend": "backend_domname",
                "vifname": "ifname", "model": "model"}


def _vif_err(source, msg, text):
    return ConfigError(f"config parsing error in vif: {msg} in `{text}'", source)


def _strtoull0(text):
    """C strtoull(text, &rest, 0) on a string of digits: a leading 0 means
    octal, and parsing stops at the first digit that is not octal."""
    m = re.match(r"0[0-7]*|[1-9][0-9]*", text)
    digits = m.group()
    value = int(digits, 8) if digits[0] == "0" else int(digits)
    return value, text[m.end():]


def parse_rate(rate: str, source="command line"):
    """`N{B,b,KB,Kb,MB,Mb,GB,Gb}/s[@interval]` -> (bytes per interval, interval µs)."""
    amount, _, interval = rate.partition("@")
    if amount == "":
        raise _vif_err(source, "no rate specified", rate)
    if not _RATE_RE.match(amount):
        raise _vif_err(source, "invalid rate", amount)
    # The rest pointer is where strtoull stopped, as in libxlu_vif.c.
    bytes_per_sec, rest = _strtoull0(amount)
    if bytes_per_sec == 0 or bytes_per_sec > UINT32_MAX:
        raise _vif_err(source, "rate overflow", amount)
    bytes_per_sec *= {"G": 10**9, "M": 10**6, "K": 10**3}.get(rest[0], 1)
    if rest[0] == "b" or rest[1] == "b":
        bytes_per_sec //= 8
    interval_usecs = 50000          # libxlutil's default replenishment: 50 ms
    if "@" in rate:
        if not _INTERVAL_RE.match(interval):
            raise _vif_err(source, "invalid replenishment interval", interval)
        usecs, unit = _strtoull0(interval)
        if usecs == 0 or usecs > UINT32_MAX:
            raise _vif_err(source, "replenishment interval overflow", interval)
        if unit[:1] in ("s", ""):
            usecs *= 10**6
        elif unit[0] == "m":
            usecs *= 10**3
        if usecs > UINT32_MAX:
            raise _vif_err(source, "replenishment interval overflow", interval)
        interval_usecs = usecs
    if bytes_per_sec > ((1 << 64) - 1) // interval_usecs:
        raise _vif_err(source, "rate overflow", rate)
    return bytes_per_sec * interval_usecs // 10**6, interval_usecs


def parse_mac(text: str, source="command line") -> str:
    """Six hex octets separated by colons, normalised to libxl's form."""
    if not _MAC_RE.match(text):
        raise ConfigError(f"invalid mac address `{text}' in vif specification",
                          source)
    return ":".join("%02x" % int(p, 16) for p in text.split(":"))


def random_mac(rand=os.urandom) -> str:
    """00:16:3e:xx:xx:xx as libxl__device_nic_setdefault picks it."""
    r = rand(3)
    return "00:16:3e:%02x:%02x:%02x" % (r[0] & 0x7f, r[1], r[2])


def _parse_ulong(text, key, source):
    if not re.match(r"[0-9]+\Z", text) or int(text) > (1 << 64) - 2:
        raise ConfigError(f"vif: failed to convert \"{text}\" to number "
                          f"for `{key}'", source)
    return int(text)


def parse_nic(spec: str, devid: int, source="command line") -> DeviceNic:
    nic = DeviceNic(devid=devid)
    # strtok(buf, ","): empty tokens vanish; leading blanks are skipped.
    for token in (t.lstrip(" ") for t in spec.split(",")):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not eq:
            raise ConfigError(f"unrecognized argument `{token}' in vif "
                              f"specification `{spec}'", source)
        if key == "type":
            if value == "vif":
                nic.nictype = "vif"
            elif value == "ioemu":
                nic.nictype = "vif_ioemu"
            else:
                raise ConfigError(f"Invalid parameter `type' in vif "
                                  f"specification `{spec}'", source)
        elif key == "mac":
            nic.mac = parse_mac(value, source)
        elif key in _STRING_KEYS:
            setattr(nic, _STRING_KEYS[key], value)
        elif key == "netdev":       # deprecated spelling of gatewaydev
            nic.gatewaydev = value
        elif key == "rate":
            nic.rate_bytes_per_interval, nic.rate_interval_usecs = \
                parse_rate(value, source)
        elif key == "accel":
            pass                    # xl: "currently not supported", ignored
        elif key == "devid":
            nic.devid = _parse_ulong(value, key, source)
        elif key == "mtu":
            nic.mtu = _parse_ulong(value, key, source)
        else:
            raise ConfigError(f"unrecognized argument `{token}' in vif "
                              f"specification `{spec}'", source)
    return nic
