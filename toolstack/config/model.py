"""The typed domain configuration: libxl's IDL (libxl_types.idl, Xen 4.17)
for the fields xl's config parser fills.

This is the one description of those fields.  The parser (`xlparse`) fills
these dataclasses, the builder reads them, and `jsonout` serialises them by
walking `dataclasses.fields()` in declaration order, which is the IDL order
and therefore libxl's JSON key order.  Each field's `default` is libxl's
init value; like libxl's generated *_gen_json, a field equal to its default
is left out, and nested structs are always written.

Value forms: enums are their libxl string names (`"coredump_restart"`),
`defbool` is None / True / False (JSON "True" / "False"), C `bool` is JSON
true / false, bitmaps are sorted tuples of set bits.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

# libxl.h: LIBXL_MEMKB_DEFAULT (~0ULL), LIBXL_MAX_GRANT_DEFAULT (~(uint32_t)0),
# LIBXL_DOMAIN_SCHED_PARAM_*_DEFAULT (-1), LIBXL_TIMER_MODE_DEFAULT (-1).
MEMKB_DEFAULT = (1 << 64) - 1
MAX_GRANT_DEFAULT = (1 << 32) - 1
SCHED_PARAM_DEFAULT = -1


def F(default=None, kind="plain", json=True, name=None):
    """A field: its libxl default, its JSON value kind, whether it is written."""
    return field(default=default,
                 metadata={"kind": kind, "json": json, "name": name})


def S(factory):
    """A nested struct field (always written, like libxl's aggregates)."""
    return field(default_factory=factory, metadata={"kind": "struct", "json": True,
                                                    "name": None})


def L(kind="list"):
    """An array field (written when non-empty)."""
    return field(default_factory=list, metadata={"kind": kind, "json": True,
                                                 "name": None})


# ---- c_info -------------------------------------------------------------

@dataclass
class DomainCreateInfo:
    type: str = F("invalid")                 # libxl_domain_type
    hap: bool | None = F(kind="defbool")
    oos: bool | None = F(kind="defbool")
    ssid_label: str | None = F()
    name: str | None = F()
    uuid: str | None = F()
    pool_name: str | None = F()
    run_hotplug_scripts: bool | None = F(kind="defbool")
    driver_domain: bool | None = F(kind="defbool")
    passthrough: str = F("default")
    xend_suspend_evtchn_compat: bool | None = F(kind="defbool")


# ---- b_info and its parts ----------------------------------------------

INVALID_GFN = (1 << 64) - 1             # LIBXL_INVALID_GFN (~(uint64_t)0)


@dataclass
class IoportRange:
    first: int = F(0)
    number: int = F(0)


@dataclass
class IomemRange:
    start: int = F(0)
    number: int = F(0)
    gfn: int = F(INVALID_GFN)


@dataclass
class DomainSchedParams:
    sched: str = F("unknown")
    weight: int = F(SCHED_PARAM_DEFAULT)
    cap: int = F(SCHED_PARAM_DEFAULT)
    period: int = F(SCHED_PARAM_DEFAULT)
    budget: int = F(SCHED_PARAM_DEFAULT)
    extratime: int = F(SCHED_PARAM_DEFAULT)
    slice: int = F(SCHED_PARAM_DEFAULT)
    latency: int = F(SCHED_PARAM_DEFAULT)


@dataclass
class VgaInterfaceInfo:
    kind: str = F("unknown")


@dataclass
class VncInfo:
    enable: bool | None = F(kind="defbool")
    listen: str | None = F()
    passwd: str | None = F()
    display: int = F(0)
    findunused: bool | None = F(kind="defbool")


@dataclass
class SdlInfo:
    enable: bool | None = F(kind="defbool")
    opengl: bool | None = F(kind="defbool")
    display: str | None = F()
    xauthority: str | None = F()


@dataclass
class SpiceInfo:
    enable: bool | None = F(kind="defbool")
    port: int = F(0)
    tls_port: int = F(0)
    host: str | None = F()
    disable_ticketing: bool | None = F(kind="defbool")
    passwd: str | None = F()
    agent_mouse: bool | None = F(kind="defbool")
    vdagent: bool | None = F(kind="defbool")
    clipboard_sharing: bool | None = F(kind="defbool")
    usbredirection: int = F(0)
    image_compression: str | None = F()
    streaming_video: str | None = F()


@dataclass
class RdmReserve:
    strategy: str = F("ignore")
    policy: str = F("invalid")


@dataclass
class BuildInfoHvm:
    firmware: str | None = F()
    bios: str = F("unknown")
    pae: bool | None = F(kind="defbool")
    apic: bool | None = F(kind="defbool")
    acpi: bool | None = F(kind="defbool")
    acpi_s3: bool | None = F(kind="defbool")
    acpi_s4: bool | None = F(kind="defbool")
    acpi_laptop_slate: bool | None = F(kind="defbool")
    nx: bool | None = F(kind="defbool")
    viridian: bool | None = F(kind="defbool")
    viridian_enable: tuple | None = F(kind="bitmap")
    viridian_disable: tuple | None = F(kind="bitmap")
    timeoffset: str | None = F()
    hpet: bool | None = F(kind="defbool")
    vpt_align: bool | None = F(kind="defbool")
    mmio_hole_memkb: int = F(0)
    timer_mode: str = F("default")
    nested_hvm: bool | None = F(kind="defbool")
    altp2m: bool | None = F(kind="defbool")
    system_firmware: str | None = F()
    smbios_firmware: str | None = F()
    acpi_firmware: str | None = F()
    hdtype: str = F("ide")
    nographic: bool | None = F(kind="defbool")
    vga: VgaInterfaceInfo = S(VgaInterfaceInfo)
    vnc: VncInfo = S(VncInfo)
    keymap: str | None = F()
    sdl: SdlInfo = S(SdlInfo)
    spice: SpiceInfo = S(SpiceInfo)
    gfx_passthru: bool | None = F(kind="defbool")
    gfx_passthru_kind: str = F("default")
    serial: str | None = F()
    boot: str | None = F()
    usb: bool | None = F(kind="defbool")
    usbversion: int = F(0)
    usbdevice: str | None = F()
    vkb_device: bool | None = F(kind="defbool")
    soundhw: str | None = F()
    xen_platform_pci: bool | None = F(kind="defbool")
    usbdevice_list: list = L()
    vendor_device: str = F("none")
    serial_list: list = L()
    rdm: RdmReserve = S(RdmReserve)
    rdm_mem_boundary_memkb: int = F(MEMKB_DEFAULT)
    mca_caps: int = F(0)


@dataclass
class BuildInfoPv:
    kernel: str | None = F()
    slack_memkb: int = F(0)
    bootloader: str | None = F()
    bootloader_args: list = L()
    cmdline: str | None = F()
    ramdisk: str | None = F()
    features: str | None = F()
    e820_host: bool | None = F(kind="defbool")


@dataclass
class BuildInfoPvh:
    pvshim: bool | None = F(kind="defbool")
    pvshim_path: str | None = F()
    pvshim_cmdline: str | None = F()
    pvshim_extra: str | None = F()


UNION_TYPES = {"hvm": BuildInfoHvm, "pv": BuildInfoPv, "pvh": BuildInfoPvh}


@dataclass
class ArchArm:
    gic_version: str = F("default")
    vuart: str = F("unknown")


@dataclass
class ArchX86:
    msr_relaxed: bool | None = F(kind="defbool")


@dataclass
class DomainBuildInfo:
    max_vcpus: int = F(0)
    avail_vcpus: tuple | None = F(kind="bitmap")
    cpumap: tuple | None = F(kind="bitmap")
    nodemap: tuple | None = F(kind="bitmap")
    vcpu_hard_affinity: list = L("bitmaps")
    vcpu_soft_affinity: list = L("bitmaps")
    numa_placement: bool | None = F(kind="defbool")
    tsc_mode: str = F("default")
    max_memkb: int = F(MEMKB_DEFAULT)
    target_memkb: int = F(MEMKB_DEFAULT)
    video_memkb: int = F(MEMKB_DEFAULT)
    shadow_memkb: int = F(MEMKB_DEFAULT)
    iommu_memkb: int = F(MEMKB_DEFAULT)
    rtc_timeoffset: int = F(0)
    exec_ssid_label: str | None = F()
    localtime: bool | None = F(kind="defbool")
    disable_migrate: bool | None = F(kind="defbool")
    blkdev_start: str | None = F()
    max_grant_frames: int = F(MAX_GRANT_DEFAULT)
    max_maptrack_frames: int = F(MAX_GRANT_DEFAULT)
    max_grant_version: int = F(-1)
    device_model_version: str = F("unknown")
    device_model_stubdomain: bool | None = F(kind="defbool")
    stubdomain_memkb: int = F(MEMKB_DEFAULT)
    stubdomain_kernel: str | None = F()
    stubdomain_cmdline: str | None = F()
    stubdomain_ramdisk: str | None = F()
    device_model: str | None = F()
    device_model_ssid_label: str | None = F()
    device_model_user: str | None = F()
    extra: list = L()
    extra_pv: list = L()
    extra_hvm: list = L()
    sched_params: DomainSchedParams = S(DomainSchedParams)
    ioports: list = L("structs")
    irqs: list = L("ints")
    iomem: list = L("structs")
    claim_mode: bool | None = F(kind="defbool")
    event_channels: int = F(0)
    kernel: str | None = F()
    cmdline: str | None = F()
    ramdisk: str | None = F()
    device_tree: str | None = F()
    acpi: bool | None = F(kind="defbool")
    bootloader: str | None = F()
    bootloader_args: list = L()
    timer_mode: str = F("default")
    nested_hvm: bool | None = F(kind="defbool")
    apic: bool | None = F(kind="defbool")
    dm_restrict: bool | None = F(kind="defbool")
    tee: str = F("none")
    # The keyed union: `type` selects `u`, written as "type.<type>".
    type: str = F("invalid", json=False)
    u: object = F(kind="keyed_union", name="type")
    arch_arm: ArchArm = S(ArchArm)
    arch_x86: ArchX86 = S(ArchX86)
    altp2m: str = F("disabled")
    vmtrace_buf_kb: int = F(0)
    vpmu: bool | None = F(kind="defbool")

    def init_type(self, type_):
        """libxl_domain_build_info_init_type."""
        self.type = type_
        self.u = UNION_TYPES[type_]()


# ---- devices ------------------------------------------------------------

@dataclass
class DeviceDisk:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    pdev_path: str | None = F()
    vdev: str | None = F()
    backend: str | None = F(kind="enum0")         # unknown when None
    format: str | None = F(kind="enum0")
    script: str | None = F()
    removable: int = F(0)
    readwrite: int = F(0)
    is_cdrom: int = F(0)
    direct_io_safe: bool = F(False, kind="bool")
    discard_enable: bool | None = F(kind="defbool")
    specification: str | None = F(kind="enum0")
    transport: str | None = F(kind="enum0")
    irq: int = F(0)
    base: int = F(0)
    colo_enable: bool | None = F(kind="defbool")
    colo_restore_enable: bool | None = F(kind="defbool")
    colo_host: str | None = F()
    colo_port: int = F(0)
    colo_export: str | None = F()
    active_disk: str | None = F()
    hidden_disk: str | None = F()
    trusted: bool | None = F(kind="defbool")


@dataclass
class DeviceNic:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)
    mtu: int = F(0)
    model: str | None = F()
    mac: str | None = F()                          # "xx:xx:xx:xx:xx:xx"
    ip: str | None = F()
    bridge: str | None = F()
    ifname: str | None = F()
    script: str | None = F()
    nictype: str = F("unknown")
    rate_bytes_per_interval: int = F(0)
    rate_interval_usecs: int = F(0)
    gatewaydev: str | None = F()


@dataclass
class DevicePci:
    func: int = F(0)
    dev: int = F(0)
    bus: int = F(0)
    domain: int = F(0)
    vdevfn: int = F(0)
    vfunc_mask: int = F(0)
    msitranslate: bool = F(False, kind="bool")
    power_mgmt: bool = F(False, kind="bool")
    permissive: bool = F(False, kind="bool")
    seize: bool = F(False, kind="bool")
    rdm_policy: str = F("invalid")
    name: str | None = F()


@dataclass
class DeviceVfb:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)
    vnc: VncInfo = S(VncInfo)
    sdl: SdlInfo = S(SdlInfo)
    keymap: str | None = F()


@dataclass
class DeviceVkb:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)
    backend_type: str = F("unknown")
    unique_id: str | None = F()
    feature_disable_keyboard: bool = F(False, kind="bool")
    feature_disable_pointer: bool = F(False, kind="bool")
    feature_abs_pointer: bool = F(False, kind="bool")
    feature_raw_pointer: bool = F(False, kind="bool")
    feature_multi_touch: bool = F(False, kind="bool")
    width: int = F(0)
    height: int = F(0)
    multi_touch_width: int = F(0)
    multi_touch_height: int = F(0)
    multi_touch_num_contacts: int = F(0)


@dataclass
class DeviceVtpm:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)
    uuid: str | None = F()


@dataclass
class DeviceP9:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    tag: str | None = F()
    path: str | None = F()
    security_model: str | None = F()
    devid: int = F(-1)


@dataclass
class DevicePvcallsif:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)


@dataclass
class DeviceDtdev:
    path: str | None = F()


@dataclass
class ChannelSocket:
    path: str | None = F()


@dataclass
class ChannelPty:
    pass


@dataclass
class DeviceChannel:
    backend_domid: int = F(0)
    backend_domname: str | None = F()
    devid: int = F(-1)
    name: str | None = F()
    # The keyed union: `connection` selects `u`, written "connection.<kind>".
    connection: str = F("unknown", json=False)
    u: object = F(kind="keyed_union", name="connection")


@dataclass
class DeviceUsbctrl:
    type: str = F("auto")
    devid: int = F(-1)
    version: int = F(0)
    ports: int = F(0)
    backend_domid: int = F(0)
    backend_domname: str | None = F()


@dataclass
class UsbdevHostdev:
    hostbus: int = F(0)
    hostaddr: int = F(0)


@dataclass
class DeviceUsbdev:
    ctrl: int = F(-1)
    port: int = F(0)
    # The keyed union: written "type.hostdev" only for that type.
    type: str = F("invalid", json=False)
    u: object = F(kind="keyed_union", name="type")


# ---- the whole domain ---------------------------------------------------

@dataclass
class DomainConfig:
    c_info: DomainCreateInfo = S(DomainCreateInfo)
    b_info: DomainBuildInfo = S(DomainBuildInfo)
    disks: list = L("structs")
    nics: list = L("structs")
    pcidevs: list = L("structs")
    dtdevs: list = L("structs")
    vfbs: list = L("structs")
    vkbs: list = L("structs")
    vtpms: list = L("structs")
    p9s: list = L("structs")
    pvcallsifs: list = L("structs")
    channels: list = L("structs")
    usbctrls: list = L("structs")
    usbdevs: list = L("structs")
    on_poweroff: str = F("destroy")
    on_reboot: str = F("destroy")
    on_watchdog: str = F("destroy")
    on_crash: str = F("destroy")
    on_soft_reset: str = F("destroy")


def fields(obj):
    return dataclasses.fields(obj)
