"""What a backend needs from the grant-table layer, and nothing more.

Backends copy through grants (as QEMU's xen-block does with grant copy)
instead of keeping mappings: a request's pages are read or written once
and nothing of the guest stays mapped between requests. The daemon passes
an implementation over dom0/gntdev.py; unit tests pass one over a plain
buffer that enforces the same rules (unknown gref, read-only grant, page
bounds).
"""
from typing import Protocol

PAGE_SIZE = 4096


class GrantError(Exception):
    """A grant reference the frontend's domain did not grant (or granted
    read-only when the backend must write): fails that request only."""


class GrantAccess(Protocol):
    def copy_from(self, gref: int, offset: int, length: int) -> bytes:
        """Read `length` bytes at `offset` of the granted page."""

    def copy_to(self, gref: int, offset: int, data: bytes) -> None:
        """Write into the granted page (needs a writable grant)."""


def check_span(offset: int, length: int) -> None:
    if offset < 0 or length < 0 or offset + length > PAGE_SIZE:
        raise GrantError(f"span {offset}+{length} crosses the page")


def copy_from_many(grants, segs) -> list[bytes]:
    """[(gref, offset, length)] -> data each; one batched grant copy when
    the implementation offers it (a request's segments in one round trip)."""
    many = getattr(grants, "copy_from_many", None)
    if many is not None:
        return many(segs)
    return [grants.copy_from(*seg) for seg in segs]


def copy_to_many(grants, segs) -> None:
    """[(gref, offset, data)]."""
    many = getattr(grants, "copy_to_many", None)
    if many is not None:
        return many(segs)
    for seg in segs:
        grants.copy_to(*seg)
