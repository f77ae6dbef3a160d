"""HVM guests and display devices in xl's parse_config_data: firmware,
ACPI and platform switches, viridian, VGA / VNC / SDL / SPICE, serial, USB,
and the device-model keys; top-level `vnc` makes a vfb for PV guests."""
from __future__ import annotations

import os

from . import values as V
from .loader import STRING
from .model import DeviceVfb, DeviceVkb, DomainConfig
from .xlctx import Ctx, prefix_of

# libxl enum string tables (libxl_types.idl).
BIOS = ("rombios", "seabios", "ovmf")
HDTYPES = ("ide", "ahci")
GFX_KINDS = ("default", "igd")
VENDOR_DEVICES = ("none", "xenserver")
VGA = {"stdvga": "std", "cirrus": "cirrus", "none": "none", "qxl": "qxl"}
# libxl_viridian_enlightenment, by value; the bitmaps are
# LIBXL_BUILDINFO_HVM_VIRIDIAN_ENABLE_DISABLE_WIDTH (64) bits wide.
VIRIDIAN = ("base", "freq", "time_ref_count", "reference_tsc",
            "hcall_remote_tlb_flush", "apic_assist", "crash_ctl", "synic",
            "stimer", "hcall_ipi", "ex_processor_masks", "no_vp_limit",
            "cpu_hotplug")
VIRIDIAN_WIDTH = 64


def hvm(ctx: Ctx, d: DomainConfig):
    b, h = d.b_info, d.b_info.u
    if b.kernel is not None and os.path.basename(b.kernel) == "hvmloader":
        ctx.warn("kernel", "ignoring \"kernel\" = hvmloader; use "
                           "\"firmware_override\" for a non-default firmware")
        b.kernel = None
    ctx.replace_string("firmware_override", h, "firmware")
    ctx.replace_string("bios_path_override", h, "system_firmware")
    bios = ctx.enum("bios", BIOS)
    if bios is not None:
        h.bios = bios
    elif h.system_firmware is not None:
        ctx.warn("bios_path_override", "bios_path_override given without "
                                       "specific bios name")
    for key in ("pae", "acpi_s3", "acpi_s4", "acpi_laptop_slate", "nx", "hpet",
                "vpt_align"):
        ctx.defbool(key, h, key)
    ctx.defbool("apic", b, "apic")
    _viridian(ctx, h)
    if ctx.defbool("altp2mhvm", h, "altp2m") is not None:
        ctx.warn("altp2mhvm", "\"altp2mhvm\" is deprecated, use \"altp2m\"")
    ctx.replace_string("smbios_firmware", h, "smbios_firmware")
    ctx.replace_string("acpi_firmware", h, "acpi_firmware")
    v = ctx.long("rdm_mem_boundary")
    if v is not None:
        h.rdm_mem_boundary_memkb = v * 1024
    caps = V.get_string_list(ctx.cfg, "mca_caps") if "mca_caps" in ctx.cfg else None
    for cap in caps or ():
        if cap != "lmce":
            raise ctx.error("mca_caps", f"unrecognized MCA capability '{cap}'.")
        h.mca_caps |= 1                 # XEN_HVM_MCA_CAP_LMCE
    fw = ctx.string("firmware")
    if fw is not None:
        if fw.lower() in BIOS:
            h.bios = fw.lower()
        elif prefix_of(fw, "uefi"):
            h.bios = "ovmf"
        elif not prefix_of(fw, "bios"):
            h.firmware = fw             # a path to a custom firmware

def _viridian(ctx: Ctx, h):
    """`viridian = 1` (a defbool) or a list of enlightenments, "!" to disable."""
    if not V.is_list(ctx.cfg, "viridian"):
        ctx.defbool("viridian", h, "viridian")
        return
    items = V.get_string_list(ctx.cfg, "viridian")
    if not items:
        return
    enable, disable = set(), set()
    for name in items:
        if name == "all":
            enable |= set(range(VIRIDIAN_WIDTH))
        elif name == "defaults":
            h.viridian = True
        else:
            s, r = (disable, enable) if name.startswith("!") else (enable, disable)
            bare = name[1:] if name.startswith("!") else name
            if bare.lower() not in VIRIDIAN:
                raise ctx.error("viridian", f"xl: unknown viridian enlightenment "
                                            f"'{bare}'")
            v = VIRIDIAN.index(bare.lower())
            s.add(v)
            r.discard(v)
    h.viridian_enable = tuple(sorted(enable))
    h.viridian_disable = tuple(sorted(disable))

def device_model(ctx: Ctx, d: DomainConfig):
    b = d.b_info
    if ctx.string("device_model") is not None:
        ctx.warn("device_model", "ignoring device_model directive, use "
                                 "\"device_model_override\"")
    ctx.replace_string("device_model_override", b, "device_model")
    ver = ctx.string("device_model_version")
    if ver is not None:
        if ver == "qemu-xen-traditional":
            b.device_model_version = "qemu_xen_traditional"
        elif ver == "qemu-xen":
            b.device_model_version = "qemu_xen"
        else:
            raise ctx.error("device_model_version",
                            f"Unknown device_model_version \"{ver}\" specified")
    elif b.device_model is not None:
        ctx.warn("device_model_override", "device model override given "
                                          "without specific DM version")
    ctx.defbool("device_model_stubdomain_override", b, "device_model_stubdomain")
    ctx.replace_string("device_model_stubdomain_seclabel", b,
                       "device_model_ssid_label")
    ctx.replace_string("device_model_user", b, "device_model_user")
    ctx.replace_string("stubdomain_kernel", b, "stubdomain_kernel")
    ctx.replace_string("stubdomain_ramdisk", b, "stubdomain_ramdisk")
    v = ctx.long("stubdomain_memory")
    if v is not None:
        b.stubdomain_memkb = v * 1024
    for suffix, attr in (("", "extra"), ("_pv", "extra_pv"), ("_hvm", "extra_hvm")):
        key = "device_model_args" + suffix
        if key in ctx.cfg:
            setattr(b, attr, V.get_string_list(ctx.cfg, key))

def _vnc_sdl(ctx: Ctx, vnc, sdl):
    ctx.defbool("vnc", vnc, "enable")
    ctx.replace_string("vnclisten", vnc, "listen")
    ctx.replace_string("vncpasswd", vnc, "passwd")
    v = ctx.long("vncdisplay")
    if v is not None:
        vnc.display = v
    ctx.defbool("vncunused", vnc, "findunused")
    ctx.defbool("sdl", sdl, "enable")
    ctx.defbool("opengl", sdl, "opengl")
    ctx.replace_string("display", sdl, "display")
    ctx.replace_string("xauthority", sdl, "xauthority")

def display(ctx: Ctx, d: DomainConfig):
    c, b = d.c_info, d.b_info
    if c.type == "pv" and not d.vfbs:
        if ctx.long("vnc"):
            vfb, vkb = DeviceVfb(devid=0), DeviceVkb(devid=0)
            _vnc_sdl(ctx, vfb.vnc, vfb.sdl)
            ctx.replace_string("keymap", vfb, "keymap")
            d.vfbs.append(vfb)
            d.vkbs.append(vkb)
    elif c.type == "hvm":
        _vnc_sdl(ctx, b.u.vnc, b.u.sdl)
    elif c.type == "pvh":
        for key in ("vnc", "sdl", "vnclisten", "vncdisplay"):
            if key in ctx.cfg:
                ctx.warn(key, f"\"{key}\" has no effect for PVH guests")
    ctx.defbool("dm_restrict", b, "dm_restrict")
    if c.type == "hvm":
        _hvm_devices(ctx, d)

def _hvm_devices(ctx: Ctx, d: DomainConfig):
    h = d.b_info.u
    vga = ctx.string("vga")
    if vga is not None:
        if vga not in VGA:
            raise ctx.error("vga", f"Unknown vga \"{vga}\" specified")
        h.vga.kind = VGA[vga]
    else:
        v = ctx.long("stdvga")
        if v is not None:
            h.vga.kind = "std" if v else "cirrus"
    t = ctx.enum("hdtype", HDTYPES)
    if t is not None:
        h.hdtype = t
    ctx.replace_string("keymap", h, "keymap")
    sp = h.spice
    ctx.defbool("spice", sp, "enable")
    for key, attr in (("spiceport", "port"), ("spicetls_port", "tls_port"),
                      ("spiceusbredirection", "usbredirection")):
        v = ctx.long(key)
        if v is not None:
            setattr(sp, attr, v)
    ctx.replace_string("spicehost", sp, "host")
    ctx.defbool("spicedisable_ticketing", sp, "disable_ticketing")
    ctx.replace_string("spicepasswd", sp, "passwd")
    ctx.defbool("spiceagent_mouse", sp, "agent_mouse")
    ctx.defbool("spicevdagent", sp, "vdagent")
    ctx.defbool("spice_clipboard_sharing", sp, "clipboard_sharing")
    ctx.replace_string("spice_image_compression", sp, "image_compression")
    ctx.replace_string("spice_streaming_video", sp, "streaming_video")
    ctx.defbool("nographic", h, "nographic")
    s = ctx.cfg.get("gfx_passthru")
    if s is not None:
        if s.value.kind == STRING and V.strtol(s.value.data) is not None:
            h.gfx_passthru = bool(ctx.long("gfx_passthru"))
        else:
            h.gfx_passthru_kind = ctx.enum("gfx_passthru", GFX_KINDS)
            h.gfx_passthru = True
    for key, lst in (("serial", "serial_list"), ("usbdevice", "usbdevice_list")):
        if V.is_list(ctx.cfg, key):
            setattr(h, lst, V.get_string_list(ctx.cfg, key))
        else:
            ctx.replace_string(key, h, key)
    ctx.replace_string("boot", h, "boot")
    ctx.defbool("usb", h, "usb")
    v = ctx.long("usbversion")
    if v is not None:
        h.usbversion = v
    ctx.defbool("vkb_device", h, "vkb_device")
    ctx.replace_string("soundhw", h, "soundhw")
    ctx.defbool("xen_platform_pci", h, "xen_platform_pci")
    if h.vnc.listen and h.vnc.display and ":" in h.vnc.listen:
        raise ctx.error("vncdisplay", "Display specified both in vnclisten "
                                      "and vncdisplay!")
    v = ctx.enum("vendor_device", VENDOR_DEVICES)
    if v is not None:
        h.vendor_device = v
