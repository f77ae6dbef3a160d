/* Event-channel fast path (see evtchn_fast.h). */
#include <errno.h>
#include <pthread.h>
#include <sys/socket.h>

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
    /* Never blocks the sender: a handle whose reader fell this far behind
     * loses the event (as a full evtchn ring would). */
    ssize_t n = send(fd, &port, sizeof(port), MSG_DONTWAIT | MSG_NOSIGNAL);
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

/* EVTCHNOP_send on `port` of the table's guest: 0 when done here (what
 * Xen's evtchn_send + the evtchn device would do), -1 to take the slow
 * path (not cached). */
int evf_send(struct evf_table *t, uint32_t port)
{
    if (port >= EVF_NR_PORTS)
        return -1;
    pthread_mutex_lock(&evf_lock);
    if (!t->cached[port]) {
        pthread_mutex_unlock(&evf_lock);
        return -1;
    }
    uint32_t rport = t->rport[port];
    if (mark_locked(t->dom0, rport))
        write_locked(t->dom0, t->fd[port], rport);
    t->fast_sends++;
    pthread_mutex_unlock(&evf_lock);
    return 0;
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
