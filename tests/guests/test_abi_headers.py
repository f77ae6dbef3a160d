"""guests/include/xen/*.h against Debian's libxen-dev public headers: every
struct size, field offset and constant the guests use must be the same.
Also ties xen_core.abi.hvm_start_info to the same numbers."""
import shutil
import subprocess
from pathlib import Path

import pytest

from xen_core.abi import elfnote
from xen_core.abi import hvm_start_info as abi

from .conftest import ROOT

CHECKER = Path(__file__).with_name("abi_layout.c")
OURS = ROOT / "guests" / "include"


def run_checker(tmp_path, tag, include_ours):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    exe = tmp_path / f"abi_{tag}"
    args = ["gcc", "-D__XEN_TOOLS__", "-o", str(exe), str(CHECKER)]
    if include_ours:
        args[1:1] = ["-I", str(OURS)]
        deps = subprocess.run(args[:-3] + ["-M", str(CHECKER)], capture_output=True,
                              text=True, check=True).stdout
        # Every xen/ header must be ours, none falling through to /usr/include.
        assert "/usr/include/xen" not in deps
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return dict(line.rsplit(" ", 1) for line in out.splitlines())


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    return run_checker(tmp_path_factory.mktemp("ours"), "ours", True)


def test_layouts_match_libxen_dev(ours, tmp_path):
    if not Path("/usr/include/xen/xen.h").exists():
        pytest.skip("libxen-dev headers not installed (make deps)")
    theirs = run_checker(tmp_path, "theirs", False)
    assert len(ours) > 250
    assert ours.keys() == theirs.keys()
    diff = {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}
    assert not diff


def test_python_start_info_matches_c(ours):
    assert int(ours["sizeof hvm_start_info"]) == abi.HVM_START_INFO.size
    for field, off in abi.HVM_START_INFO_OFFSETS.items():
        assert int(ours[f"offsetof hvm_start_info.{field}"]) == off, field
    assert int(ours["sizeof hvm_modlist_entry"]) == abi.HVM_MODLIST_ENTRY.size
    assert int(ours["sizeof hvm_memmap_table_entry"]) == abi.HVM_MEMMAP_TABLE_ENTRY.size
    assert int(ours["const XEN_HVM_START_MAGIC_VALUE"]) == abi.XEN_HVM_START_MAGIC_VALUE
    for name, value in (vars(abi) | vars(elfnote)).items():
        if name.startswith(("XEN_ELFNOTE_", "XEN_HVM_MEMMAP_TYPE_")) and isinstance(value, int):
            assert int(ours[f"const {name}"]) == value, name
