"""`type = "hvm"` domains through xl: the core holds the domain (its domid,
uuid, limits, and the shutdown reason xl list shows), QEMU is the machine.

The core domain is created with the hvm flag and never given a vCPU
context nor unpaused, so the core runs nothing for it: QEMU (started by the
per-domain monitor, toolstack/devicemodel) runs the guest.  Other xl
processes reach QEMU through its second QMP socket, whose path the monitor
leaves in /libxl/<domid>/dm-qmp (dom0-only), as libxl's libxenstat socket.

xenstore, as libxl writes it for a device-model domain:
    /local/domain/<domid>/{name,domid,vm,memory/*,cpu/*}
    /local/domain/<domid>/serial/0/tty        QEMU's pty (xl console)
    /local/domain/<domid>/image/device-model-pid
    /local/domain/0/device-model/<domid>/state    "running" once QMP is up
    /vm/<uuid>/{name,uuid,start_time}
"""
from __future__ import annotations

import os
import queue
import signal
import time
import uuid as uuidlib

from dom0.privcmd import XenError

from .config import to_json
from .devicemodel import (ConfigUnsupported, DeviceModel, DeviceModelError,
                          choose_accel, qemu_argv, qmp_execute, vcpu_cpu_time, xl_state)
from .domains import Session, save_userdata

LIBXL_MAXMEM_CONSTANT_KB = 1024
# SHUTDOWN_* codes (xen/include/public/sched.h)
SHUTDOWN_poweroff, SHUTDOWN_reboot, SHUTDOWN_crash = 0, 1, 3
DM_START_WAIT_S = 120      # bound on QEMU answering QMP (not a speed limit)


def dm_state_path(domid: int) -> str:
    return f"/local/domain/0/device-model/{domid}/state"


def dm_run_dir(rdir: str, domid: int) -> str:
    return os.path.join(rdir, f"qemu-dm-{domid}")


def is_hvm(sess: Session, domid: int) -> bool:
    try:
        return bool(sess.pc.domain_info(domid).get("hvm"))
    except XenError:
        return False


def create(sess: Session, d_config, uuid: str | None = None) -> int:
    """libxl__domain_make + the build_post keys for a device-model domain;
    QEMU itself is the monitor's to start (start_dm)."""
    from .create import CreateError, make_home
    c, b = d_config.c_info, d_config.b_info
    target_kb, max_kb = b.target_memkb, max(b.max_memkb, b.target_memkb)
    u = uuidlib.UUID(uuid or c.uuid) if (uuid or c.uuid) else uuidlib.uuid4()
    try:
        # The core only accounts for the domain; its RAM is QEMU's.
        domid = sess.pc.domain_create(max_memory=(max_kb + LIBXL_MAXMEM_CONSTANT_KB) * 1024,
                                      max_vcpus=b.max_vcpus or 1, hvm=True, handle=u.bytes)
    except XenError as e:
        raise CreateError(f"cannot create domain: {e}") from None
    vm_path = f"/vm/{u}"
    dom_path = f"/local/domain/{domid}"
    avail = set(b.avail_vcpus) if b.avail_vcpus is not None else set(range(b.max_vcpus or 1))
    try:
        make_home(sess, domid, c.name, vm_path, str(u))
        xs = sess.xs

        def tx():
            xs.write(f"{dom_path}/memory/static-max", str(max_kb))
            xs.write(f"{dom_path}/memory/target", str(target_kb))
            xs.write(f"{dom_path}/domid", str(domid))
            for i in range(b.max_vcpus or 1):
                xs.write(f"{dom_path}/cpu/{i}/availability",
                         "online" if i in avail else "offline")
            xs.write(f"{vm_path}/start_time", f"{time.time():.2f}")
            xs.write(dm_state_path(domid), "")
        xs.transaction(tx)
        save_userdata(sess.rdir, domid, to_json(d_config))
    except BaseException:
        destroy(sess, domid)
        raise
    return domid


def start_dm(sess: Session, domid: int, d_config, paused: bool, on_event) -> DeviceModel:
    """In the monitor (after its fork): QEMU for `domid`, its keys written."""
    accel, _why = choose_accel("auto")
    run_dir = dm_run_dir(sess.rdir, domid)
    os.makedirs(run_dir, exist_ok=True)
    spec = qemu_argv(d_config, domid=domid, run_dir=run_dir, accel=accel,
                     privileged=os.geteuid() == 0)
    for w in spec.warnings:
        print(f"xl: {w}", file=__import__("sys").stderr, flush=True)
    dm = DeviceModel(spec, domid=domid, on_event=on_event,
                     log_path=os.path.join(sess.rdir, f"qemu-dm-{d_config.c_info.name}.log"))
    dm.start(paused=paused)
    dom_path = f"/local/domain/{domid}"
    xs = sess.xs

    def tx():
        xs.write(f"/libxl/{domid}/dm-qmp", spec.qmp_aux_path)
        xs.write(f"{dom_path}/image/device-model-pid", str(dm.pid))
        pty = dm.serial_pty(0)
        if pty:
            xs.write(f"{dom_path}/serial/0/tty", pty)
        xs.write(dm_state_path(domid), "running")
    xs.transaction(tx)
    return dm


def _monitor_said(rdir: str, name: str, domid: int) -> str | None:
    """The monitor's one-line reason (its log) for a device model that failed."""
    try:
        with open(os.path.join(rdir, f"xl-{name}.log"), errors="replace") as f:
            lines = [ln for ln in f.read().splitlines() if f"domain {domid}: device model" in ln]
    except OSError:
        return None
    return lines[-1].split("device model: ", 1)[1] if lines else None


def wait_dm_running(sess: Session, domid: int, name: str = "",
                    timeout: float = DM_START_WAIT_S) -> None:
    """xl create waits for QEMU as libxl does (device-model/<domid>/state)."""
    from .create import CreateError
    deadline = time.monotonic() + timeout
    while True:
        try:
            sess.pc.domain_info(domid)
        except XenError:
            why = _monitor_said(sess.rdir, name, domid) or \
                f"see xl-{name}.log in {sess.rdir}"
            raise CreateError(f"domain {domid}: the device model failed to start: "
                              f"{why}") from None
        if sess.xs.read(dm_state_path(domid)) == "running":
            return
        if time.monotonic() > deadline:
            destroy(sess, domid)
            raise CreateError(f"domain {domid}: the device model did not start "
                              f"within {timeout:.0f} s")
        time.sleep(0.02)


# -- other xl processes ----------------------------------------------------------
def _aux(sess: Session, domid: int) -> str:
    path = sess.xs.read(f"/libxl/{domid}/dm-qmp")
    if not path:
        raise DeviceModelError(f"domain {domid} has no device model running")
    return path


def _dm_pid(sess: Session, domid: int) -> int | None:
    v = sess.xs.read(f"/local/domain/{domid}/image/device-model-pid")
    return int(v) if v and v.isdigit() else None


def qmp(sess: Session, domid: int, cmd: str):
    return qmp_execute(_aux(sess, domid), cmd)


def list_info(sess: Session, domid: int, info: dict) -> dict:
    """The core's domain_info with what only QEMU knows: run state, CPU
    time; memory is the domain's target (QEMU's RAM)."""
    info = dict(info)
    target = sess.xs.read(f"/local/domain/{domid}/memory/target")
    if target and target.isdigit():
        info["tot_pages"] = int(target) // 4
    info["online_vcpus"] = info.get("max_vcpus", 1)
    pid = _dm_pid(sess, domid)
    try:
        letter = xl_state(qmp(sess, domid, "query-status")["status"], pid)
    except Exception:
        letter = None                 # starting, or QEMU gone: the core's view
    if letter is not None and info.get("shutdown_reason") is None:
        info["paused"] = False
        info["state"] = {"r": "running", "b": "blocked", "p": "paused",
                         "d": "dying"}.get(letter, info.get("state"))
        if letter == "c":
            info["shutdown_reason"] = SHUTDOWN_crash
        elif letter == "s":
            info["shutdown_reason"] = SHUTDOWN_poweroff
    t = vcpu_cpu_time(pid) if pid else None
    info["cpu_time_ns"] = int((t or 0) * 1e9)
    return info


def destroy(sess: Session, domid: int) -> None:
    """libxl_domain_destroy for HVM: the domain first (so the monitor sees
    QEMU's end as a destroy, not a crash), then QEMU, then its store keys."""
    pid = _dm_pid(sess, domid)
    aux = sess.xs.read(f"/libxl/{domid}/dm-qmp")
    sess.destroy(domid)
    sess.xs.rm(f"/local/domain/0/device-model/{domid}")
    if aux:
        try:
            qmp_execute(aux, "quit", timeout=5.0)
        except Exception:
            pass
    if pid:
        _reap(pid)


def _reap(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and _is_qemu(pid):
        if time.monotonic() > deadline:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
            return
        time.sleep(0.02)


def _is_qemu(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
    except OSError:
        return False
    return "qemu" in st and st.rsplit(")", 1)[1].split()[0] != "Z"


# -- the monitor ---------------------------------------------------------------
def _reason_of(ev) -> int | None:
    """A QEMU event as Xen's SHUTDOWN_* code (None: not a death)."""
    if ev.kind == "shutdown" and ev.guest:
        return SHUTDOWN_crash if ev.reason == "guest-panic" else SHUTDOWN_poweroff
    if ev.kind == "reset":           # guest or xl reboot: on_reboot applies
        return SHUTDOWN_reboot
    if ev.kind == "panicked":
        return SHUTDOWN_crash
    if ev.kind == "crashed":
        return SHUTDOWN_crash
    if ev.kind == "exited":
        return SHUTDOWN_poweroff if ev.guest else SHUTDOWN_crash
    return None


def monitor(rdir: str, domid: int, d_config, paused: bool = False) -> int:
    """Run QEMU for the domain and carry out on_poweroff/on_reboot/on_crash;
    ends once the domain is destroyed (or the core goes away)."""
    from .monitor import log
    try:
        with Session(rdir) as sess:
            return _supervise(sess, domid, d_config, paused, log)
    except ConnectionError as e:
        log(f"xl: monitor: {e}")
        return 0


def _supervise(sess: Session, domid: int, d_config, paused: bool, log) -> int:
    from .monitor import ACTION_FIELD, preserve
    from .create import CreateError
    while True:
        events: queue.Queue = queue.Queue()
        try:
            dm = start_dm(sess, domid, d_config, paused, events.put)
        except (ConfigUnsupported, DeviceModelError, OSError) as e:
            log(f"xl: domain {domid}: device model: {e}")
            destroy(sess, domid)
            return 1
        preserved = False
        try:
            while True:
                try:
                    ev = events.get(timeout=0.5)
                except queue.Empty:
                    ev = None
                try:
                    sess.pc.domain_info(domid)
                except XenError:
                    return 0                      # destroyed (xl destroy)
                if ev is None or preserved:
                    continue
                reason = _reason_of(ev)
                if reason is None:
                    continue
                action = getattr(d_config, ACTION_FIELD[reason])
                log(f"Domain {domid} has shut down, reason code {reason} 0x{reason:x}")
                log(f"Action for shutdown reason code {reason} is {action}")
                try:
                    sess.pc.domain_shutdown(domid, reason)    # xl list: s / c
                except XenError:
                    pass
                if action in ("preserve", "coredump-preserve"):
                    preserve(sess, domid, d_config)
                    preserved = True              # QEMU kept; wait for xl destroy
                    continue
                dm.destroy()
                if action == "rename-restart":
                    # The old domain stays, renamed and shut down, for xl destroy.
                    preserve(sess, domid, d_config)
                    sess.xs.rm(f"/libxl/{domid}/dm-qmp")
                else:
                    log(f"Domain {domid} needs to be cleaned up: destroying the domain")
                    destroy(sess, domid)
                if action not in ("restart", "rename-restart", "coredump-restart"):
                    log("Done. Exiting now")
                    return 0
                log("Done. Rebooting now")
                try:
                    domid = create(sess, d_config)
                except CreateError as e:
                    log(f"xl: restart of {d_config.c_info.name} failed: {e}")
                    return 1
                paused = False
                break
        finally:
            dm.close()
