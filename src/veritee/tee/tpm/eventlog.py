"""The TCG PC Client platform firmware event log (``binary_bios_measurements``).

Byte format only (TCG PC Client Platform Firmware Profile, section 10): no hashing, no
policy. Two layouts exist and both are little-endian:

* legacy SHA-1 logs: every record is a ``TCG_PCR_EVENT`` (PCR, type, 20-byte SHA-1, data);
* crypto-agile logs: the first record is a ``TCG_PCR_EVENT`` whose data is the
  ``TCG_EfiSpecIDEvent`` ("Spec ID Event03") naming the banks and digest sizes; every
  later record is a ``TCG_PCR_EVENT2`` carrying one digest per bank.

Firmware may leave zero padding after the last record; it is kept so ``to_bytes``
round-trips. Decoders for the event data veritee reads claims from (UEFI variables,
image load events, signature lists, StartupLocality) are here too.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError
from veritee.tee.tpm.structures import HASH_SIZES, TpmAlg, hash_name

DEFAULT_MAX_EVENTS = 65536
MAX_EVENT_DATA = 16 << 20
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
SPEC_ID_SIGNATURE_V1 = b"Spec ID Event02\0"  # TCG 1.2-era EFI logs: SHA-1 only, like legacy
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"


class EventType(enum.IntEnum):
    """TCG event types (PC Client PFP, table 9)."""

    EV_PREBOOT_CERT = 0x0
    EV_POST_CODE = 0x1
    EV_UNUSED = 0x2
    EV_NO_ACTION = 0x3
    EV_SEPARATOR = 0x4
    EV_ACTION = 0x5
    EV_EVENT_TAG = 0x6
    EV_S_CRTM_CONTENTS = 0x7
    EV_S_CRTM_VERSION = 0x8
    EV_CPU_MICROCODE = 0x9
    EV_PLATFORM_CONFIG_FLAGS = 0xA
    EV_TABLE_OF_DEVICES = 0xB
    EV_COMPACT_HASH = 0xC
    EV_IPL = 0xD
    EV_IPL_PARTITION_DATA = 0xE
    EV_NONHOST_CODE = 0xF
    EV_NONHOST_CONFIG = 0x10
    EV_NONHOST_INFO = 0x11
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x12
    EV_POST_CODE2 = 0x13
    EV_EFI_EVENT_BASE = 0x80000000
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
    EV_EFI_HANDOFF_TABLES2 = 0x8000000B
    EV_EFI_VARIABLE_BOOT2 = 0x8000000C
    EV_EFI_GPT_EVENT2 = 0x8000000D
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
    EV_EFI_SPDM_FIRMWARE_BLOB = 0x800000E1
    EV_EFI_SPDM_FIRMWARE_CONFIG = 0x800000E2
    EV_EFI_SPDM_DEVICE_POLICY = 0x800000E3
    EV_EFI_SPDM_DEVICE_AUTHORITY = 0x800000E4


_EVENT_NAMES = {e.value: e.name for e in EventType}


def event_type_name(value: int) -> str:
    return _EVENT_NAMES.get(value, f"{value:#010x}")


@dataclass(frozen=True)
class SpecIdAlgorithm:
    alg: int
    digest_size: int


@dataclass(frozen=True)
class SpecIdEvent:
    """TCG_EfiSpecIDEvent: the banks of a crypto-agile log and their digest sizes."""

    signature: bytes
    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int
    algorithms: tuple[SpecIdAlgorithm, ...]
    vendor_info: bytes

    @classmethod
    def from_bytes(cls, data: bytes) -> SpecIdEvent:
        rd = Reader(data, what="Spec ID event")
        sig = rd.bytes(16, "signature")
        platform_class = rd.u32("platformClass")
        minor, major, errata, uintn = rd.u8(), rd.u8(), rd.u8(), rd.u8()
        n = rd.u32("numberOfAlgorithms")
        if n == 0 or n > 16:
            raise EvidenceFormatError(f"Spec ID event: {n} algorithms is not a valid count")
        algs = []
        for _ in range(n):
            alg = rd.u16("algorithmId")
            size = rd.u16("digestSize")
            known = HASH_SIZES.get(alg)
            if known is not None and known != size:
                raise EvidenceFormatError(
                    f"Spec ID event: {hash_name(alg)} digest size {size} should be {known}"
                )
            if size == 0 or size > 64:
                raise EvidenceFormatError(f"Spec ID event: digest size {size} is not valid")
            algs.append(SpecIdAlgorithm(alg, size))
        if len({a.alg for a in algs}) != len(algs):
            raise EvidenceFormatError("Spec ID event lists an algorithm twice")
        vendor_size = rd.u8("vendorInfoSize")
        vendor = rd.bytes(vendor_size, "vendorInfo")
        rd.expect_end()
        return cls(sig, platform_class, minor, major, errata, uintn, tuple(algs), vendor)

    def to_bytes(self) -> bytes:
        w = Writer().bytes(self.signature, 16).u32(self.platform_class)
        w.u8(self.spec_version_minor).u8(self.spec_version_major).u8(self.spec_errata)
        w.u8(self.uintn_size).u32(len(self.algorithms))
        for a in self.algorithms:
            w.u16(a.alg).u16(a.digest_size)
        w.u8(len(self.vendor_info)).bytes(self.vendor_info)
        return w.getvalue()


@dataclass(frozen=True)
class Event:
    """One measurement record. ``digests`` holds (bank, digest) in log order; a legacy
    record has exactly one SHA-1 digest. ``number`` counts records from 0 (the Spec ID
    header of an agile log is record 0)."""

    number: int
    offset: int
    pcr: int
    type: int
    digests: tuple[tuple[int, bytes], ...]
    data: bytes

    @property
    def type_name(self) -> str:
        return event_type_name(self.type)

    def digest(self, alg: int) -> bytes | None:
        for a, d in self.digests:
            if a == alg:
                return d
        return None

    def describe(self) -> str:
        return f"event #{self.number} ({self.type_name}, PCR {self.pcr}, offset {self.offset:#x})"


class LogFormat(enum.Enum):
    LEGACY_SHA1 = "sha1-legacy"
    CRYPTO_AGILE = "crypto-agile"


@dataclass(frozen=True)
class EventLog:
    """A parsed log. ``header`` is the Spec ID record of an agile log (never extended)."""

    format: LogFormat
    header: Event | None
    spec_id: SpecIdEvent | None
    events: tuple[Event, ...]
    padding: int = 0

    @property
    def algorithms(self) -> tuple[int, ...]:
        if self.spec_id is None:
            return (TpmAlg.SHA1,)
        return tuple(a.alg for a in self.spec_id.algorithms)

    @classmethod
    def from_bytes(cls, data: bytes, *, max_events: int = DEFAULT_MAX_EVENTS) -> EventLog:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("event log must be bytes")
        rd = Reader(data, what="event log")
        if not data or not data.strip(b"\0"):
            raise EvidenceFormatError("event log is empty")
        first = _read_legacy(rd, 0)
        spec_id: SpecIdEvent | None = None
        if (
            first.type == EventType.EV_NO_ACTION
            and first.pcr == 0
            and first.data[:16] == SPEC_ID_SIGNATURE
        ):
            if any(first.digests[0][1]):
                raise EvidenceFormatError("Spec ID event must carry an all-zero digest")
            spec_id = SpecIdEvent.from_bytes(first.data)
        events: list[Event] = []
        if spec_id is None:
            events.append(first)
            fmt = LogFormat.LEGACY_SHA1
            header = None
        else:
            fmt = LogFormat.CRYPTO_AGILE
            header = first
        sizes = {a.alg: a.digest_size for a in spec_id.algorithms} if spec_id else {}
        number = 1
        padding = 0
        while rd.remaining:
            if not any(data[rd.offset :]):
                padding = rd.remaining
                break
            if len(events) >= max_events:
                raise EvidenceFormatError(f"event log has more than {max_events} events")
            if spec_id is None:
                events.append(_read_legacy(rd, number))
            else:
                events.append(_read_agile(rd, number, sizes))
            number += 1
        return cls(fmt, header, spec_id, tuple(events), padding)

    def to_bytes(self) -> bytes:
        w = Writer()
        if self.header is not None:
            _write_legacy(w, self.header)
        for e in self.events:
            if self.format is LogFormat.LEGACY_SHA1:
                _write_legacy(w, e)
            else:
                _write_agile(w, e)
        w.zeros(self.padding)
        return w.getvalue()

    @property
    def startup_locality(self) -> int | None:
        """Locality of TPM2_Startup from the StartupLocality event (PCR 0's reset value)."""
        for e in self.events:
            if e.type == EventType.EV_NO_ACTION and e.pcr == 0:
                loc = parse_startup_locality(e.data)
                if loc is not None:
                    return loc
        return None


def _read_legacy(rd: Reader, number: int) -> Event:
    offset = rd.offset
    pcr = rd.u32("pcrIndex")
    typ = rd.u32("eventType")
    dig = rd.bytes(20, "digest")
    size = rd.u32("eventSize")
    if size > MAX_EVENT_DATA:
        raise EvidenceFormatError(f"event at {offset:#x}: data size {size} is too large")
    data = rd.bytes(size, "event data")
    return Event(number, offset, pcr, typ, ((TpmAlg.SHA1, dig),), data)


def _read_agile(rd: Reader, number: int, sizes: dict[int, int]) -> Event:
    offset = rd.offset
    pcr = rd.u32("pcrIndex")
    typ = rd.u32("eventType")
    count = rd.u32("digests.count")
    if count > len(sizes):
        raise EvidenceFormatError(
            f"event at {offset:#x}: {count} digests but the log declares {len(sizes)} banks"
        )
    digests = []
    for _ in range(count):
        alg = rd.u16("hashAlg")
        size = sizes.get(alg)
        if size is None:
            raise EvidenceFormatError(
                f"event at {offset:#x}: digest for bank {alg:#06x} the Spec ID event does not list"
            )
        digests.append((alg, rd.bytes(size, "digest")))
    size = rd.u32("eventSize")
    if size > MAX_EVENT_DATA:
        raise EvidenceFormatError(f"event at {offset:#x}: data size {size} is too large")
    data = rd.bytes(size, "event data")
    return Event(number, offset, pcr, typ, tuple(digests), data)


def _write_legacy(w: Writer, e: Event) -> None:
    w.u32(e.pcr).u32(e.type).bytes(e.digests[0][1], 20).u32(len(e.data)).bytes(e.data)


def _write_agile(w: Writer, e: Event) -> None:
    w.u32(e.pcr).u32(e.type).u32(len(e.digests))
    for alg, d in e.digests:
        w.u16(alg).bytes(d)
    w.u32(len(e.data)).bytes(e.data)


# -- event data -----------------------------------------------------------------------------


def parse_startup_locality(data: bytes) -> int | None:
    """The locality byte of a StartupLocality EV_NO_ACTION event, else None."""
    if len(data) == 17 and data[:16] == STARTUP_LOCALITY_SIGNATURE:
        return data[16]
    return None


def guid_str(raw: bytes) -> str:
    """An EFI_GUID (mixed-endian, 16 bytes) as its canonical text form."""
    return str(uuid.UUID(bytes_le=raw))


EFI_GLOBAL_VARIABLE = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_IMAGE_SECURITY_DATABASE = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
EFI_CERT_X509 = "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"
EFI_CERT_SHA1 = "826ca512-cf10-4ac9-b187-be01496631bd"
EFI_CERT_SHA256 = "c1c41626-504c-4092-aca9-41f936934328"
EFI_CERT_SHA384 = "ff3e5307-9fd0-48c9-85f1-8ad56c701e01"
EFI_CERT_SHA512 = "093e0fae-a6c4-4f50-9f1b-d41e2b89c19a"
EFI_CERT_X509_SHA256 = "3bd2a492-96c0-4079-b420-fcf98ef103ed"
EFI_CERT_RSA2048 = "3c5766e8-269c-4e34-aa14-ed776e85b3b6"
SIGNATURE_TYPE_NAMES = {
    EFI_CERT_X509: "x509",
    EFI_CERT_SHA1: "sha1",
    EFI_CERT_SHA256: "sha256",
    EFI_CERT_SHA384: "sha384",
    EFI_CERT_SHA512: "sha512",
    EFI_CERT_X509_SHA256: "x509-sha256",
    EFI_CERT_RSA2048: "rsa2048",
}


@dataclass(frozen=True)
class UefiVariableData:
    """UEFI_VARIABLE_DATA: the variable's GUID, name and contents as measured."""

    variable_guid: str
    name: str
    data: bytes

    @classmethod
    def from_bytes(cls, raw: bytes, *, allow_trailing: bool = False) -> UefiVariableData:
        """Parse the structure; ``allow_trailing`` tolerates bytes after VariableData (shim's
        authority events carry a few)."""
        rd = Reader(raw, what="UEFI_VARIABLE_DATA")
        guid = guid_str(rd.bytes(16, "VariableName"))
        name_len = rd.u64("UnicodeNameLength")
        data_len = rd.u64("VariableDataLength")
        if name_len > 4096 or data_len > MAX_EVENT_DATA:
            raise EvidenceFormatError("UEFI_VARIABLE_DATA: lengths out of range")
        name_raw = rd.bytes(int(name_len) * 2, "UnicodeName")
        try:
            name = name_raw.decode("utf-16-le")
        except UnicodeDecodeError:
            raise EvidenceFormatError("UEFI_VARIABLE_DATA: name is not UTF-16") from None
        data = rd.bytes(int(data_len), "VariableData")
        if not allow_trailing:
            rd.expect_end()
        return cls(guid, name, data)

    def to_bytes(self) -> bytes:
        name = self.name.encode("utf-16-le")
        return (
            Writer()
            .bytes(uuid.UUID(self.variable_guid).bytes_le)
            .u64(len(name) // 2)
            .u64(len(self.data))
            .bytes(name)
            .bytes(self.data)
            .getvalue()
        )


@dataclass(frozen=True)
class SignatureEntry:
    """One EFI_SIGNATURE_DATA of an EFI_SIGNATURE_LIST (db, dbx, KEK, PK, MokList...)."""

    signature_type: str  # GUID
    owner: str  # GUID
    data: bytes  # DER certificate, or a hash

    @property
    def type_name(self) -> str:
        return SIGNATURE_TYPE_NAMES.get(self.signature_type, self.signature_type)


def parse_signature_lists(raw: bytes) -> tuple[SignatureEntry, ...]:
    """Every EFI_SIGNATURE_DATA in a sequence of EFI_SIGNATURE_LISTs (UEFI 2.x, 32.4.1)."""
    rd = Reader(raw, what="EFI_SIGNATURE_LIST")
    out: list[SignatureEntry] = []
    while rd.remaining:
        start = rd.offset
        sig_type = guid_str(rd.bytes(16, "SignatureType"))
        list_size = rd.u32("SignatureListSize")
        header_size = rd.u32("SignatureHeaderSize")
        sig_size = rd.u32("SignatureSize")
        body = list_size - 28 - header_size
        if list_size < 28 or body < 0 or sig_size < 16 or body % sig_size:
            raise EvidenceFormatError(
                f"EFI_SIGNATURE_LIST at {start:#x}: sizes {list_size}/{header_size}/{sig_size} "
                "are inconsistent"
            )
        rd.skip(header_size, "SignatureHeader")
        for _ in range(body // sig_size):
            owner = guid_str(rd.bytes(16, "SignatureOwner"))
            out.append(SignatureEntry(sig_type, owner, rd.bytes(sig_size - 16, "SignatureData")))
    return tuple(out)


def _is_der_sequence(data: bytes) -> bool:
    """Whether ``data`` is exactly one DER SEQUENCE (a certificate, for our purposes)."""
    if len(data) < 2 or data[0] != 0x30:
        return False
    first = data[1]
    if first < 0x80:
        return 2 + first == len(data)
    n = first & 0x7F
    if n == 0 or n > 4 or len(data) < 2 + n:
        return False
    return 2 + n + int.from_bytes(data[2 : 2 + n], "big") == len(data)


def parse_signature_data(raw: bytes) -> SignatureEntry:
    """What EV_EFI_VARIABLE_AUTHORITY measures: firmware logs the db entry used as an
    EFI_SIGNATURE_DATA (owner GUID + certificate or hash); shim logs its vendor
    certificate bare. Both are read; a hash entry is 20/32/48/64 bytes after the owner."""
    if _is_der_sequence(raw):
        return SignatureEntry(EFI_CERT_X509, "", raw)
    rd = Reader(raw, what="EFI_SIGNATURE_DATA")
    owner = guid_str(rd.bytes(16, "SignatureOwner"))
    data = rd.rest("SignatureData")
    kind: str | None
    if _is_der_sequence(data):
        kind = EFI_CERT_X509
    else:
        kind = {20: EFI_CERT_SHA1, 32: EFI_CERT_SHA256, 48: EFI_CERT_SHA384,
                64: EFI_CERT_SHA512}.get(len(data))
        if kind is None:
            raise EvidenceFormatError("EFI_SIGNATURE_DATA holds neither a certificate nor a hash")
    return SignatureEntry(kind, owner, data)


@dataclass(frozen=True)
class ImageLoadEvent:
    """UEFI_IMAGE_LOAD_EVENT of EV_EFI_BOOT_SERVICES_APPLICATION/DRIVER events."""

    location: int
    length: int
    link_time_address: int
    device_path: bytes

    @classmethod
    def from_bytes(cls, raw: bytes) -> ImageLoadEvent:
        rd = Reader(raw, what="UEFI_IMAGE_LOAD_EVENT")
        loc = rd.u64("ImageLocationInMemory")
        length = rd.u64("ImageLengthInMemory")
        link = rd.u64("ImageLinkTimeAddress")
        dp_len = rd.u64("LengthOfDevicePath")
        if dp_len > rd.remaining:
            raise EvidenceFormatError("UEFI_IMAGE_LOAD_EVENT: device path longer than the event")
        dp = rd.bytes(int(dp_len), "DevicePath")
        return cls(loc, length, link, dp)

    def file_paths(self) -> tuple[str, ...]:
        """The MEDIA_FILEPATH_DP nodes of the device path (e.g. ``\\EFI\\BOOT\\BOOTX64.EFI``)."""
        out = []
        rd = Reader(self.device_path, what="device path")
        while rd.remaining >= 4:
            typ, sub = rd.u8("Type"), rd.u8("SubType")
            length = rd.u16("Length")
            if length < 4:
                break
            body = rd.bytes(length - 4, "node")
            if typ == 0x7F:  # end of device path
                break
            if typ == 0x04 and sub == 0x04:
                try:
                    out.append(body.decode("utf-16-le").rstrip("\0"))
                except UnicodeDecodeError:
                    raise EvidenceFormatError("device path: file path is not UTF-16") from None
        return tuple(out)
