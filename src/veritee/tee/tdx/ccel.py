"""The Confidential Computing Event Log (CCEL): the ACPI ``CCEL`` table and the TCG2 log.

Byte format only: no crypto, no policy. The log is in TCG2 crypto-agile format:
a SHA-1-format ``Spec ID Event03`` header event (never extended) that lists the
digest sizes, then ``TCG_PCR_EVENT2`` records whose index is the CC measurement
register index (0 = MRTD, 1..4 = RTMR0..3). The log area is padded with zero
or 0xFF bytes after the last event.
"""

from __future__ import annotations

from dataclasses import dataclass

from veritee.binary import Reader
from veritee.errors import EvidenceFormatError

CCEL_TABLE_SIZE = 56
MAX_EVENTS = 20000
MAX_EVENT_BYTES = 1 << 20
EV_NO_ACTION = 0x00000003
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
TPM_ALG_SHA384 = 0x000C

EVENT_TYPES = {
    0x00000001: "EV_POST_CODE",
    0x00000003: "EV_NO_ACTION",
    0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000D: "EV_IPL",
    0x0000000E: "EV_IPL_PARTITION_DATA",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x80000010: "EV_EFI_HCRTM_EVENT",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
    0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
}


@dataclass(frozen=True)
class CcelTable:
    """The ACPI CCEL table: where the log area is and how large it is at least."""

    revision: int
    oem_id: bytes
    cc_type: int
    cc_subtype: int
    log_area_minimum_length: int
    log_area_start_address: int

    @classmethod
    def from_bytes(cls, data: bytes) -> CcelTable:
        rd = Reader(data, what="CCEL table")
        if rd.bytes(4, "signature") != b"CCEL":
            raise EvidenceFormatError("CCEL table: signature is not 'CCEL'")
        length = rd.u32("length")
        if length != CCEL_TABLE_SIZE or len(data) < CCEL_TABLE_SIZE:
            raise EvidenceFormatError(f"CCEL table must be {CCEL_TABLE_SIZE} bytes")
        if sum(data[:CCEL_TABLE_SIZE]) & 0xFF:
            raise EvidenceFormatError("CCEL table: checksum does not add up to zero")
        revision = rd.u8("revision")
        rd.skip(1, "checksum")
        oem_id = rd.bytes(6, "OEM id")
        rd.skip(8 + 4 + 4 + 4, "OEM table id, revisions, creator")
        cc_type = rd.u8("CC type")
        cc_subtype = rd.u8("CC subtype")
        rd.skip(2, "reserved")
        return cls(
            revision=revision,
            oem_id=oem_id,
            cc_type=cc_type,
            cc_subtype=cc_subtype,
            log_area_minimum_length=rd.u64("LAML"),
            log_area_start_address=rd.u64("LASA"),
        )


@dataclass(frozen=True)
class CcelEvent:
    mr_index: int
    """0 = MRTD, 1..4 = RTMR0..3."""
    event_type: int
    digests: tuple[tuple[int, bytes], ...]
    data: bytes

    @property
    def type_name(self) -> str:
        return EVENT_TYPES.get(self.event_type, f"{self.event_type:#010x}")

    def digest(self, alg: int) -> bytes | None:
        for alg_id, value in self.digests:
            if alg_id == alg:
                return value
        return None


@dataclass(frozen=True)
class CcelLog:
    digest_sizes: tuple[tuple[int, int], ...]
    events: tuple[CcelEvent, ...]

    @classmethod
    def from_bytes(cls, data: bytes) -> CcelLog:
        rd = Reader(data, what="CC event log")
        rd.u32("header event index")
        if rd.u32("header event type") != EV_NO_ACTION:
            raise EvidenceFormatError("CC event log must start with the EV_NO_ACTION Spec ID event")
        rd.skip(20, "header event SHA-1 digest")
        size = rd.u32("header event size")
        spec = Reader(rd.bytes(size, "Spec ID event"), what="Spec ID event")
        if spec.bytes(16, "signature") != SPEC_ID_SIGNATURE:
            raise EvidenceFormatError("CC event log: first event is not 'Spec ID Event03'")
        spec.skip(4 + 4, "platform class, version, errata, uintn size")
        count = spec.u32("number of algorithms")
        if not 1 <= count <= 8:
            raise EvidenceFormatError(f"CC event log: {count} digest algorithms")
        sizes = []
        for _ in range(count):
            alg = spec.u16("algorithm id")
            digest_size = spec.u16("digest size")
            if not 1 <= digest_size <= 64:
                raise EvidenceFormatError(f"CC event log: digest size {digest_size}")
            sizes.append((alg, digest_size))
        size_of = dict(sizes)
        events: list[CcelEvent] = []
        while rd.remaining >= 8:
            head = data[rd.offset : rd.offset + 8]
            if head in (bytes(8), b"\xff" * 8):
                break  # the padded end of the log area
            if len(events) >= MAX_EVENTS:
                raise EvidenceFormatError(f"CC event log has more than {MAX_EVENTS} events")
            index = rd.u32("MR index")
            event_type = rd.u32("event type")
            n = rd.u32("digest count")
            if n > len(size_of):
                raise EvidenceFormatError(f"CC event log: event with {n} digests")
            digests = []
            for _ in range(n):
                alg = rd.u16("digest algorithm")
                if alg not in size_of:
                    raise EvidenceFormatError(f"CC event log: unknown digest algorithm {alg:#x}")
                digests.append((alg, rd.bytes(size_of[alg], "digest")))
            event_size = rd.u32("event size")
            if event_size > MAX_EVENT_BYTES:
                raise EvidenceFormatError("CC event log: event larger than 1 MiB")
            events.append(
                CcelEvent(index, event_type, tuple(digests), rd.bytes(event_size, "event data"))
            )
        return cls(tuple(sizes), tuple(events))
