"""The guest library's pure C parts (its printf, cmdline and memmap
parsing) compiled for the host and checked line by line."""
import shutil
import subprocess

import pytest

from .conftest import GUESTS_DIR

EXPECTED = """\
fmt|-5|2
fmt|-2147483648|11
fmt|4294967295|10
fmt|deadbeef|8
fmt|123456789abcdef0|16
fmt|18446744073709551615|20
fmt|-9223372036854775808|20
fmt|0000beef|8
fmt|   ab|(null)|12
fmt|0x1000|6
fmt|A%|2
fmt|%q|2
fmt|end|3
fmt|%-3d|4
trunc|hell|11
zero|hell|3
nocmdline||0
get|loops|1|42
get|foo|1|bar
get|lo|0
get|long|1|abcdefghijklmno
u64|loops|42
u64|x|31
u64|y|9
u64|z|9
u64|missing|5
ram_end|0
ram_end|4000000
"""


def test_guest_lib_on_the_host(tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    exe = tmp_path / "lib_check"
    lib = GUESTS_DIR / "lib"
    # The library's own printf/snprintf/mem* replace libc's in this program
    # (-fno-builtin keeps gcc from substituting its builtins).
    r = subprocess.run(
        ["gcc", "-O1", "-fno-builtin", "-Wno-format", "-I", str(GUESTS_DIR / "include"),
         "-I", str(GUESTS_DIR), "-o", str(exe),
         str(GUESTS_DIR.parent / "tests" / "guests" / "lib_host_check.c"),
         str(lib / "console.c"), str(lib / "cmdline.c"), str(lib / "string.c")],
        capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == EXPECTED.splitlines()
