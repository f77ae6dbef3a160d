"""xen-backendd: dom0's block and network backends.

    xen-backendd [--run-dir D] [--pid-file F] [--log L] [--switch-only]

As Linux's xenbus backend bus in dom0: devices are the directories
`/local/domain/0/backend/{vbd,vif}/<domid>/<devid>` that the toolstack
writes (libxl's keys); each is probed once its `frontend` key is there,
then follows its frontend's `state`. One watch on `/local/domain` wakes
the main thread, which alone talks to xenstore; queue threads serve the
rings. A device whose frontend misbehaves is moved to Closing; the daemon
and every other device carry on.
"""
from __future__ import annotations

import argparse
import errno
import logging
import os
import queue
import signal
import sys
import threading

import pyxs

from dom0 import rundir

from .device import DeviceError
from .vbd import VbdDevice

log = logging.getLogger("xen-backendd")

BACKEND_ROOT = "/local/domain/0/backend"


class Xs:
    """The main thread's xenstore handle: str paths, None for missing."""

    def __init__(self, socket_path: str):
        self.client = pyxs.Client(unix_socket_path=socket_path)
        self.client.connect()

    def read(self, path: str) -> str | None:
        try:
            v = self.client.read(path.encode())
        except pyxs.PyXSError as e:
            if e.args and e.args[0] in (errno.ENOENT, errno.EACCES, errno.EINVAL):
                return None
            raise
        return None if v is None else v.decode(errors="replace")

    def write(self, path: str, value: str) -> None:
        self.client.write(path.encode(), value.encode())

    def list(self, path: str) -> list[str]:
        try:
            return [n.decode() for n in self.client.list(path.encode())]
        except pyxs.PyXSError:
            return []

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass


class Backendd:
    def __init__(self, socket_path: str, transport, kinds=None):
        self.socket_path = socket_path
        self.xs = Xs(socket_path)
        self.transport = transport
        self.kinds = kinds or default_kinds()
        self.devices: dict[tuple[str, int, int], object] = {}
        self.failed: set[tuple[str, int, int]] = set()
        self.removed: set[tuple[str, int, int]] = set()
        self.jobs: queue.Queue = queue.Queue()
        self.stopping = False
        self.switch_only = False
        self.watch_client = None
        self.switches: dict[str, object] = {}      # bridge name -> built-in switch
        self.ready = threading.Event()

    def post(self, fn) -> None:
        """Run `fn` on the main thread (queue threads report errors so)."""
        self.jobs.put(fn)

    def rescan(self) -> None:
        seen = set()
        for kind, cls in self.kinds.items():
            for dom in self.xs.list(f"{BACKEND_ROOT}/{kind}"):
                for dev in self.xs.list(f"{BACKEND_ROOT}/{kind}/{dom}"):
                    if not (dom.isdigit() and dev.isdigit()):
                        continue
                    key = (kind, int(dom), int(dev))
                    seen.add(key)
                    if key not in self.devices and key not in self.failed \
                            and key not in self.removed:
                        self._probe(key, cls)
        for key in list(self.devices):
            dev = self.devices[key]
            try:
                dev.update()
            except (DeviceError, pyxs.PyXSError, OSError) as e:
                log.error("%s: %s", dev.name, e)
                dev.fail(str(e))
            if dev.gone:
                del self.devices[key]
                self.removed.add(key)     # until the toolstack removes its directory
        self.failed &= seen
        self.removed &= seen

    def _probe(self, key, cls) -> None:
        kind, domid, devid = key
        bpath = f"{BACKEND_ROOT}/{kind}/{domid}/{devid}"
        if self.xs.read(f"{bpath}/frontend") is None or self.xs.read(f"{bpath}/state") is None:
            return          # the toolstack is still writing it
        dev = cls(self, domid, devid, bpath)
        try:
            dev.probe()
        except (DeviceError, pyxs.PyXSError, OSError) as e:
            log.error("%s: %s", dev.name, e)
            self.failed.add(key)
            dev.perform([*dev.sm.fail()])
            try:
                dev.xs.write(f"/local/domain/0/error/backend/{kind}/{domid}/{devid}/error", str(e))
            except pyxs.PyXSError:
                pass
            dev.teardown()
            return
        log.info("%s: probed (%s)", dev.name, dev.fpath)
        self.devices[key] = dev

    def watch(self) -> None:
        client = self.watch_client = pyxs.Client(unix_socket_path=self.socket_path)
        client.connect()
        try:
            with client.monitor() as m:
                m.watch(b"/local/domain", b"domains")
                self.ready.set()
                for path, _ in m.wait():
                    if self.stopping:
                        return
                    p = path.decode(errors="replace")
                    if p.startswith(BACKEND_ROOT) or p.endswith("/state") or "/device/" in p:
                        self.post(None)
        except (pyxs.PyXSError, OSError, ConnectionError) as e:
            if not self.stopping:
                log.error("xenstore watch ended: %s", e)
                self.stop()
        finally:
            try:
                client.close()
            except Exception:
                pass

    def stop(self) -> None:
        self.stopping = True
        self.jobs.put(None)

    def run(self) -> None:
        threading.Thread(target=self.watch, daemon=True, name="xs-watch").start()
        self.ready.wait(30)
        self.rescan()
        while not self.stopping:
            job = self.jobs.get()
            if self.stopping:
                break
            try:
                if job is not None:
                    job()
                while True:            # fold a burst of watch events into one rescan
                    job = self.jobs.get_nowait()
                    if job is not None:
                        job()
            except queue.Empty:
                pass
            except Exception as e:     # a bug in one device must not stop the others
                log.exception("job failed: %s", e)
            try:
                self.rescan()
            except (pyxs.PyXSError, OSError) as e:
                log.error("rescan: %s", e)

    def close(self) -> None:
        for dev in self.devices.values():
            dev.disconnect()
            dev.teardown()
        self.devices.clear()
        self.xs.close()
        if self.watch_client is not None:
            try:
                self.watch_client.close()
            except Exception:
                pass


def default_kinds() -> dict:
    kinds = {"vbd": VbdDevice}
    try:
        from .vif import VifDevice
        kinds["vif"] = VifDevice
    except ImportError:
        pass
    return kinds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="xen-backendd", description="the vbd and vif backends")
    p.add_argument("--run-dir", default=None)
    p.add_argument("--pid-file")
    p.add_argument("--log", help="log file (default stderr)")
    p.add_argument("--switch-only", action="store_true",
                   help="never use Linux bridges: every vif joins the built-in switch")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    rdir = args.run_dir or rundir.run_dir()
    logging.basicConfig(filename=args.log, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s xen-backendd: %(message)s")
    from dom0.privcmd import Privcmd
    from .transport import XenTransport
    try:
        pc = Privcmd(rdir)
        d = Backendd(rundir.xenstored_socket(rdir), XenTransport(pc))
    except (ConnectionError, OSError, pyxs.PyXSError) as e:
        print(f"xen-backendd: {e}", file=sys.stderr)
        return 1
    # XEN_BACKENDD_SWITCH_ONLY=1: for test dom0s that must not touch the
    # host's network even as root.
    d.switch_only = args.switch_only or os.environ.get("XEN_BACKENDD_SWITCH_ONLY") == "1"
    signal.signal(signal.SIGTERM, lambda *_: d.stop())
    signal.signal(signal.SIGINT, lambda *_: d.stop())
    try:
        with rundir.pid_file(args.pid_file):
            d.run()
    finally:
        d.close()
        pc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
