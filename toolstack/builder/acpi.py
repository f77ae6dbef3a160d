"""ACPI tables for a PVH domain, as libxl builds them (libacpi with the PVH
flags): RSDP -> XSDT -> {FADT (hardware-reduced, no VGA, no CMOS RTC) ->
DSDT, MADT (one local APIC per vCPU, APIC ID = 2 * vcpu_id as Xen's
vlapic)}. The RSDP's address goes to hvm_start_info.rsdp_paddr.

Linux needs the MADT: without it (no MP table either) it runs with "SMP
disabled" and never sets up its per-CPU clock event, so the Xen
singleshot timer is never armed and the guest stops ticking.
"""
from __future__ import annotations

import struct

from .elf import BuildError

LAPIC_BASE = 0xFEE00000
OEM_ID = b"Xen   "
OEM_TABLE_ID = b"HVM     "
OEM_REVISION = 0
CREATOR_ID = b"HVML"
CREATOR_REVISION = 0

FADT_REVISION = 5
FADT_LENGTH = 268                      # ACPI 5.0 FADT
FADT_HW_REDUCED_ACPI = 1 << 20
IAPC_BOOT_ARCH_NO_VGA = 1 << 2
IAPC_BOOT_ARCH_NO_CMOS_RTC = 1 << 5
MADT_LOCAL_APIC = 0
MADT_LAPIC_ENABLED = 1

# Offsets of the tables inside the ACPI page.
RSDP_OFF, XSDT_OFF, FADT_OFF, DSDT_OFF, MADT_OFF = 0x0, 0x40, 0x80, 0x200, 0x240
PAGE_SIZE = 4096


def _checksum(data: bytes) -> int:
    return (-sum(data)) & 0xFF


def _table(signature: bytes, revision: int, body: bytes) -> bytes:
    """Standard 36-byte SDT header + body, checksummed."""
    length = 36 + len(body)
    head = struct.pack("<4sIBB6s8sI4sI", signature, length, revision, 0, OEM_ID,
                       OEM_TABLE_ID, OEM_REVISION, CREATOR_ID, CREATOR_REVISION)
    raw = bytearray(head + body)
    raw[9] = _checksum(raw)
    return bytes(raw)


def _rsdp(xsdt: int) -> bytes:
    raw = bytearray(struct.pack("<8sB6sBIIQB3x", b"RSD PTR ", 0, OEM_ID, 2, 0, 36, xsdt, 0))
    raw[8] = _checksum(raw[:20])
    raw[32] = _checksum(raw)
    return bytes(raw)


def _fadt(dsdt: int) -> bytes:
    body = bytearray(FADT_LENGTH - 36)
    struct.pack_into("<I", body, 40 - 36, dsdt)                       # DSDT
    struct.pack_into("<H", body, 109 - 36,
                     IAPC_BOOT_ARCH_NO_VGA | IAPC_BOOT_ARCH_NO_CMOS_RTC)
    struct.pack_into("<I", body, 112 - 36, FADT_HW_REDUCED_ACPI)      # Flags
    struct.pack_into("<B", body, 131 - 36, 0)                         # minor version
    struct.pack_into("<Q", body, 140 - 36, dsdt)                      # X_DSDT
    return _table(b"FACP", FADT_REVISION, bytes(body))


def _madt(vcpus: int) -> bytes:
    body = struct.pack("<II", LAPIC_BASE, 0)   # no PCAT_COMPAT: no 8259 in PVH
    for i in range(vcpus):
        body += struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, i, 2 * i, MADT_LAPIC_ENABLED)
    return _table(b"APIC", 4, body)


def acpi_tables(base: int, vcpus: int) -> bytes:
    """One page of tables to load at guest-physical `base` (RSDP first)."""
    if not 1 <= vcpus <= 128:
        raise BuildError(f"vcpus {vcpus}: ACPI tables for 1..128 vCPUs")
    xsdt = _table(b"XSDT", 1, struct.pack("<QQ", base + FADT_OFF, base + MADT_OFF))
    parts = [(RSDP_OFF, _rsdp(base + XSDT_OFF)), (XSDT_OFF, xsdt),
             (FADT_OFF, _fadt(base + DSDT_OFF)), (DSDT_OFF, _table(b"DSDT", 2, b"")),
             (MADT_OFF, _madt(vcpus))]
    page = bytearray(PAGE_SIZE)
    for off, blob in parts:
        page[off:off + len(blob)] = blob
    return bytes(page)
