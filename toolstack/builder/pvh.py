"""The PVH domain builder: kernel ELF (+ ramdisk, command line) -> what to
write into guest memory and the vCPU's first state. Pure: it reads the
files and returns bytes and addresses; the caller writes them through the
foreign map (`toolstack/boot.py`).

Guest-physical layout (RAM is one block [0, memory)):

    kernel PT_LOAD segments at their p_paddr (bss zeroed)
    ramdisk, page aligned above the kernel             (module 0)
    one page-aligned block above that:
        hvm_start_info | modlist | memmap | cmdline\\0
    ...
    with acpi: the ACPI tables in RAM's last page, typed ACPI in the memmap
    special pages, reserved in the memmap (xen_core.abi.layout)

Boot state per the PVH ABI: 32-bit flat protected mode, paging off,
%ebx = hvm_start_info, at XEN_ELFNOTE_PHYS32_ENTRY.
"""
from __future__ import annotations

from dataclasses import dataclass

from xen_core.abi import hvm_start_info as abi
from xen_core.abi.layout import (LOWMEM_LIMIT, PAGE_SIZE, SPECIAL_REGION_END,
                                 SPECIAL_REGION_START)
from xen_core.accel.base import BootState, CpuMode

from .acpi import acpi_tables
from .elf import BuildError, KernelElf, load_kernel


@dataclass
class PvhImage:
    segments: list[tuple[int, bytes]]   # (guest-physical address, bytes)
    entry: int
    start_info_gpa: int
    boot_state: BootState
    notes: dict[str, int | str | bytes]
    memmap: list[tuple[int, int, int]]  # (addr, size, XEN_HVM_MEMMAP_TYPE_*)
    cmdline_gpa: int = 0
    ramdisk_gpa: int = 0
    ramdisk_size: int = 0

    @property
    def direct_hypercalls(self) -> bool:
        """The kernel issues vmcall/vmmcall itself instead of calling into a
        hypercall page: Linux does in PVH mode (XEN_ELFNOTE_GUEST_OS "linux")."""
        return self.notes.get("GUEST_OS") == "linux"


def accel_refusal(image: PvhImage, accel: str) -> str | None:
    """Why `image` cannot run on engine `accel`, or None. KVM hands no
    vmcall/vmmcall to user space (an unknown vmmcall is even looped inside
    the kernel): such a guest would hang at its first hypercall."""
    if accel == "kvm" and image.direct_hypercalls:
        return ("a Linux kernel makes its hypercalls with vmcall/vmmcall, which KVM "
                "cannot pass to the hypervisor here (the guest would hang): run the "
                "core with --accel emu")
    return None


def _page_up(x: int) -> int:
    return (x + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def memory_map(memory_bytes: int, acpi: bool = False) -> list[tuple[int, int, int]]:
    """E820 for a PVH domain: RAM [0, memory) and the special pages
    reserved. RAM never reaches the special region (LOWMEM_LIMIT). With
    `acpi`, RAM's last page holds the ACPI tables."""
    if acpi:
        return [
            (0, memory_bytes - PAGE_SIZE, abi.XEN_HVM_MEMMAP_TYPE_RAM),
            (memory_bytes - PAGE_SIZE, PAGE_SIZE, abi.XEN_HVM_MEMMAP_TYPE_ACPI),
            (SPECIAL_REGION_START, SPECIAL_REGION_END - SPECIAL_REGION_START,
             abi.XEN_HVM_MEMMAP_TYPE_RESERVED),
        ]
    return [
        (0, memory_bytes, abi.XEN_HVM_MEMMAP_TYPE_RAM),
        (SPECIAL_REGION_START, SPECIAL_REGION_END - SPECIAL_REGION_START,
         abi.XEN_HVM_MEMMAP_TYPE_RESERVED),
    ]


def _check_memory(memory_bytes: int) -> None:
    if memory_bytes <= 0 or memory_bytes % PAGE_SIZE:
        raise BuildError(f"memory {memory_bytes:#x}: must be a positive "
                         f"multiple of {PAGE_SIZE} bytes")
    if memory_bytes > LOWMEM_LIMIT:
        raise BuildError(f"memory {memory_bytes >> 20} MiB: more than the "
                         f"{LOWMEM_LIMIT >> 20} MiB below the PCI hole is not supported")


def _check_kernel(k: KernelElf, memory_bytes: int) -> int:
    entry = k.phys32_entry
    if entry is None:
        raise BuildError(f"kernel {k.path}: no XEN_ELFNOTE_PHYS32_ENTRY note "
                         f"(not a PVH kernel)")
    for s in k.segments:
        if s.paddr < SPECIAL_REGION_END and s.end > SPECIAL_REGION_START:
            raise BuildError(f"kernel {k.path}: segment [{s.paddr:#x}, {s.end:#x}) "
                             f"overlaps the special pages at {SPECIAL_REGION_START:#x}")
        if s.end > memory_bytes:
            raise BuildError(f"kernel {k.path}: segment [{s.paddr:#x}, {s.end:#x}) "
                             f"is beyond RAM ({memory_bytes >> 20} MiB)")
    if not any(s.paddr <= entry < s.end for s in k.segments):
        raise BuildError(f"kernel {k.path}: PHYS32_ENTRY {entry:#x} is not "
                         f"inside a loaded segment")
    return entry


def _read_ramdisk(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise BuildError(f"ramdisk {path}: {e.strerror or e}") from None


def build_pvh(kernel: str, memory_bytes: int, cmdline: str = "",
              ramdisk: str | None = None, acpi: bool | None = None,
              vcpus: int = 1) -> PvhImage:
    """Lay out a PVH domain of `memory_bytes` RAM. Raises BuildError.
    `acpi`: ACPI tables (a MADT for `vcpus` vCPUs), as libxl gives PVH
    guests; Linux needs them to arm its Xen timer. None: for a kernel whose
    XEN_ELFNOTE_GUEST_OS is "linux" only (the small test guests probe
    where RAM ends)."""
    _check_memory(memory_bytes)
    k = load_kernel(kernel)
    if acpi is None:
        acpi = k.notes.get("GUEST_OS") == "linux"
    ram_end = memory_bytes - PAGE_SIZE if acpi else memory_bytes
    entry = _check_kernel(k, ram_end)
    if "\0" in cmdline:
        raise BuildError("cmdline: contains a NUL byte")
    try:
        cmdline.encode()
    except UnicodeEncodeError as e:
        raise BuildError(f"cmdline: not encodable as UTF-8 ({e.reason})") from None

    segments = [(s.paddr, s.data + bytes(s.memsz - len(s.data))) for s in k.segments]
    free = _page_up(max(s.end for s in k.segments))

    modules = b""
    ramdisk_gpa = ramdisk_size = 0
    if ramdisk is not None:
        data = _read_ramdisk(ramdisk)
        ramdisk_gpa, ramdisk_size = free, len(data)
        segments.append((ramdisk_gpa, data))
        modules = abi.pack_modlist_entry(ramdisk_gpa, ramdisk_size)
        free = _page_up(free + len(data))

    # The boot block: start info, then its arrays, then the string.
    memmap = memory_map(memory_bytes, acpi)
    start_info_gpa = free
    modlist_gpa = start_info_gpa + abi.HVM_START_INFO.size
    memmap_gpa = modlist_gpa + len(modules)
    memmap_bytes = b"".join(abi.pack_memmap_entry(*e) for e in memmap)
    cmdline_bytes = cmdline.encode() + b"\0" if cmdline else b""
    cmdline_gpa = memmap_gpa + len(memmap_bytes) if cmdline else 0
    start_info = abi.pack_start_info(
        nr_modules=1 if modules else 0,
        modlist_paddr=modlist_gpa if modules else 0,
        cmdline_paddr=cmdline_gpa,
        memmap_paddr=memmap_gpa,
        memmap_entries=len(memmap),
        rsdp_paddr=ram_end if acpi else 0)
    block = start_info + modules + memmap_bytes + cmdline_bytes
    if start_info_gpa + len(block) > ram_end:
        raise BuildError(f"memory {memory_bytes >> 20} MiB: too small for kernel "
                         f"{kernel}, ramdisk and boot data "
                         f"({start_info_gpa + len(block):#x} bytes needed)")
    segments.append((start_info_gpa, block))
    if acpi:
        segments.append((ram_end, acpi_tables(ram_end, vcpus)))

    return PvhImage(
        segments=segments,
        entry=entry,
        start_info_gpa=start_info_gpa,
        boot_state=BootState(mode=CpuMode.FLAT32, rip=entry,
                             regs={"rbx": start_info_gpa}),
        notes=k.notes,
        memmap=memmap,
        cmdline_gpa=cmdline_gpa,
        ramdisk_gpa=ramdisk_gpa,
        ramdisk_size=ramdisk_size,
    )
