/* The guest's ends of its xenstore ring and PV console ring, found with
 * HVMOP_get_param (STORE_PFN/EVTCHN, CONSOLE_PFN/EVTCHN) as a PVH kernel
 * finds them. Both need evtchn_init() first: waits sleep until the
 * ring's port fires. */
#ifndef GUEST_XENBUS_H
#define GUEST_XENBUS_H

#include "guest.h"

#ifndef XEN_ETIMEDOUT
#define XEN_ETIMEDOUT 110
#endif

/* HVMOP_get_param on ourselves; 0 or a negative Xen errno. */
long hvm_get_param(uint32_t index, uint64_t *value);

/* xenstore over the ring; paths without a leading '/' are relative to the
 * domain's home, /local/domain/<domid>. Each call returns 0 or a negative
 * Xen errno (an XS_ERROR reply's name mapped to its errno). */
long xs_init(void);
long xs_read(const char *path, char *buf, unsigned long size);
long xs_write(const char *path, const char *value);
long xs_watch(const char *path, const char *token);
/* The next watch event (path and token), waiting until `deadline_ns`
 * (0: forever); -XEN_ETIMEDOUT on time-out. */
long xs_read_watch(char *path, unsigned long psize, char *token, unsigned long tsize,
                   uint64_t deadline_ns);

/* PV console ring (hvc0's backend end is xenconsoled). */
long pvcons_init(void);
void pvcons_write(const char *s, unsigned long len);
void pvcons_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
