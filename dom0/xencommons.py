"""`xencommons start|stop|status`: dom0's services in the run directory.

    xencommons [--run-dir D] start|stop|status|restart

As Xen's xencommons init script: xen-core (the hypervisor), xenstored,
xenconsoled (and xen-backendd once pv_drivers has it), started in that order,
stopped in the reverse one. Each writes `<run dir>/<name>.pid` and logs to
`<run dir>/<name>.log`. All services share one process group (recorded in
`xencommons.pgid`), so a supervisor or a test can end them with one killpg.
`status` exits 0 when every service runs, 3 otherwise (LSB).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Callable

from . import rundir

START_TIMEOUT = 60.0    # a first start compiles nothing, but CI machines are slow
STOP_TIMEOUT = 15.0


def _probe_unix(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


@dataclass(frozen=True)
class Service:
    name: str
    module: str                              # python -m <module>
    args: Callable[[str], list[str]]         # run dir -> arguments
    ready: Callable[[str], bool]             # run dir -> serving?

    def pid_file(self, rdir: str) -> str:
        return os.path.join(rdir, f"{self.name}.pid")

    def log_file(self, rdir: str) -> str:
        return os.path.join(rdir, f"{self.name}.log")

    def available(self) -> bool:
        return importlib.util.find_spec(self.module) is not None


def _pidfile_ready(name):
    return lambda d: read_pid(os.path.join(d, f"{name}.pid")) is not None


# The one table of dom0 services, in start order.
SERVICES: tuple[Service, ...] = (
    Service("xen-core", "xen_core.daemon",
            lambda d: ["-N", "--run-dir", d, "--log", os.path.join(d, "xen-core.log")],
            lambda d: _probe_unix(rundir.privcmd_socket(d))),
    Service("xenstored", "xenstore.daemon",
            lambda d: ["-N", "--socket", rundir.xenstored_socket(d),
                       "--pid-file", os.path.join(d, "xenstored.pid"),
                       "--log", os.path.join(d, "xenstored.log"), "--privcmd-run-dir", d],
            lambda d: _probe_unix(rundir.xenstored_socket(d))),
    Service("xenconsoled", "pv_drivers.consoled",
            lambda d: ["--run-dir", d, "--pid-file", os.path.join(d, "xenconsoled.pid"),
                       "--log", os.path.join(d, "xenconsoled.log")],
            _pidfile_ready("xenconsoled")),
    Service("xen-backendd", "pv_drivers.backendd",
            lambda d: ["--run-dir", d, "--pid-file", os.path.join(d, "xen-backendd.pid"),
                       "--log", os.path.join(d, "xen-backendd.log")],
            _pidfile_ready("xen-backendd")),
)


def services() -> list[Service]:
    return [s for s in SERVICES if s.available()]


def read_pid(path: str) -> int | None:
    """The pid in `path` if that process is alive."""
    try:
        with open(path) as f:
            pid = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


def _pgid_file(rdir: str) -> str:
    return os.path.join(rdir, "xencommons.pgid")


def _group(rdir: str) -> int | None:
    """The services' process group, if some member is still alive."""
    try:
        with open(_pgid_file(rdir)) as f:
            pgid = int(f.read())
        os.killpg(pgid, 0)
        return pgid
    except (OSError, ValueError):
        return None


_LAUNCH = ("import runpy, signal, sys; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
           "mod = sys.argv.pop(1); runpy.run_module(mod, run_name='__main__', alter_sys=True)")


class ServiceError(Exception):
    pass


def status(rdir: str) -> dict[str, int | None]:
    return {s.name: (read_pid(s.pid_file(rdir)) if s.ready(rdir) else None)
            for s in services()}


def running(rdir: str) -> bool:
    return all(pid is not None for pid in status(rdir).values())


def _start_one(svc: Service, rdir: str) -> int:
    pgid = _group(rdir)
    log = open(svc.log_file(rdir), "ab")
    env = dict(os.environ, XEN_RUN_DIR=rdir)
    try:
        # One process group (new for the first service, joined by the rest),
        # SIGHUP ignored: the services outlive the terminal xl ran in.
        proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, svc.module, *svc.args(rdir)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, close_fds=True,
            cwd="/", process_group=pgid or 0)
    finally:
        log.close()
    if pgid is None:
        with open(_pgid_file(rdir), "w") as f:
            f.write(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT
    while not svc.ready(rdir):
        if proc.poll() is not None:
            raise ServiceError(f"{svc.name} exited with status {proc.returncode} "
                               f"(see {svc.log_file(rdir)})")
        if time.monotonic() > deadline:
            proc.kill()
            raise ServiceError(f"{svc.name} did not become ready in {START_TIMEOUT:.0f} s")
        time.sleep(0.01)
    # A pid file written by the daemon itself wins (it may have forked).
    if read_pid(svc.pid_file(rdir)) is None:
        with open(svc.pid_file(rdir), "w") as f:
            f.write(f"{proc.pid}\n")
    return proc.pid


def start(rdir: str, report=None) -> list[str]:
    """Start the services that are not running; the names started."""
    os.makedirs(rdir, mode=0o700, exist_ok=True)
    started = []
    for svc in services():
        if svc.ready(rdir):
            continue
        _start_one(svc, rdir)
        started.append(svc.name)
        if report:
            report(svc.name)
    return started


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:   # reap it if it is our child (a start in this process)
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def stop(rdir: str) -> list[str]:
    """SIGTERM each running service, newest first; SIGKILL the stubborn."""
    stopped = []
    for svc in reversed(services()):
        pid = read_pid(svc.pid_file(rdir))
        if pid is None:
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        if not _wait_gone(pid, STOP_TIMEOUT):
            os.kill(pid, signal.SIGKILL)
            _wait_gone(pid, STOP_TIMEOUT)
        for path in (svc.pid_file(rdir),):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        stopped.append(svc.name)
    if _group(rdir) is None:
        try:
            os.unlink(_pgid_file(rdir))
        except FileNotFoundError:
            pass
    return stopped


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="xencommons", description="start/stop dom0's services")
    p.add_argument("--run-dir", default=None, help="run directory (default $XEN_RUN_DIR, ...)")
    p.add_argument("action", choices=("start", "stop", "status", "restart"))
    args = p.parse_args(argv)
    rdir = args.run_dir or rundir.run_dir()
    try:
        if args.action in ("stop", "restart"):
            for name in stop(rdir):
                print(f"Stopping {name}")
        if args.action in ("start", "restart"):
            start(rdir, report=lambda n: print(f"Starting {n}", flush=True))
            return 0
        if args.action == "status":
            st = status(rdir)
            for name, pid in st.items():
                print(f"{name}: " + (f"running (pid {pid})" if pid else "stopped"))
            return 0 if all(st.values()) else 3
    except (ServiceError, OSError) as e:
        print(f"xencommons: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
