"""Watches: who watches which path, and the events a change produces.

A watch fires once when set, then whenever its node or anything below it
changes; removing a subtree fires the watches set
exactly on the removed nodes too.  @introduceDomain and @releaseDomain match
only themselves.  Events are queued per connection, in the order of the
changes and, within one change, in the order the watches were set.
"""

from .paths import parent_of
from .perms import PERM_READ, perm_for_conn


class Watch:
    __slots__ = ("conn", "node", "token", "relative", "seq")

    def __init__(self, conn, node, token, relative, seq):
        self.conn = conn
        self.node = node            # absolute path, or a special @name
        self.token = token          # bytes, returned exactly as given
        self.relative = relative    # prefix stripped from reported paths
        self.seq = seq              # registration order


class WatchTable:
    """Every connection's watches, indexed by the path watched."""

    def __init__(self):
        self.index: dict[str, list[Watch]] = {}
        self.seq = 0
        self.event_conns: list = []     # connections with queued events

    def add(self, conn, abspath, token, relative) -> Watch:
        self.seq += 1
        w = Watch(conn, abspath, token, relative, self.seq)
        self.index.setdefault(abspath, []).append(w)
        return w

    def remove(self, w: Watch) -> None:
        lst = self.index[w.node]
        lst.remove(w)
        if not lst:
            del self.index[w.node]

    def drop(self, conn) -> None:
        for w in conn.watches.values():
            self.remove(w)
        conn.watches.clear()

    def queue(self, conn, w: Watch, path: str) -> None:
        rel = w.relative
        if rel is not None and path.startswith(rel):
            path = path[len(rel):]
        if not conn.events:
            self.event_conns.append(conn)
        conn.events.append((path.encode(), w.token))

    def fire(self, path, perms_list, exact) -> None:
        """``path`` changed; ``perms_list`` are the permissions (before and
        after) that decide who may learn of it."""
        index = self.index
        if exact or path[0] == "@":
            matches = list(index.get(path, ()))
        else:
            # Watches on the node or on any ancestor fire with the node's path.
            matches = []
            p = path
            while True:
                ws = index.get(p)
                if ws:
                    matches.extend(ws)
                if p == "/":
                    break
                p = parent_of(p)
            if len(matches) > 1:
                matches.sort(key=lambda w: w.seq)
        for w in matches:
            c = w.conn
            if c.privileged or any(perm_for_conn(c, p) & PERM_READ
                                   for p in perms_list):
                self.queue(c, w, path)

    def fire_special(self, name, perms) -> None:
        for w in list(self.index.get(name, ())):
            c = w.conn
            if c.privileged or perm_for_conn(c, perms) & PERM_READ:
                self.queue(c, w, name)

    def take_events(self):
        out = []
        for conn in self.event_conns:
            if conn.events:
                out.append((conn, conn.events))
                conn.events = []
        self.event_conns = []
        return out
