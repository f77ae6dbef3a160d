"""What a backend needs from the grant-table layer, and nothing more.

Two ways to reach a request's pages, as Linux's xen-blkback has them:
- grant copy (as QEMU's xen-block): the pages are read or written once and
  nothing of the guest stays mapped between requests. Always safe, and the
  only choice when the frontend may revoke a grant after its response.
- persistent grants (`feature-persistent` on both ends): the frontend
  keeps a pool of pages granted for the life of the ring, so the backend
  maps each gref (writable) the first time it sees it and keeps it mapped
  until the ring is torn down, up to MAX_PERSISTENT_GRANTS per ring; data
  then moves between the image and the guest's page with no copy at all.
The daemon passes an implementation over dom0/gntdev.py; unit tests pass
one over a plain buffer that enforces the same rules (unknown gref,
read-only grant, page bounds).
"""
from typing import Protocol

PAGE_SIZE = 4096


class GrantError(Exception):
    """A grant reference the frontend's domain did not grant (or granted
    read-only when the backend must write): fails that request only."""


# Linux xen-blkback's max_persistent_grants default (per ring).
MAX_PERSISTENT_GRANTS = 1056


class GrantAccess(Protocol):
    def copy_from(self, gref: int, offset: int, length: int) -> bytes:
        """Read `length` bytes at `offset` of the granted page."""

    def copy_to(self, gref: int, offset: int, data: bytes) -> None:
        """Write into the granted page (needs a writable grant)."""

    def map_grants(self, grefs: list[int]) -> list:
        """Map the pages writable, all or none; a writable view of each.
        They stay mapped until the queue closes."""


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


class PersistentGrants:
    """One ring's persistently mapped grants: gref -> writable page view."""

    def __init__(self, mapper, limit: int = MAX_PERSISTENT_GRANTS):
        self.mapper = mapper          # GrantAccess.map_grants
        self.limit = limit
        self.pages: dict[int, memoryview] = {}

    def get(self, grefs: list[int]) -> list | None:
        """A view of each gref's page, mapping the new ones in one call;
        None when they would not fit under the limit (the caller then
        copies, as blkback maps such a request without keeping it).
        GrantError when the frontend did not grant one of them writable."""
        pages = self.pages
        missing = [g for g in dict.fromkeys(grefs) if g not in pages]
        if missing:
            if len(pages) + len(missing) > self.limit:
                return None
            for gref, view in zip(missing, self.mapper(missing)):
                pages[gref] = view
        return [pages[g] for g in grefs]
