"""The per-domain monitor: xl's model of carrying out on_poweroff,
on_reboot, on_crash (and on_watchdog/on_soft_reset).

`xl create` forks a child that detaches from the terminal (setsid, stdio to
`<run dir>/xl-<name>.log`) and waits for the domain's VIRQ_DOM_EXC
(the core's dom_exc events); with -F the creating process does this itself.
It ends when its domain is destroyed (by itself or by `xl destroy`), or when
the core goes away.
"""
from __future__ import annotations

import os
import sys
import time

from dom0.privcmd import Privcmd, XenError

from .config import DomainConfig
from .domains import Session

# SHUTDOWN_* reason -> the d_config field naming the action.
ACTION_FIELD = {0: "on_poweroff", 1: "on_reboot", 3: "on_crash", 4: "on_watchdog",
                5: "on_soft_reset"}
REASON_NAME = {0: "poweroff", 1: "reboot", 2: "suspend", 3: "crash", 4: "watchdog",
               5: "soft_reset"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def preserve(sess: Session, domid: int, d_config: DomainConfig) -> str:
    """xl's preserve_domain: rename the dead domain out of the way
    (name + "-%Y%m%dT%H%MZ", a new uuid in its /vm entry)."""
    import uuid as uuidlib
    suffix = time.strftime("-%Y%m%dT%H%MZ", time.gmtime())
    name = f"{d_config.c_info.name}{suffix}"
    log(f"Preserving domain {domid} {d_config.c_info.name} with suffix{suffix}")
    vm = sess.xs.read(f"/local/domain/{domid}/vm")
    sess.xs.write(f"/local/domain/{domid}/name", name)
    if vm:
        sess.xs.write(f"{vm}/name", name)
        sess.xs.write(f"{vm}/uuid", str(uuidlib.uuid4()))
    return name


def handle_death(sess: Session, domid: int, reason: int, d_config: DomainConfig) -> int | None:
    """Carry out the configured action; the new domid after a restart."""
    from .create import CreateError, create_domain
    field = ACTION_FIELD.get(reason)
    if field is None:              # suspend: the domain stays as it is
        log(f"Domain {domid} suspended: nothing to do")
        return None
    action = getattr(d_config, field)
    log(f"Domain {domid} has shut down, reason code {reason} 0x{reason:x}")
    log(f"Action for shutdown reason code {reason} is {action}")
    if action in ("preserve", "coredump-preserve"):
        preserve(sess, domid, d_config)
        return None
    if action == "rename-restart":
        preserve(sess, domid, d_config)
    else:
        log(f"Domain {domid} needs to be cleaned up: destroying the domain")
        sess.destroy(domid)
    if action in ("restart", "rename-restart", "coredump-restart"):
        log("Done. Rebooting now")
        try:
            return create_domain(sess, d_config)
        except CreateError as e:
            log(f"xl: restart of {d_config.c_info.name} failed: {e}")
            return None
    log("Done. Exiting now")
    return None


def monitor(rdir: str, domid: int, d_config: DomainConfig, paused: bool = False) -> int:
    """Wait for the domain's death, act, follow restarts."""
    if d_config.c_info.type == "hvm":         # QEMU runs it: toolstack/hvm.py
        from . import hvm
        return hvm.monitor(rdir, domid, d_config, paused=paused)
    try:
        events = Privcmd(rdir)
        events.subscribe_dom_exc()
    except (ConnectionError, XenError) as e:
        log(f"xl: monitor: {e}")
        return 1
    try:
        while True:
            try:
                info = events.domain_info(domid)
            except XenError:
                return 0                      # destroyed elsewhere
            if info["shutdown_reason"] is None or info["state"] == "dying":
                ev = events.next_event()
                if ev.get("domid") != domid:
                    continue
                if ev.get("kind") == "destroyed":
                    return 0
                continue
            with Session(rdir) as sess:
                new = handle_death(sess, domid, info["shutdown_reason"], d_config)
            if new is None:
                return 0
            domid = new
    except ConnectionError:
        return 0                              # the core went away
    finally:
        events.close()


def spawn(rdir: str, domid: int, d_config: DomainConfig, paused: bool = False) -> int:
    """Fork the detached monitor (double fork: no zombie, no terminal);
    the intermediate child's pid, already reaped."""
    pid = os.fork()
    if pid:
        os.waitpid(pid, 0)
        return pid
    try:
        os.setsid()
        if os.fork():
            os._exit(0)
        logf = os.open(os.path.join(rdir, f"xl-{d_config.c_info.name}.log"),
                       os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(logf, 1)
        os.dup2(logf, 2)
        os.closerange(3, 65536)      # the parent's store/core connections are its own
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        with open(os.path.join(rdir, f"xl-monitor-{domid}.pid"), "w") as f:
            f.write(f"{os.getpid()}\n")
        code = 1
        try:
            code = monitor(rdir, domid, d_config, paused=paused)
        finally:
            try:
                os.unlink(os.path.join(rdir, f"xl-monitor-{domid}.pid"))
            except OSError:
                pass
        os._exit(code)
    except BaseException:
        os._exit(1)
