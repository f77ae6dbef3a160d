"""How a guest finds Xen: CPUID leaves 0x40000000..0x40000002 and the
hypercall-page MSR (Xen's public arch-x86/cpuid.h describes the same leaves)."""

XEN_VERSION_MAJOR = 4
XEN_VERSION_MINOR = 17

XEN_CPUID_BASE = 0x40000000
HYPERCALL_PAGE_MSR = 0x40000000


def _sig_regs(sig: bytes) -> tuple[int, int, int]:
    return tuple(int.from_bytes(sig[i:i + 4], "little") for i in (0, 4, 8))


def xen_cpuid_leaves() -> dict[int, tuple[int, int, int, int]]:
    """leaf -> (eax, ebx, ecx, edx) for the hypervisor range, as Xen sets it:
    0x40000000 max leaf + "XenVMMXenVMM", 0x40000001 version,
    0x40000002 one hypercall page at HYPERCALL_PAGE_MSR."""
    ebx, ecx, edx = _sig_regs(b"XenVMMXenVMM")
    return {
        XEN_CPUID_BASE: (XEN_CPUID_BASE + 2, ebx, ecx, edx),
        XEN_CPUID_BASE + 1: ((XEN_VERSION_MAJOR << 16) | XEN_VERSION_MINOR, 0, 0, 0),
        XEN_CPUID_BASE + 2: (1, HYPERCALL_PAGE_MSR, 0, 0),
    }
