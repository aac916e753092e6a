"""The certificate table a guest receives with an extended report (SNP_GET_EXT_REPORT).

Layout (Linux sev-guest ABI / GHCB spec): a list of 24-byte entries
``{GUID (16, RFC 4122 mixed-endian), offset u32, length u32}`` terminated by an
all-zero entry; offsets are relative to the start of the table. Byte format
only: certificates stay as DER bytes here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError

GUID_VCEK = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
GUID_VLEK = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
GUID_ASK = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
GUID_ARK = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")

GUID_NAMES = {GUID_VCEK: "VCEK", GUID_VLEK: "VLEK", GUID_ASK: "ASK", GUID_ARK: "ARK"}
_ENTRY = 24
MAX_ENTRIES = 64  # real tables hold 3-4 entries; a bound keeps hostile input cheap


@dataclass(frozen=True)
class CertEntry:
    guid: uuid.UUID
    data: bytes

    @property
    def name(self) -> str:
        return GUID_NAMES.get(self.guid, str(self.guid))


@dataclass(frozen=True)
class CertTable:
    entries: tuple[CertEntry, ...]

    def get(self, guid: uuid.UUID) -> bytes | None:
        for e in self.entries:
            if e.guid == guid:
                return e.data
        return None

    @classmethod
    def from_bytes(cls, data: bytes) -> CertTable:
        rd = Reader(data, what="SNP certificate table")
        raw_entries: list[tuple[uuid.UUID, int, int]] = []
        while True:
            if len(raw_entries) > MAX_ENTRIES:
                raise EvidenceFormatError(f"SNP certificate table: more than {MAX_ENTRIES} entries")
            guid_bytes = rd.bytes(16, "GUID")
            offset = rd.u32("offset")
            length = rd.u32("length")
            if not any(guid_bytes) and offset == 0 and length == 0:
                break
            raw_entries.append((uuid.UUID(bytes_le=guid_bytes), offset, length))
        header_end = rd.offset
        entries = []
        seen: set[uuid.UUID] = set()
        for guid, offset, length in raw_entries:
            if guid in seen:
                raise EvidenceFormatError(f"SNP certificate table: duplicate entry {guid}")
            seen.add(guid)
            if offset < header_end or offset + length > len(data):
                raise EvidenceFormatError(
                    f"SNP certificate table: entry {GUID_NAMES.get(guid, guid)} points outside "
                    f"the table (offset {offset:#x}, length {length})"
                )
            entries.append(CertEntry(guid, data[offset : offset + length]))
        return cls(tuple(entries))

    def to_bytes(self) -> bytes:
        """Serialize canonically: entries in order, data packed after the terminator."""
        offset = _ENTRY * (len(self.entries) + 1)
        w = Writer()
        for e in self.entries:
            w.bytes(e.guid.bytes_le).u32(offset).u32(len(e.data))
            offset += len(e.data)
        w.zeros(_ENTRY)
        for e in self.entries:
            w.bytes(e.data)
        return w.getvalue()
