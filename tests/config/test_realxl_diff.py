"""Differential tests against Debian's real `xl -N create` (Xen 4.17).

The real binary runs under a small LD_PRELOAD shim (xl_dryrun_shim.c) that
answers the few hypervisor queries a dry run makes.  Our JSON must equal
its stdout byte for byte; configs xl rejects we must reject too.  Skips
cleanly where the xl binary or gcc is missing.
"""
import json

import pytest

from toolstack.config import ConfigError, build, parse_text, to_json, with_overrides
from toolstack.config.disk import parse_disk
from toolstack.config.jsonout import to_json as disk_json

from . import realxl
from .diff_cases import (CASES, DISK_SPECS, DISK_SPECS_REJECTED,
                         DISK_SPECS_STRICTER, OVERRIDES, REJECTED, STRICTER, U)

reason = realxl.unavailable_reason()
pytestmark = pytest.mark.skipif(reason is not None, reason=str(reason))


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    try:
        return realxl.RealXl(tmp_path_factory.mktemp("realxl"))
    except Exception as e:          # e.g. a libxenlight that needs more shimming
        pytest.skip(f"real xl cannot dry-run here: {e}")


def ours(xl, text, overrides=()):
    cfg = parse_text(with_overrides(text, list(overrides)), str(xl.workdir / "test.cfg"))
    d, _ = build(cfg, ncpus=realxl.SHIM_NR_CPUS)
    return to_json(d) + "\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_json_as_xl(xl, name):
    text = U + CASES[name]
    rc, out, err = xl.create(text)
    assert rc == 0, err
    assert ours(xl, text) == out


@pytest.mark.parametrize("name", sorted(OVERRIDES))
def test_same_json_with_overrides(xl, name):
    text, overrides = OVERRIDES[name]
    text = U + text
    rc, out, err = xl.create(text, overrides)
    assert rc == 0, err
    assert ours(xl, text, overrides) == out


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_like_xl(xl, name):
    rc, out, err = xl.create(REJECTED[name])
    assert rc != 0, out
    with pytest.raises(ConfigError) as e:
        ours(xl, REJECTED[name])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(STRICTER))
def test_stricter_than_xl(xl, name):
    """xl warns (or says nothing) and goes on; we stop with a clear error."""
    rc, out, err = xl.create(STRICTER[name])
    assert rc == 0
    with pytest.raises(ConfigError):
        ours(xl, STRICTER[name])


def _xl_disk(xl, spec):
    rc, out, err = xl.create('name="d"\nkernel="/k"\ndisk=[%s]\n' % json.dumps(spec))
    return rc, (json.loads(out)["disks"][0] if rc == 0 else err)


@pytest.mark.parametrize("spec", DISK_SPECS)
def test_disk_spec_like_xlu_disk_parse(xl, spec):
    rc, real = _xl_disk(xl, spec)
    assert rc == 0, real
    assert json.loads(disk_json(parse_disk(spec))) == real


@pytest.mark.parametrize("spec", DISK_SPECS_REJECTED)
def test_disk_spec_rejected_like_xl(xl, spec):
    rc, real = _xl_disk(xl, spec)
    assert rc != 0
    with pytest.raises(ConfigError) as e:
        parse_disk(spec)
    # Same message text as libxlutil's, after its "SOURCE: " prefix.
    msg = str(e.value).split(": ", 1)[1]
    assert msg in real


@pytest.mark.parametrize("spec", DISK_SPECS_STRICTER)
def test_disk_spec_stricter(xl, spec):
    rc, _ = _xl_disk(xl, spec)
    assert rc == 0
    with pytest.raises(ConfigError):
        parse_disk(spec)


def test_examples_match_xl(xl):
    import pathlib
    root = pathlib.Path(__file__).resolve().parents[2]
    for cfg in sorted((root / "examples").glob("*.cfg")):
        text = cfg.read_text()
        if "uuid" not in text:
            text = U + text
        rc, out, err = xl.create(text, name=cfg.name)
        assert rc == 0, err
        got = parse_text(text, str(xl.workdir / cfg.name))
        assert to_json(build(got, ncpus=realxl.SHIM_NR_CPUS)[0]) + "\n" == out, cfg.name
