/* Event-channel fast path (see evtchn_fast.h). */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "evtchn_fast.h"

static pthread_mutex_t evf_lock = PTHREAD_MUTEX_INITIALIZER;

/* An event for dom0 port `port`: 1 when it is now masked and must be
 * delivered, 0 when it was masked already (latched for the unmask). */
static int mark_locked(struct evf_dom0 *d, uint32_t port)
{
    if (d->state[port] & EVF_MASKED) {
        d->state[port] |= EVF_LATCHED;
        return 0;
    }
    d->state[port] |= EVF_MASKED;
    return 1;
}

static int write_locked(struct evf_dom0 *d, int fd, uint32_t port)
{
    /* The handle's report pipe is O_NONBLOCK: a reader that fell this far
     * behind loses the event (as a full evtchn ring would), the sender
     * never waits. A record is under PIPE_BUF: written whole or not at all. */
    ssize_t n = write(fd, &port, sizeof(port));
    if (n == (ssize_t)sizeof(port))
        return 0;
    d->lost++;
    return n < 0 ? errno : EIO;
}

int evf_dom0_mark(struct evf_dom0 *d, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return 0;
    pthread_mutex_lock(&evf_lock);
    int r = mark_locked(d, port);
    pthread_mutex_unlock(&evf_lock);
    return r;
}

/* -1: was not masked; 1: an event came while masked (deliver it again,
 * the port is unmasked now); 0: unmasked. */
int evf_dom0_unmask(struct evf_dom0 *d, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return -1;
    pthread_mutex_lock(&evf_lock);
    uint8_t s = d->state[port];
    if (s & EVF_MASKED)
        d->state[port] = 0;
    pthread_mutex_unlock(&evf_lock);
    if (!(s & EVF_MASKED))
        return -1;
    return (s & EVF_LATCHED) ? 1 : 0;
}

/* Clear `bits` of the port's state (EVF_MASKED: a consumer that counts
 * events stays unmasked; both: the port is freed). */
void evf_dom0_clear(struct evf_dom0 *d, uint32_t port, int bits)
{
    if (port >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    d->state[port] &= ~bits;
    pthread_mutex_unlock(&evf_lock);
}

int evf_dom0_state(struct evf_dom0 *d, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return 0;
    pthread_mutex_lock(&evf_lock);
    int s = d->state[port];
    pthread_mutex_unlock(&evf_lock);
    return s;
}

/* Python's delivery to a handle: under the same lock as the fast path's,
 * so the handle's records never interleave. */
int evf_write_port(struct evf_dom0 *d, int fd, uint32_t port)
{
    pthread_mutex_lock(&evf_lock);
    int r = write_locked(d, fd, port);
    pthread_mutex_unlock(&evf_lock);
    return r;
}

void evf_cache(struct evf_table *t, uint32_t port, int fd, uint32_t rport)
{
    if (port >= EVF_NR_PORTS || rport >= EVF_NR_PORTS || fd < 0)
        return;
    pthread_mutex_lock(&evf_lock);
    t->fd[port] = fd;
    t->rport[port] = rport;
    t->cached[port] = 1;
    pthread_mutex_unlock(&evf_lock);
}

void evf_uncache(struct evf_table *t, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    t->cached[port] = 0;
    t->gt[port] = NULL;
    pthread_mutex_unlock(&evf_lock);
}

/* The port is freed: an event posted for it goes too, as Xen's evtchn_free
 * clears its pending bit (not when only the peer closed: the event stays). */
void evf_drop_posted(struct evf_table *t, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    for (int vc = 0; vc < EVF_MAX_VCPUS; vc++)
        t->posted[vc][port / 64] &= ~(1ull << (port % 64));
    pthread_mutex_unlock(&evf_lock);
}

void evf_cache_guest(struct evf_table *t, uint32_t port, struct evf_table *g, uint32_t gport,
                     uint32_t vcpu)
{
    if (port >= EVF_NR_PORTS || gport >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    t->gt[port] = g;
    t->gtport[port] = gport;
    t->gtvcpu[port] = vcpu;
    pthread_mutex_unlock(&evf_lock);
}

void evf_uncache_fd(struct evf_table *t, int fd)
{
    pthread_mutex_lock(&evf_lock);
    for (int p = 0; p < EVF_NR_PORTS; p++)
        if (t->cached[p] && t->fd[p] == fd)
            t->cached[p] = 0;
    pthread_mutex_unlock(&evf_lock);
}

static int deliver_locked(struct evf_table *g, uint32_t p, uint32_t vc, struct evf_serve *s);

/* EVTCHNOP_send on `port` of the table's guest: 0 when done here (what
 * Xen's evtchn_send + the evtchn device would do), 1 when done but a vCPU
 * of the receiving guest may wait in Python (`kick` says which: Python
 * kicks it), -1 to take the slow path (not cached). */
int evf_send(struct evf_table *t, uint32_t port, struct evf_serve *kick)
{
    if (port >= EVF_NR_PORTS)
        return -1;
    int rc = -1;
    pthread_mutex_lock(&evf_lock);
    if (t->cached[port]) {
        uint32_t rport = t->rport[port];
        if (mark_locked(t->dom0, rport))
            write_locked(t->dom0, t->fd[port], rport);
        rc = 0;
    } else if (t->gt[port]) {
        int r = deliver_locked(t->gt[port], t->gtport[port], t->gtvcpu[port], kick);
        rc = r == EVF_SERVE_SLOW ? -1 : r == EVF_SERVE_KICK ? 1 : 0;
    }
    if (rc >= 0)
        t->fast_sends++;
    pthread_mutex_unlock(&evf_lock);
    return rc;
}

/* evtchn_2l_set_pending + the start of vcpu_mark_events_pending on host
 * addresses inside a guest's shared info and vcpu_info, in Xen's order:
 * pending bit, mask bit, evtchn_pending_sel bit, evtchn_upcall_pending.
 * One call instead of four atomics from Python. `sel`/`upcall` NULL: the
 * vCPU has no vcpu_info yet (bitmap only). Returns EVF_2L_NEW when the port
 * became pending (wake pollers) | EVF_2L_UPCALL when evtchn_upcall_pending
 * went 0 -> 1 (inject the callback vector, kick). */
int evf_2l_set_pending(uint64_t pending, uint64_t mask, uint64_t sel, uint64_t upcall,
                       uint32_t port)
{
    uint64_t bit = 1ull << (port % 64), selbit = 1ull << ((port / 64) % 64);
    if (__atomic_fetch_or((uint64_t *)(uintptr_t)pending, bit, __ATOMIC_SEQ_CST) & bit)
        return 0;
    if (__atomic_load_n((uint64_t *)(uintptr_t)mask, __ATOMIC_SEQ_CST) & bit)
        return EVF_2L_NEW;
    if (!sel || !upcall)
        return EVF_2L_NEW;
    if (__atomic_fetch_or((uint64_t *)(uintptr_t)sel, selbit, __ATOMIC_SEQ_CST) & selbit)
        return EVF_2L_NEW;
    if (__atomic_exchange_n((uint8_t *)(uintptr_t)upcall, 1, __ATOMIC_SEQ_CST))
        return EVF_2L_NEW;
    return EVF_2L_NEW | EVF_2L_UPCALL;
}

/* ------------------------------------------------ dom0 -> guest (notify) */

void evf_dom0_own(struct evf_dom0 *d, uint32_t port, uint32_t token)
{
    if (port >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    d->owner[port] = token;
    pthread_mutex_unlock(&evf_lock);
}

/* A handle is closing: none of its records is served here any more (and
 * nothing is written to its report pipe's number again). */
void evf_handle_gone(struct evf_dom0 *d, uint32_t token)
{
    pthread_mutex_lock(&evf_lock);
    for (int p = 0; p < EVF_NR_PORTS; p++)
        if (d->owner[p] == token)
            d->owner[p] = 0;
    pthread_mutex_unlock(&evf_lock);
}

void evf_cache_notify(struct evf_dom0 *d, uint32_t port, struct evf_table *g, uint32_t gport,
                      uint32_t vcpu)
{
    if (port >= EVF_NR_PORTS || gport >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    d->target[port] = g;
    d->tport[port] = gport;
    d->tvcpu[port] = vcpu;
    pthread_mutex_unlock(&evf_lock);
}

void evf_uncache_notify(struct evf_dom0 *d, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return;
    pthread_mutex_lock(&evf_lock);
    d->target[port] = NULL;
    d->dcached[port] = 0;
    pthread_mutex_unlock(&evf_lock);
}

void evf_cache_dom0(struct evf_dom0 *d, uint32_t port, int fd, uint32_t rport)
{
    if (port >= EVF_NR_PORTS || rport >= EVF_NR_PORTS || fd < 0)
        return;
    pthread_mutex_lock(&evf_lock);
    d->dfd[port] = fd;
    d->dport[port] = rport;
    d->dcached[port] = 1;
    pthread_mutex_unlock(&evf_lock);
}

void evf_dom0_uncache_fd(struct evf_dom0 *d, int fd)
{
    pthread_mutex_lock(&evf_lock);
    for (int p = 0; p < EVF_NR_PORTS; p++)
        if (d->dcached[p] && d->dfd[p] == fd)
            d->dcached[p] = 0;
    pthread_mutex_unlock(&evf_lock);
}

void evf_guest_vcpu(struct evf_table *t, uint32_t vcpu, uint64_t vinfo, struct emu_vcpu *v)
{
    if (vcpu >= EVF_MAX_VCPUS || !v)
        return;
    pthread_mutex_lock(&evf_lock);
    t->vinfo[vcpu] = vinfo;
    t->vcpu[vcpu] = v;
    t->ready[vcpu] = 1;
    pthread_mutex_unlock(&evf_lock);
}

/* vcpu_info, the callback vector or the p2m may have changed: deliveries
 * go through Python until the core fills each vCPU again. */
void evf_guest_flush(struct evf_table *t)
{
    pthread_mutex_lock(&evf_lock);
    memset(t->ready, 0, sizeof(t->ready));
    pthread_mutex_unlock(&evf_lock);
}

/* Before its engine vCPU is freed. */
void evf_guest_forget_vcpu(struct evf_table *t, uint32_t vcpu)
{
    if (vcpu >= EVF_MAX_VCPUS)
        return;
    pthread_mutex_lock(&evf_lock);
    t->ready[vcpu] = 0;
    t->vcpu[vcpu] = NULL;
    memset(t->posted[vcpu], 0, sizeof(t->posted[vcpu]));
    pthread_mutex_unlock(&evf_lock);
}

/* Before its engine and memory go: nothing touches them from here again. */
void evf_guest_gone(struct evf_table *t)
{
    pthread_mutex_lock(&evf_lock);
    t->live = 0;
    memset(t->ready, 0, sizeof(t->ready));
    memset(t->vcpu, 0, sizeof(t->vcpu));
    pthread_mutex_unlock(&evf_lock);
}

/* Xen's evtchn_send from dom0 port `port` to its cached guest end: the
 * 2-level bits, then (evtchn_upcall_pending 0 -> 1) the callback vector
 * and a kick, as events.EventCore._upcall does. EVF_SERVE_SLOW when not
 * cached; EVF_SERVE_KICK when a vCPU of the guest may be waiting in
 * Python (blocked, polling): the bits are set, Python wakes it. */
static int notify_locked(struct evf_dom0 *d, uint32_t port, struct evf_serve *s)
{
    if (d->dcached[port]) { /* another handle's port: the device's delivery */
        uint32_t rport = d->dport[port];
        if (mark_locked(d, rport))
            write_locked(d, d->dfd[port], rport);
        return -1;
    }
    struct evf_table *g = d->target[port];
    if (!g)
        return EVF_SERVE_SLOW;
    return deliver_locked(g, d->tport[port], d->tvcpu[port], s);
}

/* An event for port `p` of guest `g`, notify vCPU `vc` (see notify_locked). */
static int deliver_locked(struct evf_table *g, uint32_t p, uint32_t vc, struct evf_serve *s)
{
    if (!g->live)
        return EVF_SERVE_SLOW;
    if (vc >= EVF_MAX_VCPUS || !g->ready[vc] || !g->vcpu[vc])
        return EVF_SERVE_SLOW;
    /* The guest's vCPUs must not be inside an instruction that rewrites
     * these words (emu_machine_pause): take its CPU lock if free, or
     * already ours (a send from one of its own vCPUs). Waiting here under
     * evf_lock could deadlock with a holder whose send wants evf_lock, so
     * a busy guest gets the event posted: the vCPU applies it holding the
     * lock, at its next block boundary (evf_drain). A vCPU of it in Python
     * (blocked, polling) is kicked to come back to C. */
    int paused = g->m ? emu_machine_pause(g->m, 0) : 2;
    if (!paused) {
        g->posted[vc][p / 64] |= 1ull << (p % 64);
        g->nposted++;
        emu_post_events(g->vcpu[vc]);
        if (!emu_machine_all_in_c(g->m)) {
            s->kick_domid = g->domid;
            s->kick_port = p;
            s->kick_vcpu = vc;
            s->kick_flags = EVF_2L_NEW | EVF_2L_UPCALL;
            return EVF_SERVE_KICK;
        }
        return -1;
    }
    uint64_t vi = g->vinfo[vc];
    int r = evf_2l_set_pending(g->pending + 8 * (p / 64), g->mask + 8 * (p / 64),
                               vi ? vi + g->sel_off : 0, vi ? vi + g->upcall_off : 0, p);
    if (paused == 1)
        emu_machine_resume(g->m);
    if (r & EVF_2L_UPCALL) {
        /* The interrupt request ends a C hlt wait itself; a kick besides
         * would stay set once the vCPU runs and end its next hlt at once. */
        if (g->vector >= 0x10)
            emu_request_interrupt(g->vcpu[vc], g->vector);
        else
            emu_kick(g->vcpu[vc]);
    }
    /* The bits are set (seq_cst) before this look (seq_cst): a vCPU that
     * enters Python after it sees them there. */
    if (r && !emu_machine_all_in_c(g->m)) {
        s->kick_domid = g->domid;
        s->kick_port = p;
        s->kick_vcpu = vc;
        s->kick_flags = r;
        return EVF_SERVE_KICK;
    }
    return -1;
}

/* Vcpu `vc` of the table's guest applies its posted events, holding its
 * machine's CPU lock (the engine's block hook or run loop): 0 when none is
 * left, 1 with `s` naming one port for Python: kick (deliver_locked's
 * flags: a vCPU of the guest waits in Python) or EVF_DELIVER (the cache
 * was flushed: Python delivers it). Called until 0. */
int evf_drain(struct evf_table *t, struct emu_vcpu *v, uint32_t vc, struct evf_serve *s)
{
    if (vc >= EVF_MAX_VCPUS)
        return 0;
    pthread_mutex_lock(&evf_lock);
    for (int w = 0; w < EVF_NR_PORTS / 64; w++) {
        while (t->posted[vc][w]) {
            uint32_t b = __builtin_ctzll(t->posted[vc][w]), p = w * 64 + b;
            t->posted[vc][w] &= t->posted[vc][w] - 1;
            int r = EVF_DELIVER;
            if (t->live && t->ready[vc] && t->vcpu[vc] == v) {
                uint64_t vi = t->vinfo[vc];
                r = evf_2l_set_pending(t->pending + 8 * w, t->mask + 8 * w,
                                       vi ? vi + t->sel_off : 0, vi ? vi + t->upcall_off : 0, p);
                if ((r & EVF_2L_UPCALL) && t->vector >= 0x10)
                    emu_request_interrupt(v, t->vector);
                if (!r || emu_machine_all_in_c(t->m))
                    continue;
            }
            s->kick_domid = t->domid;
            s->kick_port = p;
            s->kick_vcpu = vc;
            s->kick_flags = r;
            pthread_mutex_unlock(&evf_lock);
            return 1;
        }
    }
    pthread_mutex_unlock(&evf_lock);
    return 0;
}

/* One record of a handle: -1 done here, or EVF_SERVE_SLOW / _KICK. */
static int command_locked(struct evf_dom0 *d, uint32_t token, int wfd, uint32_t cmd,
                          uint32_t port, struct evf_serve *s)
{
    if (port >= EVF_NR_PORTS || !token || d->owner[port] != token)
        return EVF_SERVE_SLOW;
    if (cmd == EVF_CMD_UNMASK) {
        uint8_t st = d->state[port];
        if (st & EVF_MASKED) {
            d->state[port] = 0;
            if ((st & EVF_LATCHED) && mark_locked(d, port))
                write_locked(d, wfd, port);
        }
        d->fast_commands++;
        return -1;
    }
    if (cmd == EVF_CMD_NOTIFY) {
        int r = notify_locked(d, port, s);
        if (r != EVF_SERVE_SLOW)
            d->fast_commands++;
        return r;
    }
    return EVF_SERVE_SLOW;
}

/* A dom0 evtchn handle's command pipe, served without Python: blocks in
 * read(rfd) (the caller releases the GIL), answers unmask and notify for
 * ports this handle holds, and returns only for what Python must do, or
 * EOF once `closing` is set (the closer then writes a record to wake it). */
int evf_serve(struct evf_dom0 *d, uint32_t token, int rfd, int wfd, uint8_t *buf, int cap,
              struct evf_serve *s)
{
    for (;;) {
        if (__atomic_load_n(&s->closing, __ATOMIC_SEQ_CST))
            return EVF_SERVE_EOF;
        while (s->have - s->off >= 8) {
            uint32_t cmd, port;
            memcpy(&cmd, buf + s->off, 4);
            memcpy(&port, buf + s->off + 4, 4);
            pthread_mutex_lock(&evf_lock);
            int r = command_locked(d, token, wfd, cmd, port, s);
            pthread_mutex_unlock(&evf_lock);
            if (r == EVF_SERVE_SLOW)
                return r;
            s->off += 8;
            if (r == EVF_SERVE_KICK)
                return r;
        }
        memmove(buf, buf + s->off, s->have - s->off);
        s->have -= s->off;
        s->off = 0;
        ssize_t n = read(rfd, buf + s->have, cap - s->have);
        if (n == 0)
            return EVF_SERVE_EOF;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        s->have += n;
    }
}
