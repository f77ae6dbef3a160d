"""Run Debian's real `xl -N create` (Xen 4.17) under an LD_PRELOAD shim.

`RealXl.create(text, overrides)` returns (exit status, stdout, stderr).
`available()` says why not when gcc, the xl binary or libxenlight is absent.
"""
import os
import pathlib
import shutil
import subprocess

XL = "/usr/lib/xen-4.17/bin/xl"
SHIM_SRC = pathlib.Path(__file__).with_name("xl_dryrun_shim.c")
SHIM_NR_CPUS = 64


def unavailable_reason():
    if not os.path.exists(XL):
        return f"{XL} not installed (Debian xen-utils-4.17)"
    if not shutil.which("gcc"):
        return "gcc not installed"
    return None


class RealXl:
    def __init__(self, workdir):
        self.workdir = pathlib.Path(workdir)
        self.shim = self.workdir / "xl_dryrun_shim.so"
        subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(self.shim),
                        str(SHIM_SRC)], check=True, capture_output=True)
        env = dict(os.environ)
        env["LD_PRELOAD"] = str(self.shim)
        self.env = env
        # Probe once: the shim must carry xl through a dry run.
        rc, out, err = self.create('name="probe"\nkernel="/k"\n')
        if rc != 0 or not out.startswith("{"):
            raise RuntimeError(f"real xl under the shim failed: {err.strip()}")

    def create(self, text, overrides=(), name="test.cfg"):
        path = self.workdir / name
        path.write_text(text)
        p = subprocess.run([XL, "-N", "create", str(path), *overrides],
                           env=self.env, capture_output=True, text=True,
                           cwd=self.workdir, timeout=60)
        return p.returncode, p.stdout, p.stderr
