"""OVMF-like firmware images for the SEV-SNP launch measurement tests and benchmark.

Debian's OVMF builds carry SEV metadata but no SNP_KERNEL_HASHES section, so measured
direct boot (kernel/initrd/cmdline) needs images built here. The layout follows
OvmfPkg/ResetVector (Ia16/ResetVectorVtf0.asm, X64/OvmfSevMetadata.asm) and is written
with ``struct`` independently of veritee's parser, so a shared misreading of the format
cannot hide: sev-snp-measure parses the same bytes.

* The GUIDed table ends 32 bytes before the end of the image with the footer: a u16
  length of the whole table, then the footer GUID. Entries before it are walked
  backwards: data, u16 length (data + 18), GUID.
* The SEV metadata entry holds the metadata's offset from the end of the image; the
  metadata is "ASEV", u32 length, u32 version 1, u32 count, then (base, size, type) u32
  triples.
"""

from __future__ import annotations

import random
import struct
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PAGE = 0x1000
FOOTER_GUID = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
METADATA_GUID = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
RESET_BLOCK_GUID = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
HASH_AREA_GUID = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")
SECRET_BLOCK_GUID = uuid.UUID("4c2eb361-7d9b-4cc3-8081-127c90d3d294")

SEC_MEM, SECRETS, CPUID, SVSM_CAA, KERNEL_HASHES = 0x1, 0x2, 0x3, 0x4, 0x10

# Debian's OVMF sections, plus a kernel-hashes page after them (as in an AmdSevX64 build,
# where the hashes table shares a page with the launch secret at offset 0xC00).
DEBIAN_SECTIONS = (
    (0x800000, 0x9000, SEC_MEM),
    (0x80A000, 0x3000, SEC_MEM),
    (0x80D000, 0x1000, SECRETS),
    (0x80E000, 0x1000, CPUID),
    (0x80F000, 0x11000, SEC_MEM),
)
AMDSEV_SECTIONS = (*DEBIAN_SECTIONS, (0x820000, 0x1000, KERNEL_HASHES))
# Newer edk2 order: two pre-validated ranges, secrets, CPUID, SVSM CAA, a third range,
# then the kernel hashes.
SVSM_SECTIONS = (
    (0x800000, 0x9000, SEC_MEM),
    (0x80A000, 0x3000, SEC_MEM),
    (0x80D000, 0x1000, SECRETS),
    (0x80E000, 0x1000, CPUID),
    (0x80F000, 0x1000, SVSM_CAA),
    (0x810000, 0x10000, SEC_MEM),
    (0x820000, 0x1000, KERNEL_HASHES),
)


@dataclass(frozen=True)
class FirmwareSpec:
    """What to write into the last page of a base image."""

    sections: tuple[tuple[int, int, int], ...] = AMDSEV_SECTIONS
    reset_eip: int | None = 0x80B004
    hash_area: tuple[int, int] | None = (0x820C00, 0x400)
    metadata: bool = True
    metadata_offset: int = 0x800  # from the end of the image
    metadata_version: int = 1
    extra: tuple[tuple[uuid.UUID, bytes], ...] = field(default=())


def entry(guid: uuid.UUID, data: bytes) -> bytes:
    return data + struct.pack("<H", len(data) + 18) + guid.bytes_le


def metadata_block(sections: tuple[tuple[int, int, int], ...], version: int = 1) -> bytes:
    body = b"".join(struct.pack("<III", *s) for s in sections)
    return b"ASEV" + struct.pack("<III", 16 + len(body), version, len(sections)) + body


def guid_table(spec: FirmwareSpec) -> bytes:
    entries = []
    if spec.metadata:
        entries.append(entry(METADATA_GUID, struct.pack("<I", spec.metadata_offset)))
    if spec.hash_area is not None:
        entries.append(entry(HASH_AREA_GUID, struct.pack("<II", *spec.hash_area)))
    entries.append(entry(SECRET_BLOCK_GUID, struct.pack("<II", 0x80D000, 0x1000)))
    if spec.reset_eip is not None:
        entries.append(entry(RESET_BLOCK_GUID, struct.pack("<I", spec.reset_eip)))
    entries += [entry(g, d) for g, d in spec.extra]
    body = b"".join(entries)
    return body + struct.pack("<H", len(body) + 18) + FOOTER_GUID.bytes_le


def build_firmware(base: bytes, spec: FirmwareSpec | None = None) -> bytes:
    """``base`` with a new GUIDed table and SEV metadata written into its last page."""
    spec = spec or FirmwareSpec()
    assert len(base) % PAGE == 0 and len(base) >= PAGE
    image = bytearray(base)
    end = len(image)
    table = guid_table(spec)
    table_start = end - 0x20 - len(table)
    if spec.metadata:
        block = metadata_block(spec.sections, spec.metadata_version)
        at = end - spec.metadata_offset
        assert at + len(block) <= table_start, "metadata would overlap the GUID table"
        image[at : at + len(block)] = block
    image[table_start : end - 0x20] = table
    return bytes(image)


def synthetic_base(pages: int, seed: int) -> bytes:
    """Random firmware-like bytes with erased (0xFF) and zero pages mixed in."""
    rng = random.Random(seed)
    out = bytearray()
    for i in range(pages):
        kind = rng.random()
        if i == pages - 1 or kind > 0.4:
            out += rng.randbytes(PAGE)
        elif kind > 0.15:
            out += b"\xff" * PAGE
        else:
            out += bytes(PAGE)
    return bytes(out)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
