"""xl's domain subcommands: list, destroy, shutdown, reboot, pause, unpause,
console, info, domid, domname, rename, vcpu-list, mem-set, mem-max, dmesg,
uptime. Output formats follow xl(1) (xl_info.c, xl_vmcontrol.c)."""
from __future__ import annotations

import json
import os
import platform
import time

import click

from dom0 import rundir, xencommons
from dom0.privcmd import XenError
from xen_core.abi import hvm as hvmabi

from .console_client import ConsoleError, open_tty, relay, wait_tty
from .create import LIBXL_MAXMEM_CONSTANT_KB
from . import hvm
from .domains import DOM0_NAME, DomainNotFound, Session, load_userdata

CONTEXT = {"help_option_names": ["-h", "--help"]}
ERROR_INVAL = -6


def _xl_error():
    from .xl import XlError
    return XlError


def open_session(start: bool = True) -> Session:
    """Connect to the core and the store; start the services (saying so on
    stderr) when none is running, as xl does with xencommons absent."""
    XlError = _xl_error()
    rdir = rundir.run_dir()
    if start and not xencommons.running(rdir):
        try:
            xencommons.start(rdir, report=lambda n: click.echo(
                f"xl: {n} was not running: started it in {rdir}", err=True))
        except (xencommons.ServiceError, OSError) as e:
            raise XlError(f"xl: cannot start the dom0 services: {e}") from None
    try:
        return Session(rdir)
    except ConnectionError as e:
        raise XlError(f"xl: {e}") from None


def find_domain(sess: Session, dom: str) -> int:
    try:
        return sess.resolve(dom)
    except DomainNotFound:
        raise _xl_error()(f"{dom} is an invalid domain identifier (rc={ERROR_INVAL})") from None


def _fail(what: str, domid: int, e: Exception):
    return _xl_error()(f"xl: {what} of domain {domid} failed: {e}")


# -- list ----------------------------------------------------------------------
def _dom0_info() -> dict:
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    with open("/proc/stat") as f:
        ticks = sum(int(x) for x in f.readline().split()[1:4])
    return {"domid": 0, "state": "running", "tot_pages": total_kb // 4,
            "online_vcpus": os.cpu_count() or 1, "max_vcpus": os.cpu_count() or 1,
            "cpu_time_ns": ticks * 10_000_000 // max(1, os.sysconf("SC_CLK_TCK") // 100),
            "shutdown_reason": None, "handle": "0" * 32, "paused": False, "dying": False}


def state_flags(info: dict) -> str:
    """xl's six state columns: r b p s c d."""
    st = info.get("state")
    crashed = info.get("shutdown_reason") == 3
    return "".join([
        "r" if st == "running" else "-",
        "b" if st == "blocked" else "-",
        "p" if st == "paused" or (info.get("paused") and st in ("running", "blocked")) else "-",
        "s" if info.get("shutdown_reason") is not None and not crashed else "-",
        "c" if crashed else "-",
        "d" if st == "dying" else "-",
    ])


def _row(name: str, info: dict) -> str:
    mem_mib = info.get("tot_pages", 0) * 4 // 1024
    return "%-40s %5d %5d %5d     %s  %8.1f" % (
        name, info["domid"], mem_mib, info.get("online_vcpus", 0), state_flags(info),
        info.get("cpu_time_ns", 0) / 1e9)


@click.command("list", context_settings=CONTEXT)
@click.option("-l", "--long", "long_", is_flag=True, help="Output all VM details (JSON).")
@click.option("-v", "--verbose", is_flag=True, help="Also print UUID and shutdown reason.")
@click.option("-Z", "--context", is_flag=True, help="Also print the security label.")
@click.argument("doms", nargs=-1)
def list_cmd(long_, verbose, context, doms):
    """List information about all/some domains."""
    with open_session() as sess:
        rows = []
        if doms:
            for d in doms:
                domid = find_domain(sess, d)
                rows.append((sess.name_of(domid) or "", domid))
        else:
            rows = [(d.name, d.domid) for d in sess.domains()]
        infos = []
        for name, domid in rows:
            if domid == 0:
                info = _dom0_info()
                name = name or DOM0_NAME
            else:
                try:
                    info = sess.pc.domain_info(domid)
                except XenError:
                    continue
                if info.get("hvm"):           # QEMU's state and time
                    info = hvm.list_info(sess, domid, info)
            infos.append((name, domid, info))
        if long_:
            out = []
            for name, domid, info in infos:
                cfg = load_userdata(sess.rdir, domid) if domid else None
                if cfg is None:
                    cfg = {"c_info": {"name": name}}
                out.append({"domid": domid, "config": cfg})
            click.echo(json.dumps(out, indent=4))
            return
        header = "Name                                        ID   Mem VCPUs\tState\tTime(s)"
        if verbose:
            header += "   UUID                            Reason-Code\tSecurity Label"
        click.echo(header)
        for name, domid, info in infos:
            line = _row(name, info)
            if verbose:
                import uuid as uuidlib
                reason = info.get("shutdown_reason")
                line += " %s %5s     -" % (uuidlib.UUID(info.get("handle") or "0" * 32),
                                         "-" if reason is None else f"{reason:x}")
            click.echo(line)


# -- life cycle ------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.argument("dom")
def destroy(dom):
    """Terminate a domain immediately."""
    with open_session() as sess:
        domid = find_domain(sess, dom)
        if domid == 0:
            raise _xl_error()("xl: destroy of domain 0 refused")
        try:
            if hvm.is_hvm(sess, domid):
                hvm.destroy(sess, domid)      # and its QEMU
            else:
                sess.destroy(domid)
        except XenError as e:
            raise _fail("destroy", domid, e) from None


@click.command(context_settings=CONTEXT)
@click.argument("dom")
def pause(dom):
    """Pause execution of a domain."""
    with open_session() as sess:
        domid = find_domain(sess, dom)
        try:
            if hvm.is_hvm(sess, domid):
                hvm.qmp(sess, domid, "stop")
            else:
                sess.pc.domain_pause(domid)
        except (XenError, hvm.DeviceModelError) as e:
            raise _fail("pause", domid, e) from None


@click.command(context_settings=CONTEXT)
@click.argument("dom")
def unpause(dom):
    """Unpause a paused domain."""
    with open_session() as sess:
        domid = find_domain(sess, dom)
        try:
            if hvm.is_hvm(sess, domid):
                hvm.qmp(sess, domid, "cont")
            else:
                sess.pc.domain_unpause(domid)
        except (XenError, hvm.DeviceModelError) as e:
            raise _fail("unpause", domid, e) from None


def _shutdown_or_reboot(how: str, doms, all_, wait, force):
    """Write control/shutdown (the PV protocol); -F falls back to a
    hypervisor-forced shutdown for guests without the PV control interface."""
    XlError = _xl_error()
    if all_ and doms:
        raise XlError(f"xl {how}: -a and a domain are exclusive")
    if not all_ and len(doms) != 1:
        raise XlError(f"xl {how}: exactly one domain (or -a)")
    with open_session() as sess:
        targets = [d.domid for d in sess.domains() if d.domid] if all_ \
            else [find_domain(sess, doms[0])]
        reason = 0 if how == "shutdown" else 1
        for domid in targets:
            if domid == 0:
                raise XlError(f"xl: {how} of domain 0 refused")
            if hvm.is_hvm(sess, domid):
                # QEMU's guests have no PV drivers: -F sends the ACPI power
                # button / a reset (libxl_send_trigger POWER / RESET).
                if not force:
                    raise XlError("PV control interface not available: external graceful "
                                  f"{how} not possible. Use \"-F\" to fall back to ACPI "
                                  f"{'power' if reason == 0 else 'reset'} event.")
                try:
                    hvm.qmp(sess, domid, "system_powerdown" if reason == 0 else "system_reset")
                except hvm.DeviceModelError as e:
                    raise _fail(how, domid, e) from None
                continue
            # libxl__domain_pvcontrol_available: a PVH/HVM guest is PV-aware
            # once it has set its event-channel callback (HVM_PARAM_CALLBACK_IRQ).
            try:
                pv_aware = sess.pc.hvm_param_get(domid, hvmabi.HVM_PARAM_CALLBACK_IRQ) != 0
            except XenError as e:
                raise _fail(how, domid, e) from None
            if not pv_aware and not force:
                raise XlError("PV control interface not available: external graceful "
                              f"{how} not possible. Use \"-F\" to fall back to a forced {how}.")
            if not pv_aware:
                try:
                    sess.pc.domain_shutdown(domid, reason)
                except XenError as e:
                    raise _fail(how, domid, e) from None
            else:
                sess.xs.write(f"/local/domain/{domid}/control/shutdown",
                              "poweroff" if reason == 0 else "reboot")
        if wait:
            for domid in targets:
                click.echo(f"Waiting for domain {domid} to {'shut down' if reason == 0 else 'reboot'}",
                           err=True)
            pending = set(targets)
            while pending:
                for domid in list(pending):
                    try:
                        info = sess.pc.domain_info(domid)
                    except XenError:
                        info = None
                    if info is None or info["shutdown_reason"] is not None:
                        pending.discard(domid)
                        click.echo(f"Domain {domid} has been shut down" if reason == 0
                                   else f"Domain {domid} has been rebooted", err=True)
                time.sleep(0.02)


@click.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Shut down all guest domains.")
@click.option("-w", "--wait", is_flag=True, help="Wait for the domain to shut down.")
@click.option("-F", "force", is_flag=True, help="Fall back to a forced shutdown.")
@click.argument("doms", nargs=-1)
def shutdown(all_, wait, force, doms):
    """Issue a shutdown signal to a domain."""
    _shutdown_or_reboot("shutdown", doms, all_, wait, force)


@click.command(context_settings=CONTEXT)
@click.option("-a", "--all", "all_", is_flag=True, help="Reboot all guest domains.")
@click.option("-w", "--wait", is_flag=True, help="Wait for the reboot.")
@click.option("-F", "force", is_flag=True, help="Fall back to a forced reboot.")
@click.argument("doms", nargs=-1)
def reboot(all_, wait, force, doms):
    """Issue a reboot signal to a domain."""
    _shutdown_or_reboot("reboot", doms, all_, wait, force)


# -- console -------------------------------------------------------------------
def attach_console(sess: Session, domid: int, ctype: str = "pv", before_relay=None) -> None:
    XlError = _xl_error()
    if ctype == "serial":
        path = f"/local/domain/{domid}/serial/0/tty"
        if sess.xs.read(path) is None:
            raise XlError(f"xl: domain {domid} has no serial console (try -t pv)")
    else:
        path = f"/local/domain/{domid}/console/tty"

    def alive():
        """Still worth showing: the domain exists and has not shut down
        (a preserved domain's console has nothing more to say)."""
        try:
            return sess.pc.domain_info(domid)["shutdown_reason"] is None
        except XenError:
            return False
    try:
        fd = open_tty(wait_tty(sess.xs, path, alive))
    except (ConsoleError, OSError) as e:
        raise XlError(f"xl: console of domain {domid}: {e}") from None
    try:
        if before_relay is not None:
            before_relay()
        relay(fd, on_idle=alive)
    finally:
        os.close(fd)


@click.command(context_settings=CONTEXT)
@click.option("-t", "ctype", type=click.Choice(["pv", "serial"]), default=None,
              help="Console type: pv or serial.")
@click.option("-n", "num", type=int, default=0, help="Console number.")
@click.argument("dom")
def console(ctype, num, dom):
    """Attach to a domain's console (Ctrl-] detaches)."""
    with open_session() as sess:
        domid = find_domain(sess, dom)
        if ctype is None:
            info = sess.pc.domain_info(domid)
            ctype = "serial" if info.get("hvm") else "pv"
        attach_console(sess, domid, ctype)


# -- names -----------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
@click.argument("name")
def domid(name):
    """Convert a domain name to a domain id."""
    with open_session() as sess:
        d = sess.domid_by_name(name)
        if d is None:
            raise _xl_error()(f"Can't get domid of domain name '{name}', "
                              "maybe this domain does not exist.")
        click.echo(d)


@click.command(context_settings=CONTEXT)
@click.argument("dom_id")
def domname(dom_id):
    """Convert a domain id to a domain name."""
    with open_session() as sess:
        name = None
        if dom_id.isdigit():
            try:
                sess.pc.domain_info(int(dom_id))
                name = sess.name_of(int(dom_id))
            except XenError:
                pass
        if name is None:
            raise _xl_error()(f"Can't get domain name of domain id '{dom_id}', "
                              "maybe this domain does not exist.")
        click.echo(name)


@click.command(context_settings=CONTEXT)
@click.argument("dom")
@click.argument("new_name")
def rename(dom, new_name):
    """Rename a domain."""
    with open_session() as sess:
        d = find_domain(sess, dom)
        other = sess.domid_by_name(new_name)
        if other is not None and other != d:
            raise _xl_error()(f"domain with name \"{new_name}\" already exists.")
        vm = sess.xs.read(f"/local/domain/{d}/vm")

        def tx():
            sess.xs.write(f"/local/domain/{d}/name", new_name)
            if vm:
                sess.xs.write(f"{vm}/name", new_name)
        sess.xs.transaction(tx)


# -- vCPUs and memory ------------------------------------------------------------
@click.command("vcpu-list", context_settings=CONTEXT)
@click.argument("doms", nargs=-1)
def vcpu_list(doms):
    """List the VCPUs of all/some domains."""
    with open_session() as sess:
        ids = [find_domain(sess, d) for d in doms] if doms else \
            [d.domid for d in sess.domains() if d.domid]
        click.echo("Name                                ID  VCPU   CPU State   Time(s) "
                   "Affinity (Hard / Soft)")
        for d in ids:
            if d == 0:
                continue
            info = sess.pc.domain_info(d)
            name = sess.name_of(d) or ""
            paused = info["state"] == "paused"
            for v in info.get("vcpus", []):
                # xl's three state letters: running, blocked, paused.
                up = v["online"]
                state = ("r" if up and v["running"] else "-") \
                    + ("b" if up and v["blocked"] else "-") + ("p" if paused else "-")
                cpu = "any" if up and v["running"] else "-"
                click.echo("%-32s %5d %5d %5s   %-3s %9.1f  all / all"
                           % (name, d, v["vcpu"], cpu, state, v["cpu_time_ns"] / 1e9))


def _parse_mem(value: str) -> int:
    """xl's memory sizes: number with an optional b/k/m/g/t suffix (default
    MiB); kiB out."""
    v = value.strip().lower()
    mult = {"b": 1 / 1024, "k": 1, "m": 1024, "g": 1024 ** 2, "t": 1024 ** 3}
    if v and v[-1] in mult:
        num, unit = v[:-1], v[-1]
    else:
        num, unit = v, "m"
    try:
        return int(float(num) * mult[unit])
    except ValueError:
        raise _xl_error()(f"invalid memory size: {value}") from None


@click.command("mem-set", context_settings=CONTEXT)
@click.argument("dom")
@click.argument("mem")
def mem_set(dom, mem):
    """Set the current memory usage (balloon target) for a domain."""
    kb = _parse_mem(mem)
    with open_session() as sess:
        d = find_domain(sess, dom)
        static_max = int(sess.xs.read(f"/local/domain/{d}/memory/static-max", "0") or 0)
        if static_max and kb > static_max:
            raise _xl_error()(f"xl: memory_dynamic_max must be less than or equal to "
                              f"memory_static_max ({kb} > {static_max} kB)")
        sess.xs.write(f"/local/domain/{d}/memory/target", str(kb))


@click.command("mem-max", context_settings=CONTEXT)
@click.argument("dom")
@click.argument("mem")
def mem_max(dom, mem):
    """Set the maximum amount reservation for a domain."""
    kb = _parse_mem(mem)
    with open_session() as sess:
        d = find_domain(sess, dom)
        try:
            sess.pc.domain_set_max_mem(d, (kb + LIBXL_MAXMEM_CONSTANT_KB) * 1024)
        except XenError as e:
            raise _fail("mem-max", d, e) from None
        sess.xs.write(f"/local/domain/{d}/memory/static-max", str(kb))


# -- host ----------------------------------------------------------------------
@click.command(context_settings=CONTEXT)
def info():
    """Get information about the Xen host."""
    with open_session() as sess:
        pi = sess.pc.physinfo()
        u = platform.uname()
        ncpu = pi["nr_cpus"]
        major, minor = pi["xen_version"]
        extra = pi["xen_extra"]
        rows = [
            ("host", u.node), ("release", u.release), ("version", u.version),
            ("machine", u.machine), ("nr_cpus", ncpu), ("max_cpu_id", ncpu - 1),
            ("nr_nodes", 1), ("cores_per_socket", ncpu), ("threads_per_core", 1),
            ("cpu_mhz", f"{pi['tsc_khz'] / 1000:.3f}"),
            ("total_memory", pi["total_memory"] >> 20),
            ("free_memory", pi["free_memory"] >> 20),
            ("xen_major", major), ("xen_minor", minor), ("xen_extra", extra),
            ("xen_version", f"{major}.{minor}{extra}"),
            ("xen_caps", pi["xen_caps"]), ("xen_scheduler", "credit2"),
            ("xen_pagesize", 4096), ("xen_commandline", f"accel={pi['accel']}"),
            ("cc_compiler", f"Python {platform.python_version()}"),
            ("xend_config_format", 4),
        ]
        for k, v in rows:
            click.echo(f"{k:<23}: {v}")


@click.command(context_settings=CONTEXT)
@click.option("-c", "clear", is_flag=True, help="Clear the ring after reading.")
def dmesg(clear):
    """Read the hypervisor's console ring."""
    with open_session() as sess:
        click.echo(sess.pc.xen_dmesg(clear).decode(errors="replace"), nl=False)


def _fmt_uptime(secs: float) -> str:
    secs = int(secs)
    days, rem = divmod(secs, 86400)
    h, rem = divmod(rem, 3600)
    m, s = divmod(rem, 60)
    hms = f"{h:2d}:{m:02d}:{s:02d}"
    if days:
        return f"{days} day{'s' if days > 1 else ''}, {hms}"
    return hms


@click.command(context_settings=CONTEXT)
@click.option("-s", "short", is_flag=True, help="Short output (no header).")
@click.argument("doms", nargs=-1)
def uptime(short, doms):
    """Print the uptime for all/some domains."""
    with open_session() as sess:
        ids = [find_domain(sess, d) for d in doms] if doms else [d.domid for d in sess.domains()]
        if not short:
            click.echo("Name                                ID Uptime")
        now = time.time()
        for d in ids:
            if d == 0:
                with open("/proc/uptime") as f:
                    up = float(f.read().split()[0])
                name = DOM0_NAME
            else:
                vm = sess.xs.read(f"/local/domain/{d}/vm")
                start = sess.xs.read(f"{vm}/start_time") if vm else None
                up = now - float(start) if start else 0.0
                name = sess.name_of(d) or ""
            click.echo("%-33s %4d %s" % (name, d, _fmt_uptime(up)))


COMMANDS = [list_cmd, destroy, shutdown, reboot, pause, unpause, console, domid, domname,
            rename, vcpu_list, mem_set, mem_max, info, dmesg, uptime]
