"""What a hypercall handler sees: the calling vCPU, its domain, guest copies."""
from __future__ import annotations

from ..abi import xen as x
from ..domain import XenError


def s32(value: int) -> int:
    """The C `int` a 64-bit register argument is truncated to."""
    value &= 0xFFFF_FFFF
    return value - (1 << 32) if value & 0x8000_0000 else value


class Call:
    __slots__ = ("vcpu", "domain", "core", "_ps")

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.domain = vcpu.domain
        self.core = vcpu.domain.core
        self._ps = None

    def _paging(self):
        if self._ps is None:
            self._ps = self.vcpu.paging_state()
        return self._ps

    def copy_from(self, gva: int, length: int) -> bytes:
        return self.domain.memory.copy_from_guest(self._paging(), gva, length)

    def copy_to(self, gva: int, data: bytes) -> None:
        self.domain.memory.copy_to_guest(self._paging(), gva, data)

    def unknown(self, family: str, op: int) -> int:
        self.domain.log_once(f"{family} {op}", f"{family} sub-op {op} not implemented: -ENOSYS")
        return -x.ENOSYS

    def target(self, domid: int):
        """DOMID_SELF or the caller's own id is the caller; another domain
        only for a privileged caller (Xen's XSM_TARGET/XSM_PRIV default)."""
        if domid in (x.DOMID_SELF, self.domain.domid):
            return self.domain
        d = self.core.domains.get(domid)
        if d is None:
            raise XenError(x.ESRCH)
        if not self.domain.privileged:
            raise XenError(x.EPERM)
        return d
