/* Event channels and grant tables for the test guests (2-level ABI, v1). */
#ifndef GUEST_EVTCHN_H
#define GUEST_EVTCHN_H

#include "guest.h"
#include <xen/event_channel.h>
#include <xen/grant_table.h>

#define EVTCHN_UPCALL_VECTOR 0xf3   /* the vector Linux uses */

/* Upcall vector in the IDT + HVM_PARAM_CALLBACK_IRQ, interrupts on.
 * Needs time_init() (shared info) first. 0 or a negative Xen errno. */
long evtchn_init(void);
long evtchn_alloc_unbound(domid_t remote, evtchn_port_t *port);
long evtchn_bind_interdomain(domid_t remote, evtchn_port_t remote_port, evtchn_port_t *port);
long evtchn_bind_virq(uint32_t virq, evtchn_port_t *port);
long evtchn_send(evtchn_port_t port);
long evtchn_close(evtchn_port_t port);
long evtchn_unmask(evtchn_port_t port);
/* Events seen on `port` by the upcall handler so far. */
unsigned long evtchn_count(evtchn_port_t port);
/* Wait (sti; hlt) until evtchn_count(port) exceeds `seen`, or `deadline_ns`
 * (0: none) passes; returns the new count. */
unsigned long evtchn_wait(evtchn_port_t port, unsigned long seen, uint64_t deadline_ns);

/* Grant table: frame 0 placed at a page of ours with add_to_physmap. */
long gnttab_init(void);
/* Grant `frame` (a gfn) to `domid`; returns the ref. */
grant_ref_t gnttab_grant(domid_t domid, unsigned long frame, int readonly);
/* End access: -EBUSY while the grantee has it mapped (GTF_reading/writing). */
long gnttab_end_access(grant_ref_t ref);
uint16_t gnttab_flags(grant_ref_t ref);
long HYPERVISOR_grant_table_op(unsigned int cmd, void *arg, unsigned int count);
/* Map domid's grant `ref` at our frame `gfn` (what was there leaves our
 * physmap; unmap leaves the gfn empty); GNTST_* and the handle. */
int16_t gnttab_map(domid_t domid, grant_ref_t ref, unsigned long gfn, int readonly,
                   grant_handle_t *handle);
int16_t gnttab_unmap(unsigned long gfn, grant_handle_t handle);

/* Read a console input line (CONSOLEIO_read, polled); its length. */
unsigned long console_readline(char *buf, unsigned long size);
/* VIRQ_CONSOLE events console_readline has seen (0: never bound). */
unsigned long console_virqs(void);

#endif
