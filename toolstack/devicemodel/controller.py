"""Supervising one QEMU device model, controlled only over QMP.

`DeviceModel(spec).start()` runs QEMU with the command line from
`cmdline.qemu_argv()`, connects its QMP socket (qemu.qmp) and lets the
guest run; `status()` gives xl's state letter, `pause()/unpause()` are
stop/cont, `shutdown()` an ACPI power-button press (system_powerdown),
`reboot()` system_reset, `destroy()` quit (then SIGKILL).  QMP events and the
death of the process reach the `on_event` callback as `DomainEvent`s.

The asyncio side (QMP client, our own event listener, the process watcher)
runs in one thread per device model; the public methods are synchronous and
may be called from any thread.  QEMU gets PR_SET_PDEATHSIG(SIGKILL) against
that thread, so it never outlives the toolstack process that started it.
"""
from __future__ import annotations

import asyncio
import atexit
import ctypes
import dataclasses
import logging
import os
import re
import signal
import subprocess
import threading
import time
import weakref

from qemu.qmp import ConnectError, EventListener, QMPClient
from qemu.qmp.protocol import Runstate

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")

# query-status "status" (RunState in QAPI) -> xl's state letter.
# r running, b blocked, p paused, s shutdown, c crashed, d dying.
RUNSTATE_TO_XL = {
    "running": "r", "paused": "p", "prelaunch": "p", "suspended": "p",
    "inmigrate": "p", "postmigrate": "p", "finish-migrate": "p",
    "save-vm": "p", "restore-vm": "p", "debug": "p", "io-error": "p",
    "watchdog": "p", "colo": "p", "shutdown": "s",
    "guest-panicked": "c", "internal-error": "c",
}


def _vcpu_stats(pid):
    """/proc stat lines of QEMU's vCPU threads ("CPU <n>/TCG", "CPU <n>/KVM")."""
    base = f"/proc/{pid}/task"
    out = []
    try:
        tids = os.listdir(base)
    except OSError:
        return out
    for tid in tids:
        try:
            with open(f"{base}/{tid}/comm") as f:
                if not f.read().startswith("CPU "):
                    continue
            with open(f"{base}/{tid}/stat") as f:
                out.append(f.read())
        except OSError:
            continue
    return out


def _stat_fields(stat):
    # comm may hold spaces and parentheses: fields start after the last ')'
    return stat[stat.rindex(")") + 2:].split()


def xl_state(qmp_status, pid=None):
    """xl's state letter for a QEMU in QMP run state `qmp_status`: running
    is r when a vCPU thread is on a CPU (or runnable), b when all block."""
    letter = RUNSTATE_TO_XL.get(qmp_status, "p")
    if letter == "r" and pid is not None:
        stats = _vcpu_stats(pid)
        if stats and not any(_stat_fields(s)[0] == "R" for s in stats):
            letter = "b"
    return letter


def vcpu_cpu_time(pid):
    """Seconds of CPU used by QEMU's vCPU threads (Xen's domain time), or
    by the whole process if no vCPU thread is named; None if it is gone."""
    stats = _vcpu_stats(pid)
    if not stats:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stats = [f.read()]
        except OSError:
            return None
    ticks = 0
    for s in stats:
        fl = _stat_fields(s)
        ticks += int(fl[11]) + int(fl[12])            # utime, stime
    return ticks / CLK_TCK


def qmp_execute(path, cmd, args=None, timeout=10.0):
    """One QMP command on a monitor socket, for processes other than the
    one supervising QEMU (xl pause/unpause/list from another shell use the
    second socket, `DeviceModelSpec.qmp_aux_path`; the supervisor's
    controller still sees the resulting events)."""
    async def run():
        client = QMPClient("xl")
        await client.connect(path)
        try:
            return await client.execute(cmd, args)
        finally:
            try:
                await client.disconnect()
            except Exception:
                pass
    if not os.path.exists(path):
        raise DeviceModelGone(f"no device model on {path}")
    try:
        return asyncio.run(asyncio.wait_for(run(), timeout))
    except (OSError, ConnectError, EOFError, asyncio.TimeoutError) as e:
        raise DeviceModelGone(f"no device model on {path}: {e}") from None
    except Exception as e:
        desc = getattr(getattr(getattr(e, "error", None), "error", None), "desc", None)
        raise DeviceModelError(f"QMP {cmd}: {desc or e}") from None


class DeviceModelError(RuntimeError):
    """QEMU could not be started or did not do what was asked."""


class DeviceModelGone(DeviceModelError):
    """The QEMU process has exited (the domain is shut down, crashed or
    destroyed)."""


@dataclasses.dataclass(frozen=True)
class DomainEvent:
    """kind: "shutdown", "reset", "stop", "resume", "panicked" (QMP events),
    "exited" (QEMU ended after a guest power-off or our quit) or "crashed"
    (QEMU died unasked).  guest: guest-initiated (QMP's `guest` flag);
    reason: QMP's reason ("guest-shutdown", "host-qmp-system-reset", ...) or,
    for exited/crashed, how the process ended."""
    kind: str
    guest: bool
    reason: str
    data: dict
    timestamp: float


_QMP_EVENTS = {"SHUTDOWN": "shutdown", "RESET": "reset", "STOP": "stop",
               "RESUME": "resume", "GUEST_PANICKED": "panicked"}

_live = weakref.WeakSet()


@atexit.register
def _destroy_all():
    for dm in list(_live):
        try:
            dm.destroy(timeout=2.0)
            dm.close()
        except Exception:                       # best effort at exit
            pass


def _child_setup(parent_pid):
    """preexec_fn: die with the thread that started us; a session of our own
    so the terminal's ^C goes to xl, not to QEMU."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:             # parent died before prctl
        os._exit(1)
    os.setsid()


class DeviceModel:
    def __init__(self, spec, *, domid=None, on_event=None, log_path=None,
                 env=None):
        self.spec = spec
        self.domid = domid
        self.on_event = on_event
        self.log_path = log_path or os.path.join(
            os.path.dirname(spec.qmp_path), f"qemu-dm-{domid}.log")
        self.env = env
        self.proc = None
        self.ptys = {}                 # chardev label -> /dev/pts/N
        self.events = []               # every DomainEvent, in order
        self._loop = None
        self._thread = None
        self._qmp = None
        self._listener = None
        self._pump_task = None
        self._pidfd = None
        self._exited = None            # asyncio.Event, set when QEMU is gone
        self._quitting = False
        self._shutdown_seen = None     # the SHUTDOWN event, if any
        self._end = None               # "shutdown" | "destroyed" | "crashed"
        self._last_cpu = 0.0
        self._closed = False

    # ---- sync facade ------------------------------------------------------

    def _call(self, coro, timeout):
        if self._loop is None:
            coro.close()
            raise DeviceModelError("device model not started")
        if threading.current_thread() is self._thread:
            coro.close()
            raise DeviceModelError("a DeviceModel cannot be driven from its own "
                                   "event callback: hand the event to another thread")
        fut = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise DeviceModelError(f"QMP operation timed out after {timeout} s") from None

    def start(self, paused=False, timeout=30.0):
        """Start QEMU, connect QMP, wire TAPs into their bridges; then let
        the guest run unless `paused` (xl create -p)."""
        if self._loop is not None:
            raise DeviceModelError("device model already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name=f"qemu-dm-{self.domid}", daemon=True)
        self._thread.start()
        try:
            self._call(self._start(paused, timeout), timeout + 10)
        except BaseException:
            try:
                self.destroy(timeout=2.0)
            finally:
                self.close()
            raise
        _live.add(self)
        return self

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None and not (
            self._exited and self._exited.is_set())

    def status(self):
        """xl's state letter: r b p s c d."""
        if not self.alive:
            return self._dead_state()
        try:
            st = self.query_status()["status"]
        except DeviceModelGone:
            return self._dead_state()
        return xl_state(st, self.proc.pid)

    def query_status(self):
        return self._call(self._execute("query-status"), 10.0)

    def pause(self):
        self._call(self._execute("stop"), 10.0)

    def unpause(self):
        self._call(self._execute("cont"), 10.0)

    def reboot(self):
        """system_reset: a hard reset, reported by a RESET event."""
        self._call(self._execute("system_reset"), 10.0)

    def shutdown(self, wait=True, timeout=60.0, retry=1.0):
        """ACPI power button.  A press while firmware runs (before the OS
        enabled ACPI) is lost, so it is repeated every `retry` seconds until
        the guest powers off; after `timeout` QEMU is ended with quit.
        Returns True when the guest powered itself off, False when quit was
        needed.  wait=False: one press, no waiting (returns None)."""
        if not wait:
            self._call(self._execute("system_powerdown"), 10.0)
            return None
        return self._call(self._shutdown(timeout, retry), timeout + 20.0)

    def destroy(self, timeout=5.0):
        """quit, then SIGKILL if QEMU has not gone within `timeout`."""
        if self._loop is None or self.proc is None:
            return
        self._call(self._destroy(timeout), timeout + 15.0)

    def wait(self, timeout=None):
        """Wait for QEMU to exit; its return code, or None on time-out."""
        if self.proc is None:
            return None
        try:
            self._call(asyncio.wait_for(self._exited.wait(), timeout), (timeout or 1e9) + 5)
        except (asyncio.TimeoutError, DeviceModelError):
            return None
        return self.proc.returncode

    def cpu_time(self):
        """Seconds of CPU the guest's vCPU threads used (Xen's domain
        time); the whole process' time if no vCPU thread is named."""
        if self.alive:
            t = vcpu_cpu_time(self.proc.pid)
            if t is not None:
                self._last_cpu = t
        return self._last_cpu

    def close(self):
        """Destroy QEMU if it still runs and stop the controller thread."""
        if self._closed or self._loop is None:
            return
        self._closed = True
        _live.discard(self)
        if self.alive:
            self.destroy(timeout=2.0)
        try:
            self._call(self._teardown(), 10.0)
        except DeviceModelError:
            pass
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10.0)
        self._loop.close()

    # ---- console ----------------------------------------------------------

    def serial_log(self, index=0):
        return self.spec.serial_logs[index]

    def serial_pty(self, index=0):
        return self.ptys.get(f"serial{index}")

    def read_console(self, index=0):
        try:
            with open(self.serial_log(index), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""

    def wait_for_console(self, pattern, timeout, index=0, start=0):
        """Poll the serial log until `pattern` (bytes regex) appears after
        offset `start`; the match, or None on time-out or QEMU exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.read_console(index), start)
            if m:
                return m
            if time.monotonic() > deadline or not self.alive:
                m = rx.search(self.read_console(index), start)
                return m
            time.sleep(0.02)

    # ---- asyncio side -----------------------------------------------------

    async def _start(self, paused, timeout):
        spec = self.spec
        run_dir = os.path.dirname(spec.qmp_path)
        os.makedirs(run_dir, exist_ok=True)
        for p in [spec.qmp_path, spec.qmp_aux_path] + [p for p in spec.serial_logs if p]:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass
        self._exited = asyncio.Event()
        with open(self.log_path, "ab") as logf:
            try:
                self.proc = subprocess.Popen(
                    spec.argv, stdin=subprocess.DEVNULL, stdout=logf,
                    stderr=subprocess.STDOUT, close_fds=True, env=self.env,
                    preexec_fn=lambda pid=os.getpid(): _child_setup(pid))
            except OSError as e:
                raise DeviceModelError(f"cannot run {spec.argv[0]}: {e.strerror}") from None
        self._pidfd = os.pidfd_open(self.proc.pid)
        self._loop.add_reader(self._pidfd, self._on_pidfd)
        await self._connect(timeout)
        for ch in await self._execute("query-chardev"):
            fn = ch.get("filename", "")
            if fn.startswith("pty:"):
                self.ptys[ch["label"]] = fn[4:]
        for ifname, bridge in spec.taps:
            await self._enslave(ifname, bridge)
        if not paused:
            await self._execute("cont")

    async def _connect(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise DeviceModelError(f"QEMU exited ({self.proc.returncode}) "
                                       f"before QMP: {self._log_tail()}")
            if not os.path.exists(self.spec.qmp_path):   # not bound yet
                if time.monotonic() > deadline:
                    raise DeviceModelError(f"no QMP socket {self.spec.qmp_path} "
                                           f"after {timeout} s")
                await asyncio.sleep(0.01)
                continue
            client = QMPClient(f"qemu-dm-{self.domid}")
            # The built-in all-events listener queues without bound and its
            # remove_listener() refuses: take it out of dispatch directly.
            if client.events in getattr(client, "_listeners", ()):
                client._listeners.remove(client.events)
            try:
                await client.connect(self.spec.qmp_path)
                break
            except Exception as e:
                last = e
                try:
                    await client.disconnect()
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise DeviceModelError(f"no QMP on {self.spec.qmp_path} after "
                                       f"{timeout} s: {last}")
            await asyncio.sleep(0.02)
        self._qmp = client
        self._listener = EventListener(names=list(_QMP_EVENTS))
        client.register_listener(self._listener)
        self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self):
        async for msg in self._listener:
            self._handle(msg)

    def _handle(self, msg):
        name = msg["event"]
        data = dict(msg.get("data") or {})
        ts = msg.get("timestamp") or {}
        when = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
        kind = _QMP_EVENTS[name]
        if kind == "shutdown":
            self._shutdown_seen = data
        reason = data.get("reason") or data.get("action") or ""
        self._emit(DomainEvent(kind, bool(data.get("guest", kind == "panicked")),
                               reason, data, when or time.time()))

    def _emit(self, ev):
        self.events.append(ev)
        log.info("domain %s: %s (%s%s)", self.domid, ev.kind, ev.reason,
                 ", guest" if ev.guest else "")
        if self.on_event:
            try:
                self.on_event(ev)
            except Exception:
                log.exception("on_event callback failed")

    def _on_pidfd(self):
        self._loop.remove_reader(self._pidfd)
        self._loop.create_task(self._reap())

    async def _reap(self):
        rc = self.proc.wait()
        # Events QEMU sent before exiting are still in the socket: let the
        # QMP reader reach EOF and our listener drain before judging.
        if self._qmp is not None:
            for _ in range(100):
                if self._qmp.runstate != Runstate.RUNNING and self._listener.empty():
                    break
                await asyncio.sleep(0.01)
            for msg in self._listener.clear():
                self._handle(msg)
        panicked = any(e.kind == "panicked" for e in self.events) or (
            self._shutdown_seen or {}).get("reason") == "guest-panic"
        if self._quitting:
            self._end, reason = "destroyed", "host-quit"
        elif panicked:
            self._end, reason = "crashed", "guest-panic"
        elif self._shutdown_seen is not None:
            self._end = "shutdown"
            reason = self._shutdown_seen.get("reason", "guest-shutdown")
        else:
            self._end = "crashed"
            reason = (f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}")
        self._cleanup_files()             # a killed QEMU leaves its sockets
        self._exited.set()
        guest = bool(self._shutdown_seen and self._shutdown_seen.get("guest"))
        self._emit(DomainEvent("crashed" if self._end == "crashed" else "exited",
                               guest, reason, {"returncode": rc}, time.time()))
        await self._disconnect()

    async def _disconnect(self):
        if self._qmp is None:
            return
        qmp, self._qmp = self._qmp, None
        try:
            await qmp.disconnect()
        except Exception:               # EOFError after QEMU went away
            pass

    async def _execute(self, cmd, args=None):
        if self._exited.is_set() or self._qmp is None:
            raise DeviceModelGone(f"QEMU for domain {self.domid} has exited")
        try:
            return await self._qmp.execute(cmd, args)
        except Exception as e:
            if self.proc.poll() is not None or self._exited.is_set():
                raise DeviceModelGone(f"QEMU for domain {self.domid} has exited") from None
            err = getattr(e, "error", None)
            desc = getattr(getattr(err, "error", None), "desc", None)
            raise DeviceModelError(f"QMP {cmd}: {desc or e}") from None

    async def _shutdown(self, timeout, retry):
        deadline = time.monotonic() + timeout
        while self._shutdown_seen is None and not self._exited.is_set():
            try:
                await self._execute("system_powerdown")
            except DeviceModelGone:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            step = min(retry, left)
            t0 = time.monotonic()
            while (time.monotonic() - t0 < step and self._shutdown_seen is None
                   and not self._exited.is_set()):
                await asyncio.sleep(0.02)
        if self._shutdown_seen is not None and self._shutdown_seen.get("guest"):
            # Without -no-shutdown QEMU now exits by itself.
            if "-no-shutdown" not in self.spec.argv:
                try:
                    await asyncio.wait_for(self._exited.wait(), 10.0)
                except asyncio.TimeoutError:
                    pass
            return True
        await self._destroy(5.0)
        return False

    async def _destroy(self, timeout):
        self._quitting = True
        if not self._exited.is_set():
            try:
                await self._execute("quit")
            except DeviceModelError:
                pass
            try:
                await asyncio.wait_for(self._exited.wait(), timeout)
            except asyncio.TimeoutError:
                log.warning("domain %s: QEMU ignored quit, killing it", self.domid)
                self.proc.kill()
                await asyncio.wait_for(self._exited.wait(), 10.0)
        self._cleanup_files()

    async def _teardown(self):
        await self._disconnect()
        if self._pump_task:
            self._pump_task.cancel()
        if self._pidfd is not None:
            try:
                self._loop.remove_reader(self._pidfd)
            except Exception:
                pass
            os.close(self._pidfd)
            self._pidfd = None

    def _cleanup_files(self):
        for p in (self.spec.qmp_path, self.spec.qmp_aux_path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    async def _enslave(self, ifname, bridge):
        """What Xen's vif-bridge hotplug script does for the -emu TAP."""
        if not os.path.isdir(f"/sys/class/net/{bridge}/bridge"):
            raise DeviceModelError(f"Could not find bridge device {bridge}")
        for argv in (["ip", "link", "set", "dev", ifname, "master", bridge],
                     ["ip", "link", "set", "dev", ifname, "up"]):
            p = await asyncio.create_subprocess_exec(
                *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
            out, _ = await p.communicate()
            if p.returncode:
                raise DeviceModelError(f"{' '.join(argv)}: {out.decode().strip()}")

    # ---- /proc ------------------------------------------------------------

    def _dead_state(self):
        if self.proc is None:
            return "d"
        return {"shutdown": "s", "crashed": "c"}.get(self._end, "d")

    def _log_tail(self, n=400):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - n))
                return f.read().decode("utf-8", "replace").strip().replace("\n", " | ")
        except OSError:
            return "(no log)"
