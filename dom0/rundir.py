"""Where dom0's services live: the run directory and the paths in it.

The same default as xen-core and xenstored (each keeps its own copy, since
dom0 does not import the core): $XEN_RUN_DIR, else /run/pyxen as root, else
$XDG_RUNTIME_DIR/pyxen.
"""
from __future__ import annotations

import os

PROJECT = "pyxen"


def run_dir() -> str:
    env = os.environ.get("XEN_RUN_DIR")
    if env:
        return env
    if os.geteuid() == 0:
        return f"/run/{PROJECT}"
    base = os.environ.get("XDG_RUNTIME_DIR") or f"/tmp/{PROJECT}-{os.getuid()}"
    return os.path.join(base, PROJECT)


def xenstored_socket(rdir: str) -> str:
    """Clients honour $XENSTORED_PATH first, as libxenstore does."""
    return os.environ.get("XENSTORED_PATH") or os.path.join(rdir, "xenstored", "socket")


def privcmd_socket(rdir: str) -> str:
    return os.path.join(rdir, "privcmd.sock")


def userdata_dir(rdir: str) -> str:
    """libxl keeps per-domain state in /var/lib/xen/userdata-*; ours is here."""
    return os.path.join(rdir, "userdata")


def console_log_dir(rdir: str) -> str:
    return os.path.join(rdir, "console")
