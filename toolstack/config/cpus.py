"""CPU sets for `cpus` / `cpus_soft` (xl's parse_cpurange).

"0-3,5,^1", "all", "nodes:0", "node:0-1,^3".  A bitmap has room for the
host's CPUs, rounded up to whole bytes as libxl_cpu_bitmap_alloc does; bits
beyond it are dropped (libxl_bitmap_set ignores them).
"""
from __future__ import annotations

import os
import re

from .errors import ConfigError

_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?\Z")


def host_cpus() -> int:
    return os.cpu_count() or 1


def bitmap_bits(ncpus: int) -> int:
    return (ncpus + 7) // 8 * 8


def parse_cpurange(text: str, ncpus: int, node_cpus=None, source=None) -> tuple:
    """The set bits for `text`, given `ncpus` host CPUs (one NUMA node by default)."""
    size = bitmap_bits(ncpus)
    if node_cpus is None:
        node_cpus = {0: range(ncpus)}
    bits = set()
    for part in (p for p in text.split(",") if p):     # strtok skips empties
        neg = part.startswith("^")
        if neg:
            part = part[1:]
        nodes = False
        for prefix in ("node:", "nodes:"):
            if part.startswith(prefix):
                part, nodes = part[len(prefix):], True
                break
        if part == "all":
            if neg:
                raise ConfigError("Can't combine \"^\" and \"all\".", source)
            bits |= set(range(size))
            continue
        m = _RANGE.match(part)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ConfigError(f"Invalid pcpu range: {part}.", source)
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        for i in range(lo, hi + 1):
            if nodes:
                if i not in node_cpus:
                    raise ConfigError(f"Invalid NUMA node: {i}.", source)
                sel = set(node_cpus[i])
            else:
                sel = {i}
            sel = {c for c in sel if c < size}
            bits = bits - sel if neg else bits | sel
    return tuple(sorted(bits))
