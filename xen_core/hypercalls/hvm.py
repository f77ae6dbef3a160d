"""hvm_op: HVM params (where the guest finds its store and console, and
sets its event-callback vector)."""
from __future__ import annotations

from ..abi import hvm as h
from ..abi import xen as x
from .call import s32

# Params a guest may set on itself (Xen's hvm_allow_set_param); the rest
# belong to the toolstack.
GUEST_SETTABLE = frozenset({
    h.HVM_PARAM_CALLBACK_IRQ, h.HVM_PARAM_VM86_TSS, h.HVM_PARAM_VM86_TSS_SIZED,
    h.HVM_PARAM_ACPI_IOPORTS_LOCATION, h.HVM_PARAM_VM_GENERATION_ID_ADDR,
    h.HVM_PARAM_STORE_EVTCHN, h.HVM_PARAM_CONSOLE_EVTCHN, h.HVM_PARAM_X87_FIP_WIDTH,
})


def set_param(domain, index: int, value: int, by_guest: bool) -> int:
    if not 0 <= index < h.HVM_NR_PARAMS:
        return -x.EINVAL
    if by_guest and index not in GUEST_SETTABLE:
        return -x.EPERM
    with domain.lock:
        domain.hvm_params[index] = value
    return 0


def get_param(domain, index: int) -> int:
    """The value, or a negative errno."""
    if not 0 <= index < h.HVM_NR_PARAMS:
        return -x.EINVAL
    return domain.hvm_params[index]


def do_hvm_op(cur, op, arg, *_):
    op = s32(op)
    if op not in (h.HVMOP_set_param, h.HVMOP_get_param):
        return cur.unknown("hvm_op", op)
    domid, index, value = h.HVM_PARAM.unpack(cur.copy_from(arg, h.HVM_PARAM.size))
    if index >= h.HVM_NR_PARAMS:
        return -x.EINVAL
    d = cur.target(domid)
    if op == h.HVMOP_set_param:
        return set_param(d, index, value, by_guest=d is cur.domain and not d.privileged)
    cur.copy_to(arg, h.HVM_PARAM.pack(domid, index, get_param(d, index)))
    return 0
