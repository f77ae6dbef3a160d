/* xs-test: a guest's own xenstore client over its store ring. Reads its
 * domid and name, writes and reads back a key under its home, sets a watch
 * and sees it fire; everything printed through the PV console ring. Ends
 * with "xs-test: PASS" (poweroff) or "xs-test: FAIL ..." (crash). */
#include "lib/guest.h"
#include "lib/evtchn.h"
#include "lib/xenbus.h"

#define FAIL(...) do { pvcons_printf("xs-test: FAIL " __VA_ARGS__); return 1; } while (0)

int guest_main(void)
{
    char domid[16], name[64], buf[128], path[128], token[32], value[64];
    long rc;

    if ((rc = time_init()) || (rc = evtchn_init()))
        panic("xs-test: event channel set-up: %ld\n", rc);
    if ((rc = pvcons_init()))
        panic("xs-test: no PV console: %ld\n", rc);
    if ((rc = xs_init()))
        FAIL("no xenstore ring: %ld\n", rc);
    if ((rc = xs_read("domid", domid, sizeof(domid))))
        FAIL("read domid: %ld\n", rc);
    if ((rc = xs_read("name", name, sizeof(name))))
        FAIL("read name: %ld\n", rc);
    pvcons_printf("xs-test: domid %s name %s\n", domid, name);

    snprintf(value, sizeof(value), "written by domain %s", domid);
    if ((rc = xs_write("data/xs-test", value)))
        FAIL("write data/xs-test: %ld\n", rc);
    if ((rc = xs_read("data/xs-test", buf, sizeof(buf))))
        FAIL("read back data/xs-test: %ld\n", rc);
    if (strcmp(buf, value))
        FAIL("read back \"%s\", wrote \"%s\"\n", buf, value);
    pvcons_printf("xs-test: data/xs-test = \"%s\"\n", buf);
    rc = xs_write("name", "renamed-by-guest");
    pvcons_printf("xs-test: writing name: %s (%ld)\n", rc == -XEN_EACCES ? "refused" : "allowed", rc);
    if (rc != -XEN_EACCES)
        FAIL("the guest could write its own name\n");

    if ((rc = xs_watch("data/watched", "xs-test-token")))
        FAIL("watch: %ld\n", rc);
    /* xenstored fires every new watch once at once. */
    if ((rc = xs_read_watch(path, sizeof(path), token, sizeof(token), now_ns() + 10000000000UL)))
        FAIL("initial watch event: %ld\n", rc);
    if ((rc = xs_write("data/watched", "1")))
        FAIL("write data/watched: %ld\n", rc);
    if ((rc = xs_read_watch(path, sizeof(path), token, sizeof(token), now_ns() + 10000000000UL)))
        FAIL("watch event after the write: %ld\n", rc);
    if (strcmp(token, "xs-test-token"))
        FAIL("watch token \"%s\"\n", token);
    pvcons_printf("xs-test: watch fired: %s (%s)\n", path, token);
    pvcons_printf("xs-test: PASS\n");
    return 0;
}
