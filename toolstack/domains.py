"""Domains as xl sees them: the core's list joined with each domain's
xenstore home, name lookup, and teardown (libxl_domain_destroy's cleanup).
"""
from __future__ import annotations

import json
import os
import uuid as uuidlib
from dataclasses import dataclass

from dom0 import rundir
from dom0.privcmd import Privcmd, XenError
from xen_core.abi import xen as xenabi

from .xs import PyXSError, Xs

DOM0_NAME = "Domain-0"


class DomainNotFound(Exception):
    pass


@dataclass
class DomInfo:
    domid: int
    name: str
    info: dict          # the core's domain_info

    @property
    def uuid(self) -> str:
        return str(uuidlib.UUID(self.info.get("handle") or "0" * 32))


class Session:
    """What one xl command needs: the core, the store, the run dir."""

    def __init__(self, rdir: str):
        self.rdir = rdir
        self.pc = Privcmd(rdir)
        try:
            self.xs = Xs(rdir)
        except ConnectionError:
            self.pc.close()
            raise

    def close(self) -> None:
        self.xs.close()
        self.pc.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- lookup ----------------------------------------------------------------
    def name_of(self, domid: int) -> str | None:
        if domid == 0:
            return self.xs.read("/local/domain/0/name", DOM0_NAME)
        return self.xs.read(f"/local/domain/{domid}/name")

    def domains(self) -> list[DomInfo]:
        out = []
        for info in sorted(self.pc.domain_list(), key=lambda i: i["domid"]):
            name = self.name_of(info["domid"])
            if name is None:      # being built or torn down: libxl shows no name
                name = ""
            out.append(DomInfo(info["domid"], name, info))
        return out

    def domid_by_name(self, name: str) -> int | None:
        if name == DOM0_NAME:
            return 0
        for d in self.pc.domain_list():
            if d["domid"] != 0 and self.name_of(d["domid"]) == name:
                return d["domid"]
        return None

    def resolve(self, dom: str) -> int:
        """xl's find_domain: a domid, or a name."""
        if dom.isdigit():
            domid = int(dom)
            try:
                self.pc.domain_info(domid)
            except XenError:
                raise DomainNotFound(dom) from None
            return domid
        domid = self.domid_by_name(dom)
        if domid is None:
            raise DomainNotFound(dom)
        return domid

    # -- teardown --------------------------------------------------------------
    def destroy(self, domid: int) -> None:
        """The core destroys the domain; we clear its store and our state."""
        if domid == 0:
            raise XenError(xenabi.EINVAL, "EINVAL", "domain 0 cannot be destroyed")
        vm = self.xs.read(f"/local/domain/{domid}/vm")
        try:
            self.pc.domain_destroy(domid)
        except XenError as e:
            if e.errno != xenabi.ESRCH:
                raise
        self.cleanup_store(domid, vm)

    def cleanup_store(self, domid: int, vm: str | None) -> None:
        try:
            self.xs.release(domid)       # @releaseDomain; drops its watches
        except PyXSError:
            pass                         # never introduced (or already gone)
        for path in (f"/local/domain/{domid}", f"/libxl/{domid}",
                     f"/local/domain/0/backend/console/{domid}",
                     f"/local/domain/0/backend/vbd/{domid}", f"/local/domain/0/backend/vif/{domid}"):
            self.xs.rm(path)
        if vm and vm.startswith("/vm/"):
            self.xs.rm(vm)
        remove_userdata(self.rdir, domid)


# -- libxl's per-domain "userdata" (the config xl created it from) -------------
def userdata_path(rdir: str, domid: int) -> str:
    return os.path.join(rundir.userdata_dir(rdir), f"userdata-d.{domid}.libxl-json")


def save_userdata(rdir: str, domid: int, config_json: str) -> None:
    os.makedirs(rundir.userdata_dir(rdir), exist_ok=True)
    tmp = userdata_path(rdir, domid) + ".tmp"
    with open(tmp, "w") as f:
        f.write(config_json)
    os.replace(tmp, userdata_path(rdir, domid))


def load_userdata(rdir: str, domid: int) -> dict | None:
    try:
        with open(userdata_path(rdir, domid)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def remove_userdata(rdir: str, domid: int) -> None:
    try:
        os.unlink(userdata_path(rdir, domid))
    except FileNotFoundError:
        pass
