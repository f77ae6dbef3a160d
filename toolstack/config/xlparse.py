"""Settings -> DomainConfig, following xl's parse_config_data (Xen 4.17).

The order of reads and the defaults are xl's, so `xl create -n` prints what
real `xl -N create` prints.  Where xl only warns and carries on with a
default (a bad number, a list where a string belongs) we raise ConfigError;
where xl knows a key we do not implement yet, or does not know a key at all,
we keep going with a warning: never silent.
"""
from __future__ import annotations

import os
import re
import uuid as uuidlib

from . import values as V
from .cpus import bitmap_bits, host_cpus, parse_cpurange
from .disk import parse_disk
from .errors import ConfigError
from .loader import STRING, Config
from .model import MAX_GRANT_DEFAULT, DeviceVfb, DeviceVkb, DomainConfig
from .pci import parse_pci
from .vif import parse_nic

INT_MAX = (1 << 31) - 1
XENFIRMWAREDIR = "/usr/lib/xen-4.17/boot"     # Debian's xen-utils-4.17 layout

# xl's action_on_shutdown_names -> libxl_action_on_shutdown JSON names.
ACTIONS = {"destroy": "destroy", "restart": "restart",
           "rename-restart": "restart_rename", "preserve": "preserve",
           "coredump-destroy": "coredump_destroy",
           "coredump-restart": "coredump_restart", "soft-reset": "soft_reset"}
_ACTION_DEFAULTS = (("on_poweroff", "destroy"), ("on_reboot", "restart"),
                    ("on_watchdog", "destroy"), ("on_crash", "destroy"),
                    ("on_soft_reset", "soft-reset"))

# libxl enum string tables (libxl_types.idl), indexed by value where xl
# still accepts the deprecated integer form.
BIOS = ("rombios", "seabios", "ovmf")
TSC_MODES = ("default", "always_emulate", "native", "native_paravirt")
TIMER_MODES = ("delay_for_missed_ticks", "no_delay_for_missed_ticks",
               "no_missed_ticks_pending", "one_missed_tick_pending")
ALTP2M_MODES = ("disabled", "mixed", "external", "limited")
HDTYPES = ("ide", "ahci")
GFX_KINDS = ("default", "igd")
VENDOR_DEVICES = ("none", "xenserver")
PASSTHROUGH = ("default", "disabled", "enabled", "sync_pt", "share_pt")
GIC_VERSIONS = ("default", "v2", "v3")
TEE_TYPES = ("none", "optee")
VUART_TYPES = ("unknown", "sbsa_uart")
VGA = {"stdvga": "std", "cirrus": "cirrus", "none": "none", "qxl": "qxl"}
# libxl_viridian_enlightenment, by value; the bitmaps are
# LIBXL_BUILDINFO_HVM_VIRIDIAN_ENABLE_DISABLE_WIDTH (64) bits wide.
VIRIDIAN = ("base", "freq", "time_ref_count", "reference_tsc",
            "hcall_remote_tlb_flush", "apic_assist", "crash_ctl", "synic",
            "stimer", "hcall_ipi", "ex_processor_masks", "no_vp_limit",
            "cpu_hotplug")
VIRIDIAN_WIDTH = 64
UINT32_MAX = (1 << 32) - 1

# Keys xl reads that this toolstack does not implement yet: accepted with a
# warning, so nothing is silently dropped.
UNSUPPORTED = {
    "vnuma", "dtdev", "p9", "vtpm", "vdispl",
    "pvcalls", "vsnd", "channel", "vfb", "usbctrl", "usbdev", "cpuid", "vkb",
    "vif2", "rdm", "ms_vm_genid", "mmio_hole",
}
# Every other key xl's parser reads.
KNOWN = {
    "init_seclabel", "seclabel", "type", "builder", "hap", "name", "uuid",
    "oos", "pool", "pvshim", "pvshim_path", "pvshim_cmdline", "pvshim_extra",
    "cpu_weight", "cap", "period", "slice", "latency", "extratime", "memory",
    "maxmem", "vcpus", "maxvcpus", "vuart", "cpus", "cpus_soft",
    "max_grant_frames", "max_maptrack_frames", "on_poweroff", "on_reboot",
    "on_watchdog", "on_crash", "on_soft_reset", "e820_host", "pci",
    "passthrough", "shadow_memory", "nomigrate", "tsc_mode",
    "rtc_timeoffset", "vncviewer", "localtime", "videoram",
    "max_event_channels", "kernel", "ramdisk", "device_tree", "cmdline",
    "root", "extra", "driver_domain", "acpi", "bootloader",
    "bootloader_args", "timer_mode", "nestedhvm", "firmware_override",
    "bios_path_override", "bios", "pae", "acpi_s3", "acpi_s4",
    "acpi_laptop_slate", "nx", "hpet", "vpt_align", "apic", "altp2mhvm",
    "smbios_firmware", "acpi_firmware", "rdm_mem_boundary", "mca_caps",
    "firmware", "altp2m", "vmtrace_buf_kb", "disk", "vif", "device_model",
    "device_model_override", "device_model_version",
    "device_model_stubdomain_override", "device_model_stubdomain_seclabel",
    "device_model_user", "stubdomain_kernel", "stubdomain_ramdisk",
    "stubdomain_memory", "device_model_args", "device_model_args_pv",
    "device_model_args_hvm", "vnc", "vnclisten", "vncpasswd", "vncdisplay",
    "vncunused", "sdl", "opengl", "display", "xauthority", "keymap",
    "dm_restrict", "vga", "stdvga", "hdtype", "spice", "spiceport",
    "spicetls_port", "spicehost", "spicedisable_ticketing", "spicepasswd",
    "spiceagent_mouse", "spicevdagent", "spice_clipboard_sharing",
    "spiceusbredirection", "spice_image_compression",
    "spice_streaming_video", "nographic", "gfx_passthru", "serial", "boot",
    "usb", "usbversion", "usbdevice", "vkb_device", "soundhw",
    "xen_platform_pci", "vendor_device", "gic_version", "tee",
    "xend_suspend_evtchn_compat", "msr_relaxed", "viridian", "pci_msitranslate",
    "pci_power_mgmt", "pci_permissive", "pci_seize", "ioports", "irqs", "iomem",
} | UNSUPPORTED

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


class _Ctx:
    """One parse: the settings, where to put messages, the host facts."""

    def __init__(self, cfg: Config, ncpus: int):
        self.cfg = cfg
        self.ncpus = ncpus
        self.warnings = []

    def error(self, key, msg):
        s = self.cfg.get(key)
        if s is None:
            return ConfigError(msg, self.cfg.source)
        return ConfigError(msg, self.cfg.source, s.line, s.column)

    def warn(self, key, msg):
        s = self.cfg.get(key)
        where = f"{self.cfg.source}:{s.line}: " if s else f"{self.cfg.source}: "
        self.warnings.append(where + "warning: " + msg)

    def string(self, key):
        return V.get_string(self.cfg, key)

    def long(self, key, lo=V.LONG_MIN, hi=V.LONG_MAX):
        return V.get_long(self.cfg, key, lo, hi)

    def defbool(self, key, obj, attr):
        v = V.get_defbool(self.cfg, key)
        if v is not None:
            setattr(obj, attr, v)
        return v

    def replace_string(self, key, obj, attr):
        v = self.string(key)
        if v is not None:
            setattr(obj, attr, v)
        return v

    def enum(self, key, table, what=None):
        """libxl_<enum>_from_string: case-insensitive; None when unset."""
        v = self.string(key)
        if v is None:
            return None
        name = v.lower()
        if name not in table:
            raise self.error(key, f"invalid value \"{v}\" for \"{what or key}\"")
        return name

    def number_or_enum(self, key, table):
        """Keys that once took an integer (tsc_mode, timer_mode, altp2m)."""
        s = self.cfg.get(key)
        if s is None:
            return None
        if s.value.kind == STRING and V.strtol(s.value.data) is not None:
            n = self.long(key)
            if not 0 <= n < len(table):
                raise self.error(key, f"invalid value {n} for \"{key}\"")
            if key != "altp2m":
                self.warn(key, f"specifying \"{key}\" as an integer is deprecated, "
                               f"use {key}=\"{table[n]}\"")
            return table[n]
        return self.enum(key, table)


def _prefix_of(buf, word):
    # xl compares with strncmp(buf, word, strlen(buf)): any prefix matches.
    return word.startswith(buf)


def _domain_type(ctx: _Ctx, c_info):
    buf = ctx.string("type")
    if buf is not None:
        for t in ("hvm", "pv", "pvh"):
            if _prefix_of(buf, t):
                c_info.type = t
                break
        else:
            raise ctx.error("type", f"Invalid domain type {buf}.")
    buf = ctx.string("builder")         # deprecated since Xen 4.10
    if buf is not None:
        if _prefix_of(buf, "hvm"):
            builder = "hvm"
        elif _prefix_of(buf, "generic"):
            builder = "pv"
        else:
            raise ctx.error("builder", f"Invalid domain type {buf}.")
        if c_info.type != "invalid" and c_info.type != builder:
            raise ctx.error("builder", "Contradicting \"builder\" and \"type\" "
                                       "options specified.")
        c_info.type = builder
    if c_info.type == "invalid":
        c_info.type = "pv"              # x86 default


def _cmdline(ctx: _Ctx):
    buf, root, extra = ctx.string("cmdline"), ctx.string("root"), ctx.string("extra")
    if buf is not None:
        if root is not None or extra is not None:
            ctx.warn("cmdline", "ignoring root= and extra= in favour of cmdline=")
        return buf
    if root is not None and extra is not None:
        return f"root={root} {extra}"
    if root is not None:
        return f"root={root}"
    return extra


def _vcpu_affinity(ctx: _Ctx, b_info, key, hard):
    cfg = ctx.cfg
    if key not in cfg:
        return
    if V.is_list(cfg, key):
        items = V.get_list(cfg, key)[:b_info.max_vcpus]
        maps = []
        for item in items:
            if item.kind != STRING:
                break               # xlu_cfg_get_listitem stops at a non-string
            maps.append(parse_cpurange(item.data, ctx.ncpus, source=cfg.source))
        b_info.numa_placement = False
    else:
        one = parse_cpurange(ctx.string(key), ctx.ncpus, source=cfg.source)
        maps = [one] * b_info.max_vcpus
        if not hard:
            b_info.numa_placement = False
    if hard:
        b_info.vcpu_hard_affinity = maps
    else:
        b_info.vcpu_soft_affinity = maps


def _sched_and_resources(ctx: _Ctx, d: DomainConfig):
    b = d.b_info
    sp = b.sched_params
    for key, attr in (("cpu_weight", "weight"), ("cap", "cap"), ("period", "period"),
                      ("slice", "slice"), ("latency", "latency"),
                      ("extratime", "extratime")):
        v = ctx.long(key)
        if v is not None:
            setattr(sp, attr, v)
    v = ctx.long("memory")
    if v is not None:
        b.target_memkb = v * 1024
    v = ctx.long("maxmem")
    if v is not None:
        b.max_memkb = v * 1024
    vcpus = 0
    v = ctx.long("vcpus")
    if v is not None:
        if v < 0:
            raise ctx.error("vcpus", "Unable to allocate cpumap")
        vcpus = v
        # libxl_cpu_bitmap_alloc(ctx, &avail_vcpus, vcpus); 0 means host size.
        b.avail_vcpus = tuple(range(vcpus))
    v = ctx.long("maxvcpus")
    if v is not None:
        b.max_vcpus = v
    vuart = ctx.enum("vuart", VUART_TYPES)
    if vuart is not None:
        b.arch_arm.vuart = vuart
    if b.max_memkb == b.__dataclass_fields__["max_memkb"].default:
        b.max_memkb = b.target_memkb
    if b.max_vcpus == 0:
        b.max_vcpus = vcpus
    if b.max_vcpus < vcpus:
        raise ctx.error("maxvcpus", "xl: maxvcpus < vcpus")
    _vcpu_affinity(ctx, b, "cpus", True)
    _vcpu_affinity(ctx, b, "cpus_soft", False)
    for key in ("max_grant_frames", "max_maptrack_frames"):
        v = ctx.long(key, 0, INT_MAX)
        setattr(b, key, MAX_GRANT_DEFAULT if v is None else v)
    b.claim_mode = True                 # xl.conf claim_mode default


def _actions(ctx: _Ctx, d: DomainConfig):
    for key, default in _ACTION_DEFAULTS:
        buf = ctx.string(key)
        buf = default if buf is None else buf
        if buf not in ACTIONS:
            raise ctx.error(key, f"Unknown {key} action \"{buf}\" specified")
        setattr(d, key, ACTIONS[buf])


def _pcis(ctx: _Ctx, d: DomainConfig):
    # Global defaults for every device (xl reads them as numbers).
    defaults = {}
    for key in ("msitranslate", "power_mgmt", "permissive", "seize"):
        v = ctx.long("pci_" + key)
        if v is not None:
            defaults[key] = bool(v & 0xff)          # stored into a C bool
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


def _misc(ctx: _Ctx, d: DomainConfig):
    c, b = d.c_info, d.b_info
    p = ctx.enum("passthrough", PASSTHROUGH)
    if p is not None:
        c.passthrough = p
    v = ctx.long("shadow_memory")
    if v is not None:
        b.shadow_memkb = v * 1024
    ctx.defbool("nomigrate", b, "disable_migrate")
    t = ctx.number_or_enum("tsc_mode", TSC_MODES)
    if t is not None:
        b.tsc_mode = t
    v = ctx.long("rtc_timeoffset")
    if v is not None:
        b.rtc_timeoffset = v & 0xffffffff
    if ctx.long("vncviewer") is not None:
        ctx.warn("vncviewer", "ignoring \"vncviewer\" option")
    ctx.defbool("localtime", b, "localtime")
    v = ctx.long("videoram")
    if v is not None:
        b.video_memkb = v * 1024
    v = ctx.long("max_event_channels")
    if v is not None:
        b.event_channels = v
    for key in ("kernel", "ramdisk", "device_tree"):
        ctx.replace_string(key, b, key)
    b.cmdline = _cmdline(ctx)
    ctx.defbool("driver_domain", c, "driver_domain")
    ctx.defbool("acpi", b, "acpi")
    ctx.replace_string("bootloader", b, "bootloader")
    if V.is_list(ctx.cfg, "bootloader_args"):
        b.bootloader_args = V.get_string_list(ctx.cfg, "bootloader_args")
    elif "bootloader_args" in ctx.cfg:
        ctx.warn("bootloader_args", "specifying \"bootloader_args\" as a string "
                                    "is deprecated, use a list of arguments")
        b.bootloader_args = ctx.string("bootloader_args").split()
    t = ctx.number_or_enum("timer_mode", TIMER_MODES)
    if t is not None:
        if b.type == "pv":
            raise ctx.error("timer_mode", "\"timer_mode\" option is not "
                                          "supported for PV guests.")
        b.timer_mode = t
    ctx.defbool("nestedhvm", b, "nested_hvm")


def _hvm(ctx: _Ctx, d: DomainConfig):
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
        elif _prefix_of(fw, "uefi"):
            h.bios = "ovmf"
        elif not _prefix_of(fw, "bios"):
            h.firmware = fw             # a path to a custom firmware


def _viridian(ctx: _Ctx, h):
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


def _hex_prefix(text):
    """C strtoul(text, &ep, 16): (value, rest) or None when no digits."""
    m = re.match(r"[ \t]*(?:0[xX](?=[0-9a-fA-F]))?([0-9a-fA-F]+)", text)
    if not m:
        return None
    return int(m.group(1), 16), text[m.end():]


def _passthrough_resources(ctx: _Ctx, b):
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


def _pv_or_pvh(ctx: _Ctx, d: DomainConfig):
    b = d.b_info
    fw = ctx.string("firmware")
    if fw is not None:
        if b.kernel is not None:
            raise ctx.error("firmware", "both kernel and firmware specified")
        if not (_prefix_of(fw, "pvgrub32") or _prefix_of(fw, "pvgrub64")):
            raise ctx.error("firmware", "only pvgrub{32|64} supported as "
                                        "firmware options")
        b.kernel = f"{XENFIRMWAREDIR}/{fw}.bin"
    if b.bootloader is None and b.kernel is None:
        raise ctx.error("name", "Neither kernel nor bootloader specified")


def _devices(ctx: _Ctx, d: DomainConfig):
    cfg = ctx.cfg
    for item in V.get_list(cfg, "disk") or ():
        if item.kind != STRING:
            break
        try:
            d.disks.append(parse_disk(item.data, cfg.source))
        except ConfigError as e:
            raise ConfigError(e.bare, cfg.source, item.line, item.column) from None
    for devid, item in enumerate(V.get_list(cfg, "vif") or ()):
        if item.kind != STRING:
            break
        try:
            d.nics.append(parse_nic(item.data, devid, cfg.source))
        except ConfigError as e:
            raise ConfigError(e.bare, cfg.source, item.line, item.column) from None


def _device_model(ctx: _Ctx, d: DomainConfig):
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


def _vnc_sdl(ctx: _Ctx, vnc, sdl):
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


def _display(ctx: _Ctx, d: DomainConfig):
    c, b = d.c_info, d.b_info
    if c.type == "pv":
        if ctx.long("vnc"):
            vfb, vkb = DeviceVfb(devid=0), DeviceVkb(devid=0)
            _vnc_sdl(ctx, vfb.vnc, vfb.sdl)
            ctx.replace_string("keymap", vfb, "keymap")
            d.vfbs.append(vfb)
            d.vkbs.append(vkb)
    elif c.type == "hvm":
        _vnc_sdl(ctx, b.u.vnc, b.u.sdl)
    else:
        for key in ("vnc", "sdl", "vnclisten", "vncdisplay"):
            if key in ctx.cfg:
                ctx.warn(key, f"\"{key}\" has no effect for PVH guests")
    ctx.defbool("dm_restrict", b, "dm_restrict")
    if c.type == "hvm":
        _hvm_devices(ctx, d)


def _hvm_devices(ctx: _Ctx, d: DomainConfig):
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


def _apply_global_affinity_masks(ctx: _Ctx, d: DomainConfig):
    """xl's create_domain ANDs each hard-affinity map with the xl.conf masks
    vm.cpumask / vm.{pv,hvm}.cpumask (default: all CPUs) and refuses an
    empty result (apply_global_affinity_masks in xl_vcpu.c)."""
    for cpus in d.b_info.vcpu_hard_affinity:
        if not cpus:
            raise ctx.error("cpus", "vcpu hard affinity map is empty")


def build(cfg: Config, ncpus: int | None = None):
    """The DomainConfig for parsed settings, and the warnings to show."""
    ctx = _Ctx(cfg, ncpus or host_cpus())
    d = DomainConfig()
    c, b = d.c_info, d.b_info
    if ctx.string("init_seclabel") is not None:
        c.ssid_label = ctx.string("init_seclabel")
    if ctx.string("seclabel") is not None:
        if c.ssid_label is not None:
            b.exec_ssid_label = ctx.string("seclabel")
        else:
            c.ssid_label = ctx.string("seclabel")
    c.run_hotplug_scripts = True        # xl.conf run_hotplug_scripts default
    _domain_type(ctx, c)
    ctx.defbool("hap", c, "hap")
    if ctx.replace_string("name", c, "name") is None:
        raise ConfigError("Domain name must be specified.", cfg.source)
    u = ctx.string("uuid")
    if u is not None:
        if not _UUID_RE.match(u):
            raise ctx.error("uuid", f"Failed to parse UUID: {u}")
        c.uuid = u.lower()
    else:
        c.uuid = str(uuidlib.uuid4())
    ctx.defbool("oos", c, "oos")
    ctx.replace_string("pool", c, "pool_name")
    b.init_type(c.type)
    if b.type == "pvh":
        ctx.defbool("pvshim", b.u, "pvshim")
        for key in ("pvshim_path", "pvshim_cmdline", "pvshim_extra"):
            ctx.replace_string(key, b.u, key)
    _sched_and_resources(ctx, d)
    _actions(ctx, d)
    if c.type == "pv":
        ctx.defbool("e820_host", b.u, "e820_host")
    _pcis(ctx, d)
    _misc(ctx, d)
    if b.type == "hvm":
        _hvm(ctx, d)
    else:
        _pv_or_pvh(ctx, d)
    a = ctx.number_or_enum("altp2m", ALTP2M_MODES)
    if a is not None:
        b.altp2m = a
    v = ctx.long("vmtrace_buf_kb")
    if v:
        b.vmtrace_buf_kb = v
    _passthrough_resources(ctx, b)
    _devices(ctx, d)
    _device_model(ctx, d)
    _display(ctx, d)
    g = ctx.enum("gic_version", GIC_VERSIONS)
    if g is not None:
        b.arch_arm.gic_version = g
    t = ctx.enum("tee", TEE_TYPES)
    if t is not None:
        b.tee = t
    ctx.defbool("xend_suspend_evtchn_compat", c, "xend_suspend_evtchn_compat")
    if ctx.defbool("msr_relaxed", b.arch_x86, "msr_relaxed") is not None:
        ctx.warn("msr_relaxed", "msr_relaxed will be removed in future versions")
    _apply_global_affinity_masks(ctx, d)
    for name in cfg.names():
        if name in UNSUPPORTED:
            ctx.warn(name, f"parameter `{name}' is not supported yet and is ignored")
        elif name not in KNOWN:
            ctx.warn(name, f"unknown parameter `{name}' ignored")
    return d, ctx.warnings
