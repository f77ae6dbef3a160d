"""Random operation sequences keep the store consistent: every node
reachable, node counts and memory accounted per owner (CONTROL check)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from xenstore.errors import XsError
from xenstore.store import Store, create_skeleton

NAMES = st.sampled_from(["a", "b", "c"])
PATHS = st.lists(NAMES, min_size=1, max_size=3).map(lambda p: "/t/" + "/".join(p))
OPS = st.one_of(
    st.tuples(st.just("write"), PATHS, st.binary(max_size=20)),
    st.tuples(st.just("mkdir"), PATHS),
    st.tuples(st.just("rm"), PATHS),
    st.tuples(st.just("chown"), PATHS, st.sampled_from([0, 5])),
    st.tuples(st.just("tx_start"),),
    st.tuples(st.just("tx_end"), st.booleans()),
)
CONNS = st.sampled_from(["dom0", "other", "guest"])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(CONNS, OPS), max_size=40))
def test_random_operations_stay_consistent(steps):
    s = Store()
    create_skeleton(s)
    dom0 = s.connect(0)
    s.write(dom0, None, "/t", b"")
    s.set_perms(dom0, None, "/t", ["b5"])        # the guest may write there too
    guest = s.introduce(dom0, 5, 0, 0)
    conns = {"dom0": dom0, "other": s.connect(0), "guest": guest}
    txs = {}
    for who, op in steps:
        conn = conns[who]
        tx = txs.get(who)
        try:
            if op[0] == "write":
                s.write(conn, tx, op[1], op[2])
            elif op[0] == "mkdir":
                s.mkdir(conn, tx, op[1])
            elif op[0] == "rm":
                s.rm(conn, tx, op[1])
            elif op[0] == "chown":
                s.set_perms(conn, tx, op[1], [f"b{op[2]}"])
            elif op[0] == "tx_start":
                txs[who] = s.lookup_tx(conn, s.transaction_start(conn, tx))
            elif op[0] == "tx_end":
                txs.pop(who, None)
                s.transaction_end(conn, tx, op[1])
        except XsError:
            pass
        assert s.check() == []
    for who, tx in txs.items():
        try:
            s.transaction_end(conns[who], tx, True)
        except XsError:
            pass
    assert s.check() == []
