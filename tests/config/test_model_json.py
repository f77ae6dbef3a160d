"""DomainConfig defaults, xl's semantics for each key, and libxl's JSON form."""
import dataclasses
import json

import pytest

from toolstack.config import ConfigError, DomainConfig, build, parse_text, to_json
from toolstack.config import model
from toolstack.config.jsonout import _string

BASE = 'name = "t"\nkernel = "/k"\n'


def dc(text, ncpus=8):
    d, warnings = build(parse_text(text, "t.cfg"), ncpus)
    return d, warnings


def js(text, ncpus=8):
    return json.loads(to_json(dc(text, ncpus)[0]))


def fails(text):
    with pytest.raises(ConfigError) as e:
        dc(text)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---- facts from Xen 4.17 quoted in the issue --------------------------------

def test_memory_and_maxmem():
    b = js(BASE + "memory = 1024\nmaxmem = 2048\n")["b_info"]
    assert b["max_memkb"] == 2097152 and b["target_memkb"] == 1048576


def test_vcpus_and_maxvcpus():
    b = js(BASE + "vcpus = 2\nmaxvcpus = 4\n")["b_info"]
    assert b["max_vcpus"] == 4 and b["avail_vcpus"] == [0, 1]


def test_maxmem_defaults_to_memory_and_maxvcpus_to_vcpus():
    b = js(BASE + "memory = 64\nvcpus = 3\n")["b_info"]
    assert b["max_memkb"] == b["target_memkb"] == 65536
    assert b["max_vcpus"] == 3 and b["avail_vcpus"] == [0, 1, 2]


def test_value_forms():
    doc = js(BASE + 'on_crash = "coredump-restart"\nlocaltime = 1\nacpi = 0\n'
             'on_reboot = "rename-restart"\n')
    assert doc["on_crash"] == "coredump_restart" and doc["on_reboot"] == "restart_rename"
    assert doc["b_info"]["localtime"] == "True" and doc["b_info"]["acpi"] == "False"
    assert doc["c_info"]["run_hotplug_scripts"] == "True"


# ---- defaults -----------------------------------------------------------------

def test_minimal_pv_defaults():
    doc = js(BASE)
    assert list(doc) == ["c_info", "b_info", "on_reboot", "on_soft_reset"]
    assert list(doc["c_info"]) == ["type", "name", "uuid", "run_hotplug_scripts"]
    assert doc["c_info"]["type"] == "pv"          # xl's x86 default
    assert doc["on_reboot"] == "restart" and doc["on_soft_reset"] == "soft_reset"
    b = doc["b_info"]
    assert list(b) == ["sched_params", "claim_mode", "kernel", "type.pv",
                       "arch_arm", "arch_x86"]
    assert b["sched_params"] == {} and b["claim_mode"] == "True"


def test_defaults_match_libxl_init_values():
    d = DomainConfig()
    assert d.b_info.max_memkb == model.MEMKB_DEFAULT == 2**64 - 1
    assert d.b_info.max_grant_frames == model.MAX_GRANT_DEFAULT == 2**32 - 1
    assert d.b_info.sched_params.weight == -1 and d.on_poweroff == "destroy"
    assert to_json(d).startswith('{\n    "c_info": {\n')


def test_uuid_given_or_generated():
    u = "0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"
    assert js(BASE + f'uuid = "{u}"\n')["c_info"]["uuid"] == u.lower()
    a, b = js(BASE)["c_info"]["uuid"], js(BASE)["c_info"]["uuid"]
    assert a != b and len(a) == 36
    assert "Failed to parse UUID" in fails(BASE + 'uuid = "nope"\n')


# ---- guest type -----------------------------------------------------------------

@pytest.mark.parametrize("text,t", [
    ('type = "pv"\n', "pv"), ('type = "pvh"\n', "pvh"), ('type = "hvm"\n', "hvm"),
    ('builder = "hvm"\n', "hvm"), ('builder = "generic"\n', "pv"),
    ('type = "hvm"\nbuilder = "hvm"\n', "hvm"),
])
def test_types(text, t):
    doc = js(BASE + text)
    assert doc["c_info"]["type"] == t and f"type.{t}" in doc["b_info"]


def test_type_errors():
    assert "Invalid domain type xen." in fails(BASE + 'type = "xen"\n')
    assert "Invalid domain type" in fails(BASE + 'builder = "linux"\n')
    assert "Contradicting" in fails(BASE + 'type = "pv"\nbuilder = "hvm"\n')


def test_name_is_mandatory():
    assert fails('kernel = "/k"\n') == "t.cfg: Domain name must be specified."


def test_kernel_or_bootloader_needed_for_pv_and_pvh():
    assert "Neither kernel nor bootloader" in fails('name="x"\ntype="pvh"\n')
    assert js('name="x"\nbootloader="pygrub"\n')["b_info"]["bootloader"] == "pygrub"
    assert js('name="x"\ntype="hvm"\n')["c_info"]["type"] == "hvm"


# ---- kernel / cmdline -------------------------------------------------------------

@pytest.mark.parametrize("extra,cmdline", [
    ('root = "/dev/xvda1"\nextra = "quiet"\n', "root=/dev/xvda1 quiet"),
    ('root = "/dev/xvda1"\n', "root=/dev/xvda1"),
    ('extra = "quiet"\n', "quiet"),
    ('cmdline = "a"\nroot = "/r"\nextra = "e"\n', "a"),
])
def test_cmdline_assembly(extra, cmdline):
    d, warnings = dc(BASE + extra)
    assert d.b_info.cmdline == cmdline
    assert bool(warnings) == ("cmdline" in extra)


def test_kernel_ramdisk():
    b = js(BASE + 'ramdisk = "/i"\n')["b_info"]
    assert b["kernel"] == "/k" and b["ramdisk"] == "/i" and "cmdline" not in b


# ---- vCPU affinity ---------------------------------------------------------------

def test_cpus_string_applies_to_every_vcpu():
    b = js(BASE + 'vcpus = 2\ncpus = "0-3,^1"\n')["b_info"]
    assert b["vcpu_hard_affinity"] == [[0, 2, 3], [0, 2, 3]]
    assert "numa_placement" not in b


def test_cpus_list_one_entry_per_vcpu():
    b = js(BASE + 'vcpus = 2\ncpus = ["0", "1-2", "3"]\n')["b_info"]
    assert b["vcpu_hard_affinity"] == [[0], [1, 2]]
    assert b["numa_placement"] == "False"


def test_cpus_soft_and_all():
    b = js(BASE + 'vcpus = 1\ncpus_soft = "all"\n', ncpus=4)["b_info"]
    assert b["vcpu_soft_affinity"] == [list(range(8))]
    assert b["numa_placement"] == "False"


# ---- actions, scheduling, grants ----------------------------------------------------

@pytest.mark.parametrize("key", ["on_poweroff", "on_reboot", "on_watchdog", "on_crash",
                                 "on_soft_reset"])
@pytest.mark.parametrize("action,name", [
    ("destroy", "destroy"), ("restart", "restart"), ("rename-restart", "restart_rename"),
    ("preserve", "preserve"), ("coredump-destroy", "coredump_destroy"),
    ("coredump-restart", "coredump_restart"), ("soft-reset", "soft_reset")])
def test_actions(key, action, name):
    d, _ = dc(BASE + f'{key} = "{action}"\n')
    assert getattr(d, key) == name


def test_bad_action():
    assert 'Unknown on_crash action "explode" specified' in fails(BASE + 'on_crash="explode"\n')


def test_sched_and_grants():
    b = js(BASE + "cpu_weight = 512\ncap = 50\nmax_grant_frames = 64\n"
           "max_maptrack_frames = 1024\n")["b_info"]
    assert b["sched_params"] == {"weight": 512, "cap": 50}
    assert (b["max_grant_frames"], b["max_maptrack_frames"]) == (64, 1024)
    assert "smaller than minimum" in fails(BASE + "max_grant_frames = '-1'\n")


# ---- wrong kinds: clear errors naming key and line ---------------------------------

@pytest.mark.parametrize("text,msg", [
    ('memory = "lots"\n', "t.cfg:3:1: parameter `memory' is not a valid number"),
    ("memory = [1]\n", "t.cfg:3:1: parameter `memory' is a list but should be a single value"),
    ('disk = "/a,raw,xvda"\n', "t.cfg:3:1: parameter `disk' is a single value but should be a list"),
    ("memory += 1\n", "can't use += with numbers for parameter `memory'"),
    ('device_model_args = ["a", ["b"]]\n', "list item is not a string"),
    ("vcpus = 4\nmaxvcpus = 2\n", "xl: maxvcpus < vcpus"),
    ("memory = 99999999999999999999\n", "Numerical result out of range"),
])
def test_wrong_kinds(text, msg):
    assert msg in fails(BASE + text)


def test_numbers_read_like_strtol():
    b = js(BASE + 'memory = 0x40\nmaxmem = "0100"\n')["b_info"]
    assert b["target_memkb"] == 64 * 1024 and b["max_memkb"] == 64 * 1024
    assert "not a valid number" in fails(BASE + "memory = 09\n")


def test_unknown_and_unsupported_keys_warn():
    d, warnings = dc(BASE + 'colour = "red"\nvnuma = []\n')
    assert any("unknown parameter `colour' ignored" in w and w.startswith("t.cfg:3:")
               for w in warnings)
    assert any("`vnuma' is not supported yet" in w for w in warnings)


# ---- HVM keys -------------------------------------------------------------------------

HVM = 'name = "h"\ntype = "hvm"\n'


def test_hvm_keys():
    h = js(HVM + 'boot = "dc"\nserial = "pty"\nvnc = 1\nvnclisten = "0.0.0.0"\n'
           'vncdisplay = 2\nsdl = 0\nstdvga = 1\nvideoram = 16\nusb = 1\n'
           'usbdevice = "tablet"\nrtc_timeoffset = 3600\nfirmware = "ovmf"\n')
    t = h["b_info"]["type.hvm"]
    assert t["boot"] == "dc" and t["serial"] == "pty" and t["bios"] == "ovmf"
    assert t["vnc"] == {"enable": "True", "listen": "0.0.0.0", "display": 2}
    assert t["sdl"] == {"enable": "False"} and t["vga"] == {"kind": "std"}
    assert t["usb"] == "True" and t["usbdevice"] == "tablet"
    assert h["b_info"]["video_memkb"] == 16384 and h["b_info"]["rtc_timeoffset"] == 3600
    assert list(t)[:2] == ["bios", "vga"]


def test_hvm_lists_and_firmware_forms():
    t = js(HVM + 'serial = ["pty", "null"]\nusbdevice = ["tablet"]\n')["b_info"]["type.hvm"]
    assert t["serial_list"] == ["pty", "null"] and t["usbdevice_list"] == ["tablet"]
    assert js(HVM + 'firmware = "uefi"\n')["b_info"]["type.hvm"]["bios"] == "ovmf"
    assert "bios" not in js(HVM + 'firmware = "bios"\n')["b_info"]["type.hvm"]
    assert js(HVM + 'firmware = "/x.fd"\n')["b_info"]["type.hvm"]["firmware"] == "/x.fd"
    assert js(HVM + 'bios = "SeaBIOS"\n')["b_info"]["type.hvm"]["bios"] == "seabios"


def test_hvm_errors():
    assert "invalid value \"coreboot\"" in fails(HVM + 'bios = "coreboot"\n')
    assert "Unknown vga" in fails(HVM + 'vga = "vesa"\n')
    assert "Display specified both" in fails(HVM + 'vnclisten = "a:1"\nvncdisplay = 1\n')


def test_hvmloader_kernel_is_dropped_with_warning():
    d, warnings = dc(HVM + 'kernel = "/usr/lib/xen/boot/hvmloader"\n')
    assert d.b_info.kernel is None and any("hvmloader" in w for w in warnings)


def test_device_model_args_and_pci():
    doc = js(HVM + 'device_model_args = ["-a", "b"]\npci = ["00:1b.0"]\n')
    assert doc["b_info"]["extra"] == ["-a", "b"]
    assert doc["pcidevs"] == [{"dev": 27, "vfunc_mask": 1}]


def test_pv_vnc_makes_vfb_and_vkb():
    doc = js(BASE + 'vnc = 1\nvncdisplay = 1\nkeymap = "de"\n')
    assert doc["vfbs"] == [{"devid": 0, "vnc": {"enable": "True", "display": 1},
                            "sdl": {}, "keymap": "de"}]
    assert doc["vkbs"] == [{"devid": 0}]


def test_devices():
    doc = js(BASE + 'disk = ["/a,raw,xvda,w", ",,hdc:cdrom,r"]\n'
             'vif = ["bridge=xenbr0,rate=10Mb/s", "mac=00:16:3e:00:00:01"]\n')
    assert doc["disks"] == [
        {"pdev_path": "/a", "vdev": "xvda", "format": "raw", "readwrite": 1},
        {"pdev_path": "", "vdev": "hdc", "format": "empty", "removable": 1, "is_cdrom": 1}]
    assert doc["nics"] == [
        {"devid": 0, "bridge": "xenbr0", "rate_bytes_per_interval": 62500,
         "rate_interval_usecs": 50000},
        {"devid": 1, "mac": "00:16:3e:00:00:01"}]


def test_device_errors_carry_the_item_position():
    msg = fails(BASE + 'disk = [\n  "/a,raw,xvda",\n  "/b,raw",\n]\n')
    assert msg.startswith("t.cfg:5:3: config parsing error in disk specification")


# ---- the JSON writer ---------------------------------------------------------------------

def test_yajl_layout():
    text = to_json(dc(BASE + "vcpus = 1\n")[0])
    assert '    "b_info": {\n        "max_vcpus": 1,\n        "avail_vcpus": [\n' \
           '            0\n        ],\n' in text
    assert '"sched_params": {\n\n        },' in text
    assert text.endswith("\n}") and not text.endswith("\n\n}")


def test_string_escapes_like_yajl():
    assert _string('a"b\\c/\n\t\x01é') == '"a\\"b\\\\c/\\n\\t\\u0001é"'


def test_every_model_field_has_json_metadata():
    for cls in (model.DomainConfig, model.DomainBuildInfo, model.DomainCreateInfo,
                model.BuildInfoHvm, model.BuildInfoPv, model.BuildInfoPvh,
                model.DeviceDisk, model.DeviceNic, model.DevicePci):
        for f in dataclasses.fields(cls):
            assert "kind" in f.metadata, (cls.__name__, f.name)


def test_viridian_forms():
    t = js(HVM + 'viridian = ["base", "!freq", "defaults"]\n')["b_info"]["type.hvm"]
    assert t["viridian"] == "True" and t["viridian_enable"] == [0]
    assert t["viridian_disable"] == [1]
    t = js(HVM + 'viridian = ["all"]\n')["b_info"]["type.hvm"]
    assert t["viridian_enable"] == list(range(64)) and "viridian_disable" not in t
    assert js(HVM + "viridian = 0\n")["b_info"]["type.hvm"]["viridian"] == "False"
    assert "unknown viridian enlightenment 'warp'" in fails(HVM + 'viridian = ["warp"]\n')


def test_ioports_irqs_iomem():
    b = js(BASE + 'ioports = ["3f8-3ff", "80"]\nirqs = ["4"]\n'
           'iomem = ["fe000,2", "fd000,1@20"]\n')["b_info"]
    assert b["ioports"] == [{"first": 0x3f8, "number": 8}, {"first": 0x80, "number": 1}]
    assert b["irqs"] == [4]
    assert b["iomem"] == [{"start": 0xfe000, "number": 2},
                          {"start": 0xfd000, "number": 1, "gfn": 0x20}]
    assert list(b).index("ioports") < list(b).index("claim_mode")
    for bad in ('ioports = ["x"]', 'ioports = ["3ff-3f8"]', 'irqs = ["-1"]',
                'iomem = ["1"]', 'ioports = ["ffffffff"]'):
        fails(BASE + bad + "\n")


def test_pci_global_options():
    doc = js(HVM + "pci_permissive = 1\npci_seize = 1\npci = ['00:1b.0', '00:1c.0,seize=0']\n")
    assert doc["pcidevs"][0]["permissive"] is True and doc["pcidevs"][0]["seize"] is True
    assert "seize" not in doc["pcidevs"][1]


def test_empty_hard_affinity_refused():
    assert "vcpu hard affinity map is empty" in fails(BASE + 'vcpus = 1\ncpus = "1,^1"\n')
