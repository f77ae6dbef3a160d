"""The store engine, driven directly (no socket)."""

import pytest

from xenstore.errors import XsError
from xenstore.quota import Quota
from xenstore.store import Store, create_skeleton


def err(fn, *args):
    with pytest.raises(XsError) as e:
        fn(*args)
    return e.value.name


@pytest.fixture
def store():
    s = Store()
    create_skeleton(s)
    return s


@pytest.fixture
def dom0(store):
    return store.connect(0)


def guest(store, domid, dom0=None):
    """An introduced, unprivileged domain with its home made by dom0."""
    c0 = dom0 or store.connect(0)
    home = f"/local/domain/{domid}"
    store.mkdir(c0, None, home)
    store.set_perms(c0, None, home, [f"n{domid}"])
    return store.introduce(c0, domid, 0, 0)


def test_skeleton(store, dom0):
    assert store.directory(dom0, None, "/") == ["local", "vm", "tool"]
    assert store.read(dom0, None, "/local/domain/0/name") == b"Domain-0"
    assert store.read(dom0, None, "/local/domain/0/domid") == b"0"
    assert store.check() == []


def test_write_read_and_intermediate_nodes(store, dom0):
    n = store.node_count()
    store.write(dom0, None, "/a/b/c", b"v")
    assert store.node_count() == n + 3
    assert store.read(dom0, None, "/a/b") == b""
    assert store.read(dom0, None, "/a/b/c") == b"v"
    assert store.directory(dom0, None, "/a") == ["b"]


def test_rm_leaves_no_leak(store, dom0):
    n = store.node_count()
    for i in range(20):
        store.write(dom0, None, f"/t/{i}/x/y", b"1")
    store.rm(dom0, None, "/t")
    assert store.node_count() == n
    assert store.check() == []
    assert store.nodecount[0] == n


def test_errors(store, dom0):
    assert err(store.read, dom0, None, "/nope") == "ENOENT"
    assert err(store.rm, dom0, None, "/nope/deeper") == "ENOENT"
    store.rm(dom0, None, "/nope")        # missing node, parent exists: fine
    assert err(store.rm, dom0, None, "/") == "EINVAL"
    for bad in ("/a//b", "/a/", "/a b", "/é", "@x"):
        assert err(store.canonical, dom0, bad) == "EINVAL"
    assert store.canonical(dom0, "/") == "/"
    assert store.canonical(dom0, "x/y") == "/local/domain/0/x/y"


def test_mkdir_existing_is_ok(store, dom0):
    store.write(dom0, None, "/m", b"keep")
    store.mkdir(dom0, None, "/m")
    assert store.read(dom0, None, "/m") == b"keep"


# ---- permissions ---------------------------------------------------------
def test_unprivileged_permissions(store, dom0):
    g = guest(store, 5, dom0)
    store.write(g, None, "data", b"x")                      # relative, own home
    assert store.get_perms(dom0, None, "/local/domain/5/data") == ["n5"]
    assert err(store.read, g, None, "/local/domain/0/name") == "EACCES"
    assert err(store.write, g, None, "/tool/x", b"1") == "EACCES"
    store.write(dom0, None, "/shared", b"s")
    store.set_perms(dom0, None, "/shared", ["n0", "r5"])
    assert store.read(g, None, "/shared") == b"s"
    assert err(store.write, g, None, "/shared", b"t") == "EACCES"
    store.set_perms(dom0, None, "/shared", ["r0", "w5"])
    store.write(g, None, "/shared", b"t")
    assert err(store.read, g, None, "/shared") == "EACCES"  # w only
    # Unprivileged may not give its node away.
    assert err(store.set_perms, g, None, "/local/domain/5/data", ["n0"]) == "EPERM"
    store.set_perms(g, None, "/local/domain/5/data", ["n5", "r0", "b7"])
    # A missing node under an unreadable parent reads as EACCES, not ENOENT.
    assert err(store.read, g, None, "/local/domain/0/nope") == "EACCES"
    assert err(store.read, g, None, "/local/domain/5/nope") == "ENOENT"


def test_created_nodes_inherit_perms(store, dom0):
    g = guest(store, 6, dom0)
    store.set_perms(dom0, None, "/local/domain/6", ["n6", "r0", "r9"])
    store.write(g, None, "dev/x", b"1")
    assert store.get_perms(dom0, None, "/local/domain/6/dev/x") == ["n6", "r0", "r9"]
    store.write(dom0, None, "/local/domain/6/fromdom0", b"")
    # Privileged creators keep the inherited owner.
    assert store.get_perms(dom0, None, "/local/domain/6/fromdom0")[0] == "n6"


def test_set_target_grants_owner_rights(store, dom0):
    dm = guest(store, 2, dom0)
    guest(store, 3, dom0)
    assert err(store.read, dm, None, "/local/domain/3") == "EACCES"
    store.set_target(dom0, 2, 3)
    store.write(dm, None, "/local/domain/3/device-model", b"running")
    assert store.read(dm, None, "/local/domain/3/device-model") == b"running"
    assert err(store.set_target, dm, 2, 3) == "EACCES"


def test_bad_perm_strings(store, dom0):
    store.write(dom0, None, "/p", b"")
    for bad in (["x0"], ["r"], ["rr"], [], ["r70000"]):
        assert err(store.set_perms, dom0, None, "/p", bad) == "EINVAL"


# ---- transactions ----------------------------------------------------------
def test_transaction_sees_own_writes_and_isolates(store, dom0):
    other = store.connect(0)
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.write(dom0, tx, "/tx/a", b"1")
    assert store.read(dom0, tx, "/tx/a") == b"1"
    assert err(store.read, other, None, "/tx/a") == "ENOENT"
    store.transaction_end(dom0, tx, True)
    assert store.read(other, None, "/tx/a") == b"1"
    assert store.check() == []


def test_transaction_conflict_only_on_read_set(store, dom0):
    other = store.connect(0)
    store.write(dom0, None, "/c/read", b"0")
    store.write(dom0, None, "/c/unrelated", b"0")
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.read(dom0, tx, "/c/read")
    store.write(dom0, tx, "/c/out", b"1")
    store.write(other, None, "/c/unrelated", b"changed")   # not in the read set
    store.transaction_end(dom0, tx, True)
    assert store.read(other, None, "/c/out") == b"1"

    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.read(dom0, tx, "/c/read")
    store.write(dom0, tx, "/c/out", b"2")
    store.write(other, None, "/c/read", b"changed")
    assert err(store.transaction_end, dom0, tx, True) == "EAGAIN"
    assert store.read(other, None, "/c/out") == b"1"
    assert tx.id not in dom0.transactions


def test_transaction_child_add_conflicts(store, dom0):
    other = store.connect(0)
    store.mkdir(dom0, None, "/p")
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.write(dom0, tx, "/p/mine", b"1")
    store.write(other, None, "/p/theirs", b"1")
    assert err(store.transaction_end, dom0, tx, True) == "EAGAIN"


def test_transaction_rm_of_child_created_outside(store, dom0):
    # The transaction's copy of /p predates /p/theirs: removing it there is
    # EIO (xenstored's delete_child), changes nothing, and the commit fails.
    other = store.connect(0)
    store.mkdir(dom0, None, "/p")
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.write(dom0, tx, "/p/mine", b"1")
    store.write(other, None, "/p/theirs/deep", b"1")
    before = dict(tx.changes), dict(tx.nodedelta)
    assert err(store.rm, dom0, tx, "/p/theirs") == "EIO"
    assert (tx.changes, tx.nodedelta) == before
    assert err(store.transaction_end, dom0, tx, True) == "EAGAIN"
    assert store.read(dom0, None, "/p/theirs/deep") == b"1"
    assert store.check() == []


def test_transaction_nonexistent_read_conflicts_with_create(store, dom0):
    other = store.connect(0)
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    assert err(store.read, dom0, tx, "/late") == "ENOENT"
    store.write(other, None, "/late", b"x")
    assert err(store.transaction_end, dom0, tx, True) == "EAGAIN"


def test_transaction_abort_and_rm(store, dom0):
    n = store.node_count()
    store.write(dom0, None, "/r/a/b", b"1")
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.rm(dom0, tx, "/r")
    assert err(store.read, dom0, tx, "/r/a") == "ENOENT"
    assert store.read(dom0, None, "/r/a/b") == b"1"
    store.transaction_end(dom0, tx, False)
    assert store.read(dom0, None, "/r/a/b") == b"1"
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.rm(dom0, tx, "/r")
    store.transaction_end(dom0, tx, True)
    assert store.node_count() == n
    assert store.check() == []


def test_nested_and_unknown_transactions(store, dom0):
    txid = store.transaction_start(dom0, None)
    tx = store.lookup_tx(dom0, txid)
    assert err(store.transaction_start, dom0, tx) == "EBUSY"
    assert err(store.lookup_tx, dom0, txid + 100) == "ENOENT"
    assert err(store.transaction_end, dom0, None, True) == "ENOENT"


# ---- watches -------------------------------------------------------------
def events(store, conn):
    store.take_events()
    out, conn.events = conn.events, []
    return out


def test_watch_fires_at_registration_and_below(store, dom0):
    store.watch(dom0, "/w", b"tok")
    assert dom0.events == [(b"/w", b"tok")]
    dom0.events.clear()
    store.write(dom0, None, "/w/a/b", b"1")
    store.write(dom0, None, "/other", b"1")
    store.write(dom0, None, "/w", b"2")
    assert dom0.events == [(b"/w/a/b", b"tok"), (b"/w", b"tok")]


def test_watch_ordering_across_watches(store, dom0):
    store.watch(dom0, "/o/deep/x", b"second")
    store.watch(dom0, "/o", b"first")
    dom0.events.clear()
    store.write(dom0, None, "/o/deep/x", b"1")
    store.write(dom0, None, "/o/z", b"1")
    # Registration order within one change, change order across changes.
    assert dom0.events == [(b"/o/deep/x", b"second"), (b"/o/deep/x", b"first"),
                           (b"/o/z", b"first")]


def test_rm_fires_watches_inside_subtree(store, dom0):
    store.write(dom0, None, "/s/a/b", b"1")
    store.write(dom0, None, "/s/c", b"1")
    store.watch(dom0, "/s/a/b", b"b")
    store.watch(dom0, "/s/c", b"c")
    store.watch(dom0, "/", b"root")
    dom0.events.clear()
    store.rm(dom0, None, "/s")
    assert sorted(dom0.events) == sorted([(b"/s/a/b", b"b"), (b"/s/c", b"c"),
                                          (b"/s", b"root")])


def test_relative_watch_reports_relative_paths(store, dom0):
    g = guest(store, 7, dom0)
    store.watch(g, "device", b"t")
    assert g.events == [(b"device", b"t")]
    g.events.clear()
    store.write(dom0, None, "/local/domain/7/device/vif", b"")
    assert g.events == [(b"device/vif", b"t")]


def test_watch_needs_read_permission(store, dom0):
    g = guest(store, 8, dom0)
    store.watch(g, "/secret", b"t")
    g.events.clear()
    store.write(dom0, None, "/secret", b"x")            # inherits n0 from /
    assert g.events == []
    store.set_perms(dom0, None, "/secret", ["n0", "r8"])
    assert g.events == [(b"/secret", b"t")]


def test_transaction_events_fire_at_commit(store, dom0):
    store.watch(dom0, "/te", b"t")
    dom0.events.clear()
    tx = store.lookup_tx(dom0, store.transaction_start(dom0, None))
    store.write(dom0, tx, "/te/x", b"1")
    assert dom0.events == []
    store.transaction_end(dom0, tx, True)
    assert dom0.events == [(b"/te/x", b"t")]


def test_special_watches_and_release(store, dom0):
    store.watch(dom0, "@introduceDomain", b"i")
    store.watch(dom0, "@releaseDomain", b"r")
    dom0.events.clear()
    g = guest(store, 9, dom0)
    store.write(g, None, "mine", b"1")
    store.release(dom0, 9)
    assert dom0.events == [(b"@introduceDomain", b"i"), (b"@releaseDomain", b"r")]
    assert err(store.release, dom0, 9) == "ENOENT"
    # XSA-322: what the domain owned now belongs to dom0.
    assert store.get_perms(dom0, None, "/local/domain/9/mine")[0] == "n0"
    assert store.check() == []


def test_watch_errors(store, dom0):
    store.watch(dom0, "/e", b"t")
    assert err(store.watch, dom0, "/e", b"t") == "EEXIST"
    store.unwatch(dom0, "/e", b"t")
    assert err(store.unwatch, dom0, "/e", b"t") == "ENOENT"
    assert store.watch_table.index == {}


# ---- quotas -------------------------------------------------------------------
def quota_store(**kw):
    q = Quota()
    for k, v in kw.items():
        setattr(q, k, v)
    s = Store(q)
    create_skeleton(s)
    return s


def test_quota_defaults_are_xens():
    q = Quota()
    assert (q.nodes, q.watches, q.transactions, q.node_size, q.permissions,
            q.outstanding, q.path_max) == (1000, 128, 10, 2048, 5, 20, 2048)


def test_quota_nodes():
    s = quota_store(nodes=5)
    g = guest(s, 5)
    n = s.nodecount[5]                       # its home already counts
    for i in range(5 - n):
        s.write(g, None, f"n{i}", b"")
    assert err(s.write, g, None, "one-more", b"") == "ENOSPC"
    assert err(s.write, g, None, "x/y/z", b"") == "ENOSPC"
    s.rm(g, None, "n0")
    s.write(g, None, "one-more", b"")
    assert s.check() == []


def test_quota_node_size():
    s = quota_store(node_size=100)
    g = guest(s, 5)
    s.write(g, None, "small", b"x" * 10)
    assert err(s.write, g, None, "big", b"x" * 100) == "ENOSPC"
    assert err(s.write, g, None, "small", b"x" * 100) == "ENOSPC"
    assert s.read(g, None, "small") == b"x" * 10
    dom0 = s.connect(0)
    s.write(dom0, None, "/big", b"x" * 4000)         # dom0 is not limited


def test_quota_watches():
    s = quota_store(watches=3)
    g = guest(s, 5)
    for i in range(3):
        s.watch(g, f"w{i}", b"t")
    assert err(s.watch, g, "w9", b"t") == "E2BIG"


def test_quota_transactions():
    s = quota_store(transactions=2)
    g = guest(s, 5)
    s.transaction_start(g, None)
    s.transaction_start(g, None)
    assert err(s.transaction_start, g, None) == "ENOSPC"


def test_quota_permissions():
    s = quota_store(permissions=2)
    g = guest(s, 5)
    s.write(g, None, "p", b"")
    s.set_perms(g, None, "/local/domain/5/p", ["n5", "r0"])
    assert err(s.set_perms, g, None, "/local/domain/5/p", ["n5", "r0", "r1"]) == "ENOSPC"


def test_quota_path_max():
    s = quota_store(path_max=10)
    g = guest(s, 5)
    s.write(g, None, "a" * 10, b"")
    assert err(s.write, g, None, "a" * 11, b"") == "EINVAL"


def test_quota_transaction_nodes():
    s = quota_store(transaction_nodes=3)
    g = guest(s, 5)
    tx = s.lookup_tx(g, s.transaction_start(g, None))
    s.write(g, tx, "a", b"")                  # touches a and its parent
    assert err(s.write, g, tx, "b/c", b"") == "ENOSPC"


def test_special_watch_permissions(store, dom0):
    g = guest(store, 4, dom0)
    store.watch(g, "@releaseDomain", b"r")
    g.events.clear()
    guest(store, 12, dom0)
    store.release(dom0, 12)
    assert g.events == []                        # not allowed to see it
    assert store.get_perms(dom0, None, "@releaseDomain") == ["n0"]
    assert err(store.set_perms, g, None, "@releaseDomain", ["n0", "r4"]) == "EACCES"
    store.set_perms(dom0, None, "@releaseDomain", ["n0", "r4"])
    guest(store, 13, dom0)
    store.release(dom0, 13)
    assert g.events == [(b"@releaseDomain", b"r")]


def test_unprivileged_relative_paths_and_path_errors(store, dom0):
    g = guest(store, 3, dom0)
    assert store.canonical(g, "a/b") == "/local/domain/3/a/b"
    assert err(store.write, g, None, "a//b", b"") == "EINVAL"
    assert err(store.write, g, None, "a/", b"") == "EINVAL"
    assert err(store.write, g, None, "", b"") == "EINVAL"
    assert err(store.write, g, None, "/x" * 1600, b"") == "EINVAL"   # > 3072
