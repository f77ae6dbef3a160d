"""The value languages inside strings: disk, vif, cpus, pci."""
import pytest

from toolstack.config import ConfigError
from toolstack.config.cpus import bitmap_bits, parse_cpurange
from toolstack.config.disk import parse_disk
from toolstack.config.pci import PCI_FUNC_ALL, parse_pci
from toolstack.config.vif import parse_mac, parse_nic, parse_rate, random_mac


def disk_err(spec):
    with pytest.raises(ConfigError) as e:
        parse_disk(spec, "d.cfg")
    return str(e.value)


# ---- disk (xl-disk-configuration(5)) --------------------------------------

def test_positional_target_format_vdev_access():
    d = parse_disk("/dev/vg/a,qcow2,xvda,ro")
    assert (d.pdev_path, d.format, d.vdev, d.readwrite) == ("/dev/vg/a", "qcow2", "xvda", 0)


def test_positional_defaults():
    d = parse_disk("/img,,xvdb")
    assert (d.format, d.readwrite, d.is_cdrom, d.removable) == ("raw", 1, 0, 0)


@pytest.mark.parametrize("access,rw", [("r", 0), ("ro", 0), ("rw", 1), ("w", 1), ("", 1)])
def test_access_values(access, rw):
    assert parse_disk(f"vdev=xvda,access={access},target=/a").readwrite == rw


@pytest.mark.parametrize("fmt", ["raw", "qcow", "qcow2", "vhd", "qed", "empty"])
def test_formats(fmt):
    assert parse_disk(f"format={fmt},vdev=xvda,target=/a").format == fmt


def test_keyword_forms():
    d = parse_disk("backendtype=qdisk, backend=dom1, script=block-iscsi, "
                   "discard, direct-io-safe, specification=xen, vdev=xvdc, target=/t")
    assert (d.backend, d.backend_domname, d.script) == ("qdisk", "dom1", "block-iscsi")
    assert d.discard_enable is True and d.direct_io_safe is True
    assert d.specification == "xen" and d.vdev == "xvdc"
    assert parse_disk("no-discard,vdev=x,target=/a").discard_enable is False


def test_target_swallows_the_rest():
    d = parse_disk("vdev=xvda, target=/srv/a,b=c:d.img")
    assert d.pdev_path == "/srv/a,b=c:d.img"


def test_cdrom_forms():
    for spec in ("vdev=hdc,devtype=cdrom,target=/x.iso", "cdrom,vdev=hdc,target=/x.iso",
                 "/x.iso,raw,hdc:cdrom,r"):
        d = parse_disk(spec)
        assert (d.is_cdrom, d.removable, d.readwrite) == (1, 1, 0)
        assert d.format == "raw"


def test_empty_cdrom_drive():
    for spec in (",,hdc:cdrom,r", "vdev=hdc,devtype=cdrom,target=", ",raw,hdc:cdrom"):
        d = parse_disk(spec)
        assert d.pdev_path == "" and d.format == "empty" and d.is_cdrom == 1


def test_deprecated_prefixes():
    d = parse_disk("phy:/dev/sdb,xvdb,w")
    assert (d.pdev_path, d.vdev, d.readwrite, d.format) == ("/dev/sdb", "xvdb", 1, "raw")
    d = parse_disk("file:/a.img,hda,r")
    assert (d.pdev_path, d.readwrite) == ("/a.img", 0)
    assert parse_disk("qcow2:/b.qcow2,xvdc,w").format == "qcow2"
    assert parse_disk("tap:aio:/c,xvdd,w").pdev_path == "/c"
    assert parse_disk("nbd:host:1234,xvde,w").script == "block-nbd"


def test_devtype_after_vdev_in_deprecated_form():
    assert parse_disk("/a,raw,xvda:disk,w").is_cdrom == 0


@pytest.mark.parametrize("spec,msg", [
    ("/a,raw", "no vdev specified"),
    ("vdev=,target=/a", "empty vdev"),
    ("vdev=xvda", "no target specified (and device not removable)"),
    ("/a,zip,xvda", "unknown value for format: near `zip'"),
    ("/a,raw,xvda,rx", "unknown value for access: near `rx'"),
    ("/a,raw,xvda,rw,extra", "too many positional parameters: near `extra'"),
    ("colour=red,vdev=x,target=/a", "unknown parameter: near `colour=r'"),
    ("zzz:/a,xvda", "unknown deprecated disk prefix: near `zzz:'"),
    ("vdev=a,vdev=b,target=/c", "vdev respecified: near `b'"),
    ("format=raw,format=qcow2,vdev=x,target=/a", "format respecified"),
    ("devtype=floppy,vdev=x,target=/a", "unknown value for type"),
    ("backendtype=nfs,vdev=x,target=/a", "unknown value for backendtype"),
    ("/a,raw,xvda:tape", "unknown deprecated type: near `tape'"),
    ("=x", "bad disk syntax: near `=x'"),
])
def test_disk_errors(spec, msg):
    m = disk_err(spec)
    assert msg in m and m.startswith("d.cfg: config parsing error in disk specification")
    assert f"in `{spec}'" in m


# ---- vif (xl-network-configuration(5)) -------------------------------------

@pytest.mark.parametrize("rate,expect", [
    ("10Mb/s", (62500, 50000)), ("1MB/s@20ms", (20000, 20000)),
    ("100Kb/s@500us", (6, 500)), ("1Gb/s@1s", (125000000, 1000000)),
    ("5B/s@2", (10, 2000000)), ("8b/s", (0, 50000)), ("3KB/s", (150, 50000)),
    ("1GB/s", (50000000, 50000)), ("7Mb/s@100ms", (87500, 100000)),
    # strtoull(.., 0) in libxlutil: a leading 0 makes the number octal.
    ("012B/s@1", (10, 1000000)), ("020B/s", (0, 50000)), ("10B/s@010ms", (0, 8000)),
])
def test_rate_conversion(rate, expect):
    assert parse_rate(rate) == expect


@pytest.mark.parametrize("rate,msg", [
    ("", "no rate specified"), ("10Mbit", "invalid rate"), ("10 Mb/s", "invalid rate"),
    ("0Mb/s", "rate overflow"), ("4294967296B/s", "rate overflow"),
    ("1Mb/s@", "invalid replenishment interval"), ("1Mb/s@1h", "invalid replenishment interval"),
    ("1Mb/s@0ms", "replenishment interval overflow"),
    ("1Mb/s@5000s", "replenishment interval overflow"),
])
def test_rate_errors(rate, msg):
    with pytest.raises(ConfigError) as e:
        parse_rate(rate, "v.cfg")
    assert msg in str(e.value) and "config parsing error in vif" in str(e.value)


def test_nic_keys():
    n = parse_nic("mac=00:16:3E:0a:b:0c, bridge=xenbr0, ip=10.0.0.2, model=e1000, "
                  "type=ioemu, vifname=v1, script=vif-nat, backend=d1, "
                  "gatewaydev=eth0, mtu=9000, rate=10Mb/s", 3)
    assert n.devid == 3 and n.mac == "00:16:3e:0a:0b:0c"
    assert (n.bridge, n.ip, n.model, n.nictype, n.ifname) == \
        ("xenbr0", "10.0.0.2", "e1000", "vif_ioemu", "v1")
    assert (n.script, n.backend_domname, n.gatewaydev, n.mtu) == \
        ("vif-nat", "d1", "eth0", 9000)
    assert (n.rate_bytes_per_interval, n.rate_interval_usecs) == (62500, 50000)


def test_nic_defaults_and_devid():
    n = parse_nic("", 0)
    assert n.mac is None and n.nictype == "unknown" and n.devid == 0
    assert parse_nic("devid=7,type=vif", 1).devid == 7
    assert parse_nic("netdev=eth1", 0).gatewaydev == "eth1"
    assert parse_nic(",,bridge=b,,", 0).bridge == "b"


@pytest.mark.parametrize("spec,msg", [
    ("type=tap", "Invalid parameter `type'"), ("colour=red", "unrecognized argument"),
    ("bridge", "unrecognized argument"), ("mac=00:16:3e:zz:00:01", "invalid mac"),
    ("mac=00:16:3e", "invalid mac"), ("mtu=big", "failed to convert"),
    ("devid=-1", "failed to convert"),
])
def test_nic_errors(spec, msg):
    with pytest.raises(ConfigError) as e:
        parse_nic(spec, 0, "v.cfg")
    assert msg in str(e.value)


def test_mac_normalised_and_random():
    assert parse_mac("0:1:2:a:B:ff") == "00:01:02:0a:0b:ff"
    m = random_mac(lambda n: bytes([0xff, 0x12, 0x34]))
    assert m == "00:16:3e:7f:12:34"
    assert random_mac().startswith("00:16:3e:")


# ---- cpus / cpus_soft ---------------------------------------------------------

@pytest.mark.parametrize("text,bits", [
    ("0-3,5,^1", (0, 2, 3, 5)), ("3", (3,)), ("0-2,^0-1", (2,)),
    ("nodes:0", tuple(range(4))), ("node:0,^2", (0, 1, 3)), ("1,,2", (1, 2)),
    ("", ()), ("all", tuple(range(8))), ("all,^1", (0,) + tuple(range(2, 8))),
    ("9", ()),          # beyond the bitmap: dropped, as libxl_bitmap_set does
])
def test_cpurange(text, bits):
    assert parse_cpurange(text, 4) == bits


@pytest.mark.parametrize("text,msg", [
    ("^all", "Can't combine"), ("3-1", "Invalid pcpu range: 3-1."),
    ("x", "Invalid pcpu range"), ("1-", "Invalid pcpu range"), ("nodes:1", "NUMA node"),
])
def test_cpurange_errors(text, msg):
    with pytest.raises(ConfigError) as e:
        parse_cpurange(text, 4)
    assert msg in str(e.value)


def test_bitmap_size_is_whole_bytes():
    assert bitmap_bits(1) == 8 and bitmap_bits(8) == 8 and bitmap_bits(9) == 16


# ---- pci ---------------------------------------------------------------------

def test_pci_bdf_forms():
    p = parse_pci("0000:00:1b.0")
    assert (p.domain, p.bus, p.dev, p.func, p.vfunc_mask) == (0, 0, 0x1b, 0, 1)
    p = parse_pci("01:00.1@3,permissive=1,msitranslate=1,seize=1,power_mgmt=1,"
                  "rdm_policy=relaxed")
    assert (p.bus, p.func, p.vdevfn, p.permissive, p.msitranslate) == (1, 1, 0x18, True, True)
    assert p.seize and p.power_mgmt and p.rdm_policy == "relaxed"
    assert parse_pci("02.*").vfunc_mask == PCI_FUNC_ALL


@pytest.mark.parametrize("spec", ["00:1g.0", "00:1b.8", "1:2:3:4.0", "00:1b", "00:1b.0,foo=1",
                                  "00:1b.0,permissive", "00:1b.0,rdm_policy=loose",
                                  "10000:00:00.0"])
def test_pci_errors(spec):
    with pytest.raises(ConfigError):
        parse_pci(spec)
