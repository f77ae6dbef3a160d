#!/usr/bin/env python3
"""Fetch Debian's kernel and busybox, and build the project's initramfs.

    python3 guests/linux/build.py [--out DIR] [--refresh]

Nothing is installed on the host: `apt-get download` fetches the packages
and `dpkg -x` unpacks them into a cache (default guests/build/linux/).  The
result, described in DIR/assets.json:
    vmlinuz            Debian's bzImage (the `linux-image-amd64` kernel)
    initramfs.cpio.gz  busybox + the modules /init loads + /init
The HVM guest (QEMU) and the PVH guest (issue 9) both boot these.

Idempotent: a second run with the same inputs (this script and init.sh)
does nothing.  `apt-get update` runs only when a download fails for lack of
package lists.
"""
from __future__ import annotations

import argparse
import glob
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "guests", "build", "linux")

META_PACKAGE = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"
# What /init needs: IDE (ata_piix), AHCI, the lsi SCSI HBA libxl gives sdX
# disks, disks (sd_mod), the ACPI power button (button, evdev), and the Xen
# PV frontends for the PVH guest.  Their dependencies are added from each
# module's own depends= field.
ROOT_MODULES = ("ata_piix", "ahci", "sym53c8xx", "sd_mod", "button", "evdev",
                "pvpanic_mmio", "xen_blkfront", "xen_netfront")
# Module depends= do not name soft dependencies; sd_mod's integrity code
# wants a crc-t10dif provider loaded first (the notes' working order).
SOFT_BEFORE = {"sd_mod": ("crct10dif_common", "crc_t10dif", "crc64",
                          "crc64_rocksoft", "t10_pi")}
ACPI_HANDLER = "#!/bin/sh\n# power button (busybox acpid event PWRF)\npoweroff -f\n"


class BuildError(Exception):
    pass


def log(msg):
    print(f"guests/linux: {msg}", file=sys.stderr)


def run(argv, cwd=None):
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    return p.returncode, p.stdout + p.stderr


# ---- packages -------------------------------------------------------------

def resolve_image_package(meta=META_PACKAGE):
    """The real image package the meta package depends on
    (linux-image-6.1.0-<N>-amd64)."""
    for attempt in (0, 1):
        rc, out = run(["apt-cache", "depends", meta])
        m = re.search(r"Depends:\s*(linux-image-[0-9][^\s|]*-amd64)\b", out)
        if rc == 0 and m:
            return m.group(1)
        if attempt == 0:
            apt_update()
    raise BuildError(f"cannot resolve the image package of {meta}: {out.strip()}")


def apt_update():
    log("package lists missing: apt-get update")
    rc, out = run(["apt-get", "update", "-qq"])
    if rc:
        raise BuildError(f"apt-get update failed: {out.strip()}")


def download(pkg, debdir):
    """apt-get download PKG into debdir (cached); the .deb path."""
    found = glob.glob(os.path.join(debdir, f"{pkg}_*.deb"))
    if found:
        return sorted(found)[-1]
    for attempt in (0, 1):
        rc, out = run(["apt-get", "download", pkg], cwd=debdir)
        found = glob.glob(os.path.join(debdir, f"{pkg}_*.deb"))
        if rc == 0 and found:
            return sorted(found)[-1]
        if attempt == 0 and ("Unable to locate" in out or "no installation candidate"
                             in out or "Can't select" in out):
            apt_update()
            continue
        break
    raise BuildError(f"apt-get download {pkg} failed: {out.strip()}")


def unpack(deb, dest):
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    rc, out = run(["dpkg", "-x", deb, dest])
    if rc:
        raise BuildError(f"dpkg -x {deb} failed: {out.strip()}")


# ---- modules --------------------------------------------------------------

def modname(path):
    """Kernel module name of a .ko file (hyphens read as underscores)."""
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def modinfo(path):
    """The .modinfo section of a .ko as a dict (key -> list of values)."""
    from elftools.elf.elffile import ELFFile
    with open(path, "rb") as f:
        sec = ELFFile(f).get_section_by_name(".modinfo")
        data = sec.data() if sec is not None else b""
    info = {}
    for item in data.split(b"\0"):
        if b"=" in item:
            k, v = item.decode("utf-8", "replace").split("=", 1)
            info.setdefault(k, []).append(v)
    return info


def module_index(moddir):
    index = {}
    for p in glob.glob(os.path.join(moddir, "kernel", "**", "*.ko"), recursive=True):
        index[modname(p)] = p
    return index


def load_order(index, roots=ROOT_MODULES):
    """Roots and their dependencies, each after what it depends on."""
    order, seen = [], set()

    def visit(name, chain=()):
        if name in seen:
            return
        if name in chain:
            raise BuildError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        if name not in index:
            raise BuildError(f"module {name} not in the kernel package")
        deps = [d for v in modinfo(index[name]).get("depends", [])
                for d in v.split(",") if d]
        for d in list(SOFT_BEFORE.get(name, ())) + deps:
            visit(d.replace("-", "_"), chain + (name,))
        seen.add(name)
        order.append(name)

    for r in roots:
        visit(r)
    return order


# ---- cpio (newc) ----------------------------------------------------------

class Cpio:
    """A newc archive written directly, so that /dev/console (a device node
    the kernel opens before /init) needs no mknod on the host and the
    output is reproducible (fixed mtime, sorted order)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name, mode, data=b"", rdev=(0, 0), nlink=1):
        fields = [self.ino, mode, 0, 0, nlink, 0, len(data), 0, 0,
                  rdev[0], rdev[1], len(name) + 1, 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.buf.write(hdr + name.encode() + b"\0")
        self._pad()
        self.buf.write(data)
        self._pad()

    def _pad(self):
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name):
        self._entry(name, 0o040755, nlink=2)

    def file(self, name, data, mode=0o644):
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name, major, minor):
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self):
        self._entry("TRAILER!!!", 0, nlink=1)
        self._pad()
        return self.buf.getvalue()


def build_initramfs(busybox, moddir, kver, order):
    c = Cpio()
    for d in ("bin", "dev", "etc", "etc/acpi", "etc/acpi/PWRF", "lib",
              "lib/modules", "mnt", "proc", "sbin", "sys", "tmp", "usr",
              "usr/bin", "usr/sbin"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    with open(busybox, "rb") as f:
        c.file("bin/busybox", f.read(), 0o755)
    with open(os.path.join(HERE, "init.sh"), "rb") as f:
        c.file("init", f.read(), 0o755)
    c.file("etc/acpi/PWRF/00000080", ACPI_HANDLER.encode(), 0o755)
    index = module_index(moddir)
    for name in order:
        with open(index[name], "rb") as f:
            c.file(f"lib/modules/{name}.ko", f.read())
    c.file("lib/modules/load.order", "".join(n + "\n" for n in order).encode())
    c.file("lib/modules/kernel-release", (kver + "\n").encode())
    return gzip.compress(c.finish(), compresslevel=6, mtime=0)


# ---- driver ---------------------------------------------------------------

def inputs_digest():
    h = hashlib.sha256()
    for name in ("build.py", "init.sh"):
        with open(os.path.join(HERE, name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def up_to_date(out):
    try:
        with open(os.path.join(out, "assets.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if meta.get("inputs") != inputs_digest():
        return None
    if not all(os.path.isfile(meta.get(k, "")) for k in ("kernel", "ramdisk")):
        return None
    return meta


def build(out=DEFAULT_OUT, refresh=False):
    meta = None if refresh else up_to_date(out)
    if meta:
        log(f"up to date ({meta['kernel_package']})")
        return meta
    debdir = os.path.join(out, "debs")
    os.makedirs(debdir, exist_ok=True)
    if refresh:
        for p in glob.glob(os.path.join(debdir, "*.deb")):
            os.unlink(p)
    image_pkg = resolve_image_package()
    log(f"{META_PACKAGE} -> {image_pkg}")
    kdeb = download(image_pkg, debdir)
    bdeb = download(BUSYBOX_PACKAGE, debdir)
    kroot, broot = os.path.join(out, "kernel"), os.path.join(out, "busybox")
    unpack(kdeb, kroot)
    unpack(bdeb, broot)
    vmlinuz = glob.glob(os.path.join(kroot, "boot", "vmlinuz-*"))
    moddirs = glob.glob(os.path.join(kroot, "lib", "modules", "*"))
    if len(vmlinuz) != 1 or len(moddirs) != 1:
        raise BuildError(f"unexpected layout in {kdeb}")
    kver = os.path.basename(moddirs[0])
    order = load_order(module_index(moddirs[0]))
    image = build_initramfs(os.path.join(broot, "bin", "busybox"), moddirs[0],
                            kver, order)
    kernel = os.path.join(out, "vmlinuz")
    ramdisk = os.path.join(out, "initramfs.cpio.gz")
    shutil.copyfile(vmlinuz[0], kernel + ".tmp")
    os.replace(kernel + ".tmp", kernel)
    with open(ramdisk + ".tmp", "wb") as f:
        f.write(image)
    os.replace(ramdisk + ".tmp", ramdisk)
    meta = {"kernel": kernel, "ramdisk": ramdisk, "kernel_release": kver,
            "kernel_package": os.path.basename(kdeb),
            "busybox_package": os.path.basename(bdeb),
            "modules": order, "marker": "PYXEN-INIT-OK",
            "inputs": inputs_digest()}
    with open(os.path.join(out, "assets.json.tmp"), "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(os.path.join(out, "assets.json.tmp"), os.path.join(out, "assets.json"))
    log(f"built {ramdisk} ({len(image)} bytes, {len(order)} modules) for {kver}")
    return meta


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--refresh", action="store_true",
                    help="download and rebuild even when up to date")
    a = ap.parse_args(argv)
    try:
        build(os.path.abspath(a.out), a.refresh)
    except BuildError as e:
        print(f"guests/linux: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
