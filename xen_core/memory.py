"""A domain's memory: one memfd, a p2m, guest copies and the guest page walk.

Frames are pages of the memfd. Frames [0, ram_frames) back the domain's RAM
(Xen's domheap pages, counted in tot_pages); frames above hold pages Xen owns
on the domain's behalf (shared info, later grant-table frames), never counted.
The memfd is mapped once, MAP_SHARED, in this process; the engine receives host
addresses inside that mapping for every contiguous run of the p2m, and dom0
processes receive the fd itself and map frames at `frame * PAGE_SIZE`.
A gfn may instead hold another domain's frame (a grant the guest mapped:
`foreign`); the engine then maps the granter's pages there, and the
granter's mapping stays until the last such gfn is unmapped.
"""
from __future__ import annotations

import ctypes
import itertools
import mmap
import os
import threading
from dataclasses import dataclass

from .abi.layout import PAGE_SHIFT, PAGE_SIZE

PAGE_MASK = PAGE_SIZE - 1
# Pages Xen keeps for the domain beside its RAM: shared info + grant-table
# frames (Xen 4.17's default max_grant_frames is 64) + room for later use.
XENHEAP_FRAMES = 128
SHARED_INFO_XENHEAP_INDEX = 0

# Control-register and PTE bits the walk honours (Intel SDM vol. 3, 4.x).
CR0_PE = 1 << 0
CR0_WP = 1 << 16
CR0_PG = 1 << 31
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_LA57 = 1 << 12
EFER_LMA = 1 << 10
PTE_P = 1 << 0
PTE_RW = 1 << 1
PTE_US = 1 << 2
PTE_PS = 1 << 7
PTE_ADDR_MASK = 0x000F_FFFF_FFFF_F000


_SERIALS = itertools.count(1)


class EngineMapError(ValueError):
    """The engine cannot map a guest-physical range (one it reserves)."""


class GrantOverlap(Exception):
    """A grant mapped where a grant is mapped already (Xen crashes the domain)."""


class GuestFault(Exception):
    """A guest address that does not resolve: the hypercall answers -EFAULT."""


@dataclass
class PagingState:
    """The part of a vCPU's special registers a linear-address walk needs."""
    cr0: int
    cr3: int
    cr4: int
    efer: int
    cpl: int = 0

    @classmethod
    def of(cls, sregs) -> "PagingState":
        return cls(sregs.cr0, sregs.cr3, sregs.cr4, sregs.efer, sregs.cpl)


class GuestMemory:
    """One domain's memfd, p2m (gfn -> frame) and the engine's view of it."""

    def __init__(self, name: str, ram_frames: int, xenheap_frames: int = XENHEAP_FRAMES):
        if ram_frames < 0:
            raise ValueError("negative memory size")
        self.ram_frames = ram_frames
        self.nr_frames = ram_frames + xenheap_frames
        # Names this memfd to dom0 handles that keep it mapped (domids are reused).
        self.serial = next(_SERIALS)
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, self.nr_frames * PAGE_SIZE)
            self.mm = mmap.mmap(self.fd, self.nr_frames * PAGE_SIZE, mmap.MAP_SHARED,
                                mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self._export = (ctypes.c_char * (self.nr_frames * PAGE_SIZE)).from_buffer(self.mm)
        self.host_base = ctypes.addressof(self._export)
        self.p2m: dict[int, int] = {}
        self.tot_pages = 0
        self._next_ram = 0              # bump allocator over RAM frames
        self._free_ram: list[int] = []  # frames given back by decrease_reservation
        self._machine = None
        self._slots: dict[int, tuple[int, int]] = {}  # gfn -> (count, host) mapped in the engine
        # Grant mappings of other domains' frames in this p2m (p2m_grant_map_rw/ro):
        # gfn -> (granter's GuestMemory, its frame, read-only).
        self.foreign: dict[int, tuple["GuestMemory", int, bool]] = {}
        self._holds = 0          # this memory's frames mapped into other domains
        self.unsynced = (0, 0)
        self._page_refs: dict[int, int] = {}   # frame -> get_page count
        self._zombies: set[int] = set()        # left the p2m while referenced
        self.lock = threading.RLock()
        self.closed = False

    # -- the engine ----------------------------------------------------------
    def attach(self, machine) -> None:
        """Map every present run into the engine's guest-physical space."""
        with self.lock:
            self._machine = machine
            if self.p2m:
                self._resync(min(self.p2m), max(self.p2m) + 1)

    def _host(self, gfn: int) -> tuple[int | None, bool]:
        """(host address of gfn's page or None, read-only)."""
        f = self.foreign.get(gfn)
        if f is not None:
            return f[0].host_base + (f[1] << PAGE_SHIFT), f[2]
        frame = self.p2m.get(gfn)
        return (None if frame is None else self.host_base + (frame << PAGE_SHIFT)), False

    def _runs(self, lo: int, hi: int):
        """Contiguous (gfn, count, host, readonly) runs within [lo, hi): own
        frames and grant-mapped foreign ones."""
        run = None
        n = len(self.p2m) + len(self.foreign)
        if hi - lo > 4 * n:
            gfns = sorted(g for d in (self.p2m, self.foreign) for g in d if lo <= g < hi)
        else:
            gfns = [g for g in range(lo, hi) if g in self.p2m or g in self.foreign]
        for gfn in gfns:
            host, ro = self._host(gfn)
            if run and run[0] + run[1] == gfn and run[2] + (run[1] << PAGE_SHIFT) == host \
                    and run[3] == ro:
                run[1] += 1
            else:
                if run:
                    yield tuple(run)
                run = [gfn, 1, host, ro]
        if run:
            yield tuple(run)

    def _resync(self, lo: int, hi: int) -> None:
        """Make the engine's mappings over [lo, hi) match the p2m. Slots that
        overlap are unmapped whole and the range they covered is re-run, so
        the engine never sees a partial unmap or an overlapping map."""
        if self._machine is None:
            return
        changed = True
        while changed:  # widen to the slots overlapping the range
            changed = False
            for gfn, (count, _) in self._slots.items():
                if gfn < hi and gfn + count > lo and (gfn < lo or gfn + count > hi):
                    lo, hi = min(lo, gfn), max(hi, gfn + count)
                    changed = True
        for gfn in [g for g, (c, _) in self._slots.items() if g < hi and g + c > lo]:
            count, _ = self._slots.pop(gfn)
            self._machine.unmap_memory(gfn << PAGE_SHIFT, count << PAGE_SHIFT)
        # What a caller undoing a refused change must resync again (the
        # range widened to whole slots, some of it now unmapped).
        self.unsynced = (lo, hi)
        for gfn, count, host, ro in self._runs(lo, hi):
            if ro:
                self._machine.map_memory(gfn << PAGE_SHIFT, count << PAGE_SHIFT, host,
                                         readonly=True)
            else:
                self._machine.map_memory(gfn << PAGE_SHIFT, count << PAGE_SHIFT, host)
            self._slots[gfn] = (count, host)

    # -- the p2m -------------------------------------------------------------
    def _alloc_ram_frame(self) -> int | None:
        if self._free_ram:
            return self._free_ram.pop()
        if self._next_ram < self.ram_frames:
            self._next_ram += 1
            return self._next_ram - 1
        return None

    def _release(self, frame: int) -> None:
        """Free a frame that left the p2m; one a grant pins is freed at its
        last put_page (the mapper keeps the page, not whatever comes next)."""
        if frame in self._page_refs:
            self._zombies.add(frame)
            return
        # Xen scrubs freed pages; MADV_REMOVE punches the hole (zero, no RAM).
        self.mm.madvise(mmap.MADV_REMOVE, frame << PAGE_SHIFT, PAGE_SIZE)
        if frame < self.ram_frames:
            self._free_ram.append(frame)
            self.tot_pages -= 1

    def get_page(self, frame: int) -> None:
        """A reference that keeps `frame` from being freed (a grant's pin)."""
        with self.lock:
            self._page_refs[frame] = self._page_refs.get(frame, 0) + 1

    def put_page(self, frame: int) -> None:
        with self.lock:
            n = self._page_refs.pop(frame) - 1
            if n:
                self._page_refs[frame] = n
            elif frame in self._zombies:
                self._zombies.discard(frame)
                if not self.mm.closed:
                    self._release(frame)

    def populate(self, gfns) -> int:
        """Back each absent gfn with a fresh zeroed RAM frame (present ones are
        kept, as populate_physmap does). Returns how many were populated; stops
        early when RAM frames run out."""
        gfns = list(gfns)
        with self.lock:
            if self._populate_contiguous(gfns):
                return len(gfns)
            added = []
            for gfn in gfns:
                if gfn in self.p2m or gfn in self.foreign:
                    continue
                frame = self._alloc_ram_frame()
                if frame is None:
                    break
                self.p2m[gfn] = frame
                self.tot_pages += 1
                added.append(gfn)
            if gfns:
                try:
                    self._resync(min(gfns), max(gfns) + 1)
                except Exception as e:  # the engine refused a range: undo, keep the old map
                    for gfn in added:
                        self._release(self.p2m.pop(gfn))
                    self._resync(*self.unsynced)
                    raise EngineMapError(f"engine refused gfns {min(gfns):#x}..{max(gfns):#x}: {e}") from e
            return len(added)

    def _populate_contiguous(self, gfns: list[int]) -> bool:
        """The builder's case: a fresh run of gfns onto fresh frames, one
        engine mapping, no per-page work beyond the p2m entries."""
        n = len(gfns)
        if not n or self._free_ram or self._next_ram + n > self.ram_frames:
            return False
        lo = gfns[0]
        if gfns[-1] != lo + n - 1 or (n > 1 and gfns[1] != lo + 1):
            return False
        if gfns != list(range(lo, lo + n)) or any(g in self.p2m or g in self.foreign
                                                  for g in gfns):
            return False
        if any(g < lo + n and g + c > lo for g, (c, _) in self._slots.items()):
            return False
        frame = self._next_ram
        if self._machine is not None:
            try:
                self._machine.map_memory(lo << PAGE_SHIFT, n << PAGE_SHIFT,
                                         self.host_base + (frame << PAGE_SHIFT))
            except Exception as e:
                raise EngineMapError(f"engine refused gfns {lo:#x}..{lo + n - 1:#x}: {e}") from e
            self._slots[lo] = (n, self.host_base + (frame << PAGE_SHIFT))
        self._next_ram += n
        self.p2m.update(zip(gfns, range(frame, frame + n)))
        self.tot_pages += n
        return True

    def remove(self, gfn: int) -> bool:
        """Drop gfn from the p2m, freeing a RAM frame (decrease_reservation)."""
        with self.lock:
            frame = self.p2m.pop(gfn, None)
            if frame is None:
                return False
            if frame < self.ram_frames:
                self._release(frame)
            self._resync(gfn, gfn + 1)
            return True

    def xenheap_frame(self, index: int) -> int:
        if not 0 <= index < self.nr_frames - self.ram_frames:
            raise ValueError(f"xenheap index {index} out of range")
        return self.ram_frames + index

    def place_xen_frame(self, gfn: int, frame: int) -> None:
        """Put a Xen-owned frame at gfn (add_to_physmap): whatever was at gfn
        is removed (a RAM page is freed, as Xen does) and the frame leaves any
        gfn it was mapped at before. Over a grant mapping: GrantOverlap."""
        with self.lock:
            if gfn in self.foreign:
                raise GrantOverlap(f"gfn {gfn:#x} holds a grant mapping")
            old_gfns = [g for g, f in self.p2m.items() if f == frame and g != gfn]
            for g in old_gfns:
                del self.p2m[g]
                self._resync(g, g + 1)
            old = self.p2m.get(gfn)
            if old is not None and old != frame and old < self.ram_frames:
                del self.p2m[gfn]
                self._release(old)
            self.p2m[gfn] = frame
            try:
                self._resync(gfn, gfn + 1)
            except Exception as e:
                del self.p2m[gfn]
                self._resync(*self.unsynced)
                raise EngineMapError(f"engine refused gfn {gfn:#x}: {e}") from e

    # -- grant mappings (create/replace_grant_p2m_mapping) ----------------------
    def map_foreign(self, gfn: int, granter: "GuestMemory", frame: int, readonly: bool) -> None:
        """Put the granter's frame at gfn. What was there leaves the p2m (a
        RAM page stays the domain's, unmapped, as Xen's p2m_add_page leaves
        it). A grant already mapped at gfn: GrantOverlap (Xen crashes the
        domain for that). The granter's memory stays alive while mapped."""
        with granter.lock:             # never under self.lock: two domains may map each other
            if granter.closed:
                raise GuestFault("granter's memory released")
            granter._holds += 1
        try:
            with self.lock:
                if self.closed:
                    raise GuestFault("memory released")
                if gfn in self.foreign:
                    raise GrantOverlap(f"gfn {gfn:#x} already holds a grant mapping")
                old = self.p2m.pop(gfn, None)
                self.foreign[gfn] = (granter, frame, readonly)
                try:
                    self._resync(gfn, gfn + 1)
                except Exception as e:
                    del self.foreign[gfn]
                    if old is not None:
                        self.p2m[gfn] = old
                    self._resync(*self.unsynced)
                    raise EngineMapError(f"engine refused gfn {gfn:#x}: {e}") from e
        except BaseException:
            granter._drop_hold()
            raise

    def unmap_foreign(self, gfn: int, granter: "GuestMemory", frame: int) -> bool:
        """Remove the grant mapping of granter's frame at gfn, leaving the gfn
        empty; False if gfn does not hold that mapping."""
        with self.lock:
            f = self.foreign.get(gfn)
            if f is None or f[0] is not granter or f[1] != frame:
                return False
            del self.foreign[gfn]
            if not self.closed:
                self._resync(gfn, gfn + 1)
        granter._drop_hold()
        return True

    def _drop_hold(self) -> None:
        with self.lock:
            self._holds -= 1
            if self._holds == 0 and self.closed:
                self._release_mapping()

    def frame_of(self, gfn: int) -> int:
        frame = self.p2m.get(gfn)
        if frame is None:
            raise GuestFault(f"gfn {gfn:#x} not present")
        return frame

    # -- guest-physical access ------------------------------------------------
    def _chunks(self, gpa: int, length: int, write: bool = False):
        """(mapping, offset, length) pieces of [gpa, gpa+length), page by
        page; a grant-mapped gfn is the granter's page (read-only ones
        refuse writes)."""
        if gpa < 0 or length < 0 or gpa + length > 1 << 52:
            raise GuestFault(f"gpa {gpa:#x}+{length:#x} out of range")
        while length > 0:
            n = min(length, PAGE_SIZE - (gpa & PAGE_MASK))
            gfn = gpa >> PAGE_SHIFT
            frame = self.p2m.get(gfn)
            if frame is not None:
                yield self.mm, (frame << PAGE_SHIFT) | (gpa & PAGE_MASK), n
            else:
                f = self.foreign.get(gfn)
                if f is None:
                    raise GuestFault(f"gfn {gfn:#x} not present")
                if write and f[2]:
                    raise GuestFault(f"gfn {gfn:#x} is a read-only grant mapping")
                yield f[0].mm, (f[1] << PAGE_SHIFT) | (gpa & PAGE_MASK), n
            gpa += n
            length -= n

    def read_phys(self, gpa: int, length: int) -> bytes:
        if self.closed:
            raise GuestFault("memory released")
        return b"".join(mm[off:off + n] for mm, off, n in self._chunks(gpa, length))

    def write_phys(self, gpa: int, data: bytes) -> None:
        if self.closed:
            raise GuestFault("memory released")
        pieces = list(self._chunks(gpa, len(data), write=True))  # all or nothing
        pos = 0
        for mm, off, n in pieces:
            mm[off:off + n] = data[pos:pos + n]
            pos += n

    def read_u64(self, gpa: int) -> int:
        return int.from_bytes(self.read_phys(gpa, 8), "little")

    # -- guest-virtual access -------------------------------------------------
    def translate(self, ps: PagingState, gva: int, write: bool = False) -> int:
        """Linear -> guest-physical through the guest's own page tables."""
        if not ps.cr0 & CR0_PG:
            return gva & 0xFFFF_FFFF
        user = ps.cpl == 3
        check_write = write and (user or ps.cr0 & CR0_WP)
        if ps.efer & EFER_LMA:
            levels = 5 if ps.cr4 & CR4_LA57 else 4
            bits = 12 + 9 * levels
            top = gva >> (bits - 1)
            if top not in (0, (1 << (64 - bits + 1)) - 1):
                raise GuestFault(f"non-canonical address {gva:#x}")
            return self._walk(ps.cr3 & PTE_ADDR_MASK, gva, levels, 9, 8, check_write, user)
        gva &= 0xFFFF_FFFF
        if ps.cr4 & CR4_PAE:
            pdpte = self.read_u64((ps.cr3 & 0xFFFF_FFE0) + 8 * (gva >> 30))
            if not pdpte & PTE_P:
                raise GuestFault(f"gva {gva:#x}: PDPTE not present")
            return self._walk(pdpte & PTE_ADDR_MASK, gva, 2, 9, 8, check_write, user)
        return self._walk(ps.cr3 & 0xFFFF_F000, gva, 2, 10, 4, check_write, user,
                          pse=bool(ps.cr4 & CR4_PSE))

    def _walk(self, table: int, gva: int, levels: int, idx_bits: int, pte_size: int,
              check_write: bool, user: bool, pse: bool = True) -> int:
        for level in range(levels, 0, -1):
            shift = 12 + idx_bits * (level - 1)
            index = (gva >> shift) & ((1 << idx_bits) - 1)
            raw = self.read_phys(table + index * pte_size, pte_size)
            pte = int.from_bytes(raw, "little")
            if not pte & PTE_P:
                raise GuestFault(f"gva {gva:#x}: level {level} entry not present")
            if check_write and not pte & PTE_RW:
                raise GuestFault(f"gva {gva:#x}: read-only")
            if user and not pte & PTE_US:
                raise GuestFault(f"gva {gva:#x}: supervisor page")
            if level > 1 and pte & PTE_PS and (pte_size == 8 or pse):
                if level >= 4:
                    raise GuestFault(f"gva {gva:#x}: PS set at level {level}")
                if pte_size == 4:  # 4 MiB page, 32-bit paging (PSE-36 bits ignored)
                    return (pte & 0xFFC0_0000) | (gva & 0x3F_FFFF)
                size_mask = (1 << shift) - 1  # 2 MiB or 1 GiB page
                return (pte & PTE_ADDR_MASK & ~size_mask) | (gva & size_mask)
            table = pte & (PTE_ADDR_MASK if pte_size == 8 else 0xFFFF_F000)
        return table | (gva & PAGE_MASK)

    def _virt_chunks(self, ps: PagingState, gva: int, length: int, write: bool):
        if length < 0:
            raise GuestFault("negative length")
        while length > 0:
            n = min(length, PAGE_SIZE - (gva & PAGE_MASK))
            yield self.translate(ps, gva, write), n
            gva = (gva + n) & 0xFFFF_FFFF_FFFF_FFFF
            length -= n

    def translate_range(self, ps: PagingState, gva: int, length: int,
                        write: bool = False) -> list[tuple[int, int]]:
        """The guest-physical (gpa, length) pieces of a linear range."""
        return list(self._virt_chunks(ps, gva, length, write))

    def copy_from_guest(self, ps: PagingState, gva: int, length: int) -> bytes:
        """Read a guest-virtual buffer; GuestFault if any byte does not resolve."""
        return b"".join(self.read_phys(gpa, n)
                        for gpa, n in list(self._virt_chunks(ps, gva, length, False)))

    def copy_to_guest(self, ps: PagingState, gva: int, data: bytes) -> None:
        """Write a guest-virtual buffer; all pages are resolved before any byte
        is written, so a fault leaves guest memory untouched."""
        pieces = list(self._virt_chunks(ps, gva, len(data), True))
        for gpa, n in pieces:
            list(self._chunks(gpa, n, write=True))
        pos = 0
        for gpa, n in pieces:
            self.write_phys(gpa, data[pos:pos + n])
            pos += n

    # -- teardown -------------------------------------------------------------
    def detach(self) -> None:
        """Take every mapping out of the engine (before the engine closes)."""
        with self.lock:
            if self._machine is not None:
                for gfn, (count, _) in list(self._slots.items()):
                    try:
                        self._machine.unmap_memory(gfn << PAGE_SHIFT, count << PAGE_SHIFT)
                    except Exception:
                        pass
                self._slots.clear()
                self._machine = None

    def close(self) -> None:
        """Release the mapping and the memfd (dom0 mappings of it live on
        until they are unmapped: the fd's pages stay with them; so does this
        process's mapping while another domain's p2m maps a frame of it).
        The grant mappings this domain held of others are dropped."""
        with self.lock:
            if self.closed:
                return
            self.detach()
            self.closed = True
            held, self.foreign = list(self.foreign.values()), {}
            if not self._holds:
                self._release_mapping()
        for granter, _, _ in held:
            granter._drop_hold()

    def _release_mapping(self) -> None:
        del self._export
        self.mm.close()
        os.close(self.fd)
