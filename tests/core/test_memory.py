"""p2m, engine mappings and the guest page walk (xen_core.memory)."""
import pytest

from xen_core.memory import (CR0_PE, CR0_PG, CR0_WP, CR4_PAE, CR4_PSE, EFER_LMA, GuestFault,
                             GuestMemory, PagingState, PTE_P, PTE_PS, PTE_RW)

PAGE = 4096


class RecordingMachine:
    """The engine contract's mapping rules, enforced: no overlapping maps,
    unmaps only of exactly what was mapped."""

    def __init__(self):
        self.regions = {}

    def map_memory(self, gpa, size, host):
        assert gpa % PAGE == 0 and size % PAGE == 0 and size > 0
        for g, (s, _) in self.regions.items():
            assert not (gpa < g + s and g < gpa + size), "overlapping map"
        self.regions[gpa] = (size, host)

    def unmap_memory(self, gpa, size):
        assert self.regions.pop(gpa)[0] == size

    def host_of(self, gpa):
        for g, (s, h) in self.regions.items():
            if g <= gpa < g + s:
                return h + gpa - g
        return None


@pytest.fixture
def mem():
    m = GuestMemory("test", 64)
    yield m
    m.close()


def test_populate_maps_one_run(mem):
    machine = RecordingMachine()
    mem.attach(machine)
    assert mem.populate(range(16)) == 16
    assert mem.tot_pages == 16
    assert machine.regions == {0: (16 * PAGE, mem.host_base)}


def test_populate_stops_at_ram_frames(mem):
    assert mem.populate(range(100)) == 64
    assert mem.tot_pages == 64


def test_shared_info_replaces_a_ram_page_and_splits_the_run(mem):
    machine = RecordingMachine()
    mem.attach(machine)
    mem.populate(range(16))
    mem.write_phys(5 * PAGE, b"ram")
    frame = mem.xenheap_frame(0)
    mem.place_xen_frame(5, frame)
    assert mem.tot_pages == 15            # the RAM page went back to the pool
    assert mem.p2m[5] == frame
    assert sorted(machine.regions) == [0, 5 * PAGE, 6 * PAGE]
    assert machine.host_of(5 * PAGE) == mem.host_base + frame * PAGE
    # Moving it elsewhere (outside RAM, as Linux does for grant frames) unmaps gfn 5.
    mem.place_xen_frame(0x107FFF, frame)
    assert 5 not in mem.p2m
    assert machine.host_of(5 * PAGE) is None
    assert machine.host_of(0x107FFF * PAGE) == mem.host_base + frame * PAGE


def test_freed_frames_are_scrubbed_and_reused(mem):
    mem.populate([0])
    mem.write_phys(0, b"secret")
    assert mem.remove(0)
    assert not mem.remove(0)
    assert mem.tot_pages == 0
    mem.populate([7])
    assert mem.read_phys(7 * PAGE, 6) == bytes(6)


def test_phys_access_across_pages_and_faults(mem):
    mem.populate([0, 1, 3])
    mem.write_phys(PAGE - 2, b"abcd")
    assert mem.read_phys(PAGE - 2, 4) == b"abcd"
    with pytest.raises(GuestFault):
        mem.read_phys(2 * PAGE, 1)
    with pytest.raises(GuestFault):   # straddles into the hole: nothing written
        mem.write_phys(2 * PAGE - 2, b"wxyz")
    assert mem.read_phys(2 * PAGE - 2, 2) == bytes(2)


# -- page walk ----------------------------------------------------------------

LONG = PagingState(cr0=CR0_PE | CR0_PG | CR0_WP, cr3=0x1000, cr4=CR4_PAE, efer=EFER_LMA | 0x100)


def _pte(addr, flags=PTE_P | PTE_RW):
    return (addr | flags).to_bytes(8, "little")


@pytest.fixture
def tables(mem):
    """PML4 @0x1000, PDPT @0x2000, PD @0x3000, PT @0x4000; data pages above."""
    mem.populate(range(64))
    mem.write_phys(0x1000, _pte(0x2000))                        # PML4[0]
    mem.write_phys(0x2000, _pte(0x3000))                        # PDPT[0] -> PD
    mem.write_phys(0x2000 + 8, _pte(0, PTE_P | PTE_RW | PTE_PS))  # PDPT[1]: 1 GiB at 0
    mem.write_phys(0x3000, _pte(0x4000))                        # PD[0] -> PT
    mem.write_phys(0x3000 + 8, _pte(0, PTE_P | PTE_RW | PTE_PS))  # PD[1]: 2 MiB at 0
    mem.write_phys(0x4000 + 8 * 5, _pte(0x10000))               # 0x5000 -> 0x10000 (rw)
    mem.write_phys(0x4000 + 8 * 6, _pte(0x11000, PTE_P))        # 0x6000 -> 0x11000 (ro)
    return mem


def test_walk_4k_2m_1g(tables):
    assert tables.translate(LONG, 0x5123) == 0x10123
    assert tables.translate(LONG, 0x200000 + 0x1234) == 0x1234          # 2 MiB page
    assert tables.translate(LONG, 0x40000000 + 0x3456) == 0x3456        # 1 GiB page
    tables.copy_to_guest(LONG, 0x5FFE, b"hi")
    assert tables.read_phys(0x10FFE, 2) == b"hi"


def test_walk_faults(tables):
    with pytest.raises(GuestFault):
        tables.translate(LONG, 0x7000)                  # PTE not present
    with pytest.raises(GuestFault):
        tables.translate(LONG, 0x0000_8000_0000_0000)   # non-canonical
    with pytest.raises(GuestFault):
        tables.translate(LONG, 0x0000_0080_0000_0000)   # PML4[1] not present
    with pytest.raises(GuestFault):
        tables.translate(LONG, 0x6000, write=True)      # read-only, CR0.WP
    assert tables.translate(LONG, 0x6000) == 0x11000
    user = PagingState(LONG.cr0, LONG.cr3, LONG.cr4, LONG.efer, cpl=3)
    with pytest.raises(GuestFault):
        tables.translate(user, 0x5000)                  # supervisor page
    tables.write_phys(0x1000 + 8, _pte(0, PTE_P | PTE_RW | PTE_PS))
    with pytest.raises(GuestFault):
        tables.translate(LONG, 0x0000_0080_0000_0000)   # PS in a PML4 entry is reserved


def test_copy_to_guest_is_all_or_nothing(tables):
    with pytest.raises(GuestFault):
        tables.copy_to_guest(LONG, 0x5FFE, b"abcd")     # 0x6000 is read-only
    assert tables.read_phys(0x10FFE, 2) == bytes(2)
    with pytest.raises(GuestFault):
        tables.copy_from_guest(LONG, 0x6FFE, 4)         # runs into an absent page


def test_paging_off_and_32bit_modes(mem):
    mem.populate(range(64))
    flat = PagingState(cr0=CR0_PE, cr3=0, cr4=0, efer=0)
    assert mem.translate(flat, 0x1_0000_1234) == 0x1234
    # PAE: PDPT @0x1000 (32-byte aligned), PD @0x2000 with a 2 MiB page.
    mem.write_phys(0x1000, _pte(0x2000, PTE_P))
    mem.write_phys(0x2000, _pte(0x200000, PTE_P | PTE_RW | PTE_PS))
    mem.write_phys(0x2008, _pte(0x3000))
    mem.write_phys(0x3000 + 8 * 4, _pte(0x9000))
    pae = PagingState(cr0=CR0_PE | CR0_PG, cr3=0x1000, cr4=CR4_PAE, efer=0)
    assert mem.translate(pae, 0x1234) == 0x201234
    assert mem.translate(pae, 0x204321) == 0x9321
    # 32-bit paging: PD @0x5000, 4 MiB page with PSE, 4 KiB via PT @0x6000.
    mem.write_phys(0x5000, (0x400000 | PTE_P | PTE_RW | PTE_PS).to_bytes(4, "little"))
    mem.write_phys(0x5004, (0x6000 | PTE_P | PTE_RW).to_bytes(4, "little"))
    mem.write_phys(0x6000 + 4 * 2, (0xA000 | PTE_P | PTE_RW).to_bytes(4, "little"))
    legacy = PagingState(cr0=CR0_PE | CR0_PG, cr3=0x5000, cr4=CR4_PSE, efer=0)
    assert mem.translate(legacy, 0x12345) == 0x412345
    assert mem.translate(legacy, 0x402ABC) == 0xAABC
    with pytest.raises(GuestFault):
        mem.translate(legacy, 0x800000)


def test_close_releases_the_memfd(mem):
    import os
    fd = mem.fd
    mem.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    with pytest.raises(GuestFault):
        mem.read_phys(0, 1)


class RefusingMachine(RecordingMachine):
    """An engine that reserves one page (as the software CPU does)."""

    RESERVED = 40 * PAGE

    def map_memory(self, gpa, size, host):
        if gpa <= self.RESERVED < gpa + size:
            raise ValueError("engine page")
        super().map_memory(gpa, size, host)


def test_engine_refusal_rolls_the_p2m_back(mem):
    from xen_core.memory import EngineMapError
    machine = RefusingMachine()
    mem.attach(machine)
    mem.populate(range(8))
    with pytest.raises(EngineMapError):
        mem.populate(range(36, 44))          # contiguous fast path
    with pytest.raises(EngineMapError):
        mem.populate([39, 40, 50])           # general path
    assert sorted(mem.p2m) == list(range(8)) and mem.tot_pages == 8
    assert machine.regions == {0: (8 * PAGE, mem.host_base)}
    assert mem.populate([39, 41]) == 2       # around the reserved page is fine
