/*
 * A firmware-boot disk: the BIOS loads this sector at 0x7c00 and jumps to
 * it in real mode.  It prints a marker on COM1 and powers the machine off
 * through the ACPI PM1a control register (QEMU's PIIX4 PM block, which
 * SeaBIOS places at 0x600; SLP_TYP of _S5 is 0 there, so SLP_EN alone),
 * then halts if that did not work.
 * Built with -DPANIC it reports a guest crash instead, through QEMU's
 * pvpanic ISA device (port 0x505, bit 0 = PVPANIC_PANICKED).
 */
#define COM1            0x3f8
#define PM1A_CNT        0x604
#define SLP_EN          0x2000
#define PVPANIC_PORT    0x505
#define PVPANIC_PANICKED 1

        .code16
        .section .text
        .globl _start
_start:
        cli
        xorw    %ax, %ax
        movw    %ax, %ds
        movw    %ax, %ss
        movw    $0x7c00, %sp
        cld

        /* 16550 init: 115200 8N1, FIFOs on (QEMU would print without it) */
        movw    $COM1 + 1, %dx
        xorb    %al, %al
        outb    %al, %dx                /* IER: no interrupts */
        movw    $COM1 + 3, %dx
        movb    $0x80, %al
        outb    %al, %dx                /* LCR: DLAB */
        movw    $COM1, %dx
        movb    $1, %al
        outb    %al, %dx                /* DLL: divisor 1 */
        incw    %dx
        xorb    %al, %al
        outb    %al, %dx                /* DLM */
        movw    $COM1 + 3, %dx
        movb    $0x03, %al
        outb    %al, %dx                /* LCR: 8N1 */

        movw    $msg, %si
1:      lodsb
        testb   %al, %al
        jz      2f
        movb    %al, %bl
        movw    $COM1 + 5, %dx
3:      inb     %dx, %al                /* LSR: wait for THR empty */
        testb   $0x20, %al
        jz      3b
        movw    $COM1, %dx
        movb    %bl, %al
        outb    %al, %dx
        jmp     1b

2:
#ifdef PANIC
        movw    $PVPANIC_PORT, %dx
        movb    $PVPANIC_PANICKED, %al
        outb    %al, %dx
#else
        movw    $PM1A_CNT, %dx
        movw    $SLP_EN, %ax
        outw    %ax, %dx
#endif
4:      hlt
        jmp     4b

#ifdef PANIC
msg:    .asciz  "PYXEN-BOOTSECTOR-PANIC\r\n"
#else
msg:    .asciz  "PYXEN-BOOTSECTOR-OK\r\n"
#endif

        .org    510
        .word   0xaa55
