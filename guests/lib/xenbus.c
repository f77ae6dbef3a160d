/* xenstore ring client: one request in flight; watch events that arrive
 * while waiting for a reply are queued for xs_read_watch. */
#include "xenbus.h"
#include "evtchn.h"
#include <xen/hvm/hvm_op.h>
#include <xen/hvm/params.h>
#include <xen/io/xs_wire.h>

/* Xen errno values xenstore replies use beyond those in xen/errno.h. */
#ifndef XEN_EISDIR
#define XEN_EISDIR 21
#endif
#ifndef XEN_EROFS
#define XEN_EROFS 30
#endif
#ifndef XEN_ENOTEMPTY
#define XEN_ENOTEMPTY 39
#endif
#ifndef XEN_EISCONN
#define XEN_EISCONN 106
#endif

static volatile struct xenstore_domain_interface *xs_intf;
static evtchn_port_t xs_port;
static uint32_t xs_req_id;

#define NR_QUEUED 8
static struct { char data[512]; unsigned long len; } queued[NR_QUEUED];
static unsigned int q_head, q_tail;

long hvm_get_param(uint32_t index, uint64_t *value)
{
    struct xen_hvm_param p = { .domid = DOMID_SELF, .index = index };
    long rc = HYPERVISOR_hvm_op(HVMOP_get_param, &p);

    if (!rc)
        *value = p.value;
    return rc;
}

long xs_init(void)
{
    uint64_t pfn, port;
    long rc;

    if ((rc = hvm_get_param(HVM_PARAM_STORE_PFN, &pfn)) ||
        (rc = hvm_get_param(HVM_PARAM_STORE_EVTCHN, &port)))
        return rc;
    if (!pfn || !port)
        return -XEN_ENOENT;
    xs_intf = (void *)(uintptr_t)(pfn << 12);   /* identity-mapped */
    xs_port = port;
    return 0;
}

/* Sleep until the store port fires (or `deadline_ns`); 0 on time-out. */
static int wait_store(unsigned long seen, uint64_t deadline_ns)
{
    return evtchn_wait(xs_port, seen, deadline_ns) != seen;
}

static void ring_write(const void *data, unsigned long len)
{
    const char *p = data;

    while (len) {
        unsigned long seen = evtchn_count(xs_port);
        XENSTORE_RING_IDX cons = xs_intf->req_cons, prod = xs_intf->req_prod;
        unsigned long space = XENSTORE_RING_SIZE - (prod - cons);

        barrier();
        if (!space) {
            evtchn_send(xs_port);
            wait_store(seen, 0);
            continue;
        }
        while (space && len) {
            xs_intf->req[MASK_XENSTORE_IDX(prod)] = *p++;
            prod++, space--, len--;
        }
        barrier();     /* data before the index (x86 keeps stores ordered) */
        xs_intf->req_prod = prod;
        evtchn_send(xs_port);
    }
}

/* Read exactly `len` bytes of the response ring; 0, or -ETIMEDOUT. */
static long ring_read(void *data, unsigned long len, uint64_t deadline_ns)
{
    char *p = data;

    while (len) {
        unsigned long seen = evtchn_count(xs_port);
        XENSTORE_RING_IDX cons = xs_intf->rsp_cons, prod = xs_intf->rsp_prod;

        barrier();
        if (cons == prod) {
            if (!wait_store(seen, deadline_ns))
                return -XEN_ETIMEDOUT;
            continue;
        }
        while (cons != prod && len) {
            *p++ = xs_intf->rsp[MASK_XENSTORE_IDX(cons)];
            cons++, len--;
        }
        barrier();
        xs_intf->rsp_cons = cons;
        evtchn_send(xs_port);
    }
    return 0;
}

/* Only the first bytes of a message reach `body` (up to `size`); the rest
 * is read and dropped. */
static long read_msg(struct xsd_sockmsg *hdr, char *body, unsigned long size,
                     uint64_t deadline_ns)
{
    unsigned long keep;
    char junk[64];
    long rc = ring_read(hdr, sizeof(*hdr), deadline_ns);

    if (rc)
        return rc;
    if (hdr->len > XENSTORE_PAYLOAD_MAX)
        panic("xenstore: reply of %u bytes\n", hdr->len);
    keep = hdr->len < size ? hdr->len : size;
    ring_read(body, keep, 0);
    for (unsigned long left = hdr->len - keep; left;) {
        unsigned long n = left < sizeof(junk) ? left : sizeof(junk);
        ring_read(junk, n, 0);
        left -= n;
    }
    return 0;
}

static const struct { const char *name; long err; } xs_errors[] = {
    { "EINVAL", XEN_EINVAL }, { "EACCES", XEN_EACCES }, { "EEXIST", XEN_EEXIST },
    { "EISDIR", XEN_EISDIR }, { "ENOENT", XEN_ENOENT }, { "ENOMEM", XEN_ENOMEM },
    { "ENOSPC", XEN_ENOSPC }, { "EIO", XEN_EIO }, { "ENOTEMPTY", XEN_ENOTEMPTY },
    { "ENOSYS", XEN_ENOSYS }, { "EROFS", XEN_EROFS }, { "EBUSY", XEN_EBUSY },
    { "EAGAIN", XEN_EAGAIN }, { "EISCONN", XEN_EISCONN }, { "E2BIG", XEN_E2BIG },
    { "EPERM", XEN_EPERM },
};

static long xs_error(const char *name)
{
    for (unsigned long i = 0; i < ARRAY_SIZE(xs_errors); i++)
        if (!strcmp(name, xs_errors[i].name))
            return -xs_errors[i].err;
    return -XEN_EIO;
}

/* One request: `nargs` strings, each sent with its NUL unless it is the
 * last of a WRITE (whose value has none). Reply body (NUL-terminated) in
 * `reply`; returns its length or a negative errno. */
static long xs_talk(uint32_t type, const char *const *args, int nargs,
                    char *reply, unsigned long size)
{
    struct xsd_sockmsg hdr = { .type = type, .req_id = ++xs_req_id };
    char body[XENSTORE_PAYLOAD_MAX + 1];

    if (!xs_intf)
        return -XEN_ENODEV;
    for (int i = 0; i < nargs; i++)
        hdr.len += strlen(args[i]) + !(type == XS_WRITE && i == nargs - 1);
    ring_write(&hdr, sizeof(hdr));
    for (int i = 0; i < nargs; i++)
        ring_write(args[i], strlen(args[i]) + !(type == XS_WRITE && i == nargs - 1));
    for (;;) {
        struct xsd_sockmsg r;
        long rc = read_msg(&r, body, sizeof(body) - 1, 0);

        if (rc)
            return rc;
        body[r.len < sizeof(body) - 1 ? r.len : sizeof(body) - 1] = '\0';
        if (r.type == XS_WATCH_EVENT) {
            if ((q_tail - q_head) < NR_QUEUED) {
                unsigned long n = r.len < sizeof(queued[0].data) ? r.len : sizeof(queued[0].data);
                memcpy(queued[q_tail % NR_QUEUED].data, body, n);
                queued[q_tail % NR_QUEUED].len = n;
                q_tail++;
            }
            continue;
        }
        if (r.req_id != hdr.req_id)
            continue;                   /* not ours: cannot happen with one in flight */
        if (r.type == XS_ERROR)
            return xs_error(body);
        if (r.type != type)
            return -XEN_EIO;
        if (reply && size) {
            unsigned long n = r.len < size - 1 ? r.len : size - 1;
            memcpy(reply, body, n);
            reply[n] = '\0';
        }
        return r.len;
    }
}

long xs_read(const char *path, char *buf, unsigned long size)
{
    const char *args[] = { path };
    long rc = xs_talk(XS_READ, args, 1, buf, size);

    return rc < 0 ? rc : 0;
}

long xs_write(const char *path, const char *value)
{
    const char *args[] = { path, value };
    long rc = xs_talk(XS_WRITE, args, 2, NULL, 0);

    return rc < 0 ? rc : 0;
}

long xs_watch(const char *path, const char *token)
{
    const char *args[] = { path, token };
    long rc = xs_talk(XS_WATCH, args, 2, NULL, 0);

    return rc < 0 ? rc : 0;
}

static void copy_str(char *dst, unsigned long size, const char *src, unsigned long max)
{
    unsigned long n = 0;

    while (n < max && src[n] && n + 1 < size) {
        dst[n] = src[n];
        n++;
    }
    if (size)
        dst[n] = '\0';
}

long xs_read_watch(char *path, unsigned long psize, char *token, unsigned long tsize,
                   uint64_t deadline_ns)
{
    char body[513];
    unsigned long len;

    if (q_head != q_tail) {
        len = queued[q_head % NR_QUEUED].len;
        memcpy(body, queued[q_head % NR_QUEUED].data, len);
        q_head++;
    } else {
        for (;;) {
            struct xsd_sockmsg r;
            long rc = read_msg(&r, body, sizeof(body) - 1, deadline_ns);

            if (rc)
                return rc;
            if (r.type == XS_WATCH_EVENT) {
                len = r.len < sizeof(body) - 1 ? r.len : sizeof(body) - 1;
                break;
            }
        }
    }
    body[len] = '\0';
    copy_str(path, psize, body, len);
    {
        unsigned long plen = strlen(body) + 1;
        copy_str(token, tsize, plen < len ? body + plen : "", plen < len ? len - plen : 0);
    }
    return 0;
}

/* -- PV console ------------------------------------------------------------ */
#include <xen/io/console.h>

static volatile struct xencons_interface *cons_intf;
static evtchn_port_t cons_port;

long pvcons_init(void)
{
    uint64_t pfn, port;
    long rc;

    if ((rc = hvm_get_param(HVM_PARAM_CONSOLE_PFN, &pfn)) ||
        (rc = hvm_get_param(HVM_PARAM_CONSOLE_EVTCHN, &port)))
        return rc;
    if (!pfn || !port)
        return -XEN_ENOENT;
    cons_intf = (void *)(uintptr_t)(pfn << 12);
    cons_port = port;
    return 0;
}

void pvcons_write(const char *s, unsigned long len)
{
    if (!cons_intf) {
        console_write(s, len);
        return;
    }
    while (len) {
        unsigned long seen = evtchn_count(cons_port);
        XENCONS_RING_IDX cons = cons_intf->out_cons, prod = cons_intf->out_prod;
        unsigned long space = sizeof(cons_intf->out) - (prod - cons);

        barrier();
        if (!space) {           /* xenconsoled drains and kicks us back */
            evtchn_send(cons_port);
            evtchn_wait(cons_port, seen, now_ns() + 100000000);
            continue;
        }
        while (space && len) {
            cons_intf->out[MASK_XENCONS_IDX(prod, cons_intf->out)] = *s++;
            prod++, space--, len--;
        }
        barrier();
        cons_intf->out_prod = prod;
        evtchn_send(cons_port);
    }
}

void pvcons_printf(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n > (int)sizeof(buf) - 1)
        n = sizeof(buf) - 1;
    pvcons_write(buf, n);
}
