/* How a guest finds Xen through CPUID. */
#ifndef GUEST_XEN_ARCH_X86_CPUID_H
#define GUEST_XEN_ARCH_X86_CPUID_H

#define XEN_CPUID_FIRST_LEAF    0x40000000
#define XEN_CPUID_LEAF(i)       (XEN_CPUID_FIRST_LEAF + (i))
/* "XenVMMXenVMM" in ebx, ecx, edx */
#define XEN_CPUID_SIGNATURE_EBX 0x566e6558
#define XEN_CPUID_SIGNATURE_ECX 0x65584d4d
#define XEN_CPUID_SIGNATURE_EDX 0x4d4d566e

#endif
