"""Settings -> DomainConfig, following xl's parse_config_data (Xen 4.17).

The order of reads and the defaults are xl's, so `xl create -n` prints what
real `xl -N create` prints.  Where xl only warns and carries on with a
default (a bad number, a list where a string belongs) we raise ConfigError;
where xl knows a key we do not implement yet, or does not know a key at all,
we keep going with a warning: never silent.
"""
from __future__ import annotations

import re
import uuid as uuidlib

from . import devices as DEV
from . import values as V
from .cpus import host_cpus, parse_cpurange
from .errors import ConfigError
from .loader import STRING, Config
from .model import MAX_GRANT_DEFAULT, DeviceDtdev, DomainConfig
from .xl_devices import devices, each, passthrough_resources, pcis
from .xl_hvm import device_model, display, hvm
from .xlctx import Ctx, prefix_of

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

TSC_MODES = ("default", "always_emulate", "native", "native_paravirt")
TIMER_MODES = ("delay_for_missed_ticks", "no_delay_for_missed_ticks",
               "no_missed_ticks_pending", "one_missed_tick_pending")
ALTP2M_MODES = ("disabled", "mixed", "external", "limited")
PASSTHROUGH = ("default", "disabled", "enabled", "sync_pt", "share_pt")
GIC_VERSIONS = ("default", "v2", "v3")
TEE_TYPES = ("none", "optee")
VUART_TYPES = ("unknown", "sbsa_uart")
UNSUPPORTED = {
    "vnuma", "vdispl", "vsnd", "cpuid", "vif2", "rdm", "ms_vm_genid", "mmio_hole",
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
    "dtdev", "p9", "vtpm", "pvcalls", "channel", "vfb", "vkb", "usbctrl", "usbdev",
} | UNSUPPORTED

_UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")


def _domain_type(ctx: Ctx, c_info):
    buf = ctx.string("type")
    if buf is not None:
        for t in ("hvm", "pv", "pvh"):
            if prefix_of(buf, t):
                c_info.type = t
                break
        else:
            raise ctx.error("type", f"Invalid domain type {buf}.")
    buf = ctx.string("builder")         # deprecated since Xen 4.10
    if buf is not None:
        if prefix_of(buf, "hvm"):
            builder = "hvm"
        elif prefix_of(buf, "generic"):
            builder = "pv"
        else:
            raise ctx.error("builder", f"Invalid domain type {buf}.")
        if c_info.type != "invalid" and c_info.type != builder:
            raise ctx.error("builder", "Contradicting \"builder\" and \"type\" "
                                       "options specified.")
        c_info.type = builder
    if c_info.type == "invalid":
        c_info.type = "pv"              # x86 default


def _cmdline(ctx: Ctx):
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


def _vcpu_affinity(ctx: Ctx, b_info, key, hard):
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


def _sched_and_resources(ctx: Ctx, d: DomainConfig):
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


def _actions(ctx: Ctx, d: DomainConfig):
    for key, default in _ACTION_DEFAULTS:
        buf = ctx.string(key)
        buf = default if buf is None else buf
        if buf not in ACTIONS:
            raise ctx.error(key, f"Unknown {key} action \"{buf}\" specified")
        setattr(d, key, ACTIONS[buf])


def _misc(ctx: Ctx, d: DomainConfig):
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


def _pv_or_pvh(ctx: Ctx, d: DomainConfig):
    b = d.b_info
    fw = ctx.string("firmware")
    if fw is not None:
        if b.kernel is not None:
            raise ctx.error("firmware", "both kernel and firmware specified")
        if not (prefix_of(fw, "pvgrub32") or prefix_of(fw, "pvgrub64")):
            raise ctx.error("firmware", "only pvgrub{32|64} supported as "
                                        "firmware options")
        b.kernel = f"{XENFIRMWAREDIR}/{fw}.bin"
    if b.bootloader is None and b.kernel is None:
        raise ctx.error("name", "Neither kernel nor bootloader specified")


def _apply_global_affinity_masks(ctx: Ctx, d: DomainConfig):
    """xl's create_domain ANDs each hard-affinity map with the xl.conf masks
    vm.cpumask / vm.{pv,hvm}.cpumask (default: all CPUs) and refuses an
    empty result (apply_global_affinity_masks in xl_vcpu.c)."""
    for cpus in d.b_info.vcpu_hard_affinity:
        if not cpus:
            raise ctx.error("cpus", "vcpu hard affinity map is empty")


def build(cfg: Config, ncpus: int | None = None):
    """The DomainConfig for parsed settings, and the warnings to show."""
    ctx = Ctx(cfg, ncpus or host_cpus())
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
    pcis(ctx, d)
    each(ctx, "dtdev", lambda spec, i: d.dtdevs.append(DeviceDtdev(path=spec)))
    _misc(ctx, d)
    if b.type == "hvm":
        hvm(ctx, d)
    else:
        _pv_or_pvh(ctx, d)
    a = ctx.number_or_enum("altp2m", ALTP2M_MODES)
    if a is not None:
        b.altp2m = a
    v = ctx.long("vmtrace_buf_kb")
    if v:
        b.vmtrace_buf_kb = v
    passthrough_resources(ctx, b)
    devices(ctx, d)
    device_model(ctx, d)
    display(ctx, d)
    g = ctx.enum("gic_version", GIC_VERSIONS)
    if g is not None:
        b.arch_arm.gic_version = g
    t = ctx.enum("tee", TEE_TYPES)
    if t is not None:
        b.tee = t
    each(ctx, "vkb", lambda spec, i: d.vkbs.append(
        DEV.parse_vkb(spec, len(d.vkbs), cfg.source)))
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
