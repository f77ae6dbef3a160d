"""Per-domain limits xenstored applies to unprivileged domains.

Defaults and names are Xen 4.17's C xenstored ones; each is settable on the
command line (-E -S -W -t -A -M, or ``-Q name=value``) and at run time with
``CONTROL quota``.  Privileged connections (dom0) are never limited.
"""

from dataclasses import dataclass, fields

from xen_core.abi.xs_wire import XENSTORE_REL_PATH_MAX

# name -> (attribute, description), in the order `CONTROL quota` lists them.
QUOTA_NAMES = {
    "nodes": ("nodes", "Nodes per domain"),
    "watches": ("watches", "Watches per domain"),
    "transactions": ("transactions", "Transactions per domain"),
    "outstanding": ("outstanding", "Outstanding requests per domain"),
    "transaction-nodes": ("transaction_nodes", "Max. number of accessed nodes per transaction"),
    "memory": ("memory", "Bytes of nodes a domain may own before xenstored "
               "stops reading its requests (0 = no limit)"),
    "node-size": ("node_size", "Max. size of a node"),
    "path-max": ("path_max", "Max. length of a node path"),
    "permissions": ("permissions", "Max. number of permissions per node"),
}


@dataclass
class Quota:
    nodes: int = 1000
    watches: int = 128
    transactions: int = 10
    outstanding: int = 20
    transaction_nodes: int = 1024
    memory: int = 0
    node_size: int = 2048
    path_max: int = XENSTORE_REL_PATH_MAX
    permissions: int = 5

    def set(self, name: str, value: int) -> None:
        if name not in QUOTA_NAMES:
            raise KeyError(name)
        if value < 0:
            raise ValueError(f"quota {name} must not be negative")
        setattr(self, QUOTA_NAMES[name][0], value)

    def get(self, name: str) -> int:
        return getattr(self, QUOTA_NAMES[name][0])

    def copy(self) -> "Quota":
        return Quota(**{f.name: getattr(self, f.name) for f in fields(self)})


def parse_quota_arg(arg: str) -> tuple[str, int]:
    """``"nodes=100"`` -> ("nodes", 100); ValueError naming the problem."""
    name, eq, val = arg.partition("=")
    if not eq:
        raise ValueError(f"quotas must be specified via <what>=<nb>: {arg!r}")
    if name not in QUOTA_NAMES:
        raise ValueError(f"unknown quota {name!r}")
    if not val.isdigit():
        raise ValueError(f"invalid quota value {val!r}")
    return name, int(val)
