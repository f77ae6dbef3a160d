"""The initramfs guests/linux/build.py wrote, read back with busybox's own
cpio (from the same busybox-static package) and checked against the
kernel modules' depends= fields."""
import gzip
import importlib.util
import os
import subprocess
import sys

import pytest

from .helpers import LINUX_DIR, ROOT, linux_assets

ASSETS = linux_assets()
pytestmark = pytest.mark.skipif(ASSETS is None, reason="Linux guest assets not "
                                "built (make linux-assets)")
BUSYBOX = os.path.join(LINUX_DIR, "busybox", "bin", "busybox")


def builder():
    spec = importlib.util.spec_from_file_location(
        "guests_linux_build", os.path.join(ROOT, "guests", "linux", "build.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def listing():
    with open(ASSETS["ramdisk"], "rb") as f:
        data = gzip.decompress(f.read())
    p = subprocess.run([BUSYBOX, "cpio", "-t", "-v"], input=data,
                       capture_output=True, check=True)
    return p.stdout.decode().splitlines()


def test_archive_readable_by_busybox_cpio(listing):
    names = {line.split()[-1]: line for line in listing}
    for n in ("init", "bin/busybox", "dev/console", "lib/modules/load.order",
              "etc/acpi/PWRF/00000080"):
        assert n in names, n
    assert names["init"].startswith("-rwxr-xr-x")
    assert names["dev/console"].startswith("crw")


def test_modules_after_their_dependencies():
    b = builder()
    moddir = os.path.join(LINUX_DIR, "kernel", "lib", "modules", ASSETS["kernel_release"])
    index = b.module_index(moddir)
    order = ASSETS["modules"]
    for i, name in enumerate(order):
        deps = [d.replace("-", "_") for v in b.modinfo(index[name]).get("depends", [])
                for d in v.split(",") if d]
        for d in deps:
            assert d in order[:i], f"{name} loaded before its dependency {d}"
    for m in ("ata_piix", "sd_mod", "button", "evdev", "xen_blkfront", "xen_netfront"):
        assert m in order


def test_unknown_module_is_a_clear_error():
    b = builder()
    with pytest.raises(b.BuildError, match="module no_such_mod not in the kernel package"):
        b.load_order({}, roots=("no_such_mod",))


def test_second_run_does_nothing():
    p = subprocess.run([sys.executable,
                        os.path.join(ROOT, "guests", "linux", "build.py"),
                        "--out", LINUX_DIR], capture_output=True, text=True)
    assert p.returncode == 0 and "up to date" in p.stderr
