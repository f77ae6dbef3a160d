"""Command-line handling of xenstored (no process started)."""

import pytest

from xenstore import daemon


def test_socket_path_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("XEN_RUN_DIR", str(tmp_path))
    monkeypatch.delenv("XENSTORED_PATH", raising=False)
    a = daemon.parse_args([])
    assert daemon.socket_path(a) == str(tmp_path / "xenstored" / "socket")
    monkeypatch.setenv("XENSTORED_PATH", "/x/env.sock")
    assert daemon.socket_path(a) == "/x/env.sock"
    assert daemon.socket_path(daemon.parse_args(["--legacy-socket"])) == \
        "/var/run/xenstored/socket"
    assert daemon.socket_path(daemon.parse_args(["--socket", "/y/s"])) == "/y/s"


def test_quota_flags_map_to_xens_names():
    q, soft = daemon.build_quota(daemon.parse_args(
        ["-E", "1", "-S", "2", "-W", "3", "-t", "4", "-A", "5", "-M", "6",
         "-Q", "outstanding=7", "-Q", "transaction-nodes=8", "-q", "memory=9"]))
    assert (q.nodes, q.node_size, q.watches, q.transactions, q.permissions,
            q.path_max, q.outstanding, q.transaction_nodes) == (1, 2, 3, 4, 5, 6, 7, 8)
    assert soft == {"memory": 9}


@pytest.mark.parametrize("arg", ["nodes", "nodes=x", "bogus=1"])
def test_bad_quota_arguments(arg):
    with pytest.raises(ValueError):
        daemon.build_quota(daemon.parse_args(["-Q", arg]))


def test_unusable_socket_path_is_a_one_line_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    rc = daemon.main(["-N", "--socket", str(blocker / "sub" / "socket"),
                      "--log", str(tmp_path / "log")])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot serve on" in err[0]
