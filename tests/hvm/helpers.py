"""Shared by the HVM tests: configs from xl.cfg text, the guest assets."""
from __future__ import annotations

import json
import os
import re
import shutil

from toolstack.config import build, parse_text

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LINUX_DIR = os.path.join(ROOT, "guests", "build", "linux")
BOOTSECTOR = os.path.join(ROOT, "guests", "build", "bootsector", "disk.img")
PANIC_BOOTSECTOR = os.path.join(ROOT, "guests", "build", "bootsector", "panic.img")
QEMU = shutil.which("qemu-system-x86_64")
QEMU_IMG = shutil.which("qemu-img")


def cfg(text):
    """A DomainConfig from xl.cfg text (type hvm and a memory size added
    when not given)."""
    def has(key):
        return re.search(rf"^{key}\s*=", text, re.M)
    if not has("type"):
        text = 'type = "hvm"\n' + text
    if not has("memory"):
        text = "memory = 64\n" + text
    if not has("name"):
        text = 'name = "t"\n' + text
    d, _warnings = build(parse_text(text, "test.cfg"))
    return d


def linux_assets():
    try:
        with open(os.path.join(LINUX_DIR, "assets.json")) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    if all(os.path.isfile(meta.get(k, "")) for k in ("kernel", "ramdisk")):
        return meta
    return None
