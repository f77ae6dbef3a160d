"""``xenstored``: the command line around XenStoreServer.

xenstored [--socket PATH] [--legacy-socket] [-F/--pid-file F] [-T/--log F]
          [-E N] [-S N] [-W N] [-t N] [-A N] [-M N] [-Q what=N] [-q what=N]
          [-N/--no-fork] [-V/--verbose] [--ring-dir DIR]
"""

import argparse
import asyncio
import logging
import os
import signal
import sys

from dom0 import rundir

from .quota import Quota, parse_quota_arg
from .server import XenStoreServer
from .store import Store, create_skeleton

LEGACY_SOCKET = "/var/run/xenstored/socket"


def socket_path(args) -> str:
    if args.socket:
        return args.socket
    if args.legacy_socket:
        return LEGACY_SOCKET
    return rundir.xenstored_socket(rundir.run_dir())


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xenstored", description="The xenstore daemon.")
    p.add_argument("--socket", metavar="PATH", help="Unix socket to listen on "
                   "(default $XENSTORED_PATH, else <run dir>/xenstored/socket)")
    p.add_argument("--legacy-socket", action="store_true",
                   help=f"listen on {LEGACY_SOCKET}")
    p.add_argument("-F", "--pid-file", metavar="FILE")
    p.add_argument("-T", "--log", "--trace-file", dest="log", metavar="FILE",
                   help="log file (requests are logged with -V or CONTROL log on)")
    p.add_argument("-N", "--no-fork", action="store_true")
    p.add_argument("-V", "--verbose", action="store_true", help="log every request")
    p.add_argument("-E", "--entry-nb", type=int, metavar="NB", help="nodes per domain")
    p.add_argument("-S", "--entry-size", type=int, metavar="SIZE", help="max node size")
    p.add_argument("-W", "--watch-nb", type=int, metavar="NB", help="watches per domain")
    p.add_argument("-t", "--transaction", type=int, metavar="NB",
                   help="transactions per domain")
    p.add_argument("-A", "--perm-nb", type=int, metavar="NB", help="permissions per node")
    p.add_argument("-M", "--path-max", type=int, metavar="CHARS", help="max path length")
    p.add_argument("-Q", "--quota", action="append", default=[], metavar="WHAT=NB")
    p.add_argument("-q", "--quota-soft", action="append", default=[], metavar="WHAT=NB")
    p.add_argument("--privcmd-run-dir", metavar="DIR", help="attach introduced domains "
                   "through xen-core's privileged interface in run dir DIR")
    p.add_argument("--ring-dir", metavar="DIR", help="attach introduced domains "
                   "through file-backed pages and FIFOs in DIR")
    return p.parse_args(argv)


def build_quota(args) -> tuple[Quota, dict]:
    q = Quota()
    for name, val in (("nodes", args.entry_nb), ("node-size", args.entry_size),
                      ("watches", args.watch_nb), ("transactions", args.transaction),
                      ("permissions", args.perm_nb), ("path-max", args.path_max)):
        if val is not None:
            q.set(name, val)
    for arg in args.quota:
        q.set(*parse_quota_arg(arg))
    soft = {}
    for arg in args.quota_soft:
        name, val = parse_quota_arg(arg)
        if name != "memory":
            raise ValueError(f"no soft quota {name!r} (only memory)")
        soft[name] = val
    return q, soft


def _daemonize():
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    fd = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(fd, i)


async def serve(args, quota, soft) -> None:
    store = Store(quota)
    store.quota_soft.update(soft)
    create_skeleton(store)
    attacher = None
    if args.privcmd_run_dir:
        from dom0.privcmd import Privcmd
        from dom0.xs_attach import PrivcmdDomainAttacher
        attacher = PrivcmdDomainAttacher(Privcmd(args.privcmd_run_dir))
    elif args.ring_dir:
        from .attach import FileDomainAttacher
        os.makedirs(args.ring_dir, exist_ok=True)
        attacher = FileDomainAttacher(args.ring_dir)
    server = XenStoreServer(store, attacher)
    path = socket_path(args)
    await server.start_unix(path)
    logging.getLogger("xenstored").info("listening on %s", path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await server.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        logging.getLogger("xenstored").info("stopped")


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        quota, soft = build_quota(args)
    except (ValueError, KeyError) as e:
        print(f"xenstored: {e}", file=sys.stderr)
        return 2
    handlers = [logging.FileHandler(args.log)] if args.log else [logging.StreamHandler()]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        handlers=handlers,
                        format="%(asctime)s xenstored: %(message)s")
    if not args.no_fork:
        _daemonize()
    with rundir.pid_file(args.pid_file):
        try:
            asyncio.run(serve(args, quota, soft))
        except OSError as e:
            logging.getLogger("xenstored").error("cannot serve on %s: %s", socket_path(args), e)
            print(f"xenstored: cannot serve on {socket_path(args)}: {e.strerror or e}",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
