"""`xl create -n` through click's CliRunner and as the installed script."""
import json
import pathlib
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from toolstack.xl import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.cfg"))


def run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.mark.parametrize("cfg", EXAMPLES, ids=lambda p: p.name)
def test_examples_dry_run(cfg):
    r = run("create", "-n", str(cfg))
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["c_info"]["name"] and doc["c_info"]["type"] in ("pv", "pvh", "hvm")


def test_demo_cfg_shape():
    r = run("create", "-n", str(ROOT / "examples/demo.cfg"))
    doc = json.loads(r.stdout)
    assert doc["c_info"]["type"] == "pvh" and doc["c_info"]["name"] == "demo"
    assert doc["b_info"]["kernel"] == "guests/build/hello.elf"
    assert doc["b_info"]["target_memkb"] == 32 * 1024
    assert doc["b_info"]["max_vcpus"] == 1 and doc["b_info"]["avail_vcpus"] == [0]
    assert "Parsing config from" in r.stderr


def test_global_N_is_dry_run():
    r = run("-N", "create", str(ROOT / "examples/demo.cfg"))
    assert r.exit_code == 0
    assert json.loads(r.stdout)["c_info"]["name"] == "demo"


def test_overrides_after_file(tmp_path):
    cfg = tmp_path / "g.cfg"
    cfg.write_text('name = "g"\nkernel = "/k"\nmemory = 64')   # no final newline
    r = run("create", "-n", str(cfg), "memory=128", 'name="other"')
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["b_info"]["target_memkb"] == 128 * 1024
    assert doc["c_info"]["name"] == "other"


def test_f_option_and_flags(tmp_path):
    cfg = tmp_path / "g.cfg"
    cfg.write_text('name = "g"\nkernel = "/k"\n')
    r = run("create", "-n", "-p", "-c", "-q", "-f", str(cfg), "vcpus=2")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["b_info"]["max_vcpus"] == 2
    assert "Parsing config" not in r.stderr


def test_without_dry_run_is_a_one_line_error(monkeypatch, tmp_path):
    # A real create (tests/dom0); here only: services that cannot start.
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XEN_RUN_DIR", str(tmp_path / "file" / "run"))
    r = run("create", str(ROOT / "examples/demo.cfg"))
    assert r.exit_code != 0
    lines = [l for l in r.stderr.splitlines() if not l.startswith("Parsing")]
    assert len(lines) == 1 and "cannot start the dom0 services" in lines[0]
    assert r.stdout == ""


@pytest.mark.parametrize("text,needle", [
    ("name = \"x\"\nmemory = 512 * 2\n", "t.cfg:2:14: config parsing error near `*'"),
    ("name = \"x\"\nmemory = \"lots\"\nkernel=\"/k\"\n", "t.cfg:2:1: parameter `memory' is not a valid number"),
    ("kernel = \"/k\"\n", "Domain name must be specified."),
    ("name = \"x\"\n", "Neither kernel nor bootloader specified"),
    ("name = \"x\"\ntype = \"xen\"\n", "t.cfg:2:1: Invalid domain type xen."),
    ("name='x'\nkernel='/k'\ndisk=['/a,raw']\n", "no vdev specified"),
])
def test_errors_are_one_line(tmp_path, text, needle):
    cfg = tmp_path / "t.cfg"
    cfg.write_text(text)
    r = CliRunner().invoke(main, ["create", "-n", str(cfg)])
    assert r.exit_code == 1
    errs = [l for l in r.stderr.splitlines() if not l.startswith("Parsing")]
    assert len(errs) == 1, r.stderr
    assert needle in errs[0]
    assert errs[0].startswith(str(tmp_path))
    assert "Traceback" not in r.output


def test_missing_file_and_bad_operands(tmp_path):
    r = run("create", "-n", str(tmp_path / "nope.cfg"))
    assert r.exit_code == 1 and "unable to open configuration file" in r.stderr
    r = run("create", "-n")
    assert r.exit_code == 1 and "no config file given" in r.stderr
    r = run("create", "-n", str(ROOT / "examples/demo.cfg"), "junk")
    assert r.exit_code == 1 and "not a key=value override" in r.stderr


@pytest.mark.skipif(not shutil.which("xl", path=str(ROOT / ".venv/bin")),
                    reason="xl console script not installed in .venv")
def test_installed_script():
    p = subprocess.run([str(ROOT / ".venv/bin/xl"), "create", "-n", "examples/demo.cfg"],
                       cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["c_info"]["name"] == "demo"


def test_unexpected_exception_is_one_line(monkeypatch, tmp_path):
    import toolstack.xl as xl

    def boom(*a, **k):
        raise RuntimeError("kaput")
    monkeypatch.setattr(xl, "load", boom)
    r = run("create", "-n", str(ROOT / "examples/demo.cfg"))
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines()[-1] == "xl: internal error: RuntimeError: kaput"
