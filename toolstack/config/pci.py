"""PCI passthrough specifications (`pci = [ ... ]`), per xl-pci-configuration(5).

`[[DDDD:]BB:]DD.F[@VSLOT][,key=value...]` as libxlutil's BDF parser reads
it; F may be `*` for all functions.  Parsed and validated; passing devices
through is not implemented yet.
"""
from __future__ import annotations

import re

from .errors import ConfigError
from .model import DevicePci

PCI_FUNC_ALL = (1 << 32) - 1          # LIBXL_PCI_FUNC_ALL (~0U)
_BDF = re.compile(r"(?:(?:(?P<dom>[0-9a-fA-F]+):)?(?P<bus>[0-9a-fA-F]+):)?"
                  r"(?P<dev>[0-9a-fA-F]+)\.(?P<func>[0-7]|\*)"
                  r"(?:@(?P<vslot>[0-9a-fA-F]+))?\Z")
_BOOL_OPTS = ("msitranslate", "power_mgmt", "permissive", "seize")


def _atoi(text):
    m = re.match(r"[ \t]*([+-]?[0-9]+)", text)
    return int(m.group(1)) if m else 0


def parse_pci(spec: str, source=None, defaults=None) -> DevicePci:
    pci = DevicePci(**(defaults or {}))
    bdf, *opts = spec.split(",")
    m = _BDF.match(bdf)
    bad = ConfigError(f"unable to parse PCI_SPEC_STRING `{spec}' for passthrough",
                      source)
    if not m:
        raise bad
    dom = int(m["dom"], 16) if m["dom"] else 0
    bus = int(m["bus"], 16) if m["bus"] else 0
    dev = int(m["dev"], 16)
    vslot = int(m["vslot"], 16) if m["vslot"] else 0
    if dom > 0xffff or bus > 0xff or dev > 0xff or vslot > 0xff:
        raise bad
    pci.domain, pci.bus, pci.dev, pci.vdevfn = dom, bus, dev, vslot << 3
    if m["func"] == "*":
        pci.vfunc_mask = PCI_FUNC_ALL
    else:
        pci.func = int(m["func"], 16)
        pci.vfunc_mask = 1
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq:
            raise bad
        if key in _BOOL_OPTS:
            setattr(pci, key, bool(_atoi(value)))
        elif key == "rdm_policy":
            if value not in ("strict", "relaxed"):
                raise ConfigError(f"{value} is not an valid PCI RDM property "
                                  "policy: 'strict' or 'relaxed'.", source)
            pci.rdm_policy = value
        else:
            raise ConfigError(f"Unknown PCI BDF option: {key} in `{spec}'", source)
    return pci
