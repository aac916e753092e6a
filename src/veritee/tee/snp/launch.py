"""The expected AMD SEV-SNP launch measurement of an OVMF guest, computed from its inputs.

The SEV-SNP firmware folds every page the hypervisor adds with SNP_LAUNCH_UPDATE into
the launch digest (AMD SEV-SNP Firmware ABI, "SNP_LAUNCH_UPDATE" and the PAGE_INFO
table)::

    digest = SHA-384(PAGE_INFO)     PAGE_INFO (0x70 bytes):
      0x00  DIGEST_CUR   the digest so far (48 zero bytes at LAUNCH_START)
      0x30  CONTENTS     SHA-384 of the page for NORMAL and VMSA pages, else zero
      0x60  LENGTH       0x70 (u16)
      0x62  PAGE_TYPE    NORMAL 1, VMSA 2, ZERO 3, UNMEASURED 4, SECRETS 5, CPUID 6
      0x63  IMI_PAGE     0
      0x64  VMPL3/2/1    permissions, 0
      0x67  reserved
      0x68  GPA          guest-physical address (u64)

QEMU (and the other VMMs below) add, in order:

1. the OVMF image as NORMAL pages, mapped so that it ends at 4 GiB;
2. the sections OVMF lists in its SEV metadata (found through the GUIDed table at the
   end of the image, OvmfPkg/ResetVector): SNP_SEC_MEM as ZERO pages, the SNP_SECRETS
   and CPUID pages, the SVSM calling area as ZERO pages, and SNP_KERNEL_HASHES as a
   NORMAL page holding the SEV hashes table (SHA-256 of the kernel, initrd and command
   line) when the VMM boots a kernel directly, else as ZERO pages (GCE adds
   SNP_SEC_MEM as UNMEASURED pages; EC2 adds the CPUID page after all the others);
3. one VMSA page per vCPU: the SEV-ES save area with the VMM's initial register state
   (AMD64 APM vol. 2, table B-4), the bootstrap processor at the x86 reset vector and
   the others at the SEV-ES AP reset address OVMF publishes.

The result is what the SEV-SNP attestation report carries as MEASUREMENT. It is exactly
what ``sev-snp-measure --mode snp`` computes for the same inputs; the tests hold it to
that. Where an image is malformed, cannot launch under SEV-SNP (no SEV metadata: QEMU
exits), or where QEMU and sev-snp-measure would disagree about it (a secrets or CPUID
section longer than one page), it is refused, never guessed.

The per-image work (parsing the metadata and folding the image's own pages) depends on
the image alone and is memoized for the last images seen (compared by content), so
measuring many VM shapes for one firmware costs little more than the vCPU pages.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import struct
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from veritee.binary import Reader
from veritee.errors import ConfigError, EvidenceFormatError

PAGE_SIZE = 0x1000
FOUR_GIB = 1 << 32
MEASUREMENT_SIZE = 48
MAX_FIRMWARE_BYTES = 64 << 20
MAX_VCPUS = 4096  # KVM_MAX_VCPUS on x86-64
BSP_RESET_EIP = 0xFFFFFFF0

# GUIDs of the OVMF GUIDed table (OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm).
GUID_TABLE_FOOTER = uuid.UUID("96b582de-1fb2-45f7-baea-a366c55a082d")
GUID_SEV_METADATA = uuid.UUID("dc886566-984a-4798-a75e-5585a7bf67cc")
GUID_SEV_ES_RESET_BLOCK = uuid.UUID("00f771de-1a7e-4fcb-890e-68c77e2fb44e")
GUID_SEV_HASH_TABLE_AREA = uuid.UUID("7255371f-3a3b-4b04-927b-1da6efa8d454")

# GUIDs of the SEV hashes table QEMU writes for measured direct boot.
GUID_SEV_HASH_TABLE = uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21")
GUID_SEV_HASH_KERNEL = uuid.UUID("4de79437-abd2-427f-b835-d5b172d2045b")
GUID_SEV_HASH_INITRD = uuid.UUID("44baf731-3a2f-4bd7-9af1-41e29169781d")
GUID_SEV_HASH_CMDLINE = uuid.UUID("97d02dd8-bd20-4c94-aa78-e7714d36ab2a")

_ENTRY_HEADER = 2 + 16  # u16 length + GUID, after the entry's data
_FOOTER_OFFSET = 0x20 + _ENTRY_HEADER  # the footer GUID ends 32 bytes before 4 GiB
_METADATA_SIGNATURE = b"ASEV"
_METADATA_HEADER = 16
_METADATA_ITEM = 12


class VmmType(enum.Enum):
    """The VMM that launches the guest: each sets slightly different initial state."""

    QEMU = "QEMU"
    EC2 = "ec2"
    GCE = "gce"

    @classmethod
    def from_name(cls, name: str) -> VmmType:
        key = name.strip().lower()
        for vmm in cls:
            if vmm.value.lower() == key:
                return vmm
        choices = ", ".join(v.value for v in cls)
        raise ConfigError(f"unknown VMM type {name!r}", hint=f"use one of {choices}")


class SectionType(enum.IntEnum):
    """SEV metadata section types (OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm)."""

    SNP_SEC_MEM = 0x1
    SNP_SECRETS = 0x2
    CPUID = 0x3
    SVSM_CAA = 0x4
    SNP_KERNEL_HASHES = 0x10


class PageType(enum.IntEnum):
    """SNP_LAUNCH_UPDATE page types (SEV-SNP Firmware ABI)."""

    NORMAL = 0x1
    VMSA = 0x2
    ZERO = 0x3
    UNMEASURED = 0x4
    SECRETS = 0x5
    CPUID = 0x6


# ---------------------------------------------------------------------------------------
# CPUID signatures of the vCPU models QEMU defines (target/i386/cpu.c, builtin_x86_defs).
# ---------------------------------------------------------------------------------------

_FMS_EPYC = (0x17, 0x01, 0x02)
_FMS_ROME = (0x17, 0x31, 0x00)
_FMS_MILAN = (0x19, 0x01, 0x01)
_FMS_GENOA = (0x19, 0x11, 0x00)
_FMS_TURIN = (0x1A, 0x00, 0x00)

VCPU_TYPES: Mapping[str, tuple[int, int, int]] = MappingProxyType(
    {
        "EPYC": _FMS_EPYC,
        "EPYC-v1": _FMS_EPYC,
        "EPYC-v2": _FMS_EPYC,
        "EPYC-IBPB": _FMS_EPYC,
        "EPYC-v3": _FMS_EPYC,
        "EPYC-v4": _FMS_EPYC,
        "EPYC-Rome": _FMS_ROME,
        "EPYC-Rome-v1": _FMS_ROME,
        "EPYC-Rome-v2": _FMS_ROME,
        "EPYC-Rome-v3": _FMS_ROME,
        "EPYC-Milan": _FMS_MILAN,
        "EPYC-Milan-v1": _FMS_MILAN,
        "EPYC-Milan-v2": _FMS_MILAN,
        "EPYC-Genoa": _FMS_GENOA,
        "EPYC-Genoa-v1": _FMS_GENOA,
        "EPYC-Turin": _FMS_TURIN,
    }
)
"""vCPU model name -> (family, model, stepping) as QEMU presents them."""


def cpuid_signature(family: int, model: int, stepping: int) -> int:
    """CPUID Fn0000_0001_EAX for a display family/model/stepping (AMD CPUID spec #25481).

    Families above 0xF are split into base family 0xF plus an extended family; the model
    is split into a low nibble (bits 7:4) and an extended model (bits 19:16).
    """
    if not (0 <= family <= 0xF + 0xFF and 0 <= model <= 0xFF and 0 <= stepping <= 0xF):
        raise ConfigError(
            f"vCPU family/model/stepping out of range: {family}/{model}/{stepping}",
            hint="family 0..270, model 0..255, stepping 0..15",
        )
    base_family, ext_family = (0xF, family - 0xF) if family > 0xF else (family, 0)
    return (
        (ext_family << 20)
        | ((model >> 4) << 16)
        | (base_family << 8)
        | ((model & 0xF) << 4)
        | stepping
    )


def vcpu_signature(vcpu_type: str) -> int:
    """The CPUID signature QEMU gives a vCPU model (``EPYC-v4``, ``EPYC-Milan``, ...)."""
    fms = VCPU_TYPES.get(vcpu_type)
    if fms is None:
        for name, value in VCPU_TYPES.items():
            if name.lower() == vcpu_type.strip().lower():
                fms = value
                break
    if fms is None:
        raise ConfigError(
            f"unknown vCPU type {vcpu_type!r}",
            hint=f"use one of {', '.join(VCPU_TYPES)}, or give the CPUID signature",
        )
    return cpuid_signature(*fms)


# ---------------------------------------------------------------------------------------
# OVMF image: GUIDed table footer and SEV metadata.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetadataSection:
    """One SEV metadata section descriptor: a guest-physical range and what it holds."""

    gpa: int
    size: int
    kind: SectionType

    @property
    def pages(self) -> range:
        return range(self.gpa, self.gpa + self.size, PAGE_SIZE)


@dataclass(frozen=True)
class HashTableArea:
    """Where OVMF expects QEMU's SEV hashes table (the SEV_HASH_TABLE_RV_GUID entry)."""

    gpa: int
    size: int

    @property
    def offset_in_page(self) -> int:
        return self.gpa & (PAGE_SIZE - 1)


@dataclass(frozen=True)
class OvmfMetadata:
    """What the VMM reads from an OVMF image before launching an SEV-SNP guest."""

    size: int
    guid_table: Mapping[uuid.UUID, bytes] = field(repr=False)
    sections: tuple[MetadataSection, ...]
    reset_eip: int
    hash_table: HashTableArea | None

    @property
    def gpa(self) -> int:
        """Where the image is mapped: it ends at 4 GiB."""
        return FOUR_GIB - self.size

    def has_section(self, kind: SectionType) -> bool:
        return any(s.kind is kind for s in self.sections)

    @property
    def supports_kernel_hashes(self) -> bool:
        return self.has_section(SectionType.SNP_KERNEL_HASHES)

    def require_direct_boot(self) -> None:
        """Raise unless the VMM can measure a kernel, initrd and command line into this image.

        That needs an SNP_KERNEL_HASHES section of one page and the SEV hash table area
        (QEMU refuses a zero base or an area smaller than the table).
        """
        if not self.supports_kernel_hashes:
            raise ConfigError(
                "this OVMF image has no SNP_KERNEL_HASHES section: it cannot measure a kernel, "
                "initrd or command line",
                hint="build OVMF from OvmfPkg/AmdSev/AmdSevX64.dsc for measured direct boot",
            )
        area = self.hash_table
        if area is None or area.gpa == 0 or area.size < HASH_TABLE_SIZE:
            raise ConfigError(
                "this OVMF image has no usable SEV hash table area "
                f"({'absent' if area is None else f'{area.gpa:#x}+{area.size:#x}'})",
                hint="build OVMF from OvmfPkg/AmdSev/AmdSevX64.dsc for measured direct boot",
            )
        if area.offset_in_page > PAGE_SIZE - HASH_TABLE_SIZE:
            raise EvidenceFormatError(
                f"OVMF image: SEV hash table at {area.gpa:#x} would cross a page boundary"
            )
        for s in self.sections:
            if s.kind is SectionType.SNP_KERNEL_HASHES and s.size != PAGE_SIZE:
                raise EvidenceFormatError(
                    f"OVMF image: SNP_KERNEL_HASHES section of {s.size:#x} bytes; one page expected"
                )


def parse_guid_table(image: bytes) -> dict[uuid.UUID, bytes]:
    """The GUIDed table that ends 32 bytes before the end of an OVMF image.

    Walked backwards from the footer: each entry is its data, a u16 length that counts
    the data, the length and the GUID, then the GUID. Returns GUID -> entry data.
    """
    what = "OVMF GUID table"
    if len(image) < _FOOTER_OFFSET:
        raise EvidenceFormatError(f"{what}: image of {len(image)} bytes is too small")
    footer_at = len(image) - _FOOTER_OFFSET
    r = Reader(image, what=what, offset=footer_at)
    table_len = r.u16("footer length")
    if uuid.UUID(bytes_le=r.bytes(16, "footer GUID")) != GUID_TABLE_FOOTER:
        raise EvidenceFormatError(
            f"{what}: no table footer GUID {GUID_TABLE_FOOTER} at offset {footer_at + 2:#x}",
            hint="is this an OVMF image built for SEV (OvmfPkg, X64)?",
        )
    if table_len < _ENTRY_HEADER or table_len - _ENTRY_HEADER > footer_at:
        raise EvidenceFormatError(f"{what}: footer length {table_len:#x} is out of range")
    start = footer_at - (table_len - _ENTRY_HEADER)
    entries: dict[uuid.UUID, bytes] = {}
    end = footer_at
    while end - start >= _ENTRY_HEADER:
        r = Reader(image, what=what, offset=end - _ENTRY_HEADER)
        length = r.u16("entry length")
        guid = uuid.UUID(bytes_le=r.bytes(16, "entry GUID"))
        if length < _ENTRY_HEADER or length > end - start:
            raise EvidenceFormatError(
                f"{what}: entry {guid} at offset {end - _ENTRY_HEADER:#x} has length "
                f"{length:#x}, outside the table"
            )
        if guid in entries:
            raise EvidenceFormatError(f"{what}: entry {guid} appears twice")
        entries[guid] = image[end - length : end - _ENTRY_HEADER]
        end -= length
    return entries


def _entry_u32s(
    table: Mapping[uuid.UUID, bytes], guid: uuid.UUID, n: int, name: str
) -> tuple[int, ...]:
    r = Reader(table[guid], what=f"OVMF {name} entry")
    return tuple(r.u32(f"{name} word {i}") for i in range(n))


def _parse_sections(image: bytes, offset_from_end: int) -> tuple[MetadataSection, ...]:
    what = "OVMF SEV metadata"
    if not 0 < offset_from_end <= len(image):
        raise EvidenceFormatError(
            f"{what}: offset {offset_from_end:#x} from the end is outside the image"
        )
    r = Reader(image, what=what, offset=len(image) - offset_from_end)
    if r.bytes(4, "signature") != _METADATA_SIGNATURE:
        raise EvidenceFormatError(f"{what}: signature is not {_METADATA_SIGNATURE!r}")
    length = r.u32("length")
    version = r.u32("version")
    count = r.u32("number of sections")
    if version != 1:
        raise EvidenceFormatError(f"{what}: version {version} is not supported (1 is)")
    if length < _METADATA_HEADER + count * _METADATA_ITEM:
        raise EvidenceFormatError(f"{what}: length {length:#x} is too small for {count} sections")
    body = Reader(r.bytes(length - _METADATA_HEADER, "sections"), what=what)
    sections = []
    for i in range(count):
        gpa = body.u32(f"section {i} base")
        size = body.u32(f"section {i} size")
        raw_kind = body.u32(f"section {i} type")
        try:
            kind = SectionType(raw_kind)
        except ValueError:
            raise EvidenceFormatError(
                f"{what}: section {i} has unknown type {raw_kind:#x}"
            ) from None
        if gpa % PAGE_SIZE or size % PAGE_SIZE:
            raise EvidenceFormatError(
                f"{what}: section {i} ({kind.name}) at {gpa:#x}+{size:#x} is not page-aligned"
            )
        if kind in (SectionType.SNP_SECRETS, SectionType.CPUID) and size != PAGE_SIZE:
            raise EvidenceFormatError(
                f"{what}: section {i} ({kind.name}) is {size:#x} bytes; it must be one page"
            )
        if gpa + size > FOUR_GIB:
            raise EvidenceFormatError(f"{what}: section {i} ({kind.name}) ends above 4 GiB")
        sections.append(MetadataSection(gpa=gpa, size=size, kind=kind))
    return tuple(sections)


def parse_ovmf_metadata(image: bytes, *, max_bytes: int = MAX_FIRMWARE_BYTES) -> OvmfMetadata:
    """Parse what an SEV-SNP launch needs from an OVMF image (no hashing).

    Raises EvidenceFormatError when the image is not a whole number of pages, has no
    GUIDed table, no SEV metadata (QEMU refuses to launch such an image under SNP), no
    SEV-ES reset block, or any of these structures is malformed.
    """
    if not isinstance(image, bytes):
        raise TypeError("OVMF image must be bytes")
    size = len(image)
    if size == 0 or size % PAGE_SIZE:
        raise EvidenceFormatError(
            f"OVMF image: {size} bytes is not a positive multiple of the {PAGE_SIZE}-byte page"
        )
    if size > max_bytes:
        raise EvidenceFormatError(f"OVMF image: {size} bytes is more than the {max_bytes} allowed")
    table = parse_guid_table(image)
    if GUID_SEV_METADATA not in table:
        raise EvidenceFormatError(
            "OVMF image carries no SEV metadata: it cannot launch an SEV-SNP guest",
            hint="use an OVMF built from OvmfPkg (e.g. OvmfPkg/AmdSev/AmdSevX64.dsc)",
        )
    if GUID_SEV_ES_RESET_BLOCK not in table:
        raise EvidenceFormatError("OVMF image has no SEV-ES reset block for the APs")
    (offset,) = _entry_u32s(table, GUID_SEV_METADATA, 1, "SEV metadata")
    sections = _parse_sections(image, offset)
    (reset_eip,) = _entry_u32s(table, GUID_SEV_ES_RESET_BLOCK, 1, "SEV-ES reset block")
    hash_table = None
    if GUID_SEV_HASH_TABLE_AREA in table:
        gpa, area_size = _entry_u32s(table, GUID_SEV_HASH_TABLE_AREA, 2, "SEV hash table")
        hash_table = HashTableArea(gpa=gpa, size=area_size)
    return OvmfMetadata(
        size=size,
        guid_table=MappingProxyType(table),
        sections=sections,
        reset_eip=reset_eip,
        hash_table=hash_table,
    )


# ---------------------------------------------------------------------------------------
# The launch digest.
# ---------------------------------------------------------------------------------------

_sha384 = hashlib.sha384
_ZERO_CONTENTS = bytes(MEASUREMENT_SIZE)
_TAILS = {
    t: struct.pack("<HBBBBBB", 0x70, t, 0, 0, 0, 0, 0) for t in PageType
}  # LENGTH, PAGE_TYPE, IMI_PAGE, VMPL3/2/1 perms, reserved; the u64 GPA follows
_ERASED_PAGE = b"\xff" * PAGE_SIZE  # erased flash: a large part of most OVMF images
_ERASED_CONTENTS = _sha384(_ERASED_PAGE).digest()
_ZERO_PAGE = bytes(PAGE_SIZE)
_ZERO_PAGE_CONTENTS = _sha384(_ZERO_PAGE).digest()
_VMSA_GPA = 0xFFFFFFFFF000  # the VMSA is added at GPA (u64)-1, page-aligned, bits 63:52 clear


def _update(digest: bytes, page_type: PageType, gpa: int, contents: bytes) -> bytes:
    return _sha384(digest + contents + _TAILS[page_type] + gpa.to_bytes(8, "little")).digest()


def _update_normal_pages(digest: bytes, data: bytes, gpa: int) -> bytes:
    """Fold ``data`` (whole pages) in as NORMAL pages starting at ``gpa``."""
    sha = _sha384
    tail = _TAILS[PageType.NORMAL]
    for off in range(0, len(data), PAGE_SIZE):
        page = data[off : off + PAGE_SIZE]
        # pages equal to a constant page (a memcmp) reuse its precomputed hash
        if page == _ERASED_PAGE:
            contents = _ERASED_CONTENTS
        elif page == _ZERO_PAGE:
            contents = _ZERO_PAGE_CONTENTS
        else:
            contents = sha(page).digest()
        digest = sha(digest + contents + tail + (gpa + off).to_bytes(8, "little")).digest()
    return digest


def _update_empty_pages(digest: bytes, page_type: PageType, pages: range) -> bytes:
    sha = _sha384
    prefix = _ZERO_CONTENTS + _TAILS[page_type]
    for gpa in pages:
        digest = sha(digest + prefix + gpa.to_bytes(8, "little")).digest()
    return digest


def ovmf_pages_digest(image: bytes) -> bytes:
    """The launch digest after the image's own pages only (sev-snp-measure's "OVMF hash")."""
    if len(image) % PAGE_SIZE or not 0 < len(image) <= FOUR_GIB:
        raise EvidenceFormatError("OVMF image: size is not a positive multiple of the page size")
    return _update_normal_pages(_ZERO_CONTENTS, image, FOUR_GIB - len(image))


@dataclass(frozen=True)
class OvmfFirmware:
    """A parsed OVMF image with the digest of its own pages, the per-image part of the work."""

    metadata: OvmfMetadata
    pages_digest: bytes
    image: bytes = field(repr=False, compare=False)

    @functools.cached_property
    def sha256(self) -> bytes:
        """SHA-256 of the image, for provenance (computed on first use)."""
        return hashlib.sha256(self.image).digest()


_CACHE_ENTRIES = 16
_CACHE_BYTES = 64 << 20
_cache: list[OvmfFirmware] = []  # most recently used first
_cache_lock = threading.Lock()


def _cached(image: bytes) -> OvmfFirmware | None:
    with _cache_lock:
        for i, entry in enumerate(_cache):
            # exact content, not a digest: a hit costs one memcmp and cannot collide
            if entry.image is image or (len(entry.image) == len(image) and entry.image == image):
                if i:
                    _cache.insert(0, _cache.pop(i))
                return entry
    return None


def _remember(firmware: OvmfFirmware) -> None:
    with _cache_lock:
        _cache.insert(0, firmware)
        total = 0
        for i, entry in enumerate(_cache):
            total += len(entry.image)
            if i >= _CACHE_ENTRIES or (i and total > _CACHE_BYTES):
                del _cache[i:]
                break


def load_ovmf(
    image: bytes, *, pages_digest: bytes | None = None, max_bytes: int = MAX_FIRMWARE_BYTES
) -> OvmfFirmware:
    """Parse an OVMF image and fold its pages; memoized for the last images seen.

    Measuring many VM shapes of one firmware then costs only the parts that differ.
    ``pages_digest`` supplies a precomputed digest of the image's pages (what
    ``sev-snp-measure --snp-ovmf-hash`` takes) instead of hashing them.
    """
    if not isinstance(image, bytes):
        raise TypeError("OVMF image must be bytes")
    if len(image) > max_bytes:
        raise EvidenceFormatError(
            f"OVMF image: {len(image)} bytes is more than the {max_bytes} allowed"
        )
    if pages_digest is not None:
        if len(pages_digest) != MEASUREMENT_SIZE:
            raise ConfigError(f"the OVMF pages digest must be {MEASUREMENT_SIZE} bytes")
        metadata = parse_ovmf_metadata(image, max_bytes=max_bytes)
        return OvmfFirmware(metadata=metadata, pages_digest=pages_digest, image=image)
    hit = _cached(image)
    if hit is not None:
        return hit
    metadata = parse_ovmf_metadata(image, max_bytes=max_bytes)
    firmware = OvmfFirmware(metadata=metadata, pages_digest=ovmf_pages_digest(image), image=image)
    _remember(firmware)
    return firmware


def clear_ovmf_cache() -> None:
    with _cache_lock:
        _cache.clear()


# ---------------------------------------------------------------------------------------
# The SEV hashes table (measured direct boot).
# ---------------------------------------------------------------------------------------

_HASH_ENTRY = 16 + 2 + 32
_HASH_TABLE = 16 + 2 + 3 * _HASH_ENTRY
HASH_TABLE_SIZE = (_HASH_TABLE + 15) & ~15  # QEMU pads the table to 16 bytes


def cmdline_bytes(append: str | None) -> bytes:
    """The kernel command line as QEMU hashes it: UTF-8 with its terminating NUL."""
    text = append or ""
    if "\0" in text:
        raise ConfigError("the kernel command line must not contain a NUL character")
    return text.encode() + b"\0"


@dataclass(frozen=True)
class KernelHashes:
    """SHA-256 of the kernel, initrd and command line QEMU boots directly."""

    kernel: bytes
    initrd: bytes
    cmdline: bytes

    def __post_init__(self) -> None:
        for name in ("kernel", "initrd", "cmdline"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ConfigError(f"the {name} hash must be a 32-byte SHA-256 digest")

    @classmethod
    def of(
        cls, kernel: bytes, initrd: bytes | None = None, append: str | None = None
    ) -> KernelHashes:
        """Hashes of in-memory artifacts; no initrd hashes as the empty initrd, like QEMU."""
        return cls(
            kernel=hashlib.sha256(kernel).digest(),
            initrd=hashlib.sha256(initrd or b"").digest(),
            cmdline=hashlib.sha256(cmdline_bytes(append)).digest(),
        )

    @classmethod
    def from_digests(
        cls, kernel_sha256: bytes, initrd_sha256: bytes | None, append: str | None
    ) -> KernelHashes:
        """From file digests computed elsewhere (e.g. streamed from disk)."""
        return cls(
            kernel=kernel_sha256,
            initrd=initrd_sha256 if initrd_sha256 is not None else hashlib.sha256().digest(),
            cmdline=hashlib.sha256(cmdline_bytes(append)).digest(),
        )

    def table(self) -> bytes:
        """The padded SEV hashes table: header, then cmdline, initrd and kernel entries."""
        parts = [GUID_SEV_HASH_TABLE.bytes_le, _HASH_TABLE.to_bytes(2, "little")]
        for guid, digest in (
            (GUID_SEV_HASH_CMDLINE, self.cmdline),
            (GUID_SEV_HASH_INITRD, self.initrd),
            (GUID_SEV_HASH_KERNEL, self.kernel),
        ):
            parts += [guid.bytes_le, _HASH_ENTRY.to_bytes(2, "little"), digest]
        table = b"".join(parts)
        return table + bytes(HASH_TABLE_SIZE - len(table))

    def page(self, offset: int) -> bytes:
        """The page QEMU adds: the table at ``offset``, zeros around it."""
        if not 0 <= offset <= PAGE_SIZE - HASH_TABLE_SIZE:
            raise EvidenceFormatError(
                f"SEV hash table at page offset {offset:#x} does not fit in the page"
            )
        return bytes(offset) + self.table() + bytes(PAGE_SIZE - offset - HASH_TABLE_SIZE)


# ---------------------------------------------------------------------------------------
# VMSA: the SEV-ES save area of each vCPU at launch (AMD64 APM vol. 2, table B-4).
# ---------------------------------------------------------------------------------------

# Segment registers: selector u16, attributes u16, limit u32, base u64.
_SEGMENTS = {"es": 0x00, "cs": 0x10, "ss": 0x20, "ds": 0x30, "fs": 0x40, "gs": 0x50}
_GDTR, _LDTR, _IDTR, _TR = 0x60, 0x70, 0x80, 0x90
_U64 = {
    "efer": 0xD0,
    "cr4": 0x148,
    "cr0": 0x158,
    "dr7": 0x160,
    "dr6": 0x168,
    "rflags": 0x170,
    "rip": 0x178,
    "g_pat": 0x268,
    "rdx": 0x310,
    "sev_features": 0x3B0,
    "xcr0": 0x3E8,
}
_MXCSR = 0x408  # u32
_X87_FCW = 0x410  # u16
_SEG = struct.Struct("<HHIQ")

_EFER_SVME = 0x1000
_CR4_MCE = 0x40
_CR0_ET = 0x10
_DR7_RESET = 0x400
_DR6_RESET = 0xFFFF0FF0
_RFLAGS_RESET = 0x2
_PAT_RESET = 0x0007040600070406
_GCE_PAT = 0x00070106
_XCR0_X87 = 0x1
_MXCSR_RESET = 0x1F80
_FCW_RESET = 0x37F
_EC2_RDX = _GCE_RDX = 0x600


def vmsa_page(eip: int, vmm: VmmType, vcpu_sig: int, sev_features: int) -> bytes:
    """The 4 KiB VMSA page of a vCPU starting at ``eip`` as ``vmm`` initialises it.

    KVM's reset state (EFER.SVME, CR4.MCE, CR0.ET, DR6/DR7, RFLAGS bit 1, PAT, XCR0 x87)
    with CS based at the reset vector's 64 KiB segment; QEMU also sets RDX to the CPUID
    signature and the FPU's reset MXCSR/FCW. EC2 and GCE differ in segment attributes,
    RDX, the FPU state and (GCE) the PAT.
    """
    cs_attr, ss_attr, tr_attr = 0x9B, 0x93, 0x8B
    g_pat = _PAT_RESET
    if vmm is VmmType.QEMU:
        rdx, mxcsr, fcw = vcpu_sig, _MXCSR_RESET, _FCW_RESET
    elif vmm is VmmType.EC2:
        cs_attr = 0x9A if eip == BSP_RESET_EIP else 0x9B
        ss_attr, tr_attr = 0x92, 0x83
        rdx, mxcsr, fcw = _EC2_RDX, 0, 0
    else:
        g_pat = _GCE_PAT
        rdx, mxcsr, fcw = _GCE_RDX, 0, 0
    page = bytearray(PAGE_SIZE)
    for name, off in _SEGMENTS.items():
        if name == "cs":
            _SEG.pack_into(page, off, 0xF000, cs_attr, 0xFFFF, eip & 0xFFFF0000)
        else:
            _SEG.pack_into(page, off, 0, ss_attr if name == "ss" else 0x93, 0xFFFF, 0)
    _SEG.pack_into(page, _GDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _LDTR, 0, 0x82, 0xFFFF, 0)
    _SEG.pack_into(page, _IDTR, 0, 0, 0xFFFF, 0)
    _SEG.pack_into(page, _TR, 0, tr_attr, 0xFFFF, 0)
    values = {
        "efer": _EFER_SVME,
        "cr4": _CR4_MCE,
        "cr0": _CR0_ET,
        "dr7": _DR7_RESET,
        "dr6": _DR6_RESET,
        "rflags": _RFLAGS_RESET,
        "rip": eip & 0xFFFF,
        "g_pat": g_pat,
        "rdx": rdx,
        "sev_features": sev_features,
        "xcr0": _XCR0_X87,
    }
    for name, value in values.items():
        struct.pack_into("<Q", page, _U64[name], value)
    struct.pack_into("<I", page, _MXCSR, mxcsr)
    struct.pack_into("<H", page, _X87_FCW, fcw)
    return bytes(page)


# ---------------------------------------------------------------------------------------
# Inputs and the measurement.
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnpLaunchInputs:
    """Everything the SEV-SNP launch measurement of an OVMF guest depends on.

    ``vcpu_sig`` is the CPUID signature QEMU puts in each vCPU's RDX (see
    :func:`vcpu_signature`); EC2 and GCE do not use it. ``guest_features`` is the
    VMSA SEV_FEATURES value (bit 0, SNPActive, is set for an SNP guest).
    """

    firmware: OvmfFirmware
    vcpus: int
    vcpu_sig: int | None = None
    vmm_type: VmmType = VmmType.QEMU
    guest_features: int = 0x1
    kernel_hashes: KernelHashes | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.vcpus <= MAX_VCPUS:
            raise ConfigError(f"vCPU count {self.vcpus} is out of range (1..{MAX_VCPUS})")
        if not 0 <= self.guest_features < 1 << 64:
            raise ConfigError(f"guest features {self.guest_features:#x} do not fit in 64 bits")
        if self.vcpu_sig is None:
            if self.vmm_type is VmmType.QEMU:
                raise ConfigError(
                    "QEMU guests need the vCPU type or CPUID signature",
                    hint="give --vcpu-type (e.g. EPYC-v4) or --vcpu-sig",
                )
        elif not 0 <= self.vcpu_sig < 1 << 32:
            raise ConfigError(f"vCPU signature {self.vcpu_sig:#x} does not fit in 32 bits")
        meta = self.firmware.metadata
        if self.vcpus > 1 and meta.reset_eip == 0:
            raise EvidenceFormatError("OVMF image: the SEV-ES reset block gives AP address 0")
        if self.kernel_hashes is not None:
            meta.require_direct_boot()


def _metadata_updates(inputs: SnpLaunchInputs) -> Iterator[tuple[MetadataSection, PageType]]:
    """The metadata sections in the order the VMM adds them, with their page type."""
    vmm = inputs.vmm_type
    sections = inputs.firmware.metadata.sections
    for s in sections:
        if s.kind is SectionType.CPUID:
            if vmm is not VmmType.EC2:
                yield s, PageType.CPUID
        elif s.kind is SectionType.SNP_SEC_MEM:
            yield s, PageType.UNMEASURED if vmm is VmmType.GCE else PageType.ZERO
        elif s.kind is SectionType.SNP_SECRETS:
            yield s, PageType.SECRETS
        elif s.kind is SectionType.SVSM_CAA:
            yield s, PageType.ZERO
        else:
            yield s, PageType.NORMAL if inputs.kernel_hashes is not None else PageType.ZERO
    if vmm is VmmType.EC2:  # EC2 adds the CPUID page after every other section
        for s in sections:
            if s.kind is SectionType.CPUID:
                yield s, PageType.CPUID


def expected_measurement(inputs: SnpLaunchInputs) -> bytes:
    """The 48-byte SEV-SNP launch MEASUREMENT of the guest ``inputs`` describe."""
    meta = inputs.firmware.metadata
    digest = inputs.firmware.pages_digest
    for section, page_type in _metadata_updates(inputs):
        if page_type is PageType.NORMAL:  # the SEV hashes table page
            assert inputs.kernel_hashes is not None
            assert meta.hash_table is not None
            page = inputs.kernel_hashes.page(meta.hash_table.offset_in_page)
            digest = _update_normal_pages(digest, page, section.gpa)
        elif page_type in (PageType.SECRETS, PageType.CPUID):
            digest = _update(digest, page_type, section.gpa, _ZERO_CONTENTS)
        else:
            digest = _update_empty_pages(digest, page_type, section.pages)
    sig = inputs.vcpu_sig or 0
    features = inputs.guest_features
    bsp = _sha384(vmsa_page(BSP_RESET_EIP, inputs.vmm_type, sig, features)).digest()
    digest = _update(digest, PageType.VMSA, _VMSA_GPA, bsp)
    if inputs.vcpus > 1:
        ap = _sha384(vmsa_page(meta.reset_eip, inputs.vmm_type, sig, features)).digest()
        prefix = ap + _TAILS[PageType.VMSA] + _VMSA_GPA.to_bytes(8, "little")
        for _ in range(inputs.vcpus - 1):
            digest = _sha384(digest + prefix).digest()
    return digest
