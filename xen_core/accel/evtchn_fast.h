/* Event-channel fast path: the sends a guest may complete without Python.
 *
 * xen_core/evtchn.py stays the single source of truth: these tables are a
 * cache it fills after answering a send itself (evtchn_fast.py) and empties
 * whenever either end of a cached channel changes (close, reset, domain
 * destruction). A port not in the cache goes the slow way, so every error
 * (bad port, closed port, foreign port) is still Python's answer.
 *
 * Dom0's per-port state (the evtchn device's "masked until user space
 * unmasks it", and an event that came meanwhile) lives here, not in Python,
 * so both paths see one copy. Everything is under one mutex. */
#ifndef XEN_CORE_EVTCHN_FAST_H
#define XEN_CORE_EVTCHN_FAST_H

#include <stdint.h>

#define EVF_NR_PORTS 4096
#define EVF_MASKED 1
#define EVF_LATCHED 2

#define EVF_MAX_VCPUS 64

struct evf_table;
struct emu_machine;
struct emu_vcpu;

/* Dom0's ports as the evtchn device presents them, and what a handle's
 * commands need to be served here: who holds each port, and for a notify,
 * the guest port it reaches (cached like the guest's sends). */
struct evf_dom0 {
    uint8_t state[EVF_NR_PORTS];
    uint64_t lost; /* ports a full handle report pipe could not take */
    uint32_t owner[EVF_NR_PORTS]; /* the handle's token, 0: none known */
    struct evf_table *target[EVF_NR_PORTS];
    uint32_t tport[EVF_NR_PORTS], tvcpu[EVF_NR_PORTS];
    uint64_t fast_commands;
    /* a notify whose peer is another dom0 handle's port: its report pipe, port */
    uint8_t dcached[EVF_NR_PORTS];
    int32_t dfd[EVF_NR_PORTS];
    uint32_t dport[EVF_NR_PORTS];
};

/* One guest: its ports whose peer is a dom0 evtchn handle (a send writes
 * the peer port to that handle's report pipe, unless masked: then latched),
 * and what delivering an event into it takes (2-level bitmaps, vcpu_info, the
 * callback vector, the engine vCPU), filled per vCPU by the core and
 * flushed when any of it may change. */
struct evf_table {
    struct evf_dom0 *dom0;
    uint32_t hypercall, send_op; /* Xen's numbers, from xen_core/abi */
    uint8_t cached[EVF_NR_PORTS];
    int32_t fd[EVF_NR_PORTS];
    uint32_t rport[EVF_NR_PORTS];
    uint64_t fast_sends;
    /* delivery into this guest */
    int live; /* 0 once its engine or memory goes */
    uint32_t domid;
    struct emu_machine *m;
    uint64_t pending, mask; /* host addresses of evtchn_pending[] / evtchn_mask[] */
    uint32_t sel_off, upcall_off; /* inside vcpu_info, from xen_core/abi */
    int vector; /* HVM_PARAM_CALLBACK_IRQ vector, 0: none */
    uint8_t ready[EVF_MAX_VCPUS];
    uint64_t vinfo[EVF_MAX_VCPUS]; /* host address of vcpu_info, 0: none yet */
    struct emu_vcpu *vcpu[EVF_MAX_VCPUS];
    /* this guest's ports whose peer is another guest (or itself) */
    struct evf_table *gt[EVF_NR_PORTS];
    uint32_t gtport[EVF_NR_PORTS], gtvcpu[EVF_NR_PORTS];
};

/* A handle's command loop (evf_serve): in/out state between calls. */
struct evf_serve {
    int have, off; /* bytes in the buffer; the next record */
    int closing;   /* set by the handle's closer: return EOF */
    uint32_t kick_domid, kick_port, kick_vcpu, kick_flags;
};
#define EVF_CMD_UNMASK 1 /* a handle's records: privif.EVTCHN_CMD_* */
#define EVF_CMD_NOTIFY 2
#define EVF_SERVE_EOF 0
#define EVF_SERVE_SLOW 1 /* the record at `off` is Python's */
#define EVF_SERVE_KICK 2 /* done here, but a vCPU may wait in Python: kick it */

int evf_dom0_mark(struct evf_dom0 *d, uint32_t port);
int evf_dom0_unmask(struct evf_dom0 *d, uint32_t port);
void evf_dom0_clear(struct evf_dom0 *d, uint32_t port, int bits);
int evf_dom0_state(struct evf_dom0 *d, uint32_t port);
int evf_write_port(struct evf_dom0 *d, int fd, uint32_t port);
void evf_cache(struct evf_table *t, uint32_t port, int fd, uint32_t rport);
void evf_uncache(struct evf_table *t, uint32_t port);
void evf_uncache_fd(struct evf_table *t, int fd);
struct evf_serve;
int evf_send(struct evf_table *t, uint32_t port, struct evf_serve *kick);
void evf_cache_guest(struct evf_table *t, uint32_t port, struct evf_table *g, uint32_t gport,
                     uint32_t vcpu);

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
/* emu.c */
int emu_machine_all_in_c(struct emu_machine *m);
int emu_machine_pause(struct emu_machine *m, int wait);
void emu_machine_resume(struct emu_machine *m);
void emu_request_interrupt(struct emu_vcpu *v, int vector);
void emu_kick(struct emu_vcpu *v);

#define EVF_2L_NEW 1
#define EVF_2L_UPCALL 2
int evf_2l_set_pending(uint64_t pending, uint64_t mask, uint64_t sel, uint64_t upcall,
                       uint32_t port);

#endif
