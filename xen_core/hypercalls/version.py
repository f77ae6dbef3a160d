"""xen_version: numbers and strings a guest reads to know its host."""
from __future__ import annotations

import struct

from ..abi import version as v
from ..abi import xen as x
from .call import s32


def _cstr(data: bytes, size: int) -> bytes:
    return data[:size - 1].ljust(size, b"\0")


def compile_info() -> bytes:
    values = {"compiler": b"gcc (Debian 12.2.0-14) 12.2.0", "compile_by": b"pyxen",
              "compile_domain": b"localdomain", "compile_date": b"Thu Nov 26 2026"}
    return b"".join(_cstr(values[name], size) for name, size in v.COMPILE_INFO_FIELDS)


def features(domain, submap_idx: int) -> int:
    """Feature submap 0 of an HVM/PVH guest (XENFEAT_*), as Xen sets it."""
    bits = (v.XENFEAT_writable_page_tables, v.XENFEAT_auto_translated_physmap,
            v.XENFEAT_hvm_callback_vector, v.XENFEAT_hvm_safe_pvclock,
            v.XENFEAT_memory_op_vnode_supported, v.XENFEAT_linux_rsdp_unrestricted)
    submap = sum(1 << b for b in bits)
    if domain.privileged:
        submap |= 1 << v.XENFEAT_dom0
    return submap


def do_xen_version(cur, cmd, arg, *_):
    if cmd == v.XENVER_version:   # the hot null hypercall: no conversions first
        return v.VERSION
    cmd = s32(cmd)
    if cmd == v.XENVER_extraversion:
        cur.copy_to(arg, _cstr(v.EXTRAVERSION, v.XEN_EXTRAVERSION_LEN))
    elif cmd == v.XENVER_compile_info:
        cur.copy_to(arg, compile_info())
    elif cmd == v.XENVER_capabilities:
        cur.copy_to(arg, _cstr(v.CAPABILITIES, v.XEN_CAPABILITIES_INFO_LEN))
    elif cmd == v.XENVER_changeset:
        cur.copy_to(arg, _cstr(b"pyxen", v.XEN_CHANGESET_INFO_LEN))
    elif cmd == v.XENVER_platform_parameters:
        # virt_start means nothing to an HVM/PVH guest: Xen reports 0.
        cur.copy_to(arg, bytes(v.PLATFORM_PARAMETERS_SIZE))
    elif cmd == v.XENVER_get_features:
        idx, _ = struct.unpack(v.FEATURE_INFO_FMT, cur.copy_from(arg, 8))
        if idx >= v.XENFEAT_NR_SUBMAPS:
            return -x.EINVAL
        cur.copy_to(arg, struct.pack(v.FEATURE_INFO_FMT, idx, features(cur.domain, idx)))
    elif cmd == v.XENVER_pagesize:
        return -x.EINVAL if arg else 4096   # Xen wants a NULL handle here
    elif cmd == v.XENVER_guest_handle:
        cur.copy_to(arg, cur.domain.handle)
    elif cmd in (v.XENVER_commandline, v.XENVER_build_id):
        if not cur.domain.privileged:
            return -x.EPERM          # XSM_PRIV in Xen's default policy
        if cmd == v.XENVER_build_id:
            return -x.ENODATA        # no build id note in this hypervisor
        cur.copy_to(arg, _cstr(b"", v.XEN_COMMANDLINE_LEN))
    else:
        return cur.unknown("xen_version", cmd)
    return 0
