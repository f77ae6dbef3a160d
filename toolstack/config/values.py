"""Typed reads of settings, after libxlutil's xlu_cfg_get_* accessors.

Where libxlutil prints a warning and lets xl carry on with a default, we
raise a ConfigError naming the key and line instead: stricter, never silent.
"""
from __future__ import annotations

import re

from .errors import ConfigError
from .loader import LIST, OP_ADD, STRING, Config

LONG_MIN, LONG_MAX = -(1 << 63), (1 << 63) - 1
# strtol(s, &ep, 0) accepting the whole string: sign, 0x hex, 0 octal, decimal.
_STRTOL = re.compile(r"[ \t\n\v\f\r]*([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)\Z")


def _err(cfg: Config, setting, msg):
    return ConfigError(msg, cfg.source, setting.line, setting.column)


def strtol(text: str):
    """The value of text as C strtol(text, &ep, 0) with nothing left over, or None."""
    m = _STRTOL.match(text)
    if not m:
        return None
    digits = m.group(2)
    if digits[:2] in ("0x", "0X"):
        v = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        v = int(digits, 8)
    else:
        v = int(digits)
    return -v if m.group(1) == "-" else v


def get_string(cfg: Config, name: str):
    s = cfg.get(name)
    if s is None:
        return None
    if s.value.kind != STRING:
        raise _err(cfg, s, f"parameter `{name}' is a list but should be a single value")
    return s.value.data


def get_long(cfg: Config, name: str, lo=LONG_MIN, hi=LONG_MAX):
    s = cfg.get(name)
    if s is None:
        return None
    if s.value.kind != STRING:
        raise _err(cfg, s, f"parameter `{name}' is a list but should be a single value")
    if s.op == OP_ADD:
        raise _err(cfg, s, f"can't use += with numbers for parameter `{name}'")
    v = strtol(s.value.data)
    if v is None:
        raise _err(cfg, s, f"parameter `{name}' is not a valid number: "
                           f"\"{s.value.data}\"")
    if not LONG_MIN <= v <= LONG_MAX:
        raise _err(cfg, s, f"parameter `{name}' could not be parsed as a number: "
                           "Numerical result out of range")
    if v < lo:
        raise _err(cfg, s, f"parameter `{name}': value `{v}' is smaller than "
                           f"minimum bound '{lo}'")
    if v > hi:
        raise _err(cfg, s, f"parameter `{name}': value `{v}' is greater than "
                           f"maximum bound '{hi}'")
    return v


def get_defbool(cfg: Config, name: str):
    """A libxl_defbool: None (unset), True or False; any non-zero number is true."""
    v = get_long(cfg, name)
    return None if v is None else bool(v)


def is_list(cfg: Config, name: str) -> bool:
    s = cfg.get(name)
    return s is not None and s.value.kind == LIST


def get_list(cfg: Config, name: str):
    """The list's items as Values, or None when unset."""
    s = cfg.get(name)
    if s is None:
        return None
    if s.value.kind != LIST:
        raise _err(cfg, s, f"parameter `{name}' is a single value but should be a list")
    return list(s.value.data)


def get_string_list(cfg: Config, name: str):
    """A list whose items must all be strings (xlu_cfg_get_list_as_string_list)."""
    items = get_list(cfg, name)
    if items is None:
        return None
    for item in items:
        if item.kind != STRING:
            raise ConfigError(f"parameter `{name}': list item is not a string",
                              cfg.source, item.line, item.column)
    return [item.data for item in items]


