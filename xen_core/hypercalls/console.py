"""console_io: a guest's emergency console, kept per domain (the log dom0
reads and `xl console` streams)."""
from __future__ import annotations

from ..abi import xen as x
from .call import s32


def do_console_io(cur, cmd, count, buffer, *_):
    cmd, count = s32(cmd), count & 0xFFFF_FFFF
    d = cur.domain
    if cmd == x.CONSOLEIO_write:
        if count:
            data = cur.copy_from(buffer, count)
            d.append_console(data)
            # Xen's own log carries guest output too, each line tagged "(dN) ".
            cur.core.printk(b"".join(b"(d%d) %s\n" % (d.domid, line)
                                     for line in data.rstrip(b"\n").split(b"\n")))
        return 0
    if cmd == x.CONSOLEIO_read:
        with d.lock:
            data = bytes(d.console_input[:count])
        if data:
            cur.copy_to(buffer, data)
            with d.lock:
                del d.console_input[:len(data)]
        return len(data)
    return cur.unknown("console_io", cmd)
