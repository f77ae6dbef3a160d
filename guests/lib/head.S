/*
 * PVH entry for the test guests.
 *
 * Xen's PVH boot (XEN_ELFNOTE_PHYS32_ENTRY) starts us in 32-bit flat
 * protected mode with paging off and %ebx = hvm_start_info's physical
 * address. We go straight to long mode: the identity page tables are static
 * data (2 MiB pages over the first 4 GiB), so the 32-bit code is a handful of
 * instructions. That matters on kvm_pvm, which emulates ring-0 code slowly
 * and lacks some 32-bit paging transitions.
 */
#include <xen/elfnote.h>

#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA   0x18

#define MSR_EFER   0xc0000080
#define EFER_LME   (1 << 8)
#define CR4_PAE    (1 << 5)
#define CR0_PE     (1 << 0)
#define CR0_ET     (1 << 4)
#define CR0_PG     (1 << 31)

/* One "Xen" note: namesz, descsz, type, name, desc (4-byte aligned). */
.macro XEN_NOTE type, desc:vararg
    .balign 4
    .long 2f - 1f
    .long 4f - 3f
    .long \type
1:  .asciz "Xen"
2:  .balign 4
3:  \desc
4:  .balign 4
.endm

    .section .note.Xen, "a", @note
    XEN_NOTE XEN_ELFNOTE_GUEST_OS,     .asciz "pyxen-test"
    XEN_NOTE XEN_ELFNOTE_GUEST_VERSION, .asciz "1"
    XEN_NOTE XEN_ELFNOTE_XEN_VERSION,  .asciz "xen-3.0"
    XEN_NOTE XEN_ELFNOTE_LOADER,       .asciz "generic"
    XEN_NOTE XEN_ELFNOTE_PHYS32_ENTRY, .long pvh_start

    .section .text.head, "ax"
    .code32
    .globl pvh_start
pvh_start:
    cli
    cld
    lgdt gdt_ptr
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $CR4_PAE, %eax
    mov %eax, %cr4
    mov $pml4, %eax
    mov %eax, %cr3
    mov $MSR_EFER, %ecx
    mov $EFER_LME, %eax
    xor %edx, %edx
    wrmsr
    mov $(CR0_PG | CR0_ET | CR0_PE), %eax
    mov %eax, %cr0
    ljmp $SEL_CODE64, $long_mode

    .code64
long_mode:
    mov $SEL_DATA, %eax
    mov %eax, %ds
    mov %eax, %es
    mov %eax, %ss
    mov %eax, %fs
    mov %eax, %gs
    mov $stack_top, %rsp
    xor %ebp, %ebp
    mov %ebx, %edi              /* zero-extends: hvm_start_info paddr */
    call guest_start
1:  hlt
    jmp 1b

/*
 * Exception stubs for vectors 0..31: push a dummy error code where the CPU
 * pushes none, then the vector, so the C side sees one frame layout.
 */
.macro EXC vec
    .balign 16
exc_\vec:
    .if !(\vec == 8 || \vec == 10 || \vec == 11 || \vec == 12 || \vec == 13 || \vec == 14 || \vec == 17 || \vec == 21 || \vec == 29 || \vec == 30)
    pushq $0
    .endif
    pushq $\vec
    jmp exc_common
.endm

    .text
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXC \v
    .endr

exc_common:
    mov %rsp, %rdi              /* struct exc_frame * */
    and $-16, %rsp
    call exception_report       /* does not return */
1:  hlt
    jmp 1b

    .section .rodata
    .balign 8
    .globl exc_stubs
exc_stubs:
    .irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exc_\v
    .endr

    .balign 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff    /* 0x08: 32-bit code, flat */
    .quad 0x00af9a000000ffff    /* 0x10: 64-bit code */
    .quad 0x00cf92000000ffff    /* 0x18: data, flat */
gdt_end:
    .balign 8
gdt_ptr:
    .word gdt_end - gdt - 1
    .quad gdt

/* Identity map of [0, 4 GiB) with 2 MiB pages (no 1 GiB pages needed). */
    .section .data.pagetables, "aw"
    .balign 4096
pml4:
    .quad pdpt + 0x3            /* present, writable */
    .fill 511, 8, 0
pdpt:
    .quad pd + 0x0000 + 0x3
    .quad pd + 0x1000 + 0x3
    .quad pd + 0x2000 + 0x3
    .quad pd + 0x3000 + 0x3
    .fill 508, 8, 0
pd:
    .set i, 0
    .rept 2048
    .quad (i << 21) + 0x83      /* present, writable, 2 MiB page */
    .set i, i + 1
    .endr

    .section .bss.page_aligned, "aw", @nobits
    .balign 4096
    .globl hypercall_page
hypercall_page:
    .skip 4096
    .globl shared_info_page
shared_info_page:
    .skip 4096
stack:
    .skip 16384
stack_top:

    .section .note.GNU-stack, "", @progbits
