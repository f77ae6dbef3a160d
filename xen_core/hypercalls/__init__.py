"""Hypercall dispatch: one module per family, one table, one place where
Python exceptions become Xen errno values for the guest."""
from __future__ import annotations

import logging

from ..abi import xen as x
from ..domain import XenError
from ..memory import EngineMapError, GuestFault
from . import console, event_channel, grant_table, hvm, memory, sched, timer, vcpu, version

log = logging.getLogger(__name__)

HANDLERS = {
    x.HYPERVISOR_xen_version: version.do_xen_version,
    x.HYPERVISOR_console_io: console.do_console_io,
    x.HYPERVISOR_sched_op: sched.do_sched_op,
    x.HYPERVISOR_set_timer_op: timer.do_set_timer_op,
    x.HYPERVISOR_vcpu_op: vcpu.do_vcpu_op,
    x.HYPERVISOR_hvm_op: hvm.do_hvm_op,
    x.HYPERVISOR_memory_op: memory.do_memory_op,
    x.HYPERVISOR_event_channel_op: event_channel.do_event_channel_op,
    x.HYPERVISOR_event_channel_op_compat: event_channel.do_event_channel_op_compat,
    x.HYPERVISOR_grant_table_op: grant_table.do_grant_table_op,
}


def register(nr: int, handler) -> None:
    """Later layers (event channels, grant tables) add their families here."""
    HANDLERS[nr] = handler


def dispatch(v, nr: int, args: tuple) -> int:
    handler = HANDLERS.get(nr)
    if handler is None:
        v.domain.log_once(f"hypercall {nr}", f"hypercall {nr} not implemented: -ENOSYS")
        return -x.ENOSYS
    v.paging_cache = None
    try:
        return handler(v, *args)
    except GuestFault as e:
        log.debug("d%d: hypercall %d: %s", v.domain.domid, nr, e)
        return -x.EFAULT
    except XenError as e:
        return -e.errno
    except EngineMapError as e:   # a gfn the engine reserves
        v.domain.log_once(f"engine-map {nr}", str(e))
        return -x.EINVAL
    except Exception:
        # A bug of ours: the guest gets an error, the core and the domain live on.
        log.exception("d%d: hypercall %d%r failed", v.domain.domid, nr, tuple(args))
        return -x.EINVAL
