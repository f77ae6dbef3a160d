"""The QEMU command line for an HVM domain, from its typed DomainConfig.

Pure (no I/O): `qemu_argv()` follows libxl's
libxl__build_device_model_args_new (libxl_dm.c, Xen 4.17) option by option,
with the differences a QEMU without Xen needs:
- `-machine pc,accel=kvm|tcg` instead of xenfv/accel=xen, and no -xen-domid;
- the `pty` serial is a chardev with a logfile, so the console output is
  kept even while nobody has the pty open (what xl console -t serial and the
  tests read);
- localtime/rtc_timeoffset, which Xen gives the guest's RTC through HVM
  params, become `-rtc base=...`;
- `-no-shutdown` only when on_poweroff is "preserve" (libxl always passes it
  because Xen, not QEMU, owns the domain);
- a pvpanic device, so that a guest kernel panic reaches the toolstack (the
  GUEST_PANICKED event) as SCHEDOP_shutdown(crash) does on Xen; with
  on_crash = "preserve" QEMU keeps the crashed guest (`-action panic=pause`);
- device_model_args (b_info.extra, extra_hvm) come last, after everything,
  so that they can override any option.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import time

# libxl__qemu_disk_format_string
QEMU_FORMATS = {None: "raw", "raw": "raw", "qcow": "qcow", "qcow2": "qcow2",
                "vhd": "vpc", "qed": "qed", "empty": None}
# NIC models QEMU's pc machine has (libxl passes nic->model through; these
# are the ones xl-network-configuration(5) names plus virtio).
NIC_MODELS = ("rtl8139", "e1000", "e1000e", "ne2k_pci", "pcnet", "i82551",
              "i82557b", "i82559er", "virtio-net-pci")
DEFAULT_NIC_MODEL = "rtl8139"          # libxl__device_nic_setdefault, HVM
TAP_DEVICE_SUFFIX = "-emu"             # libxl_internal.h
OVMF_PATHS = ("/usr/share/ovmf/OVMF.fd", "/usr/share/OVMF/OVMF_CODE.fd")
MEMKB_DEFAULT = (1 << 64) - 1


class DeviceModelError(ValueError):
    """A config the device model cannot be built for (libxl: ERROR_INVAL).
    The message is one line, naming the problem."""
    code = "ERROR_INVAL"


@dataclasses.dataclass
class DeviceModelSpec:
    argv: list                    # the full command, argv[0] the binary
    qmp_path: str                 # QMP control socket (the supervisor's)
    qmp_aux_path: str             # second QMP socket, for one-shot clients
    serial_logs: list             # per serial port: the logfile (or None)
    taps: list                    # (ifname, bridge) to enslave once created
    accel: str                    # "kvm" or "tcg"
    warnings: list                # libxl's LOG(WARN) lines (disks skipped)


# ---- disks ----------------------------------------------------------------

def _virtdisk(vdev, prefix, max_index, max_part):
    """device_virtdisk_matches: (disk, partition) or None."""
    if not vdev.startswith(prefix):
        return None
    m = re.fullmatch(r"([a-z]+)([1-9][0-9]*)?", vdev[len(prefix):])
    if not m:
        return None
    index = -1
    for c in m.group(1):
        index = (index + 1) * 26 + (ord(c) - ord("a"))
        if index > max_index:
            return None
    part = int(m.group(2)) if m.group(2) else 0
    if part > max_part:
        return None
    return index, part


def disk_dev_number(vdev):
    """libxl__device_disk_dev_number with disk/partition asked for:
    (dev_number, disk, partition), or None when the name is not valid."""
    m = re.fullmatch(r"d([0-9]+)p([0-9]+)", vdev)
    dp = (int(m.group(1)), int(m.group(2))) if m else None
    if dp and not (dp[0] < (1 << 20) and dp[1] < 256):
        dp = None
    dp = dp or _virtdisk(vdev, "xvd", (1 << 20) - 1, 255)
    if dp:
        disk, part = dp
        if disk <= 15 and part <= 15:
            return (202 << 8) | (disk << 4) | part, disk, part
        return (1 << 28) | (disk << 8) | part, disk, part
    hd = _virtdisk(vdev, "hd", 3, 63)
    if hd:
        disk, part = hd
        return ((3 if disk < 2 else 22) << 8) | ((disk & 1) << 6) | part, disk, part
    sd = _virtdisk(vdev, "sd", 15, 15)
    if sd:
        disk, part = sd
        return (8 << 8) | (disk << 4) | part, disk, part
    return None         # a bare number gives no disk index: -1 in libxl


def _disk_args(cfg, hdtype, warnings):
    args = []
    disks = cfg.disks
    # libxl adds the SCSI HBA ahead of everything for any sdX hard disk.
    if any(not d.is_cdrom and (d.vdev or "").startswith("sd") for d in disks):
        args += ["-device", "lsi53c895a"]
    if hdtype == "ahci":
        args += ["-device", "ahci,id=ahci0"]
    for d in disks:
        vdev = d.vdev or ""
        num = disk_dev_number(vdev)
        if num is None:
            warnings.append(f"unable to determine disk number for {vdev}")
            continue
        dev_number, disk, _part = num
        if d.format not in QEMU_FORMATS:
            raise DeviceModelError(f"disk {vdev}: format {d.format} has no QEMU driver")
        fmt = QEMU_FORMATS[d.format]
        empty = d.format == "empty" or not d.pdev_path
        if empty and not d.is_cdrom:
            warnings.append(f"Cannot support empty disk format for {vdev}")
            continue
        if d.is_cdrom:
            if disk > 4:
                warnings.append(f"Emulated CDROM can be only one of the first 4 "
                                f"disks; {vdev} is not emulated")
                continue
            drive_id = f"ide-{dev_number}"
            drive = f"if=none,readonly=on,id={drive_id}"
            if not empty:
                drive += f",file={_escape(d.pdev_path)},format={fmt}"
            args += ["-drive", drive, "-device",
                     f"ide-cd,id={drive_id},drive={drive_id},"
                     f"bus=ide.{disk // 2},unit={disk % 2}"]
            continue
        path = _escape(d.pdev_path)
        if vdev.startswith("sd"):
            drive_id = f"scsi0-hd{disk}"
            ro = "off" if d.readwrite else "on"
            args += ["-drive", f"file={path},id={drive_id},format={fmt},"
                               f"if=none,readonly={ro},cache=writeback",
                     "-device", f"scsi-hd,drive={drive_id},scsi-id={disk}"]
        elif disk < 6 and hdtype == "ahci":
            if not d.readwrite:
                raise DeviceModelError("qemu-xen doesn't support read-only AHCI disk drivers")
            args += ["-drive", f"file={path},if=none,id=ahcidisk-{disk},"
                               f"format={fmt},cache=writeback",
                     "-device", f"ide-hd,bus=ahci0.{disk},unit=0,drive=ahcidisk-{disk}"]
        elif disk < 4:
            if not d.readwrite:
                raise DeviceModelError("qemu-xen doesn't support read-only IDE disk drivers")
            args += ["-drive", f"file={path},if=ide,index={disk},media=disk,"
                               f"format={fmt},cache=writeback"]
        else:
            warnings.append(f"Only 4 emulated IDE disks are supported; {vdev} "
                            f"is not emulated")
    return args


def _escape(path):
    """QEMU option values double a literal comma."""
    return str(path).replace(",", ",,")


# ---- NICs -----------------------------------------------------------------

def tap_ifname(domid, nic):
    """libxl__device_nic_devname for VIF_IOEMU: vif<domid>.<devid>-emu, or
    the configured vifname with the -emu suffix."""
    base = nic.ifname or f"vif{domid}.{nic.devid}"
    return base + TAP_DEVICE_SUFFIX


def _nic_mac(cfg, nic):
    if nic.mac:
        return nic.mac
    # The parser normally fills a random Xen-OUI MAC; stay deterministic here.
    h = hashlib.sha256(f"{cfg.c_info.uuid}/{nic.devid}".encode()).digest()
    return "00:16:3e:%02x:%02x:%02x" % (h[0] & 0x7f, h[1], h[2])


def _nic_args(cfg, domid, privileged, taps):
    args, emulated = [], 0
    for i, nic in enumerate(cfg.nics):
        if nic.nictype == "vif":          # type=vif: PV only, no emulated NIC
            continue
        devid = nic.devid if nic.devid >= 0 else i
        model = nic.model or DEFAULT_NIC_MODEL
        if model not in NIC_MODELS:
            raise DeviceModelError(f"vif {devid}: unknown NIC model {model!r} "
                                   f"(one of {', '.join(NIC_MODELS)})")
        args += ["-device", f"{model},id=nic{devid},netdev=net{devid},"
                            f"mac={_nic_mac(cfg, nic)}"]
        if privileged:
            ifname = tap_ifname(domid, dataclasses.replace(nic, devid=devid))
            if len(ifname) > 15:
                raise DeviceModelError(f"vif {devid}: interface name {ifname} "
                                       f"longer than 15 characters")
            bridge = nic.bridge or "xenbr0"
            args += ["-netdev", f"type=tap,id=net{devid},ifname={ifname},"
                                f"br={bridge},script=no,downscript=no"]
            taps.append((ifname, bridge))
        else:
            args += ["-netdev", f"type=user,id=net{devid}"]
        emulated += 1
    if not emulated:                    # tell QEMU not to create any NIC
        args += ["-net", "none"]
    return args


# ---- the rest -------------------------------------------------------------

def _vnc_args(h):
    vnc = h.vnc
    if not vnc.enable:
        return ["-vnc", "none"]
    if vnc.listen and ":" in vnc.listen:
        if vnc.display:
            raise DeviceModelError("vncdisplay set, vnclisten contains display")
        arg = vnc.listen
    else:
        arg = f"{vnc.listen or '127.0.0.1'}:{vnc.display}"
    if vnc.passwd:
        arg += ",password=on"
    if vnc.findunused:
        arg += ",to=99"
    return ["-vnc", arg]


def _serial_args(h, run_dir):
    if h.serial and h.serial_list:
        raise DeviceModelError("Both serial and serial_list set")
    ports = h.serial_list or [h.serial or "pty"]
    args, logs = [], []
    for i, port in enumerate(ports):
        if port == "pty":
            log = os.path.join(run_dir, f"serial{i}.log")
            args += ["-chardev", f"pty,id=serial{i},logfile={_escape(log)}",
                     "-serial", f"chardev:serial{i}"]
            logs.append(log)
        else:
            args += ["-serial", port]
            logs.append(None)
    return args, logs


def _bios_args(h):
    if h.system_firmware:
        return ["-bios", h.system_firmware]
    if h.bios in ("unknown", "seabios"):
        return []                       # QEMU's own SeaBIOS
    if h.bios == "ovmf":
        for p in OVMF_PATHS:
            if os.path.exists(p):
                return ["-bios", p]
        raise DeviceModelError("bios=ovmf: no OVMF image (install Debian's ovmf)")
    raise DeviceModelError(f"bios={h.bios} is not supported by the QEMU device model")


def _usb_args(h):
    if h.usbdevice and h.usbdevice_list:
        raise DeviceModelError("Both usbdevice and usbdevice_list set")
    if h.usb or h.usbdevice or h.usbdevice_list:
        args = ["-usb"]
        for dev in ([h.usbdevice] if h.usbdevice else list(h.usbdevice_list)):
            args += ["-usbdevice", dev]
        return args
    v = h.usbversion
    if v == 1:
        return ["-device", "piix3-usb-uhci,id=usb"]
    if v == 2:
        args = ["-device", "ich9-usb-ehci1,id=usb,addr=0x1d.0x7,multifunction=on"]
        for i in range(1, 4):
            args += ["-device", f"ich9-usb-uhci{i},masterbus=usb.0,"
                                f"firstport={2 * (i - 1)},addr=0x1d.{i - 1:#x},"
                                f"multifunction=on"]
        return args
    if v == 3:
        return ["-device", "nec-usb-xhci,id=usb"]
    if v:
        raise DeviceModelError("usbversion parameter is invalid, must be between 1 and 3")
    return []


def _vga_args(b, h):
    kind = h.vga.kind if h.vga.kind != "unknown" else "cirrus"
    # libxl's defaults: 16 MiB for std, 8 MiB for cirrus (qemu-xen).
    default_kb = {"std": 16384, "cirrus": 8192, "qxl": 131072, "none": 0}.get(kind, 0)
    video_kb = b.video_memkb if b.video_memkb != MEMKB_DEFAULT else default_kb
    mb = video_kb // 1024
    if kind == "std":
        return ["-device", f"VGA,vgamem_mb={mb}"], video_kb
    if kind == "cirrus":
        return ["-device", f"cirrus-vga,vgamem_mb={mb}"], video_kb
    if kind == "qxl":
        return ["-device", f"qxl-vga,vram_size_mb={video_kb // 2 // 1024},"
                           f"ram_size_mb={video_kb // 2 // 1024}"], video_kb
    if kind == "none":
        return [], 0
    raise DeviceModelError("Invalid emulated video card specified")


def _rtc_args(b, now):
    localtime = bool(b.localtime)
    offset = b.rtc_timeoffset
    if offset >= 1 << 31:                 # the parser keeps it as uint32
        offset -= 1 << 32
    if not localtime and not offset:
        return []
    if not offset:
        return ["-rtc", "base=localtime"]
    t = now + offset
    st = time.localtime(t) if localtime else time.gmtime(t)
    return ["-rtc", "base=" + time.strftime("%Y-%m-%dT%H:%M:%S", st)]


# soundhw names (QEMU's -soundhw, which libxl passes, is gone since QEMU
# 7.1) -> the devices it created, on a silent audio backend.
SOUND_DEVICES = {"ac97": ["AC97,audiodev=snd0"], "es1370": ["ES1370,audiodev=snd0"],
                 "sb16": ["sb16,audiodev=snd0"],
                 "hda": ["intel-hda", "hda-duplex,audiodev=snd0"]}


def _sound_args(h):
    if not h.soundhw:
        return []
    if h.soundhw not in SOUND_DEVICES:
        raise DeviceModelError(f"soundhw {h.soundhw!r} not supported "
                               f"(one of {', '.join(SOUND_DEVICES)})")
    args = ["-audiodev", "none,id=snd0"]
    for dev in SOUND_DEVICES[h.soundhw]:
        args += ["-device", dev]
    return args


def _unsupported(cfg):
    """What this device model cannot do: one clear line each."""
    b, h = cfg.b_info, cfg.b_info.u
    if b.device_model_version == "qemu_xen_traditional":
        raise DeviceModelError("device_model_version=qemu-xen-traditional is not "
                               "supported (only qemu-xen)")
    if b.device_model_stubdomain:
        raise DeviceModelError("device model stub domains are not supported")
    if h.spice.enable:
        raise DeviceModelError("spice is not supported by this device model")
    if cfg.pcidevs:
        raise DeviceModelError("PCI passthrough is not supported by this device model")
    if h.gfx_passthru:
        raise DeviceModelError("gfx_passthru is not supported by this device model")


def qemu_argv(cfg, *, domid, run_dir, accel="tcg", privileged=False,
              start_paused=True, now=None, qemu=None):
    """The device model command for HVM domain `domid` (a DeviceModelSpec).

    accel: "kvm" or "tcg" (the caller decides; see devicemodel.accel).
    privileged: NICs on TAP devices in their bridge; otherwise QEMU's user
    networking.  start_paused: `-S`, so the toolstack connects QMP and wires
    the TAPs before the vCPUs run (`cont` starts them), as libxl does.
    """
    if cfg.c_info.type != "hvm":
        raise DeviceModelError(f"a {cfg.c_info.type} domain has no QEMU device model here")
    if accel not in ("kvm", "tcg"):
        raise DeviceModelError(f"unknown accelerator {accel!r} (kvm or tcg)")
    _unsupported(cfg)
    b, h = cfg.b_info, cfg.b_info.u
    # device_model_override names the binary, as for libxl
    qemu = qemu or b.device_model or "qemu-system-x86_64"
    now = time.time() if now is None else now
    warnings, taps = [], []
    qmp_path = os.path.join(run_dir, f"qmp-libxl-{domid}")
    aux_path = os.path.join(run_dir, f"qmp-libxenstat-{domid}")
    if len(aux_path.encode()) > 107:        # sockaddr_un.sun_path
        raise DeviceModelError(f"run directory {run_dir} too long for a "
                               f"unix socket path")
    # QEMU serves one client per monitor: libxl's two (its own, and one for
    # libxenstat); the second lets other xl processes query and command.
    argv = [qemu, "-no-user-config", "-nodefaults",
            "-chardev", f"socket,id=libxl-cmd,path={_escape(qmp_path)},server=on,wait=off",
            "-mon", "chardev=libxl-cmd,mode=control",
            "-chardev", f"socket,id=libxenstat-cmd,path={_escape(aux_path)},"
                        f"server=on,wait=off",
            "-mon", "chardev=libxenstat-cmd,mode=control"]
    if start_paused:
        argv.append("-S")
    if cfg.on_poweroff == "preserve":
        argv.append("-no-shutdown")
    if cfg.on_crash == "preserve":
        argv += ["-action", "panic=pause"]
    if cfg.c_info.name:
        argv += ["-name", cfg.c_info.name]
    argv += _vnc_args(h)
    argv += ["-display", "sdl" if h.sdl.enable else "none"]
    if h.keymap:
        argv += ["-k", h.keymap]
    argv += _bios_args(h)
    if b.kernel:
        argv += ["-kernel", b.kernel]
    if b.ramdisk:
        argv += ["-initrd", b.ramdisk]
    if b.cmdline:
        argv += ["-append", b.cmdline]
    serial, serial_logs = _serial_args(h, run_dir)
    argv += serial
    vga, video_kb = _vga_args(b, h)
    argv += vga
    argv += ["-boot", f"order={h.boot or 'cd'}"]
    argv += _usb_args(h)
    argv += _sound_args(h)
    acpi = b.acpi is not False and h.acpi is not False
    if not acpi:
        argv.append("-no-acpi")
    if b.max_vcpus > 1:
        avail = len(b.avail_vcpus) if b.avail_vcpus is not None else b.max_vcpus
        argv += ["-smp", f"{avail},maxcpus={b.max_vcpus}"]
    argv += ["-device", "pvpanic"]
    argv += _nic_args(cfg, domid, privileged, taps)
    argv += _rtc_args(b, now)
    argv += ["-machine", f"pc,accel={accel}"]
    if b.max_memkb == MEMKB_DEFAULT:
        raise DeviceModelError("memory not set")
    ram_mb = (b.max_memkb - video_kb) // 1024
    if ram_mb < 1:
        raise DeviceModelError(f"memory {b.max_memkb // 1024} MiB leaves no RAM "
                               f"after {video_kb // 1024} MiB of video memory")
    argv += ["-m", str(ram_mb)]
    argv += _disk_args(cfg, h.hdtype, warnings)
    argv += list(b.extra) + list(b.extra_hvm)
    return DeviceModelSpec(argv=argv, qmp_path=qmp_path, qmp_aux_path=aux_path,
                           serial_logs=serial_logs,
                           taps=taps, accel=accel, warnings=warnings)
