"""PVH boot ABI: the `hvm_start_info` structure a kernel finds at %ebx on
entry (public arch-x86/hvm/start_info.h), version 1, little-endian x86-64.
The ELF notes that announce a PVH entry are in `elfnote`."""
import struct

XEN_HVM_START_MAGIC_VALUE = 0x336EC578
HVM_START_INFO_VERSION = 1

# struct hvm_start_info: magic, version, flags, nr_modules (u32);
# modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr (u64);
# memmap_entries, reserved (u32). 56 bytes.
HVM_START_INFO = struct.Struct("<IIIIQQQQII")
HVM_START_INFO_OFFSETS = {
    "magic": 0, "version": 4, "flags": 8, "nr_modules": 12,
    "modlist_paddr": 16, "cmdline_paddr": 24, "rsdp_paddr": 32,
    "memmap_paddr": 40, "memmap_entries": 48, "reserved": 52,
}

# struct hvm_modlist_entry: paddr, size, cmdline_paddr, reserved (u64). 32 bytes.
HVM_MODLIST_ENTRY = struct.Struct("<QQQQ")
# struct hvm_memmap_table_entry: addr, size (u64), type, reserved (u32). 24 bytes.
HVM_MEMMAP_TABLE_ENTRY = struct.Struct("<QQII")

# Memory map entry types (the E820 address range types).
XEN_HVM_MEMMAP_TYPE_RAM = 1
XEN_HVM_MEMMAP_TYPE_RESERVED = 2
XEN_HVM_MEMMAP_TYPE_ACPI = 3
XEN_HVM_MEMMAP_TYPE_NVS = 4
XEN_HVM_MEMMAP_TYPE_UNUSABLE = 5
XEN_HVM_MEMMAP_TYPE_DISABLED = 6
XEN_HVM_MEMMAP_TYPE_PMEM = 7


def pack_start_info(*, nr_modules: int = 0, modlist_paddr: int = 0,
                    cmdline_paddr: int = 0, rsdp_paddr: int = 0,
                    memmap_paddr: int = 0, memmap_entries: int = 0,
                    flags: int = 0) -> bytes:
    return HVM_START_INFO.pack(
        XEN_HVM_START_MAGIC_VALUE, HVM_START_INFO_VERSION, flags, nr_modules,
        modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr, memmap_entries, 0)


def pack_modlist_entry(paddr: int, size: int, cmdline_paddr: int = 0) -> bytes:
    return HVM_MODLIST_ENTRY.pack(paddr, size, cmdline_paddr, 0)


def pack_memmap_entry(addr: int, size: int, type_: int) -> bytes:
    return HVM_MEMMAP_TABLE_ENTRY.pack(addr, size, type_, 0)
