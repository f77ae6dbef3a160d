"""Disk specs and vif rates against libxlutil's own parsers (ctypes).

xlu_disk_parse and xlu_vif_parse_rate fill libxl structs, which libxenlight
turns into JSON itself; ours must produce the same JSON for every spec, and
reject what they reject.  Skips where the libraries are absent.
"""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toolstack.config import ConfigError
from toolstack.config.disk import parse_disk
from toolstack.config.jsonout import to_json
from toolstack.config.vif import parse_rate

from . import libxlutil
from .diff_cases import DISK_SPECS, DISK_SPECS_REJECTED

DEV = libxlutil.device_parsers(libxlutil.load())
pytestmark = pytest.mark.skipif(DEV is None, reason="libxlutil.so.4.17 / "
                                "libxenlight.so.4.17 not installed (Debian libxen-dev)")


def known_divergence(spec, err):
    """Where we are deliberately stricter than libxlutil."""
    msg = str(err)
    if "empty vdev" in msg:
        return True
    # libxlutil never reports one bad character at the very end of a spec.
    return "bad disk syntax: near `" in msg and msg.split("near `", 1)[1][1:2] == "'" \
        and spec.endswith(msg.split("near `", 1)[1][0])


def check_disk(spec):
    rc, real = DEV.disk(spec)
    try:
        ours = json.loads(to_json(parse_disk(spec)))
    except ConfigError as e:
        assert rc or known_divergence(spec, e), (spec, real, str(e))
        return
    assert rc == 0, (spec, ours)
    assert ours == json.loads(real), spec


@pytest.mark.parametrize("spec", DISK_SPECS + DISK_SPECS_REJECTED)
def test_disk_specs(spec):
    check_disk(spec)


FRAGMENTS = st.sampled_from([
    "/a", "/b.img", "", " ", "raw", "qcow2", "vhd", "qed", "empty", "xvda", "hdc",
    "hdc:cdrom", "xvdb:disk", "r", "ro", "rw", "w", "cdrom", "format=raw",
    "format=qcow", "vdev=xvdc", "vdev=", "access=ro", "access=x", "devtype=cdrom",
    "devtype=disk", "backend=d1", "backendtype=phy", "backendtype=qdisk",
    "script=s", "discard", "no-discard", "direct-io-safe", "colo", "no-colo",
    "colo-host=h", "colo-port=1", "specification=xen", "target=/t,u",
    "target=", "phy:", "file:", "tap:aio:", "qcow2:", "nbd:", "zz:", "x=y", "=",
    "trusted", ":", "a:b",
])


@settings(max_examples=400, deadline=None)
@given(st.lists(FRAGMENTS, max_size=6), st.sampled_from([",", ", ", ",,"]))
def test_generated_disk_specs(parts, sep):
    check_disk(sep.join(parts))


RATES = ["10Mb/s", "1MB/s@20ms", "100Kb/s@500us", "1Gb/s@1s", "5B/s@2", "8b/s",
         "3KB/s", "1GB/s", "", "10Mbit", "0Mb/s", "4294967296B/s", "1Mb/s@",
         "1Mb/s@1h", "1Mb/s@0ms", "1Mb/s@5000s", "4294967295GB/s@4294s", "1Mb/s@s",
         "@20ms", "10Mb/s@20ms@5"]


def check_rate(rate):
    rc, real = DEV.rate(rate)
    try:
        ours = parse_rate(rate)
    except ConfigError:
        assert rc, (rate, real)
        return
    assert rc == 0 and ours == real, rate


@pytest.mark.parametrize("rate", RATES)
def test_rates(rate):
    check_rate(rate)


@settings(max_examples=300, deadline=None)
@given(st.from_regex(r"[0-9]{1,11}[GMK]?[Bb]/s(@[0-9]{1,10}(ms|us|s|m|u)?)?", fullmatch=True))
def test_generated_rates(rate):
    check_rate(rate)
