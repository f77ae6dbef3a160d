/* Freestanding integer types and Xen's basic ABI types (x86-64). */
#ifndef GUEST_XEN_TYPES_H
#define GUEST_XEN_TYPES_H

#include <stdint.h>
#include <stddef.h>

typedef unsigned long xen_ulong_t;
typedef unsigned long xen_pfn_t;
typedef uint16_t domid_t;
typedef uint32_t evtchn_port_t;

/* A guest handle is a plain 64-bit pointer on x86-64. */
#define XEN_GUEST_HANDLE(type) type *

#endif
