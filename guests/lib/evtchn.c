/* 2-level event channels: the upcall vector handler scans
 * evtchn_pending_sel / evtchn_pending & ~evtchn_mask as Linux does, clears
 * each pending bit and counts the event for its port. */
#include "evtchn.h"
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>

#define NR_PORTS 4096

static volatile unsigned long counts[NR_PORTS];

struct idt_gate {
    uint16_t offset_lo, selector;
    uint8_t ist, type_attr;
    uint16_t offset_mid;
    uint32_t offset_hi, reserved;
};
static struct idt_gate idt256[256] __attribute__((aligned(16)));

void evtchn_do_upcall(void);
extern char evtchn_upcall_entry[];

/* Save the registers C may clobber (and rbp, used to realign the stack),
 * call the handler, iretq. */
asm(".pushsection .text\n"
    ".globl evtchn_upcall_entry\n"
    "evtchn_upcall_entry:\n"
    "  push %rax; push %rcx; push %rdx; push %rsi; push %rdi\n"
    "  push %r8; push %r9; push %r10; push %r11; push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  and $-16, %rsp\n"
    "  call evtchn_do_upcall\n"
    "  mov %rbp, %rsp\n"
    "  pop %rbp; pop %r11; pop %r10; pop %r9; pop %r8\n"
    "  pop %rdi; pop %rsi; pop %rdx; pop %rcx; pop %rax\n"
    "  iretq\n"
    ".popsection\n");

void evtchn_do_upcall(void)
{
    struct vcpu_info *vi = &shared_info->vcpu_info[0];

    do {
        unsigned long sel;

        vi->evtchn_upcall_pending = 0;
        barrier();
        sel = __atomic_exchange_n(&vi->evtchn_pending_sel, 0, __ATOMIC_SEQ_CST);
        while (sel) {
            unsigned long w = __builtin_ctzl(sel);
            unsigned long bits;

            sel &= sel - 1;
            bits = shared_info->evtchn_pending[w] & ~shared_info->evtchn_mask[w];
            while (bits) {
                unsigned long b = __builtin_ctzl(bits);
                unsigned long port = w * 64 + b;

                bits &= bits - 1;
                __atomic_fetch_and(&shared_info->evtchn_pending[w], ~(1UL << b),
                                   __ATOMIC_SEQ_CST);
                counts[port]++;
            }
        }
    } while (vi->evtchn_upcall_pending);
}

long evtchn_init(void)
{
    struct { uint16_t limit; uint64_t base; } __attribute__((packed)) idtr;
    struct xen_hvm_param p;
    uint64_t h = (uintptr_t)evtchn_upcall_entry;
    long rc;

    if (!shared_info)
        return -XEN_EINVAL;
    /* Keep the library's exception gates, extend the table to 256. */
    asm volatile("sidt %0" : "=m"(idtr));
    memcpy(idt256, (void *)idtr.base, idtr.limit + 1);
    idt256[EVTCHN_UPCALL_VECTOR].offset_lo = h & 0xffff;
    idt256[EVTCHN_UPCALL_VECTOR].selector = 0x10;
    idt256[EVTCHN_UPCALL_VECTOR].type_attr = 0x8e;   /* interrupt gate */
    idt256[EVTCHN_UPCALL_VECTOR].offset_mid = (h >> 16) & 0xffff;
    idt256[EVTCHN_UPCALL_VECTOR].offset_hi = h >> 32;
    idtr.limit = sizeof(idt256) - 1;
    idtr.base = (uintptr_t)idt256;
    asm volatile("lidt %0" :: "m"(idtr));

    p.domid = DOMID_SELF;
    p.index = HVM_PARAM_CALLBACK_IRQ;
    p.value = ((uint64_t)HVM_PARAM_CALLBACK_TYPE_VECTOR << 56) | EVTCHN_UPCALL_VECTOR;
    rc = HYPERVISOR_hvm_op(HVMOP_set_param, &p);
    if (rc)
        return rc;
    shared_info->vcpu_info[0].evtchn_upcall_mask = 0;
    asm volatile("sti");
    return 0;
}

long evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port)
{
    struct evtchn_alloc_unbound op = { .dom = DOMID_SELF, .remote_dom = remote };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_alloc_unbound, &op);

    if (!rc)
        *port = op.port;
    return rc;
}

long evtchn_bind_interdomain(domid_t remote, evtchn_port_t remote_port, evtchn_port_t *port)
{
    struct evtchn_bind_interdomain op = { .remote_dom = remote, .remote_port = remote_port };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_interdomain, &op);

    if (!rc)
        *port = op.local_port;
    return rc;
}

long evtchn_bind_virq(uint32_t virq, evtchn_port_t *port)
{
    struct evtchn_bind_virq op = { .virq = virq, .vcpu = 0 };
    long rc = HYPERVISOR_event_channel_op(EVTCHNOP_bind_virq, &op);

    if (!rc)
        *port = op.port;
    return rc;
}

long evtchn_send(evtchn_port_t port)
{
    struct evtchn_send op = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_send, &op);
}

long evtchn_close(evtchn_port_t port)
{
    struct evtchn_port_op op = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_close, &op);
}

long evtchn_unmask(evtchn_port_t port)
{
    struct evtchn_port_op op = { .port = port };
    return HYPERVISOR_event_channel_op(EVTCHNOP_unmask, &op);
}

unsigned long evtchn_count(evtchn_port_t port)
{
    return port < NR_PORTS ? counts[port] : 0;
}

unsigned long evtchn_wait(evtchn_port_t port, unsigned long seen, uint64_t deadline_ns)
{
    for (;;) {
        unsigned long c;

        asm volatile("cli" ::: "memory");
        c = counts[port];
        if (c != seen || (deadline_ns && now_ns() >= deadline_ns)) {
            asm volatile("sti" ::: "memory");
            return c;
        }
        if (deadline_ns)
            HYPERVISOR_set_timer_op(deadline_ns);
        /* As Linux idles: sti's one-instruction shadow covers the hlt, so an
         * upcall that arrives after the check wakes the hlt, never precedes it. */
        asm volatile("sti; hlt" ::: "memory");
    }
}

static evtchn_port_t console_port;
static int console_bound;

unsigned long console_virqs(void)
{
    return console_bound ? evtchn_count(console_port) : 0;
}

unsigned long console_readline(char *buf, unsigned long size)
{
    unsigned long n = 0, seen;

    /* Xen raises VIRQ_CONSOLE when input arrives; poll slowly besides. */
    if (!console_bound && shared_info && !evtchn_bind_virq(VIRQ_CONSOLE, &console_port))
        console_bound = 1;
    seen = console_virqs();
    while (n + 1 < size) {
        char c;
        long rc = HYPERVISOR_console_io(CONSOLEIO_read, 1, &c);

        if (rc <= 0) {
            if (console_bound)
                seen = evtchn_wait(console_port, seen, now_ns() + 100000000);
            else
                sleep_ns(1000000);
            continue;
        }
        if (c == '\n')
            break;
        buf[n++] = c;
    }
    buf[n] = '\0';
    return n;
}
