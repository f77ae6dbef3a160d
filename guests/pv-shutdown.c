/* pv-shutdown: a guest that honours the PV control protocol as Linux's
 * xenbus does: advertises control/feature-{poweroff,reboot}, watches
 * control/shutdown, acknowledges a request by clearing it and shuts down
 * with that reason (poweroff, reboot). Sleeps (hlt) in between. */
#include "lib/guest.h"
#include "lib/evtchn.h"
#include "lib/xenbus.h"

int guest_main(void)
{
    char path[128], token[16], req[32], name[64];
    long rc;

    if ((rc = time_init()) || (rc = evtchn_init()))
        panic("pv-shutdown: event channel set-up: %ld\n", rc);
    if ((rc = pvcons_init()) || (rc = xs_init()))
        panic("pv-shutdown: console/xenstore rings: %ld\n", rc);
    if ((rc = xs_read("name", name, sizeof(name))))
        panic("pv-shutdown: read name: %ld\n", rc);
    if ((rc = xs_write("control/feature-poweroff", "1")) ||
        (rc = xs_write("control/feature-reboot", "1")))
        panic("pv-shutdown: writing features: %ld\n", rc);
    if ((rc = xs_watch("control/shutdown", "shutdown")))
        panic("pv-shutdown: watch: %ld\n", rc);
    pvcons_printf("pv-shutdown: %s ready\n", name);
    for (;;) {
        if ((rc = xs_read_watch(path, sizeof(path), token, sizeof(token), 0)))
            panic("pv-shutdown: watch: %ld\n", rc);
        if ((rc = xs_read("control/shutdown", req, sizeof(req))))
            continue;
        if (!req[0])
            continue;                       /* our own acknowledgement */
        xs_write("control/shutdown", "");   /* ack, as Linux does */
        if (!strcmp(req, "poweroff") || !strcmp(req, "halt")) {
            pvcons_printf("pv-shutdown: poweroff requested\n");
            shutdown(SHUTDOWN_poweroff);
        } else if (!strcmp(req, "reboot")) {
            pvcons_printf("pv-shutdown: reboot requested\n");
            shutdown(SHUTDOWN_reboot);
        } else {
            pvcons_printf("pv-shutdown: unknown request \"%s\" ignored\n", req);
        }
    }
}
