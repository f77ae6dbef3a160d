"""xenstored as a process, driven by real clients: pyxs and Debian's
xenstore-utils (which find us through XENSTORED_PATH)."""

import os
import select
import subprocess
import threading

import pyxs
import pytest

from xen_core.abi import xs_wire as w

from .conftest import Daemon, RawClient


def xs(daemon, *argv, check=True):
    r = subprocess.run(argv, env=daemon.env, capture_output=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{argv} failed: {r.stderr.decode()}")
    return r


def test_skeleton_and_pid_file(daemon):
    with open(daemon.pid_file) as f:
        assert int(f.read()) == daemon.proc.pid
    with pyxs.Client(unix_socket_path=daemon.sock) as c:
        assert set(c.list(b"/")) == {b"local", b"vm", b"tool"}
        assert c[b"/local/domain/0/name"] == b"Domain-0"
        assert c[b"/local/domain/0/domid"] == b"0"


def test_sigterm_shuts_down_cleanly(tmp_path):
    d = Daemon(tmp_path)
    RawClient(d.sock).ok(w.XS_WRITE, b"/x")    # a live connection at shutdown
    assert d.stop() == 0
    assert not os.path.exists(d.sock)
    assert not os.path.exists(d.pid_file)


def test_pyxs_read_write_list_perms(daemon):
    with pyxs.Client(unix_socket_path=daemon.sock) as c:
        c.write(b"/vm/abc/name", b"guest")
        assert c.read(b"/vm/abc/name") == b"guest"
        c.mkdir(b"/vm/abc/empty")
        assert sorted(c.list(b"/vm/abc")) == [b"empty", b"name"]
        assert c.exists(b"/vm/abc") and not c.exists(b"/vm/nope")
        c.set_perms(b"/vm/abc/name", [b"n0", b"r5"])
        assert c.get_perms(b"/vm/abc/name") == [b"n0", b"r5"]
        c.delete(b"/vm/abc")
        assert not c.exists(b"/vm/abc")
        with pytest.raises(pyxs.PyXSError):
            c.read(b"/vm/abc/name")
        assert c.get_domain_path(3) == b"/local/domain/3"
        assert c.is_domain_introduced(0)
        assert not c.is_domain_introduced(3)


def test_pyxs_transactions(daemon):
    with pyxs.Client(unix_socket_path=daemon.sock) as a, \
            pyxs.Client(unix_socket_path=daemon.sock) as b:
        a.write(b"/cnt", b"0")
        a.transaction()
        a.write(b"/cnt", b"1")
        assert b.read(b"/cnt") == b"0"
        assert a.commit()
        assert b.read(b"/cnt") == b"1"
        # read-modify-write races: the loser must retry
        a.transaction()
        v = int(a.read(b"/cnt"))
        b.write(b"/cnt", b"100")
        a.write(b"/cnt", b"%d" % (v + 1))
        assert not a.commit()
        assert b.read(b"/cnt") == b"100"


def _next(events, timeout=30):
    """next() on a pyxs event generator, failing instead of hanging."""
    box = []
    t = threading.Thread(target=lambda: box.append(next(events)), daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise AssertionError(f"no watch event within {timeout}s")
    return box[0]


def test_pyxs_watch(daemon):
    with pyxs.Client(unix_socket_path=daemon.sock) as c, \
            pyxs.Client(unix_socket_path=daemon.sock) as other:
        m = c.monitor()
        m.watch(b"/watched", b"tok")
        events = m.wait()
        assert _next(events) == (b"/watched", b"tok")      # fires at registration
        other.write(b"/watched/a", b"1")
        assert _next(events) == (b"/watched/a", b"tok")
        other.delete(b"/watched")
        # Not an exact watch on /watched/a: only the removed node is reported.
        assert _next(events) == (b"/watched", b"tok")
        m.unwatch(b"/watched", b"tok")


def test_xenstore_utils(daemon, have_xenstore_utils):
    xs(daemon, "xenstore-write", "/tool/t/a", "1", "/tool/t/b", "two")
    assert xs(daemon, "xenstore-read", "/tool/t/b").stdout == b"two\n"
    assert xs(daemon, "xenstore-list", "/tool/t").stdout.split() == [b"a", b"b"]
    ls = xs(daemon, "xenstore-ls", "/tool").stdout.decode()
    assert 'a = "1"' in ls and 'b = "two"' in ls
    assert xs(daemon, "xenstore-exists", "/tool/t/a").returncode == 0
    assert xs(daemon, "xenstore-exists", "/tool/t/zz", check=False).returncode != 0
    xs(daemon, "xenstore-chmod", "/tool/t/a", "n0", "r7")
    assert "(n0,r7)" in xs(daemon, "xenstore-ls", "-p", "/tool/t").stdout.decode()
    xs(daemon, "xenstore-rm", "/tool/t/a")
    assert xs(daemon, "xenstore-list", "/tool/t").stdout.split() == [b"b"]
    r = xs(daemon, "xenstore-read", "/tool/t/a", check=False)
    assert r.returncode != 0
    # Relative paths of dom0 land in /local/domain/0.
    xs(daemon, "xenstore-write", "rel", "x")
    assert xs(daemon, "xenstore-read", "/local/domain/0/rel").stdout == b"x\n"


def test_xenstore_list_of_a_huge_directory(daemon, have_xenstore_utils):
    """More children than one payload holds: libxenstore falls back from
    DIRECTORY (E2BIG) to DIRECTORY_PART."""
    names = [b"entry-%04d-%s" % (i, b"y" * 30) for i in range(300)]
    c = RawClient(daemon.sock)
    for n in names:
        c.ok(w.XS_MKDIR, b"/tool/huge/" + n)
    out = xs(daemon, "xenstore-list", "/tool/huge").stdout.split()
    assert out == names


def _readline(f, timeout=30):
    """A line from a pipe, or fail instead of hanging the test run."""
    line = b""
    while not line.endswith(b"\n"):
        r, _, _ = select.select([f], [], [], timeout)
        if not r:
            raise AssertionError(f"no output within {timeout}s (got {line!r})")
        ch = os.read(f.fileno(), 1)
        if not ch:
            break
        line += ch
    return line


def test_xenstore_watch_tool(daemon, have_xenstore_utils):
    p = subprocess.Popen(["xenstore-watch", "-n", "3", "/tool/w"], env=daemon.env,
                         stdout=subprocess.PIPE)
    try:
        first = _readline(p.stdout)          # registration event: now watching
        assert first.strip() == b"/tool/w"
        xs(daemon, "xenstore-write", "/tool/w/x", "1")
        xs(daemon, "xenstore-write", "/tool/w", "2")
        assert _readline(p.stdout).strip() == b"/tool/w/x"
        assert _readline(p.stdout).strip() == b"/tool/w"
        assert p.wait(timeout=30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_quota_flags(tmp_path):
    d = Daemon(tmp_path, "-E", "7", "-W", "3", "-t", "2", "-S", "99", "-A", "4",
               "-M", "50", "-Q", "outstanding=9")
    try:
        listing = RawClient(d.sock).ok(w.XS_CONTROL, b"quota").rstrip(b"\0").decode()
        lines = {}
        for line in listing.splitlines():
            name, _, rest = line.partition(":")
            lines[name.strip()] = rest.split()[0]
        assert lines["nodes"] == "7" and lines["watches"] == "3"
        assert lines["transactions"] == "2" and lines["node-size"] == "99"
        assert lines["permissions"] == "4" and lines["path-max"] == "50"
        assert lines["outstanding"] == "9"
    finally:
        d.stop()


def test_bad_flag_is_one_line_error(tmp_path):
    r = subprocess.run([__import__("sys").executable, "-m", "xenstore.daemon", "-N",
                        "--socket", str(tmp_path / "s"), "-Q", "bogus=1"],
                       capture_output=True, cwd=str(tmp_path),
                       env=dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(
                           os.path.dirname(os.path.abspath(__file__))))))
    assert r.returncode == 2
    assert b"unknown quota 'bogus'" in r.stderr


def test_debug_request_log(daemon):
    c = RawClient(daemon.sock)
    c.ok(w.XS_CONTROL, b"log", b"on")
    c.ok(w.XS_READ, b"/local/domain/0/name")
    c.ok(w.XS_CONTROL, b"print", b"marker-123")
    c.ok(w.XS_CONTROL, b"log", b"off")
    c.ok(w.XS_READ, b"/local/domain/0/domid")
    with open(daemon.log) as f:
        text = f.read()
    assert "IN conn" in text and "READ" in text and "/local/domain/0/name" in text
    assert "marker-123" in text
    assert "/local/domain/0/domid" not in text


def test_many_clients_concurrently(daemon):
    errors = []

    def worker(i):
        try:
            with pyxs.Client(unix_socket_path=daemon.sock) as c:
                for j in range(50):
                    c.write(b"/tool/c%d" % i, b"%d" % j)
                    assert c.read(b"/tool/c%d" % i) == b"%d" % j
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_watch_event_order_through_the_daemon(daemon):
    watcher, writer = RawClient(daemon.sock), RawClient(daemon.sock)
    watcher.ok(w.XS_WATCH, b"/ord", b"A")
    watcher.ok(w.XS_WATCH, b"/ord/sub", b"B")
    for i in range(20):
        writer.write(b"/ord/sub/%d" % i if i % 2 else b"/ord/%d" % i, b"x")
    watcher.ok(w.XS_READ, b"/")        # everything before this reply has arrived
    expected = [(b"/ord", b"A"), (b"/ord/sub", b"B")]
    for i in range(20):
        if i % 2:
            p = b"/ord/sub/%d" % i
            expected += [(p, b"A"), (p, b"B")]     # registration order
        else:
            expected.append((b"/ord/%d" % i, b"A"))
    assert watcher.events == expected
    # An event caused by one's own request comes ahead of its reply.
    watcher.events.clear()
    t, body = watcher.request(w.XS_WRITE, b"/ord/own\0v")
    assert watcher.events == [(b"/ord/own", b"A")] and body == b"OK\0"
