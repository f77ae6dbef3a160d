"""cffi (API mode) builder for the software-CPU engine, `xen_core.accel._emu_c`
(not `_emu`: that name is a function in xen_core/accel/__init__.py, which
importing a submodule of the same name would overwrite).

Compiles emu.c and emu_x86.c against the headers and library shipped inside
the unicorn wheel (unicorn/include, unicorn/lib/libunicorn.so.2), with an
rpath to that folder so no system libunicorn is needed.
"""
import os

import unicorn
from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
UC_DIR = os.path.dirname(os.path.abspath(unicorn.__file__))
UC_INC = os.path.join(UC_DIR, "include")
UC_LIB = os.path.join(UC_DIR, "lib")

CDEF = """
#define EMU_EXIT_HYPERCALL 1
#define EMU_EXIT_WRMSR 2
#define EMU_EXIT_IO_IN 3
#define EMU_EXIT_IO_OUT 4
#define EMU_EXIT_HALT 5
#define EMU_RUN_STOPPED 0
#define EMU_RUN_TRIPLE_FAULT 1
#define EMU_RUN_ERROR 2
#define EMU_MODE_FLAT32 0
#define EMU_MODE_LONG64 1
#define EMU_MODE_REAL16 2
#define EMU_PRIV_GPA ...
#define EMU_LAPIC_GPA ...

struct emu_exit {
    int kind;
    uint32_t port;
    uint32_t size;
    uint32_t msr;
    uint64_t nr;
    uint64_t args[6];
    uint64_t value;
};
struct emu_cpuid_leaf { uint32_t leaf, eax, ebx, ecx, edx; };
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
void emu_set_halt_poll(struct emu_vcpu *v, uint64_t max_ns);
void emu_machine_set_evtchn(struct emu_machine *m, struct evf_table *t);
void emu_machine_set_arch_caps(struct emu_machine *m, uint64_t value);
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

struct evf_table;
struct evf_dom0 { uint8_t state[4096]; uint64_t lost; uint32_t owner[4096];
                  struct evf_table *target[4096]; uint32_t tport[4096], tvcpu[4096];
                  uint64_t fast_commands; uint8_t dcached[4096]; int32_t dfd[4096];
                  uint32_t dport[4096]; };
struct evf_table { struct evf_dom0 *dom0; uint32_t hypercall, send_op; uint8_t cached[4096];
                   int32_t fd[4096]; uint32_t rport[4096]; uint64_t fast_sends;
                   int live; uint32_t domid; struct emu_machine *m; uint64_t pending, mask;
                   uint32_t sel_off, upcall_off; int vector; uint8_t ready[64];
                   uint64_t vinfo[64]; struct emu_vcpu *vcpu[64];
                   struct evf_table *gt[4096]; uint32_t gtport[4096], gtvcpu[4096]; };
struct evf_serve { int have, off; int closing; uint32_t kick_domid, kick_port, kick_vcpu, kick_flags; };
#define EVF_CMD_UNMASK 1
#define EVF_CMD_NOTIFY 2
#define EVF_SERVE_EOF 0
#define EVF_SERVE_SLOW 1
#define EVF_SERVE_KICK 2
void evf_dom0_own(struct evf_dom0 *d, uint32_t port, uint32_t token);
void evf_handle_gone(struct evf_dom0 *d, uint32_t token);
void evf_cache_notify(struct evf_dom0 *d, uint32_t port, struct evf_table *g, uint32_t gport,
                      uint32_t vcpu);
void evf_uncache_notify(struct evf_dom0 *d, uint32_t port);
void evf_cache_dom0(struct evf_dom0 *d, uint32_t port, int fd, uint32_t rport);
void evf_dom0_uncache_fd(struct evf_dom0 *d, int fd);
void evf_guest_vcpu(struct evf_table *t, uint32_t vcpu, uint64_t vinfo, struct emu_vcpu *v);
void evf_guest_flush(struct evf_table *t);
void evf_guest_forget_vcpu(struct evf_table *t, uint32_t vcpu);
void evf_guest_gone(struct evf_table *t);
int evf_serve(struct evf_dom0 *d, uint32_t token, int rfd, int wfd, uint8_t *buf, int cap,
              struct evf_serve *s);
int emu_machine_all_in_c(struct emu_machine *m);
int emu_machine_pause(struct emu_machine *m, int wait);
void emu_machine_resume(struct emu_machine *m);
int evf_send(struct evf_table *t, uint32_t port, struct evf_serve *kick);
void evf_cache_guest(struct evf_table *t, uint32_t port, struct evf_table *g, uint32_t gport,
                     uint32_t vcpu);
#define EMU_EXIT_EVTCHN_KICK 6
int evf_dom0_mark(struct evf_dom0 *d, uint32_t port);
int evf_dom0_unmask(struct evf_dom0 *d, uint32_t port);
void evf_dom0_clear(struct evf_dom0 *d, uint32_t port, int bits);
int evf_dom0_state(struct evf_dom0 *d, uint32_t port);
int evf_write_port(struct evf_dom0 *d, int fd, uint32_t port);
void evf_cache(struct evf_table *t, uint32_t port, int fd, uint32_t rport);
void evf_uncache(struct evf_table *t, uint32_t port);
void evf_uncache_fd(struct evf_table *t, int fd);
#define EVF_2L_NEW 1
#define EVF_2L_UPCALL 2
int evf_2l_set_pending(uint64_t pending, uint64_t mask, uint64_t sel, uint64_t upcall,
                       uint32_t port);

extern "Python" int emu_py_exit(uint64_t token);
"""

ffibuilder = FFI()
ffibuilder.cdef(CDEF)
with open(os.path.join(HERE, "emu.c")) as f:
    source = f.read()
ffibuilder.set_source(
    "xen_core.accel._emu_c",
    source,
    # setuptools wants source paths relative to the project (its cwd)
    sources=[os.path.relpath(os.path.join(HERE, f))
             for f in ("emu_x86.c", "emu_lapic.c", "evtchn_fast.c")],
    include_dirs=[HERE, UC_INC],
    library_dirs=[UC_LIB],
    extra_link_args=[os.path.join(UC_LIB, "libunicorn.so.2"),
                     "-Wl,-rpath," + UC_LIB, "-pthread"],
    extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=False)
