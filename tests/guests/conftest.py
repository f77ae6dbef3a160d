import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GUESTS_DIR = ROOT / "guests"
GUEST_NAMES = ("hello", "crash", "badcall", "spin", "hypercall-loop")


@pytest.fixture(scope="session")
def built_guests():
    """Runs `make -C guests` (quick when up to date) and returns name -> ELF path."""
    if shutil.which("gcc") is None or shutil.which("ld") is None or shutil.which("make") is None:
        pytest.skip("gcc, ld or make not installed (make deps)")
    r = subprocess.run(["make", "-s", "-C", str(GUESTS_DIR)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return {n: GUESTS_DIR / "build" / f"{n}.elf" for n in GUEST_NAMES}
