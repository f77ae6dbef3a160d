/* Software-CPU engine: unicorn driven from C (see emu.c for the design).
 * Everything here is also declared to cffi in build_emu.py; keep in sync. */
#ifndef XEN_CORE_EMU_H
#define XEN_CORE_EMU_H

#include <stddef.h>
#include <stdint.h>

/* Kinds of exits handed to Python (struct emu_exit.kind). */
#define EMU_EXIT_HYPERCALL 1
#define EMU_EXIT_WRMSR 2
#define EMU_EXIT_IO_IN 3
#define EMU_EXIT_IO_OUT 4
#define EMU_EXIT_HALT 5
#define EMU_EXIT_EVTCHN_KICK 6 /* args: domid, port, vcpu, flags (evtchn_fast.c) */

/* emu_run() results. */
#define EMU_RUN_STOPPED 0
#define EMU_RUN_TRIPLE_FAULT 1
#define EMU_RUN_ERROR 2

#define EMU_MODE_FLAT32 0
#define EMU_MODE_LONG64 1
#define EMU_MODE_REAL16 2 /* real mode: CS = rip >> 4, IP = rip & 0xf */

/* Engine-private page (trampoline and flat GDT) at a guest-physical address
 * outside RAM (below LOWMEM_LIMIT) and outside the special-page region:
 * the last page below 4 GiB, where a PVH guest has nothing. */
#define EMU_PRIV_GPA 0xFFFFF000ULL

/* Local APIC register page (the architectural default base): a guest
 * that reads it before it knows it is a Xen guest (Linux: ID, version,
 * LVTs, SVR, TPR) finds a masked, idle LAPIC. Per vCPU, MMIO over a
 * register file: writes stick, and an ICR write (INIT, STARTUP, fixed
 * IPIs) goes to the core (emu_lapic.c). Event-channel delivery is the
 * callback vector, not the LAPIC. */
#define EMU_LAPIC_GPA 0xFEE00000ULL

/* One exit for Python; `value` carries the answer back (rax for a
 * hypercall, the value read for `in`). */
struct emu_exit {
    int kind;
    uint32_t port;
    uint32_t size;
    uint32_t msr;
    uint64_t nr;
    uint64_t args[6];
    uint64_t value;
};

struct emu_cpuid_leaf {
    uint32_t leaf, eax, ebx, ecx, edx;
};

struct emu_machine;
struct emu_vcpu;

int emu_calibrate(char *err, size_t errlen);
struct emu_machine *emu_machine_new(const struct emu_cpuid_leaf *leaves, int n,
                                    uint32_t hypercall_port);
void emu_machine_free(struct emu_machine *m);
struct emu_vcpu *emu_vcpu_new(struct emu_machine *m, int id, uint64_t token,
                              char *err, size_t errlen);
void emu_vcpu_free(struct emu_vcpu *v);
int emu_mem_map(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host);
int emu_mem_map_ro(struct emu_vcpu *v, uint64_t gpa, uint64_t size, uint64_t host);
int emu_mem_unmap(struct emu_vcpu *v, uint64_t gpa, uint64_t size);
int emu_invalidate(struct emu_vcpu *v, uint64_t gpa, uint64_t size);
void emu_flush_code(struct emu_vcpu *v);
int emu_set_boot(struct emu_vcpu *v, int mode, uint64_t rip, const uint64_t *regs,
                 uint64_t cr0, uint64_t cr3, uint64_t cr4, uint64_t efer);
int emu_run(struct emu_vcpu *v);
void emu_request_stop(struct emu_vcpu *v);
void emu_request_interrupt(struct emu_vcpu *v, int vector);
void emu_kick(struct emu_vcpu *v);
void emu_set_halt_wait(struct emu_vcpu *v, uint64_t ns);
struct evf_table;
void emu_machine_set_evtchn(struct emu_machine *m, struct evf_table *t);
/* Offer MSR_ARCH_CAPABILITIES (CPUID.7.0:EDX[29]) with this value (0: don't). */
void emu_machine_set_arch_caps(struct emu_machine *m, uint64_t value);
int emu_machine_all_in_c(struct emu_machine *m);
int emu_machine_pause(struct emu_machine *m, int wait);
void emu_machine_resume(struct emu_machine *m);
int emu_get_regs(struct emu_vcpu *v, uint64_t *regs);
int emu_set_regs(struct emu_vcpu *v, const uint64_t *regs);
int emu_get_sregs(struct emu_vcpu *v, uint64_t *sregs);
const char *emu_error(struct emu_vcpu *v);
struct emu_exit *emu_exit_of(struct emu_vcpu *v);
void emu_set_c_hypercalls(struct emu_vcpu *v, int on);
void emu_set_async_irq(struct emu_vcpu *v, int on);
void emu_set_io_in_ones(struct emu_vcpu *v, int on);
uint64_t emu_counter(struct emu_vcpu *v, int which);
double emu_bench_bare_loop(uint64_t iterations, int empty_block_hook);

#endif
