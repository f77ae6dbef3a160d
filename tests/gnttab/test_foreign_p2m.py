"""GuestMemory's grant mappings of another domain's frames, with a recording
engine: what the engine is told (runs, read-only), what page walks and
hypercall copies see, and the granter's memory outliving it while mapped."""
import os

import pytest

from xen_core.memory import EngineMapError, GrantOverlap, GuestFault, GuestMemory

PAGE = 4096


class Engine:
    """Records the engine's slots: gpa -> (size, host, readonly)."""

    def __init__(self, refuse_ro=False):
        self.slots = {}
        self.refuse_ro = refuse_ro

    def map_memory(self, gpa, size, host, readonly=False):
        if readonly and self.refuse_ro:
            raise OSError("no read-only slots")
        assert not any(g < gpa + size and gpa < g + s for g, (s, _, _) in self.slots.items())
        self.slots[gpa] = (size, host, readonly)

    def unmap_memory(self, gpa, size):
        assert self.slots.pop(gpa)[0] == size


@pytest.fixture
def pair():
    a, b = GuestMemory("ga", 4), GuestMemory("gb", 4)
    a.populate(range(4))
    b.populate(range(4))
    eb = Engine()
    b.attach(eb)
    a.write_phys(1 * PAGE, b"granted page")
    yield a, b, eb
    b.close()
    a.close()


def test_map_foreign_replaces_the_gfn_in_engine_and_walks(pair):
    a, b, eb = pair
    b.write_phys(2 * PAGE, b"old ram")
    b.map_foreign(2, a, a.frame_of(1), readonly=False)
    assert eb.slots == {0: (2 * PAGE, b.host_base, False),
                        2 * PAGE: (PAGE, a.host_base + PAGE, False),
                        3 * PAGE: (PAGE, b.host_base + 3 * PAGE, False)}
    assert b.read_phys(2 * PAGE, 12) == b"granted page"
    b.write_phys(2 * PAGE, b"reply")                 # a hypercall copy into it
    assert a.read_phys(PAGE, 5) == b"reply"
    assert 2 not in b.p2m and b.tot_pages == 4        # the RAM page stays the domain's
    with pytest.raises(GrantOverlap):
        b.map_foreign(2, a, a.frame_of(0), readonly=False)
    with pytest.raises(GrantOverlap):                # nor a Xen page over it
        b.place_xen_frame(2, b.xenheap_frame(0))
    assert b.unmap_foreign(2, a, a.frame_of(1))
    assert not b.unmap_foreign(2, a, a.frame_of(1))
    with pytest.raises(GuestFault):                  # the gfn is empty now
        b.read_phys(2 * PAGE, 1)
    assert eb.slots == {0: (2 * PAGE, b.host_base, False),
                        3 * PAGE: (PAGE, b.host_base + 3 * PAGE, False)}
    assert a._holds == 0


def test_readonly_foreign_refuses_writes(pair):
    a, b, eb = pair
    b.map_foreign(1, a, a.frame_of(1), readonly=True)
    assert eb.slots[PAGE] == (PAGE, a.host_base + PAGE, True)
    assert b.read_phys(PAGE, 12) == b"granted page"
    with pytest.raises(GuestFault):
        b.write_phys(PAGE, b"x")
    with pytest.raises(GuestFault):                  # all or nothing across pages
        b.write_phys(PAGE - 2, b"abcd")
    assert b.read_phys(PAGE - 2, 2) == b"\0\0" and a.read_phys(PAGE, 1) == b"g"


def test_granter_memory_outlives_it_while_mapped(pair):
    a, b, _ = pair
    b.map_foreign(3, a, a.frame_of(1), readonly=False)
    fd = a.fd
    a.close()
    assert a.closed and not a.mm.closed              # kept for the mapper
    os.fstat(fd)
    assert b.read_phys(3 * PAGE, 12) == b"granted page"
    b.write_phys(3 * PAGE, b"still here")
    with pytest.raises(GuestFault):                  # but no new mappings of it
        b.map_foreign(2, a, a.frame_of(1), readonly=False)
    assert b.unmap_foreign(3, a, a.frame_of(1))
    assert a.mm.closed
    with pytest.raises(OSError):
        os.fstat(fd)


def test_mapper_closing_drops_its_holds(pair):
    a, b, _ = pair
    b.map_foreign(0, a, a.frame_of(2), readonly=True)
    b.map_foreign(1, a, a.frame_of(2), readonly=False)
    assert a._holds == 2
    a.close()
    b.close()
    assert a._holds == 0 and a.mm.closed


def test_engine_refusal_restores_the_gfn(pair):
    a, b, _ = pair
    b.detach()
    eb = Engine(refuse_ro=True)
    b.attach(eb)
    b.write_phys(2 * PAGE, b"mine")
    with pytest.raises(EngineMapError):
        b.map_foreign(2, a, a.frame_of(1), readonly=True)
    assert b.read_phys(2 * PAGE, 4) == b"mine" and a._holds == 0
    pages = {g + i * PAGE: h + i * PAGE for g, (n, h, ro) in eb.slots.items() if not ro
             for i in range(n // PAGE)}
    assert pages == {i * PAGE: b.host_base + i * PAGE for i in range(4)}   # as before


def test_a_referenced_frame_outlives_its_gfn(pair):
    """decrease_reservation of a granted, mapped page: the frame stays with
    the mapper until the grant's last unpin (Xen's page reference)."""
    a, _, _ = pair
    frame = a.frame_of(1)
    a.get_page(frame)
    assert a.remove(1)
    assert a.tot_pages == 4 and frame not in a._free_ram
    assert bytes(a.mm[frame * PAGE:frame * PAGE + 12]) == b"granted page"
    assert a.populate([1]) == 0                      # not handed out again
    a.put_page(frame)
    assert frame in a._free_ram and a.tot_pages == 3
    assert bytes(a.mm[frame * PAGE:frame * PAGE + 12]) == bytes(12)   # scrubbed
    assert a.populate([1]) == 1 and a.frame_of(1) == frame
