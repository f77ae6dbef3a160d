"""`xl create` after parsing: create the domain, fork its monitor, and with
-c attach the console before the guest runs (libxl's console_how hook)."""
from __future__ import annotations

import os
import sys

from .create import CreateError, create_domain
from .monitor import monitor, spawn
from .xl_domain import attach_console, open_session


def create_and_run(d_config, paused: bool = False, console: bool = False,
                   foreground: bool = False) -> int:
    from .xl import XlError
    if foreground and d_config.c_info.type == "hvm":
        raise XlError("xl: -F is not supported for type=\"hvm\" yet")
    with open_session() as sess:
        try:
            # With -c the guest starts only once the console is attached.
            domid = create_domain(sess, d_config, paused=paused or console)
        except CreateError as e:
            raise XlError(f"xl: {e}") from None
        hvm = d_config.c_info.type == "hvm"
        if hvm:
            # QEMU belongs to the monitor (its child), started there.
            spawn(sess.rdir, domid, d_config, paused=paused)
            from .hvm import wait_dm_running
            try:
                wait_dm_running(sess, domid, d_config.c_info.name)
            except CreateError as e:
                raise XlError(f"xl: {e}") from None
            if console:
                attach_console(sess, domid, "serial")
            return domid
        if not foreground:
            spawn(sess.rdir, domid, d_config)
        if console:
            def go():
                if not paused:
                    sess.pc.domain_unpause(domid)
            attach_console(sess, domid, "pv", before_relay=go)
    if foreground:
        sys.stdout.flush()
        code = monitor(sess.rdir, domid, d_config)
        if code:
            os._exit(code)
    return domid
