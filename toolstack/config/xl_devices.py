"""Device lists in xl's parse_config_data: disks, NICs, PCI passthrough
and its ioports / irqs / iomem, and the smaller PV devices."""
from __future__ import annotations

import re

from . import devices as DEV
from . import values as V
from .disk import parse_disk
from .errors import ConfigError
from .loader import STRING
from .model import DeviceVkb, DomainConfig
from .pci import parse_pci
from .vif import parse_nic
from .xlctx import Ctx

UINT32_MAX = (1 << 32) - 1


def pcis(ctx: Ctx, d: DomainConfig):
    # Global defaults for every device (xl reads them as numbers).
    defaults = {}
    for key in ("msitranslate", "power_mgmt", "permissive", "seize"):
        v = ctx.long("pci_" + key)
        if v is not None:
            defaults[key] = bool(v & 0xffffffff)    # int, then C bool
    items = V.get_list(ctx.cfg, "pci")
    if items is None:
        return
    for item in items:
        if item.kind != STRING:
            break
        # xl copies b_info->u.hvm.rdm.policy into each device; for PV and
        # PVH that union member reads as zero, i.e. "strict".
        defaults["rdm_policy"] = (d.b_info.u.rdm.policy if d.b_info.type == "hvm"
                                  else "strict")
        d.pcidevs.append(parse_pci(item.data, ctx.cfg.source, dict(defaults)))
    if d.pcidevs and d.c_info.type == "pv":
        d.b_info.u.e820_host = True

def _hex_prefix(text):
    """C strtoul(text, &ep, 16): (value, rest) or None when no digits."""
    m = re.match(r"[ \t]*(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)", text)
    if not m:
        return None
    return int(m.group(1), 16), text[m.end():]

def passthrough_resources(ctx: Ctx, b):
    """ioports (hex ranges), irqs (decimal) and iomem (hex "start,n[@gfn]")."""
    from .model import IomemRange, IoportRange
    for item in V.get_string_list(ctx.cfg, "ioports") or ():
        bad = ctx.error("ioports", f"xl: Invalid argument parsing ioport: {item}")
        first = _hex_prefix(item)
        if first is None:
            raise bad
        start, rest = first
        end = start
        if rest.startswith("-"):
            second = _hex_prefix(rest[1:])
            if second is None or second[1]:
                raise bad
            end = second[0]
        elif rest:
            raise bad       # xl only warns here, then uses the start alone
        if start >= UINT32_MAX or end >= UINT32_MAX:
            raise ctx.error("ioports", f"xl: ioport {max(start, end):x} too big")
        if end < start:
            raise bad
        b.ioports.append(IoportRange(first=start, number=end - start + 1))
    for item in V.get_string_list(ctx.cfg, "irqs") or ():
        if not re.fullmatch(r"[0-9]+", item):
            raise ctx.error("irqs", f"xl: Invalid argument parsing irq: {item}")
        if int(item) >= UINT32_MAX:
            raise ctx.error("irqs", f"xl: irq {int(item):x} too big")
        b.irqs.append(int(item))
    hexnum = r"(?:0[xX])?[0-9a-fA-F]+"
    for item in V.get_string_list(ctx.cfg, "iomem") or ():
        m = re.fullmatch(rf"[ \t]*({hexnum}),[ \t]*({hexnum})(?:@[ \t]*({hexnum}))?", item)
        if not m:
            raise ctx.error("iomem", f"xl: Invalid argument parsing iomem: {item}")
        r = IomemRange(start=int(m[1], 16), number=int(m[2], 16))
        if m[3] is not None:
            r.gfn = int(m[3], 16)
        b.iomem.append(r)

def devices(ctx: Ctx, d: DomainConfig):
    cfg = ctx.cfg
    for item in V.get_list(cfg, "disk") or ():
        if item.kind != STRING:
            break
        try:
            d.disks.append(parse_disk(item.data, cfg.source))
        except ConfigError as e:
            raise ConfigError(e.bare, cfg.source, item.line, item.column) from None
    each(ctx, "p9", lambda spec, i: d.p9s.append(DEV.parse_p9(spec, cfg.source)))
    each(ctx, "vtpm", lambda spec, i: d.vtpms.append(DEV.parse_vtpm(spec, i, cfg.source)))
    each(ctx, "pvcalls", lambda spec, i: d.pvcallsifs.append(
        DEV.parse_pvcalls(spec, i, cfg.source)))
    each(ctx, "channel", lambda spec, i: d.channels.append(DEV.parse_channel(
        spec, i, cfg.source, lambda m: ctx.warn("channel", m))))
    each(ctx, "vif", lambda spec, i: d.nics.append(parse_nic(spec, i, cfg.source)))

    def vfb(spec, i):
        d.vfbs.append(DEV.parse_vfb(spec, len(d.vfbs), cfg.source))
        d.vkbs.append(DeviceVkb(devid=len(d.vkbs)))   # xl pairs a vkb with each vfb
    each(ctx, "vfb", vfb)
    each(ctx, "usbctrl", lambda spec, i: d.usbctrls.append(
        DEV.parse_usbctrl(spec, i, cfg.source)))
    each(ctx, "usbdev", lambda spec, i: d.usbdevs.append(DEV.parse_usbdev(spec, cfg.source)))

def each(ctx: Ctx, key, parse):
    """Run parse(spec, index) over a list of spec strings; errors get the
    item's position.  Like xl, the walk stops at a nested list."""
    for i, item in enumerate(V.get_list(ctx.cfg, key) or ()):
        if item.kind != STRING:
            break
        try:
            parse(item.data, i)
        except ConfigError as e:
            raise ConfigError(e.bare, ctx.cfg.source, item.line, item.column) from None
