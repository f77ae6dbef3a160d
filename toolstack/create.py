"""`xl create`'s domain construction, in libxl's order:

    libxl__domain_make      createdomain (handle = uuid), xenstore home
    libxl__build_pre/…      memory: populate RAM, memory map, load the kernel
                            (the pure builder), special pages, HVM params,
                            event channels for store and console
    libxl__build_post       memory/target, store/console keys, vm/start_time,
                            XS_INTRODUCE to xenstored
    console device add      console/{ring-ref,port,limit,type,output,tty}
    unpause (unless -p)

Any failure destroys the half-built domain and clears its store entries;
the error is one line (`CreateError`).
"""
from __future__ import annotations

import errno
import os
import time
import uuid as uuidlib

from dom0.foreignmemory import ForeignMapping
from dom0.privcmd import XenError
from xen_core.abi import console as cabi
from xen_core.abi import hvm as hvmabi
from xen_core.abi.layout import (PAGE_SIZE, SPECIALPAGE_CONSOLE, SPECIALPAGE_XENSTORE,
                                 special_pfn)

from .builder.elf import BuildError
from .builder.pvh import accel_refusal, build_pvh
from .config import DomainConfig, to_json
from . import pvdevices
from .domains import Session, save_userdata
from .xs import PyXSError
from .boot import boot_state_json

LIBXL_MAXMEM_CONSTANT_KB = 1024    # libxl's slack above maxmem (special pages)
XS_PERM_NONE, XS_PERM_READ = "n", "r"


class CreateError(Exception):
    """One line for the user; the domain (if any) is already gone."""


def host_free_kb(pc) -> int:
    """Memory the core could still hand out (XEN_SYSCTL_physinfo)."""
    return pc.physinfo()["free_memory"] // 1024


def _alloc_unbound(sess: Session, domid: int) -> int:
    """xc_evtchn_alloc_unbound: a port of the guest that dom0 may bind
    (xenstored binds the store's, xenconsoled the console's)."""
    return sess.pc.call("evtchn_alloc_unbound", domid=domid, remote_domid=0)[0]["port"]


def check_config(d_config: DomainConfig) -> None:
    b = d_config.b_info
    if d_config.c_info.type not in ("pvh", "pv", "hvm"):
        raise CreateError(f"domain type {d_config.c_info.type!r} is not supported")
    if d_config.c_info.type != "hvm":
        if not b.kernel:
            raise CreateError("no kernel given in the configuration")
        if not os.path.isfile(b.kernel):
            raise CreateError(f"kernel {b.kernel}: No such file or directory")
        if b.ramdisk and not os.path.isfile(b.ramdisk):
            raise CreateError(f"ramdisk {b.ramdisk}: No such file or directory")


def create_domain(sess: Session, d_config: DomainConfig, paused: bool = False) -> int:
    """Build and (unless `paused`) start the domain; its domid."""
    c, b = d_config.c_info, d_config.b_info
    check_config(d_config)
    if c.type == "hvm":
        # The core holds the domain, QEMU (started by the monitor) runs it.
        from . import hvm
        return hvm.create(sess, d_config)
    if c.type == "pv":
        raise CreateError("type=\"pv\" needs the classic PV builder, which does not exist "
                          "yet; use type=\"pvh\"")
    target_kb, max_kb = b.target_memkb, max(b.max_memkb, b.target_memkb)
    free_kb = host_free_kb(sess.pc)
    if target_kb > free_kb:
        raise CreateError(f"not enough memory: the domain needs {target_kb // 1024} MiB, "
                          f"{free_kb // 1024} MiB are free")
    try:
        image = build_pvh(b.kernel, target_kb * 1024, cmdline=b.cmdline or "",
                          ramdisk=b.ramdisk, acpi=b.acpi, vcpus=b.max_vcpus or 1)
    except (BuildError, OSError) as e:
        raise CreateError(f"{b.kernel}: {e}") from None
    why = accel_refusal(image, sess.pc.hello().get("accel", ""))
    if why:
        raise CreateError(f"{b.kernel}: {why}")

    uuid = uuidlib.UUID(c.uuid) if c.uuid else uuidlib.uuid4()
    try:
        domid = sess.pc.domain_create(max_memory=(max_kb + LIBXL_MAXMEM_CONSTANT_KB) * 1024,
                                      max_vcpus=b.max_vcpus or 1, handle=uuid.bytes)
    except XenError as e:
        raise CreateError(f"cannot create domain: {e}") from None
    vm_path = f"/vm/{uuid}"
    try:
        make_home(sess, domid, c.name, vm_path, str(uuid))
        store_gfn, console_gfn = build(sess, domid, image, target_kb)
        store_port = _alloc_unbound(sess, domid)
        console_port = _alloc_unbound(sess, domid)
        pc = sess.pc
        pc.hvm_param_set(domid, hvmabi.HVM_PARAM_STORE_PFN, store_gfn)
        pc.hvm_param_set(domid, hvmabi.HVM_PARAM_STORE_EVTCHN, store_port)
        pc.hvm_param_set(domid, hvmabi.HVM_PARAM_CONSOLE_PFN, console_gfn)
        pc.hvm_param_set(domid, hvmabi.HVM_PARAM_CONSOLE_EVTCHN, console_port)
        build_post(sess, domid, d_config, vm_path, target_kb, max_kb,
                   store_gfn, store_port)
        console_add(sess, domid, console_gfn, console_port)
        try:
            pvdevices.add_all(sess.xs, domid, d_config)     # disks, then vifs
        except pvdevices.DeviceError as e:
            raise CreateError(str(e)) from None
        save_userdata(sess.rdir, domid, to_json(d_config))
        if not paused:
            pc.domain_unpause(domid)
    except BaseException as e:
        try:
            sess.destroy(domid)
        except Exception:
            pass
        if isinstance(e, (XenError, OSError)):
            raise CreateError(f"domain {domid}: {e}") from None
        raise
    return domid


def make_home(sess: Session, domid: int, name: str, vm_path: str, uuid: str) -> None:
    """libxl__domain_make's xenstore part: the home readable by the guest,
    the keys it answers through (control/shutdown, feature-*, data, ...)
    owned by it, everything else dom0's."""
    dom_path = f"/local/domain/{domid}"
    roperm = [f"{XS_PERM_NONE}0", f"{XS_PERM_READ}{domid}"]
    rwperm = [f"{XS_PERM_NONE}{domid}"]
    noperm = [f"{XS_PERM_NONE}0"]
    xs = sess.xs

    def tx():
        # The name check is inside the transaction (libxl__domain_rename):
        # two creates racing for one name cannot both commit.
        for other in xs.ls("/local/domain"):
            if other != str(domid) and xs.read(f"/local/domain/{other}/name") == name:
                raise CreateError(f"domain with name \"{name}\" already exists.")
        xs.rm(dom_path)
        xs.mknod(dom_path, roperm)
        xs.rm(vm_path)
        xs.mknod(vm_path, roperm)
        xs.mknod(f"/libxl/{domid}", noperm)
        xs.write(f"{dom_path}/vm", vm_path)
        xs.write(f"{dom_path}/name", name)
        xs.write(f"{vm_path}/name", name)
        xs.write(f"{vm_path}/uuid", uuid)
        xs.write(f"{dom_path}/control/platform-feature-multiprocessor-suspend", "1")
        xs.write(f"{dom_path}/control/platform-feature-xs_reset_watches", "1")
        for sub in ("cpu", "memory", "device", "control"):
            xs.mknod(f"{dom_path}/{sub}", roperm)
        for sub in ("control/shutdown", "control/feature-poweroff", "control/feature-reboot",
                    "control/feature-suspend", "control/sysrq", "data", "drivers",
                    "feature", "attr", "error"):
            xs.mknod(f"{dom_path}/{sub}", rwperm)
    xs.transaction(tx)


def build(sess: Session, domid: int, image, target_kb: int) -> tuple[int, int]:
    """RAM, memory map, kernel image, vCPU 0, and the two special pages
    (zeroed: an empty xenstore ring and console ring). (store, console) gfns."""
    pc = sess.pc
    store_gfn = special_pfn(SPECIALPAGE_XENSTORE)
    console_gfn = special_pfn(SPECIALPAGE_CONSOLE)
    pc.populate_physmap(domid, [(0, target_kb * 1024 // PAGE_SIZE),
                                (store_gfn, 1), (console_gfn, 1)])
    pc.set_memory_map(domid, image.memmap)
    for gpa, data in image.segments:
        first, last = gpa // PAGE_SIZE, (gpa + max(len(data), 1) - 1) // PAGE_SIZE
        with ForeignMapping(pc, domid, list(range(first, last + 1))) as m:
            m.write(gpa, data)
    with ForeignMapping(pc, domid, [store_gfn, console_gfn]) as m:
        m.write(store_gfn * PAGE_SIZE, bytes(PAGE_SIZE))
        m.write(console_gfn * PAGE_SIZE, bytes(PAGE_SIZE))
    pc.vcpu_setcontext(domid, 0, boot_state_json(image.boot_state))
    return store_gfn, console_gfn


def build_post(sess: Session, domid: int, d_config: DomainConfig, vm_path: str,
               target_kb: int, max_kb: int, store_gfn: int, store_port: int) -> None:
    """libxl__build_post: memory and vCPU keys, store location, start time,
    then XS_INTRODUCE so xenstored serves the guest's ring."""
    dom_path = f"/local/domain/{domid}"
    b = d_config.b_info
    avail = set(b.avail_vcpus) if b.avail_vcpus is not None else set(range(b.max_vcpus or 1))
    xs = sess.xs

    def tx():
        xs.write(f"{dom_path}/memory/static-max", str(max_kb))
        xs.write(f"{dom_path}/memory/target", str(target_kb))
        xs.write(f"{dom_path}/domid", str(domid))
        xs.write(f"{dom_path}/store/port", str(store_port))
        xs.write(f"{dom_path}/store/ring-ref", str(store_gfn))
        for i in range(b.max_vcpus or 1):
            xs.write(f"{dom_path}/cpu/{i}/availability", "online" if i in avail else "offline")
        xs.write(f"{vm_path}/start_time", f"{time.time():.2f}")
    xs.transaction(tx)
    try:
        xs.introduce(domid, store_gfn, store_port)
    except PyXSError as e:
        # A xenstored without a domain attacher serves dom0 only; the guest
        # then has no store ring (its console and life cycle still work).
        if not e.args or e.args[0] != errno.ENOSYS:
            raise


def console_add(sess: Session, domid: int, ring_gfn: int, port: int) -> None:
    """The primary console, served by xenconsoled: frontend keys in the
    guest's home (read-only to it), backend dir under dom0's."""
    dom_path = f"/local/domain/{domid}"
    back = f"/local/domain/0/backend/console/{domid}/0"
    roperm = [f"{XS_PERM_NONE}0", f"{XS_PERM_READ}{domid}"]
    xs = sess.xs

    def tx():
        xs.mknod(f"{dom_path}/console", roperm)
        xs.write(f"{dom_path}/console/backend", back)
        xs.write(f"{dom_path}/console/backend-id", "0")
        xs.write(f"{dom_path}/console/limit", str(cabi.LIBXL_XENCONSOLE_LIMIT))
        xs.write(f"{dom_path}/console/output", "pty")
        xs.write(f"{dom_path}/console/tty", "")
        xs.write(f"{dom_path}/console/port", str(port))
        xs.write(f"{dom_path}/console/ring-ref", str(ring_gfn))
        xs.write(f"{back}/frontend", f"{dom_path}/console")
        xs.write(f"{back}/frontend-id", str(domid))
        xs.write(f"{back}/online", "1")
        xs.write(f"{back}/state", "1")
        xs.write(f"{back}/protocol", "vt100")
        # Last: xenconsoled takes the console once `type` names it.
        xs.write(f"{dom_path}/console/type", "xenconsoled")
    xs.transaction(tx)
