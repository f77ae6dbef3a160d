"""The smaller device lists: vfb, vkb, vtpm, p9, pvcalls, channel, dtdev."""
import json

import pytest

from toolstack.config import ConfigError, build, parse_text, to_json
from toolstack.config import devices as D

BASE = 'name = "t"\nkernel = "/k"\n'


def js(text):
    d, w = build(parse_text(BASE + text, "t.cfg"), 8)
    return json.loads(to_json(d)), w


def test_vfb_keys_and_paired_vkb():
    doc, _ = js('vfb = ["vnc=1,vnclisten=0.0.0.0,vncpasswd=pw,vncdisplay=2,vncunused=0,'
                'keymap=de", "sdl=1,opengl=1,display=:0,xauthority=/x"]\n')
    assert doc["vfbs"][0] == {"devid": 0, "vnc": {"enable": "True", "listen": "0.0.0.0",
                              "passwd": "pw", "display": 2, "findunused": "False"},
                              "sdl": {}, "keymap": "de"}
    assert doc["vfbs"][1]["sdl"] == {"enable": "True", "opengl": "True", "display": ":0",
                                     "xauthority": "/x"}
    assert doc["vkbs"] == [{"devid": 0}, {"devid": 1}]


def test_vfb_list_suppresses_top_level_vnc():
    doc, _ = js('vnc = 1\nvfb = ["vnc=0"]\n')
    assert len(doc["vfbs"]) == 1 and doc["vfbs"][0]["vnc"] == {"enable": "False"}


def test_vkb_list_after_vfb_vkbs():
    doc, _ = js('vfb = ["vnc=1"]\nvkb = ["backend-type=linux,width=800,height=0x258",'
                '"backend-type=qemu,multi-touch-width=10,multi-touch-height=5,'
                'multi-touch-num-contacts=2,feature-raw-pointer=1"]\n')
    assert doc["vkbs"][1] == {"devid": 1, "backend_type": "linux", "width": 800, "height": 600}
    assert doc["vkbs"][2]["feature_multi_touch"] is True
    assert doc["vkbs"][2]["feature_raw_pointer"] is True


@pytest.mark.parametrize("spec,msg", [
    ("width=3", "backend-type should be set"), ("backend-type=usb", "Unknown backend_type"),
    ("backend-type=qemu,x=1", "Unknown string"),
    ("backend-type=qemu,feature-multi-touch=1", "should be set for multi touch"),
])
def test_vkb_errors(spec, msg):
    with pytest.raises(ConfigError) as e:
        D.parse_vkb(spec, 0)
    assert msg in str(e.value)


def test_vtpm_p9_pvcalls_dtdev():
    doc, _ = js('vtpm = ["backend=vt,uuid=0A1B2C3D-4E5F-6071-8293-A4B5C6D7E8F9"]\n'
                'p9 = ["tag=t, path=/p, security_model=none, backend=d1"]\n'
                'pvcalls = ["backend=d2", ""]\ndtdev = ["/soc/x"]\n')
    assert doc["vtpms"] == [{"backend_domname": "vt", "devid": 0,
                             "uuid": "0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"}]
    assert doc["p9s"] == [{"backend_domname": "d1", "tag": "t", "path": "/p",
                           "security_model": "none"}]
    assert doc["pvcallsifs"] == [{"backend_domname": "d2", "devid": 0}, {"devid": 1}]
    assert doc["dtdevs"] == [{"path": "/soc/x"}]


@pytest.mark.parametrize("fn,spec,msg", [
    (lambda s: D.parse_vtpm(s, 0), "uuid=0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9", "backend"),
    (lambda s: D.parse_vtpm(s, 0), "backend=a,uuid=zz", "Failed to parse vtpm UUID"),
    (lambda s: D.parse_vtpm(s, 0), "backend=a,x=1", "Unknown string `x'"),
    (D.parse_p9, "tag=t,path=/p", "missing required field"),
    (D.parse_p9, "tag=t,path=/p,security_model=none,x=1", "Unknown string `x'"),
    (lambda s: D.parse_pvcalls(s, 0), "x=1", "Unknown string `x'"),
    (lambda s: D.parse_vfb(s, 0), "colour=red", "unknown parameter"),
    (lambda s: D.parse_vfb(s, 0), "vnc=1,sdl", "not key=value"),
])
def test_small_device_errors(fn, spec, msg):
    with pytest.raises(ConfigError) as e:
        fn(spec)
    assert msg in str(e.value)


def test_channels():
    doc, warnings = js('channel = ["name=org.a, connection = pty",'
                       '"name=b,connection=socket,path=/tmp/s,colour=red"]\n')
    assert doc["channels"] == [
        {"devid": 0, "name": "org.a", "connection.pty": {}},
        {"devid": 1, "name": "b", "connection.socket": {"path": "/tmp/s"}}]
    assert any("unknown channel parameter 'colour'" in w for w in warnings)


@pytest.mark.parametrize("spec,msg", [
    ("name=a", "unknown 'connection'"), ("connection=socket", "requires path"),
    ("connection=tcp", "unknown channel connection 'tcp'"), ("name", "failed to parse"),
])
def test_channel_errors(spec, msg):
    with pytest.raises(ConfigError) as e:
        D.parse_channel(spec, 0)
    assert msg in str(e.value)


def test_device_error_positions():
    with pytest.raises(ConfigError) as e:
        build(parse_text(BASE + 'vtpm = [\n  "backend=a",\n  "uuid=x"]\n', "t.cfg"), 8)
    assert str(e.value).startswith("t.cfg:5:3:")


def test_usb_controllers_and_devices():
    doc, _ = js('usbctrl = ["type=qusb,version=2,ports=4", "version=3"]\n'
                'usbdev = ["hostbus=1,hostaddr=0x102,controller=0,port=1,type=hostdev",'
                '"hostbus=3"]\n')
    assert doc["usbctrls"] == [{"type": "qusb", "devid": 0, "version": 2, "ports": 4},
                               {"devid": 1, "version": 3}]
    assert doc["usbdevs"] == [
        {"ctrl": 0, "port": 1, "type.hostdev": {"hostbus": 1, "hostaddr": 2}},
        {}]             # no type: the host address is kept but not written


@pytest.mark.parametrize("fn,spec,msg", [
    (lambda s: D.parse_usbctrl(s, 0), "type=ehci", "Invalid usb controller type"),
    (lambda s: D.parse_usbctrl(s, 0), "speed=3", "Unknown string"),
    (D.parse_usbdev, "type=hub", "Invalid usb device type"),
    (D.parse_usbdev, "bus=1", "Unknown string"),
])
def test_usb_errors(fn, spec, msg):
    with pytest.raises(ConfigError) as e:
        fn(spec)
    assert msg in str(e.value)
