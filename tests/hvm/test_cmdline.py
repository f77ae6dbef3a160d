"""The QEMU command line built from xl.cfg keys (pure: no QEMU run)."""
import os

import pytest

from toolstack.devicemodel import accel as dm_accel
from toolstack.devicemodel.cmdline import (DeviceModelError, disk_dev_number,
                                           qemu_argv, tap_ifname)

from .helpers import cfg

RUN = "/run/pyxen-test"


def argv(text, **kw):
    kw.setdefault("domid", 7)
    kw.setdefault("run_dir", RUN)
    return qemu_argv(cfg(text), **kw).argv


def opt(args, flag):
    """Every value given to `flag`."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


# ---- the frame ------------------------------------------------------------

def test_base_options():
    spec = qemu_argv(cfg(""), domid=7, run_dir=RUN)
    a = spec.argv
    assert a[0] == "qemu-system-x86_64"
    assert "-nodefaults" in a and "-no-user-config" in a
    assert spec.qmp_path == f"{RUN}/qmp-libxl-7"
    assert f"socket,id=libxl-cmd,path={RUN}/qmp-libxl-7,server=on,wait=off" in opt(a, "-chardev")
    assert spec.qmp_aux_path == f"{RUN}/qmp-libxenstat-7"
    assert (f"socket,id=libxenstat-cmd,path={RUN}/qmp-libxenstat-7,server=on,"
            f"wait=off") in opt(a, "-chardev")
    assert opt(a, "-mon") == ["chardev=libxl-cmd,mode=control",
                              "chardev=libxenstat-cmd,mode=control"]
    assert "-S" in a                          # started paused, cont over QMP
    assert opt(a, "-name") == ["t"]
    assert opt(a, "-machine") == ["pc,accel=tcg"]
    assert opt(a, "-boot") == ["order=cd"]    # libxl's HVM default
    assert opt(a, "-net") == ["none"]
    assert "-no-shutdown" not in a and "-no-acpi" not in a


def test_not_paused_and_binary():
    a = argv("", start_paused=False, qemu="/opt/q")
    assert a[0] == "/opt/q" and "-S" not in a


def test_accel_kvm_and_bad_accel():
    assert opt(argv("", accel="kvm"), "-machine") == ["pc,accel=kvm"]
    with pytest.raises(DeviceModelError, match="accelerator"):
        argv("", accel="xen")


def test_pv_domain_refused():
    with pytest.raises(DeviceModelError, match="pv domain"):
        qemu_argv(cfg('type = "pv"\nkernel = "/k"\n'), domid=1, run_dir=RUN)


# ---- memory, vcpus --------------------------------------------------------

def test_memory_minus_video_ram():
    # libxl: -m (max_memkb - video_memkb); cirrus defaults to 8 MiB
    assert opt(argv("memory = 512"), "-m") == ["504"]
    assert opt(argv('memory = 512\nvga = "none"'), "-m") == ["512"]
    assert opt(argv("memory = 512\nstdvga = 1\nvideoram = 16"), "-m") == ["496"]
    assert opt(argv("memory = 512\nmaxmem = 1024\nvga = \"none\""), "-m") == ["1024"]


def test_memory_too_small_for_video():
    with pytest.raises(DeviceModelError, match="video memory"):
        argv("memory = 8")


@pytest.mark.parametrize("text,smp", [
    ("vcpus = 1", []),
    ("vcpus = 2", ["2,maxcpus=2"]),
    ("vcpus = 2\nmaxvcpus = 4", ["2,maxcpus=4"]),
])
def test_vcpus(text, smp):
    assert opt(argv(text), "-smp") == smp


# ---- firmware, boot, direct kernel ----------------------------------------

def test_seabios_is_qemus_default():
    assert opt(argv('firmware = "seabios"'), "-bios") == []
    assert opt(argv('bios = "seabios"'), "-bios") == []


def test_bios_override_path():
    assert opt(argv('bios = "seabios"\nbios_path_override = "/fw/bios.bin"'),
               "-bios") == ["/fw/bios.bin"]


def test_rombios_refused():
    with pytest.raises(DeviceModelError, match="rombios"):
        argv('bios = "rombios"')


def test_ovmf(monkeypatch, tmp_path):
    from toolstack.devicemodel import cmdline
    fd = tmp_path / "OVMF.fd"
    monkeypatch.setattr(cmdline, "OVMF_PATHS", (str(fd),))
    with pytest.raises(DeviceModelError, match="OVMF"):
        argv('bios = "ovmf"')
    fd.write_bytes(b"\0")
    assert opt(argv('bios = "ovmf"'), "-bios") == [str(fd)]


def test_boot_order():
    assert opt(argv('boot = "c"'), "-boot") == ["order=c"]
    assert opt(argv('boot = "dcn"'), "-boot") == ["order=dcn"]


def test_direct_kernel_boot():
    a = argv('kernel = "/k/vmlinuz"\nramdisk = "/k/initrd"\n'
             'cmdline = "console=ttyS0 quiet"')
    assert opt(a, "-kernel") == ["/k/vmlinuz"]
    assert opt(a, "-initrd") == ["/k/initrd"]
    assert opt(a, "-append") == ["console=ttyS0 quiet"]


# ---- disks ----------------------------------------------------------------

@pytest.mark.parametrize("vdev,expect", [
    ("hda", (768, 0, 0)), ("hdb", (832, 1, 0)), ("hdc", (5632, 2, 0)),
    ("hdd", (5696, 3, 0)), ("hda1", (769, 0, 1)),
    ("sda", (2048, 0, 0)), ("sdb1", (2065, 1, 1)),
    ("xvda", (51712, 0, 0)), ("xvdb2", (51730, 1, 2)),
    ("xvdq", ((1 << 28) | (16 << 8), 16, 0)), ("xvdaa", ((1 << 28) | (26 << 8), 26, 0)),
    ("d0p1", (51713, 0, 1)),
    ("hde", None), ("sdq", None), ("xvda01", None), ("51712", None), ("vda", None),
])
def test_disk_dev_number(vdev, expect):
    assert disk_dev_number(vdev) == expect


def test_ide_disks_by_index():
    a = argv("disk = [ '/i/a.img,raw,hda,w', '/i/c.img,raw,hdc,w', "
             "'/i/x.img,raw,xvdb,w' ]")
    assert opt(a, "-drive") == [
        "file=/i/a.img,if=ide,index=0,media=disk,format=raw,cache=writeback",
        "file=/i/c.img,if=ide,index=2,media=disk,format=raw,cache=writeback",
        "file=/i/x.img,if=ide,index=1,media=disk,format=raw,cache=writeback"]
    assert "lsi53c895a" not in opt(a, "-device")


def test_fifth_disk_not_emulated():
    spec = qemu_argv(cfg("disk = [ '/i/e.img,raw,xvde,w' ]"), domid=1, run_dir=RUN)
    assert opt(spec.argv, "-drive") == []
    assert "Only 4 emulated IDE disks" in spec.warnings[0]


def test_scsi_disk_and_controller_first():
    a = argv("disk = [ '/i/a.img,raw,hda,w', '/i/s.img,raw,sdb,r' ]")
    devices = opt(a, "-device")
    assert devices[devices.index("lsi53c895a") + 1] == "scsi-hd,drive=scsi0-hd1,scsi-id=1"
    # the HBA comes before every drive, as libxl adds it ahead
    assert a.index("lsi53c895a") < a.index("-drive")
    assert ("file=/i/s.img,id=scsi0-hd1,format=raw,if=none,readonly=on,"
            "cache=writeback") in opt(a, "-drive")


def test_ahci():
    a = argv('hdtype = "ahci"\ndisk = [ "/i/a.img,qcow2,hda,w" ]')
    assert "ahci,id=ahci0" in opt(a, "-device")
    assert "ide-hd,bus=ahci0.0,unit=0,drive=ahcidisk-0" in opt(a, "-device")
    assert opt(a, "-drive") == [
        "file=/i/a.img,if=none,id=ahcidisk-0,format=qcow2,cache=writeback"]


def test_cdrom():
    a = argv("disk = [ '/iso/d.iso,raw,hdc:cdrom,r' ]")
    assert opt(a, "-drive") == ["if=none,readonly=on,id=ide-5632,file=/iso/d.iso,format=raw"]
    assert opt(a, "-device")[-1] == "ide-cd,id=ide-5632,drive=ide-5632,bus=ide.1,unit=0"


def test_empty_cdrom():
    a = argv("disk = [ ',raw,hdd:cdrom,r' ]")
    assert opt(a, "-drive") == ["if=none,readonly=on,id=ide-5696"]
    assert "ide-cd,id=ide-5696,drive=ide-5696,bus=ide.1,unit=1" in opt(a, "-device")


@pytest.mark.parametrize("extra,bus", [("", "IDE"), ('hdtype = "ahci"\n', "AHCI")])
def test_read_only_hard_disk_refused(extra, bus):
    with pytest.raises(DeviceModelError, match=f"read-only {bus} disk"):
        argv(extra + "disk = [ '/i/a.img,raw,hda,r' ]")


@pytest.mark.parametrize("fmt,qemu", [("raw", "raw"), ("qcow2", "qcow2"),
                                      ("vhd", "vpc"), ("qed", "qed")])
def test_disk_formats(fmt, qemu):
    a = argv(f"disk = [ 'format={fmt}, vdev=hda, target=/i/a' ]")
    assert f"format={qemu}" in opt(a, "-drive")[0]


def test_comma_in_path_doubled():
    a = argv("disk = [ 'vdev=hda, target=/i/a,b.img' ]")
    assert opt(a, "-drive")[0].startswith("file=/i/a,,b.img,")


# ---- network --------------------------------------------------------------

def test_vif_tap_in_bridge_when_privileged():
    spec = qemu_argv(cfg("vif = [ 'mac=00:16:3e:00:00:01, bridge=br9, model=e1000' ]"),
                     domid=5, run_dir=RUN, privileged=True)
    a = spec.argv
    assert opt(a, "-device")[-1] == "e1000,id=nic0,netdev=net0,mac=00:16:3e:00:00:01"
    assert opt(a, "-netdev") == [
        "type=tap,id=net0,ifname=vif5.0-emu,br=br9,script=no,downscript=no"]
    assert spec.taps == [("vif5.0-emu", "br9")]
    assert "-net" not in a


def test_vif_user_networking_without_privilege():
    spec = qemu_argv(cfg("vif = [ 'model=rtl8139', 'model=e1000' ]"),
                     domid=5, run_dir=RUN, privileged=False)
    assert opt(spec.argv, "-netdev") == ["type=user,id=net0", "type=user,id=net1"]
    assert [d.split(",")[0] for d in opt(spec.argv, "-device")[-2:]] == ["rtl8139", "e1000"]
    assert spec.taps == []


def test_vif_default_model_is_rtl8139():
    a = argv("vif = [ 'bridge=xenbr0' ]")
    assert opt(a, "-device")[-1].startswith("rtl8139,id=nic0,netdev=net0,mac=00:16:3e:")


def test_vif_unknown_model():
    with pytest.raises(DeviceModelError, match="unknown NIC model 'tulip9'"):
        argv("vif = [ 'model=tulip9' ]")


def test_vif_pv_only_has_no_emulated_nic():
    a = argv("vif = [ 'type=vif, bridge=xenbr0' ]", privileged=True)
    assert opt(a, "-netdev") == [] and opt(a, "-net") == ["none"]


def test_vifname_gets_emu_suffix():
    c = cfg("vif = [ 'vifname=guestnic' ]")
    assert tap_ifname(3, c.nics[0]) == "guestnic-emu"
    spec = qemu_argv(c, domid=3, run_dir=RUN, privileged=True)
    assert spec.taps == [("guestnic-emu", "xenbr0")]


def test_vif_name_too_long():
    with pytest.raises(DeviceModelError, match="longer than 15"):
        argv("vif = [ 'vifname=averyverylongname' ]", privileged=True)


# ---- serial, display ------------------------------------------------------

def test_serial_pty_by_default_with_log():
    spec = qemu_argv(cfg(""), domid=1, run_dir=RUN)
    assert f"pty,id=serial0,logfile={RUN}/serial0.log" in opt(spec.argv, "-chardev")
    assert opt(spec.argv, "-serial") == ["chardev:serial0"]
    assert spec.serial_logs == [f"{RUN}/serial0.log"]


def test_serial_other_backends_passed_through():
    spec = qemu_argv(cfg('serial = "file:/tmp/s.log"'), domid=1, run_dir=RUN)
    assert opt(spec.argv, "-serial") == ["file:/tmp/s.log"]
    assert spec.serial_logs == [None]
    spec = qemu_argv(cfg('serial = [ "pty", "none" ]'), domid=1, run_dir=RUN)
    assert opt(spec.argv, "-serial") == ["chardev:serial0", "none"]


def test_vnc_and_sdl_off_by_default():
    a = argv("")
    assert opt(a, "-vnc") == ["none"] and opt(a, "-display") == ["none"]


@pytest.mark.parametrize("text,vnc", [
    ("vnc = 1", "127.0.0.1:0"),
    ('vnc = 1\nvnclisten = "0.0.0.0"\nvncdisplay = 3', "0.0.0.0:3"),
    ('vnc = 1\nvnclisten = "127.0.0.1:5"', "127.0.0.1:5"),
    ("vnc = 1\nvncunused = 1", "127.0.0.1:0,to=99"),
    ('vnc = 1\nvncpasswd = "s3cret"', "127.0.0.1:0,password=on"),
])
def test_vnc(text, vnc):
    assert opt(argv(text), "-vnc") == [vnc]


def test_vnclisten_with_display_conflict():
    # xl's parser refuses this already; libxl checks it again (a typed
    # config can come from elsewhere than xl.cfg)
    c = cfg('vnc = 1\nvnclisten = "127.0.0.1:5"')
    c.b_info.u.vnc.display = 2
    with pytest.raises(DeviceModelError, match="vnclisten contains display"):
        qemu_argv(c, domid=1, run_dir=RUN)


def test_sdl():
    assert opt(argv("sdl = 1"), "-display") == ["sdl"]


def test_vga_kinds():
    assert "VGA,vgamem_mb=16" in opt(argv("stdvga = 1"), "-device")
    assert "cirrus-vga,vgamem_mb=8" in opt(argv(""), "-device")
    assert not [d for d in opt(argv('vga = "none"'), "-device") if "vga" in d.lower()]


# ---- acpi, clock, usb -----------------------------------------------------

def test_acpi():
    assert "-no-acpi" in argv("acpi = 0")
    assert "-no-acpi" not in argv("acpi = 1")


def test_localtime_and_offset():
    assert opt(argv("localtime = 1"), "-rtc") == ["base=localtime"]
    assert opt(argv("localtime = 0"), "-rtc") == []
    assert opt(argv("rtc_timeoffset = 3600", now=0), "-rtc") == ["base=1970-01-01T01:00:00"]
    c = cfg("rtc_timeoffset = 0")
    c.b_info.rtc_timeoffset = (1 << 32) - 60      # -60 as libxl's uint32
    assert opt(qemu_argv(c, domid=1, run_dir=RUN, now=86400).argv, "-rtc") == [
        "base=1970-01-01T23:59:00"]


def test_usb():
    a = argv('usb = 1\nusbdevice = "tablet"')
    assert "-usb" in a and opt(a, "-usbdevice") == ["tablet"]
    assert "nec-usb-xhci,id=usb" in opt(argv("usbversion = 3"), "-device")
    assert "-usb" not in argv("")


# ---- life-cycle options, extra args ----------------------------------------

def test_no_shutdown_only_when_preserved():
    assert "-no-shutdown" in argv('on_poweroff = "preserve"')
    assert "-no-shutdown" not in argv('on_poweroff = "destroy"')


def test_device_model_args_last():
    a = argv('device_model_args = [ "-d", "guest_errors" ]\n'
             'device_model_args_hvm = [ "-icount", "shift=0" ]\n'
             "disk = [ '/i/a.img,raw,hda,w' ]\nvif = [ 'model=e1000' ]")
    assert a[-4:] == ["-d", "guest_errors", "-icount", "shift=0"]


# ---- accelerator choice ---------------------------------------------------

def test_hardware_virt_flag():
    assert dm_accel.cpu_has_hardware_virt("flags\t: fpu vme vmx sse\n")
    assert dm_accel.cpu_has_hardware_virt("flags\t: fpu svm\n")
    assert not dm_accel.cpu_has_hardware_virt("flags\t: fpu sse2 hypervisor\n")


def test_choose_accel(monkeypatch):
    monkeypatch.setattr(dm_accel, "cpu_has_hardware_virt", lambda cpuinfo=None: False)
    monkeypatch.setattr(dm_accel, "kvm_device_works", lambda: (True, "ok"))
    assert dm_accel.choose_accel()[0] == "tcg"       # software KVM: TCG
    assert dm_accel.choose_accel("kvm")[0] == "kvm"  # asked for: honoured
    monkeypatch.setattr(dm_accel, "cpu_has_hardware_virt", lambda cpuinfo=None: True)
    assert dm_accel.choose_accel()[0] == "kvm"
    monkeypatch.setattr(dm_accel, "kvm_device_works", lambda: (False, "/dev/kvm: No such file"))
    assert dm_accel.choose_accel() == ("tcg", "/dev/kvm: No such file")
    with pytest.raises(RuntimeError, match="kvm unusable"):
        dm_accel.choose_accel("kvm")
    with pytest.raises(ValueError):
        dm_accel.choose_accel("xen")


def test_kvm_device_missing(tmp_path):
    ok, why = dm_accel.kvm_device_works(str(tmp_path / "kvm"))
    assert not ok and "No such file" in why


def test_pvpanic_and_crash_preserve():
    a = argv("")
    assert "pvpanic" in opt(a, "-device")
    assert opt(a, "-action") == []
    assert opt(argv('on_crash = "preserve"'), "-action") == ["panic=pause"]


@pytest.mark.parametrize("path,expect", [
    ("examples/linux-hvm.cfg", ["-kernel", "guests/build/linux/vmlinuz"]),
    ("examples/bootsector-hvm.cfg", ["-boot", "order=c"]),
])
def test_example_configs(path, expect):
    from toolstack.config import load
    from .helpers import ROOT
    c, warnings = load(os.path.join(ROOT, path))
    a = qemu_argv(c, domid=1, run_dir=RUN).argv
    assert warnings == []
    i = a.index(expect[0])
    assert a[i:i + 2] == expect
    assert opt(a, "-drive")[0].endswith("if=ide,index=0,media=disk,format=raw,cache=writeback")


def test_run_dir_too_long_for_socket():
    with pytest.raises(DeviceModelError, match="too long for a unix socket"):
        argv("", run_dir="/" + "r" * 120)


def test_device_model_override_is_the_binary():
    assert argv('device_model_override = "/opt/qemu/bin/qemu-system-x86_64"')[0] == \
        "/opt/qemu/bin/qemu-system-x86_64"


@pytest.mark.parametrize("text,msg", [
    ('device_model_version = "qemu-xen-traditional"', "qemu-xen-traditional"),
    ("device_model_stubdomain_override = 1", "stub domains"),
    ("spice = 1\nspiceport = 6000\nspicedisable_ticketing = 1", "spice"),
    ("pci = [ '0000:01:00.0' ]", "PCI passthrough"),
    ('soundhw = "gus"', "soundhw 'gus' not supported"),
])
def test_unsupported_is_a_clear_error(text, msg):
    with pytest.raises(DeviceModelError, match=msg):
        argv(text)


def test_soundhw():
    a = argv('soundhw = "hda"')
    assert opt(a, "-audiodev") == ["none,id=snd0"]
    assert ["intel-hda", "hda-duplex,audiodev=snd0"] == [
        d for d in opt(a, "-device") if "hda" in d]
    assert "AC97,audiodev=snd0" in opt(argv('soundhw = "ac97"'), "-device")
