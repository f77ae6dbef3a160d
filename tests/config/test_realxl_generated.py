"""Hypothesis: whole generated domain configs through real `xl -N create`
(Xen 4.17, under the LD_PRELOAD shim) and through ours; same JSON, or both
refuse.  Skips where the xl binary or gcc is missing."""
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolstack.config import ConfigError, build, parse_text, to_json

from . import realxl
from .diff_cases import U

reason = realxl.unavailable_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=str(reason))

NUM = st.sampled_from(["0", "1", "2", "3", "4", "16", "64", "512", "0x20", "010", '"8"'])
STR = lambda *xs: st.sampled_from([f'"{x}"' for x in xs])  # noqa: E731
CPUS = st.sampled_from(['"0"', '"0-3"', '"all"', '"1,^1"', '"2-5,^3"', '["0","1"]',
                        '["0-1"]', '[]', '"9"'])
DISK = st.sampled_from(["/a,raw,xvda,w", "phy:/dev/b,xvdb,r", ",,hdc:cdrom,r",
                        "vdev=xvdc,format=qcow2,target=/c", "file:/d.iso,hdd:cdrom",
                        "/e,vhd,xvde", "vdev=xvdf,discard,backendtype=qdisk,target=/f"])
VIF = st.sampled_from(["", "bridge=xenbr0", "mac=00:16:3e:01:02:03,model=e1000",
                       "rate=10Mb/s@20ms,ip=10.0.0.1", "type=ioemu,vifname=v0",
                       "mtu=1400,script=vif-route"])
ACTION = STR("destroy", "restart", "rename-restart", "preserve", "coredump-destroy",
             "coredump-restart", "soft-reset")
COMMON = {
    "memory": NUM, "maxmem": NUM, "vcpus": NUM, "maxvcpus": NUM, "cpus": CPUS,
    "cpus_soft": CPUS, "on_poweroff": ACTION, "on_reboot": ACTION, "on_crash": ACTION,
    "on_watchdog": ACTION, "cpu_weight": NUM, "cap": NUM, "max_grant_frames": NUM,
    "max_maptrack_frames": NUM, "root": STR("/dev/xvda1"), "extra": STR("quiet"),
    "cmdline": STR("console=hvc0"), "ramdisk": STR("/i"), "localtime": NUM,
    "acpi": NUM, "videoram": NUM, "rtc_timeoffset": NUM, "nomigrate": NUM,
    "disk": st.lists(DISK, max_size=3).map(lambda xs: "[" + ",".join(f"'{x}'" for x in xs) + "]"),
    "vif": st.lists(VIF, max_size=3).map(lambda xs: "[" + ",".join(f"'{x}'" for x in xs) + "]"),
    "vnc": NUM, "vncdisplay": NUM, "vnclisten": STR("0.0.0.0", "127.0.0.1"),
    "sdl": NUM, "keymap": STR("de"), "boot": STR("c", "dc"), "serial": STR("pty"),
    "stdvga": NUM, "usb": NUM, "usbdevice": STR("tablet"), "firmware": STR("seabios", "uefi", "bios"),
    "device_model_args": st.just('["-a"]'), "tsc_mode": STR("native", "default"),
    "viridian": st.sampled_from(['1', '0', '["base","!freq"]', '["all","defaults"]', '[]']),
    "pci": st.sampled_from(['["00:1b.0"]', '["01:00.*@2,permissive=1"]', '[]']),
    "pci_permissive": NUM, "irqs": st.sampled_from(['["4"]', '["4","7"]']),
    "ioports": st.sampled_from(['["3f8-3ff"]', '["80"]']),
    "iomem": st.sampled_from(['["fe000,2"]', '["fd000,1@20"]']),
    "vfb": st.sampled_from(['["vnc=1"]', '["sdl=1,display=:0","vnc=1,keymap=de"]']),
    "vkb": st.sampled_from(['["backend-type=linux"]', '["backend-type=qemu,width=9"]']),
    "channel": st.sampled_from(['["connection=pty"]', '["name=a,connection=socket,path=/s"]']),
    "vtpm": st.just('["backend=d"]'), "p9": st.just('["tag=t,path=/p,security_model=none"]'),
    "pvcalls": st.just('["backend=b"]'), "dtdev": st.just('["/soc"]'),
    "usbctrl": st.sampled_from(['["type=qusb,version=2,ports=4"]', '["version=1"]']),
    "usbdev": st.sampled_from(['["hostbus=1,hostaddr=2,type=hostdev"]', '["port=2"]']),
    "vga": STR("stdvga", "cirrus", "none", "qxl"), "hdtype": STR("ide", "ahci"),
    "spice": NUM, "nographic": NUM, "xen_platform_pci": NUM, "apic": NUM, "pae": NUM,
    "bootloader": STR("pygrub"), "hap": NUM, "pool": STR("p0"), "seclabel": STR("a:b:c"),
}


@st.composite
def domain_configs(draw):
    lines = ['name = "gen"']
    t = draw(st.sampled_from(["pv", "pvh", "hvm", None]))
    if t:
        lines.append(f'type = "{t}"')
    if t != "hvm" or draw(st.booleans()):
        lines.append('kernel = "/boot/k"')
    keys = draw(st.lists(st.sampled_from(sorted(COMMON)), max_size=8, unique=True))
    for k in keys:
        lines.append(f"{k} = {draw(COMMON[k])}")
    return U + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    try:
        return realxl.RealXl(tmp_path_factory.mktemp("realxl-gen"))
    except Exception as e:
        pytest.skip(f"real xl cannot dry-run here: {e}")


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=domain_configs())
def test_generated_domain_configs(xl, text):
    rc, out, err = xl.create(text)
    try:
        d, _ = build(parse_text(text, str(xl.workdir / "test.cfg")), realxl.SHIM_NR_CPUS)
        ours = to_json(d) + "\n"
    except ConfigError as e:
        assert rc != 0, f"we refused what xl accepts: {e}\n{text}"
        return
    assert rc == 0, f"xl refused ({err.strip()}) what we accept:\n{text}"
    assert ours == out, text
