"""Where dom0's services live: the run directory and the paths in it.

The default is the core's own (`privif.default_run_dir`): $XEN_RUN_DIR,
else /run/pyxen as root, else $XDG_RUNTIME_DIR/pyxen.
"""
from __future__ import annotations

import contextlib
import os

from xen_core.abi import privif


def run_dir() -> str:
    return privif.default_run_dir()


def xenstored_socket(rdir: str) -> str:
    """Clients honour $XENSTORED_PATH first, as libxenstore does."""
    return os.environ.get("XENSTORED_PATH") or os.path.join(rdir, "xenstored", "socket")


def privcmd_socket(rdir: str) -> str:
    return os.path.join(rdir, privif.SOCKET_NAME)


def userdata_dir(rdir: str) -> str:
    """libxl keeps per-domain state in /var/lib/xen/userdata-*; ours is here."""
    return os.path.join(rdir, "userdata")


def console_log_dir(rdir: str) -> str:
    return os.path.join(rdir, "console")


@contextlib.contextmanager
def pid_file(path: str | None):
    """Hold `path` with this process's pid while the service runs (no-op
    without a path); xencommons reads it to stop the service."""
    if path:
        with open(path, "w") as f:
            f.write(f"{os.getpid()}\n")
    try:
        yield
    finally:
        if path:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
