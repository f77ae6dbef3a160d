"""The xenstore engine: tree, permissions, transactions, watches, quotas.

Pure: no I/O.  Every operation takes the engine ``Connection`` making it and
its ``Transaction`` (or None) and either returns a value or raises XsError
named as xenstored names it.  Watch events are queued on the receiving
connections; the transport drains them with ``take_events()``.
"""

import re

from xen_core.abi.xs_wire import XENSTORE_ABS_PATH_MAX, XENSTORE_REL_PATH_MAX

from .errors import XsError
from .paths import basename, parent_of
from .perms import (PERM_NONE, PERM_READ, PERM_WRITE, parse_perms,
                    perm_for_conn, perms_to_strings)
from .quota import Quota
from .transaction import NO_GENERATION, Transaction
from .watch import WatchTable

# C xenstored's valid_chars(): anything else in a path is EINVAL.
_valid_chars = re.compile(r"[A-Za-z0-9/_@-]*").fullmatch
# is_valid_nodename() measures the path-max quota after this prefix.
_local_prefix = re.compile(r"/local/domain/\d{1,5}/").match

SPECIAL_WATCHES = ("@introduceDomain", "@releaseDomain")
# Paths already found well-formed (the check is a pure function of the path).
_VALID_PATH_CACHE = 1 << 16
DOMID_FIRST_RESERVED = 0x7FF0

# Size of a node record as xenstored's quota sees it: struct
# xs_tdb_record_hdr (u64 generation, u32 num_perms, datalen, childlen, padded
# to 24), 8 bytes per struct xs_permissions, the value and the child names.
_RECORD_HDR = 24
_PERM_SIZE = 8


def _entry_size(node) -> int:
    return (_RECORD_HDR + _PERM_SIZE * len(node.perms) + len(node.value)
            + sum(len(c) + 1 for c in node.children))


class Node:
    __slots__ = ("value", "perms", "children", "generation")

    def __init__(self, value: bytes, perms: tuple, children: list, generation: int):
        self.value = value
        self.perms = perms
        self.children = children
        self.generation = generation

    def copy(self) -> "Node":
        return Node(self.value, self.perms, list(self.children), self.generation)


class Domain:
    __slots__ = ("domid", "conn", "gfn", "port", "shutdown")

    def __init__(self, domid, conn, gfn, port):
        self.domid = domid
        self.conn = conn
        self.gfn = gfn
        self.port = port
        self.shutdown = False


class Connection:
    """One client as the engine sees it."""

    def __init__(self, store, conn_id: int, domid: int, privileged: bool):
        self.store = store
        self.id = conn_id
        self.domid = domid
        self.privileged = privileged
        self.target = None              # domid this one acts for (SET_TARGET)
        self.home = f"/local/domain/{domid}"
        self.watches: dict = {}         # (abs path, token) -> Watch
        self.transactions: dict = {}    # txid -> Transaction
        self.next_txid = 1
        self.events: list = []          # queued (path bytes, token bytes)

    def __repr__(self):
        return f"<xs conn {self.id} dom{self.domid}>"


class Store:
    def __init__(self, quota: Quota | None = None, priv_domid: int = 0):
        self.quota = quota or Quota()
        self.quota_soft = {"memory": 0}
        self.priv_domid = priv_domid
        self.nodes: dict[str, Node] = {}
        self._valid_paths: set[str] = set()
        self.generation = 0
        self.nodecount: dict[int, int] = {}
        self.connections: dict[int, Connection] = {}
        self.next_conn_id = 1
        self.watch_table = WatchTable()
        self.domains: dict[int, Domain] = {}
        self.special_perms = {name: ((priv_domid, PERM_NONE),)
                              for name in SPECIAL_WATCHES}
        self.messages: list[str] = []   # CONTROL print/log output for the daemon
        self.trace = False              # CONTROL log on/off
        self.nodes["/"] = Node(b"", ((priv_domid, PERM_NONE),), [], 0)
        self.nodecount[priv_domid] = 1
        # Bytes of node records each domain owns (the "memory" quota).
        self.memory: dict[int, int] = {priv_domid: _entry_size(self.nodes["/"])}

    # ---- connections -------------------------------------------------
    def connect(self, domid: int = 0) -> Connection:
        conn = Connection(self, self.next_conn_id, domid, domid == self.priv_domid)
        self.next_conn_id += 1
        self.connections[conn.id] = conn
        return conn

    def disconnect(self, conn: Connection) -> None:
        self.watch_table.drop(conn)
        conn.transactions.clear()
        conn.events.clear()
        self.connections.pop(conn.id, None)

    def take_events(self):
        """Drain queued watch events: [(conn, [(path, token), ...]), ...]."""
        return self.watch_table.take_events()

    # ---- paths ------------------------------------------------------
    def canonical(self, conn: Connection, path: str) -> str:
        if path[:1] != "/":
            if not path or path[0] == "@" or len(path) > XENSTORE_REL_PATH_MAX:
                raise XsError("EINVAL", f"invalid path {path!r}")
            path = conn.home + "/" + path
        if path not in self._valid_paths:
            if (len(path) > XENSTORE_ABS_PATH_MAX or "//" in path
                    or (path[-1] == "/" and path != "/") or not _valid_chars(path)):
                raise XsError("EINVAL", f"invalid path {path!r}")
            if len(self._valid_paths) >= _VALID_PATH_CACHE:
                self._valid_paths.clear()
            self._valid_paths.add(path)
        if not conn.privileged:
            m = _local_prefix(path)
            if len(path) - (m.end() if m else 0) > self.quota.path_max:
                raise XsError("EINVAL", "path longer than path-max quota")
        return path

    # ---- the transaction-aware view of the tree ----------------------
    def _get(self, tx, path):
        if tx is None:
            return self.nodes.get(path)
        changes = tx.changes
        if path in changes:
            return changes[path]
        node = self.nodes.get(path)
        if path not in tx.accessed:
            if (len(tx.accessed) >= self.quota.transaction_nodes
                    and not tx.conn.privileged):
                raise XsError("ENOSPC", "transaction-nodes quota")
            tx.accessed[path] = node.generation if node else NO_GENERATION
        return node

    def _writable(self, tx, path, node):
        if tx is None:
            self.generation += 1
            node.generation = self.generation
            return node
        changes = tx.changes
        if path in changes:
            return changes[path]
        node = changes[path] = node.copy()
        return node

    def _add(self, tx, path, node):
        if tx is None:
            self.generation += 1
            node.generation = self.generation
            self.nodes[path] = node
            self._mem(node.perms[0][0], _entry_size(node))
        else:
            tx.changes[path] = node
        self._count(tx, node.perms[0][0], 1)

    def _remove(self, tx, path, node):
        if tx is None:
            del self.nodes[path]
            self._mem(node.perms[0][0], -_entry_size(node))
        else:
            tx.changes[path] = None
        self._count(tx, node.perms[0][0], -1)

    def _mem(self, domid, delta):
        self.memory[domid] = self.memory.get(domid, 0) + delta

    def _count(self, tx, domid, delta):
        d = self.nodecount if tx is None else tx.nodedelta
        d[domid] = d.get(domid, 0) + delta

    def _owned(self, tx, domid) -> int:
        n = self.nodecount.get(domid, 0)
        return n + tx.nodedelta.get(domid, 0) if tx is not None else n

    def _missing(self, conn, tx, path):
        """ENOENT, or EACCES if the nearest existing ancestor is unreadable."""
        while path != "/":
            path = parent_of(path)
            node = self._get(tx, path)
            if node is not None:
                if not perm_for_conn(conn, node.perms) & PERM_READ:
                    raise XsError("EACCES")
                break
        raise XsError("ENOENT")

    def _node(self, conn, tx, path, perm):
        node = self._get(tx, path)
        if node is None:
            self._missing(conn, tx, path)
        if not perm_for_conn(conn, node.perms) & perm:
            raise XsError("EACCES")
        return node

    def _check_size(self, conn, node):
        if not conn.privileged and _entry_size(node) >= self.quota.node_size:
            raise XsError("ENOSPC", "node-size quota")

    # ---- operations ------------------------------------------------
    # Paths arrive as the client gave them (absolute or relative to the
    # connection's home) and are checked here.
    def read(self, conn, tx, path: str) -> bytes:
        path = self.canonical(conn, path)
        if tx is None and conn.privileged:         # the hot path
            node = self.nodes.get(path)
            if node is not None:
                return node.value
        return self._node(conn, tx, path, PERM_READ).value

    def directory(self, conn, tx, path: str) -> list[str]:
        return self._node(conn, tx, self.canonical(conn, path), PERM_READ).children

    def directory_part(self, conn, tx, path: str) -> tuple[int, bytes]:
        node = self._node(conn, tx, self.canonical(conn, path), PERM_READ)
        blob = "".join(c + "\0" for c in node.children).encode()
        return node.generation, blob

    def get_perms(self, conn, tx, path: str) -> list[str]:
        if path in self.special_perms:
            return perms_to_strings(self.special_perms[path])
        return perms_to_strings(self._node(conn, tx, self.canonical(conn, path),
                                           PERM_READ).perms)

    def write(self, conn, tx, path: str, value: bytes) -> None:
        path = self.canonical(conn, path)
        if tx is None and conn.privileged:         # the hot path
            node = self.nodes.get(path)
            if node is not None:
                self.generation += 1
                node.generation = self.generation
                owner = node.perms[0][0]
                self.memory[owner] += len(value) - len(node.value)
                node.value = value
                if self.watch_table.index:
                    self.watch_table.fire(path, (node.perms,), False)
                return
        node = self._get(tx, path)
        if node is None:
            node = self._create(conn, tx, path, value)
        else:
            if not perm_for_conn(conn, node.perms) & PERM_WRITE:
                raise XsError("EACCES")
            if not conn.privileged:
                self._check_size(conn, Node(value, node.perms, node.children, 0))
            node = self._writable(tx, path, node)
            if tx is None:
                self._mem(node.perms[0][0], len(value) - len(node.value))
            node.value = value
        self._fire(tx, path, (node.perms,), False)

    def mkdir(self, conn, tx, path: str) -> None:
        path = self.canonical(conn, path)
        if self._get(tx, path) is not None:
            return
        node = self._create(conn, tx, path, b"")
        self._fire(tx, path, (node.perms,), False)

    def _create(self, conn, tx, path, value):
        """Create ``path`` and any missing ancestors, all or nothing."""
        missing = [path]
        ppath = parent_of(path)
        parent = self._get(tx, ppath)
        while parent is None:
            missing.append(ppath)
            ppath = parent_of(ppath)
            parent = self._get(tx, ppath)
        if not perm_for_conn(conn, parent.perms) & PERM_WRITE:
            raise XsError("EACCES")
        perms = parent.perms
        if not conn.privileged:
            # Inherit the parent's permissions; unprivileged creators own
            # what they create.
            perms = ((conn.domid, perms[0][1]),) + perms[1:]
            if self._owned(tx, conn.domid) + len(missing) > self.quota.nodes:
                raise XsError("ENOSPC", "nodes quota")
            self._check_size(conn, Node(value, perms, [], 0))
            grown = Node(parent.value, parent.perms,
                         parent.children + [basename(missing[-1])], 0)
            self._check_size(conn, grown)
        parent = self._writable(tx, ppath, parent)
        for p in reversed(missing):
            name = basename(p)
            parent.children.append(name)
            if tx is None:
                self._mem(parent.perms[0][0], len(name) + 1)
            node = Node(value if p == path else b"", perms, [], 0)
            self._add(tx, p, node)
            parent = node
        return node

    def rm(self, conn, tx, path: str) -> None:
        path = self.canonical(conn, path)
        if path == "/":
            raise XsError("EINVAL", "cannot remove the root")
        node = self._get(tx, path)
        ppath = parent_of(path)
        if node is None:
            # xenstored: removing a missing node is fine if its parent exists.
            if self._get(tx, ppath) is None:
                self._missing(conn, tx, ppath)
            return
        if not perm_for_conn(conn, node.perms) & PERM_WRITE:
            raise XsError("EACCES")
        parent = self._get(tx, ppath)
        name = basename(path)
        if name not in parent.children:
            # Only in a transaction: its copy of the parent predates the
            # node's creation outside it (so the commit will fail with
            # EAGAIN).  xenstored's delete_child() answers EIO; refuse
            # before touching anything.
            raise XsError("EIO", f"{path} is not a child of {ppath} in this transaction")
        self._delete_tree(conn, tx, path, node, top=True)
        parent = self._writable(tx, ppath, parent)
        parent.children.remove(name)
        if tx is None:
            self._mem(parent.perms[0][0], -(len(name) + 1))
        self._fire(tx, path, (node.perms, parent.perms), False)

    def _delete_tree(self, conn, tx, path, node, top):
        for name in list(node.children):
            cpath = path + "/" + name if path != "/" else "/" + name
            child = self._get(tx, cpath)
            if child is not None:
                self._delete_tree(conn, tx, cpath, child, top=False)
        # Each removed descendant fires the watches set exactly on it.
        if not top:
            self._fire(tx, path, (node.perms,), True)
        self._remove(tx, path, node)

    def set_perms(self, conn, tx, path: str, texts: list[str]) -> None:
        if not conn.privileged and len(texts) > self.quota.permissions:
            raise XsError("ENOSPC", "permissions quota")
        perms = parse_perms(texts)
        if path in self.special_perms:
            # Who may watch @introduceDomain / @releaseDomain (driver domains).
            self._privileged(conn)
            self.special_perms[path] = perms
            return
        path = self.canonical(conn, path)
        node = self._get(tx, path)
        if node is None:
            self._missing(conn, tx, path)
        if not perm_for_conn(conn, node.perms) & PERM_WRITE:
            raise XsError("EACCES")
        old_owner = node.perms[0][0]
        new_owner = perms[0][0]
        if not conn.privileged:
            if new_owner != old_owner:
                raise XsError("EPERM", "unprivileged domains may not change the owner")
            self._check_size(conn, Node(node.value, perms, node.children, 0))
        old_perms = node.perms
        node = self._writable(tx, path, node)
        if tx is None:
            self._mem(old_owner, -_entry_size(node))
        node.perms = perms
        if tx is None:
            self._mem(new_owner, _entry_size(node))
        if new_owner != old_owner:
            self._count(tx, old_owner, -1)
            self._count(tx, new_owner, 1)
        self._fire(tx, path, (old_perms, perms), False)

    # ---- watches ---------------------------------------------------
    def watch(self, conn, path: str, token: bytes) -> None:
        relative = None
        if path[:1] == "@":
            if "//" in path or not _valid_chars(path) or len(path) > XENSTORE_REL_PATH_MAX:
                raise XsError("EINVAL", f"invalid watch path {path!r}")
            abspath = path
        else:
            abspath = self.canonical(conn, path)
            if path[:1] != "/":
                relative = conn.home + "/"
        key = (abspath, token)
        if key in conn.watches:
            raise XsError("EEXIST")
        if not conn.privileged and len(conn.watches) >= self.quota.watches:
            raise XsError("E2BIG", "watches quota")
        conn.watches[key] = w = self.watch_table.add(conn, abspath, token, relative)
        # Fire once at registration: simplifies clients and restarts.
        self.watch_table.queue(conn, w, abspath)

    def unwatch(self, conn, path: str, token: bytes) -> None:
        abspath = path if path[:1] == "@" else self.canonical(conn, path)
        w = conn.watches.pop((abspath, token), None)
        if w is None:
            raise XsError("ENOENT")
        self.watch_table.remove(w)

    def reset_watches(self, conn) -> None:
        self.watch_table.drop(conn)
        conn.transactions.clear()

    def _fire(self, tx, path, perms_list, exact):
        if tx is not None:
            tx.events.append((path, perms_list, exact))
        elif self.watch_table.index:
            self.watch_table.fire(path, perms_list, exact)

    # ---- transactions ------------------------------------------------
    def lookup_tx(self, conn, txid: int):
        if not txid:
            return None
        tx = conn.transactions.get(txid)
        if tx is None:
            raise XsError("ENOENT", f"no transaction {txid}")
        return tx

    def transaction_start(self, conn, tx) -> int:
        if tx is not None:
            raise XsError("EBUSY", "nested transaction")
        if not conn.privileged and len(conn.transactions) >= self.quota.transactions:
            raise XsError("ENOSPC", "transactions quota")
        txid = conn.next_txid
        while txid == 0 or txid in conn.transactions:
            txid = (txid + 1) & 0xFFFFFFFF
        conn.next_txid = (txid + 1) & 0xFFFFFFFF
        conn.transactions[txid] = Transaction(txid, conn)
        return txid

    def transaction_end(self, conn, tx, commit: bool) -> None:
        if tx is None:
            raise XsError("ENOENT", "not in a transaction")
        del conn.transactions[tx.id]
        if not commit:
            return
        nodes = self.nodes
        for path, gen in tx.accessed.items():
            node = nodes.get(path)
            if (node.generation if node is not None else NO_GENERATION) != gen:
                raise XsError("EAGAIN")
        memory = self.memory
        for path, node in tx.changes.items():
            old = nodes.get(path)
            if old is not None:
                owner = old.perms[0][0]
                memory[owner] = memory.get(owner, 0) - _entry_size(old)
            if node is None:
                nodes.pop(path, None)
            else:
                owner = node.perms[0][0]
                memory[owner] = memory.get(owner, 0) + _entry_size(node)
                self.generation += 1
                node.generation = self.generation
                nodes[path] = node
        for domid, delta in tx.nodedelta.items():
            self.nodecount[domid] = self.nodecount.get(domid, 0) + delta
        if self.watch_table.index:
            for ev in tx.events:
                self.watch_table.fire(*ev)

    # ---- domains -------------------------------------------------------
    def _privileged(self, conn):
        if not conn.privileged:
            raise XsError("EACCES")

    def check_introduce(self, conn, domid: int, gfn: int, port: int) -> bool:
        """Validate an INTRODUCE: True for a new domain, False for a repeat
        with the same page (xenstored then only rebinds the event channel);
        another page for a known domain is EINVAL."""
        self._privileged(conn)
        if domid <= 0 or domid >= DOMID_FIRST_RESERVED or domid == self.priv_domid:
            raise XsError("EINVAL", f"bad domid {domid}")
        dom = self.domains.get(domid)
        if dom is None:
            return True
        if dom.gfn != gfn:
            raise XsError("EINVAL", f"domain {domid} already introduced with another page")
        dom.port = port
        return False

    def introduce(self, conn, domid: int, gfn: int, port: int) -> Connection:
        """Record the domain; returns its new engine connection."""
        dconn = self.connect(domid)
        self.domains[domid] = Domain(domid, dconn, gfn, port)
        self._fire_special("@introduceDomain")
        return dconn

    def release(self, conn, domid: int) -> Connection:
        self._privileged(conn)
        dom = self.domains.pop(domid, None)
        if dom is None:
            raise XsError("ENOENT", f"domain {domid} not introduced")
        self.disconnect(dom.conn)
        self._chown_orphans(domid)
        self._fire_special("@releaseDomain")
        return dom.conn

    def _chown_orphans(self, domid):
        # XSA-322: nodes a dead domain owned go to the privileged domain, so a
        # later domain with the same domid cannot inherit them.
        moved = 0
        for node in self.nodes.values():
            if node.perms[0][0] == domid:
                size = _entry_size(node)
                self._mem(domid, -size)
                self._mem(self.priv_domid, size)
                node.perms = ((self.priv_domid, node.perms[0][1]),) + node.perms[1:]
                moved += 1
        if moved:
            self.nodecount[domid] = self.nodecount.get(domid, 0) - moved
            self.nodecount[self.priv_domid] = self.nodecount.get(self.priv_domid, 0) + moved

    def _fire_special(self, name):
        self.watch_table.fire_special(name, self.special_perms[name])

    def is_domain_introduced(self, conn, domid: int) -> bool:
        return domid == self.priv_domid or domid in self.domains

    def get_domain_path(self, conn, domid: int) -> str:
        return f"/local/domain/{domid}"

    def resume(self, conn, domid: int) -> None:
        self._privileged(conn)
        dom = self.domains.get(domid)
        if dom is None:
            raise XsError("ENOENT")
        dom.shutdown = False

    def set_target(self, conn, domid: int, target: int) -> None:
        self._privileged(conn)
        dom = self.domains.get(domid)
        if dom is None or (target not in self.domains and target != self.priv_domid):
            raise XsError("ENOENT")
        dom.conn.target = target

    # ---- bookkeeping ---------------------------------------------------
    def node_count(self) -> int:
        return len(self.nodes)

    def check(self) -> list[str]:
        """Consistency check (CONTROL check): a list of problems found."""
        problems = []
        seen = {"/"}
        count: dict[int, int] = {}
        memory: dict[int, int] = {}
        stack = ["/"]
        while stack:
            path = stack.pop()
            node = self.nodes[path]
            owner = node.perms[0][0]
            count[owner] = count.get(owner, 0) + 1
            memory[owner] = memory.get(owner, 0) + _entry_size(node)
            for name in node.children:
                cpath = path + "/" + name if path != "/" else "/" + name
                if cpath not in self.nodes:
                    problems.append(f"missing child {cpath}")
                    continue
                seen.add(cpath)
                stack.append(cpath)
        for path in self.nodes:
            if path not in seen:
                problems.append(f"unreachable node {path}")
        for domid in set(count) | set(self.nodecount):
            if count.get(domid, 0) != self.nodecount.get(domid, 0):
                problems.append(f"domain {domid} owns {count.get(domid, 0)} nodes, "
                                f"accounted {self.nodecount.get(domid, 0)}")
        for domid in set(memory) | set(self.memory):
            if memory.get(domid, 0) != self.memory.get(domid, 0):
                problems.append(f"domain {domid} owns {memory.get(domid, 0)} bytes, "
                                f"accounted {self.memory.get(domid, 0)}")
        return problems


def create_skeleton(store: Store) -> None:
    """The nodes xenstored and xen-init-dom0 create at start."""
    dom0 = store.connect(store.priv_domid)
    for path in ("/local", "/local/domain", "/vm", "/tool"):
        store.mkdir(dom0, None, path)
    home = f"/local/domain/{store.priv_domid}"
    store.write(dom0, None, home + "/name", b"Domain-0")
    store.write(dom0, None, home + "/domid", str(store.priv_domid).encode())
    store.disconnect(dom0)
