"""The x86 local APIC's interrupt command register (Intel SDM vol. 3
10.6.1, x2APIC 10.12.9), in the names of Xen's asm/apicdef.h, and the
APIC IDs Xen gives HVM/PVH vCPUs."""

# The ICR as the x2APIC MSR: ICR low in bits 0-31, destination in 32-63.
# The software CPU reports an xAPIC ICR write (offset 0x300, destination
# from ICR2 bits 24-31) in this form too.
MSR_X2APIC_ICR = 0x830

APIC_VECTOR_MASK = 0xFF
APIC_DM_MASK = 0x700
APIC_DM_FIXED = 0x000
APIC_DM_LOWEST = 0x100
APIC_DM_SMI = 0x200
APIC_DM_REMRD = 0x300
APIC_DM_NMI = 0x400
APIC_DM_INIT = 0x500
APIC_DM_STARTUP = 0x600
APIC_DM_EXTINT = 0x700
APIC_DEST_LOGICAL = 0x800
APIC_ICR_BUSY = 0x1000            # delivery status: never set by Xen's vlapic
APIC_INT_ASSERT = 0x4000
APIC_INT_LEVELTRIG = 0x8000
APIC_SHORT_MASK = 0xC0000
APIC_DEST_NOSHORT = 0x00000
APIC_DEST_SELF = 0x40000
APIC_DEST_ALLINC = 0x80000
APIC_DEST_ALLBUT = 0xC0000

APIC_BROADCAST = 0xFFFFFFFF       # x2APIC form of the xAPIC destination 0xff


def apic_id(vcpu_id: int) -> int:
    """Xen's initial APIC ID for an HVM/PVH vCPU (vlapic_reset, guest_cpuid)."""
    return 2 * vcpu_id
