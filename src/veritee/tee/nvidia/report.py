"""NVIDIA device attestation report: SPDM 1.1 GET_MEASUREMENTS request || MEASUREMENTS response.

Byte format only: no crypto, no policy. Layout (DMTF DSP0274 1.1, as NVIDIA's
local GPU verifier and Trustee read it; all integers little-endian)::

    request  (37)   SPDMVersion 0x11 | 0xE0 | Param1 (bit 0: signature wanted)
                    | Param2 (measurement operation, 0xFF = all) | Nonce (32) | SlotIDParam
    response        SPDMVersion | 0x60 | Param1 | Param2 (SlotIDParam) | NumberOfBlocks
                    | MeasurementRecordLength (u24) | MeasurementRecord | Nonce (32)
                    | OpaqueLength (u16) | OpaqueData | Signature (96: P-384 r || s)
    block           Index | MeasurementSpecification (0x01 DMTF) | MeasurementSize (u16)
                    | DMTFSpecMeasurementValueType | DMTFSpecMeasurementValueSize (u16) | value
    opaque data     NVIDIA's fields: DataType (u16) | DataSize (u16) | Data, repeated

The signature covers the request and the response up to the signature. Some
collectors append zero padding after the signature (the Trustee CoCo sample has
one byte): it is kept for ``to_bytes`` and never signed or read.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError

SPDM_VERSION_1_1 = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
REQUEST_SIZE = 37
NONCE_SIZE = 32
SIGNATURE_SIZE = 96
DMTF_MEASUREMENT_SPEC = 0x01
MAX_OPAQUE_LENGTH = 1024  # DSP0274 1.1: OpaqueLength shall be at most 1024
MAX_REPORT_BYTES = 1 << 20
ALL_MEASUREMENTS = 0xFF
_SIGNATURE_REQUESTED = 0x01


class OpaqueType(enum.IntEnum):
    """NVIDIA opaque data field ids (nvtrust ``OPAQUE_FIELD_ID_*``)."""

    CERT_ISSUER_NAME = 1
    CERT_AUTHORITY_KEY_IDENTIFIER = 2
    DRIVER_VERSION = 3
    GPU_INFO = 4
    SKU = 5
    VBIOS_VERSION = 6
    MANUFACTURER_ID = 7
    TAMPER_DETECTION = 8
    SMC = 9
    VPR = 10
    NVDEC0_STATUS = 11
    MSRSCNT = 12
    CPRINFO = 13
    BOARD_ID = 14
    CHIP_SKU = 15
    CHIP_SKU_MOD = 16
    PROJECT = 17
    PROJECT_SKU = 18
    PROJECT_SKU_MOD = 19
    FWID = 20
    PROTECTED_PCIE_STATUS = 21
    SWITCH_PDI = 22  # NVSwitch: its own device PDI
    FLOORSWEPT_PORTS = 23
    POSITION_ID = 24
    LOCK_SWITCH_STATUS = 25
    SWITCH_GPU_PDIS = 26  # NVSwitch only
    SWITCH_PORTS = 27  # NVSwitch only
    GPU_LINK_CONN = 32
    SYS_ENABLE_STATUS = 33
    OPAQUE_DATA_VERSION = 34
    CHIP_INFO = 35
    FEATURE_FLAG = 36


# Fields that are arrays of fixed-size items, and little-endian integers of at most 8 bytes.
_OPAQUE_UNITS: dict[int, int] = {
    OpaqueType.MSRSCNT: 4,
    OpaqueType.SWITCH_PDI: 8,
    OpaqueType.SWITCH_GPU_PDIS: 8,
}
_OPAQUE_INTEGERS: frozenset[int] = frozenset(
    {OpaqueType.OPAQUE_DATA_VERSION, OpaqueType.FEATURE_FLAG}
)


def _u24(r: Reader, field: str) -> int:
    return int.from_bytes(r.bytes(3, field), "little")


@dataclass(frozen=True)
class MeasurementsRequest:
    """The GET_MEASUREMENTS request the relying party's nonce went into."""

    version: int
    param1: int
    param2: int
    nonce: bytes
    slot_id: int

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_SIZE:
            raise EvidenceFormatError(f"SPDM request nonce must be {NONCE_SIZE} bytes")

    @property
    def signature_requested(self) -> bool:
        return bool(self.param1 & _SIGNATURE_REQUESTED)

    @classmethod
    def read(cls, r: Reader) -> MeasurementsRequest:
        version = r.u8("request SPDMVersion")
        if version != SPDM_VERSION_1_1:
            raise EvidenceFormatError(
                f"SPDM version {version:#04x} is not supported (only 1.1, 0x11)",
                hint="Hopper GPUs and LS10 NVSwitches answer SPDM 1.1",
            )
        code = r.u8("request RequestResponseCode")
        if code != GET_MEASUREMENTS:
            raise EvidenceFormatError(f"SPDM request code {code:#04x} is not GET_MEASUREMENTS")
        param1 = r.u8("request Param1")
        if param1 != _SIGNATURE_REQUESTED:
            raise EvidenceFormatError(
                "SPDM GET_MEASUREMENTS must request a signature (Param1 = 0x01, reserved bits 0)"
            )
        param2 = r.u8("request Param2")
        if param2 == 0:
            raise EvidenceFormatError("SPDM request asks only for the measurement count")
        nonce = r.bytes(NONCE_SIZE, "request Nonce")
        slot = r.u8("request SlotIDParam")
        if slot > 7:
            raise EvidenceFormatError(f"SPDM request slot {slot} out of range (0..7)")
        return cls(version, param1, param2, nonce, slot)

    def to_bytes(self) -> bytes:
        w = Writer().u8(self.version).u8(GET_MEASUREMENTS).u8(self.param1).u8(self.param2)
        return w.bytes(self.nonce, NONCE_SIZE).u8(self.slot_id).getvalue()


@dataclass(frozen=True)
class MeasurementBlock:
    """One DMTF measurement block."""

    index: int
    value_type: int  # DMTFSpecMeasurementValueType (bit 7: raw bitstream, else digest)
    value: bytes

    @property
    def raw_bitstream(self) -> bool:
        return bool(self.value_type & 0x80)

    @classmethod
    def read(cls, r: Reader) -> MeasurementBlock:
        index = r.u8("block Index")
        spec = r.u8("block MeasurementSpecification")
        if spec != DMTF_MEASUREMENT_SPEC:
            raise EvidenceFormatError(
                f"measurement block {index}: specification {spec:#04x} is not DMTF (0x01)"
            )
        size = r.u16("block MeasurementSize")
        body = Reader(r.bytes(size, f"block {index} Measurement"), what=f"block {index}")
        value_type = body.u8("DMTFSpecMeasurementValueType")
        value_size = body.u16("DMTFSpecMeasurementValueSize")
        value = body.bytes(value_size, "DMTFSpecMeasurementValue")
        body.expect_end()
        return cls(index, value_type, value)

    def to_bytes(self) -> bytes:
        w = Writer().u8(self.index).u8(DMTF_MEASUREMENT_SPEC).u16(3 + len(self.value))
        return w.u8(self.value_type).u16(len(self.value)).bytes(self.value).getvalue()


@dataclass(frozen=True)
class OpaqueField:
    """One NVIDIA opaque data item; ``type`` is an :class:`OpaqueType` value when known."""

    type: int
    value: bytes

    @property
    def known(self) -> OpaqueType | None:
        try:
            return OpaqueType(self.type)
        except ValueError:
            return None

    def to_bytes(self) -> bytes:
        return Writer().u16(self.type).u16(len(self.value)).bytes(self.value).getvalue()


def parse_opaque(data: bytes) -> tuple[OpaqueField, ...]:
    r = Reader(data, what="SPDM opaque data")
    fields: list[OpaqueField] = []
    seen: set[int] = set()
    while r.remaining:
        kind = r.u16("DataType")
        size = r.u16("DataSize")
        value = r.bytes(size, f"opaque field {kind} data")
        if kind in seen:
            raise EvidenceFormatError(f"SPDM opaque data: field {kind} appears twice")
        seen.add(kind)
        unit = _OPAQUE_UNITS.get(kind)
        if unit is not None and len(value) % unit:
            raise EvidenceFormatError(
                f"SPDM opaque field {OpaqueType(kind).name} must be a multiple of {unit} bytes"
            )
        if kind in _OPAQUE_INTEGERS and len(value) > 8:
            raise EvidenceFormatError(f"SPDM opaque field {OpaqueType(kind).name} exceeds 8 bytes")
        fields.append(OpaqueField(kind, value))
    return tuple(fields)


@dataclass(frozen=True)
class MeasurementsResponse:
    """The device's signed MEASUREMENTS response."""

    version: int
    param1: int
    param2: int
    blocks: tuple[MeasurementBlock, ...]
    nonce: bytes
    opaque: tuple[OpaqueField, ...]
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_SIZE:
            raise EvidenceFormatError(f"SPDM response nonce must be {NONCE_SIZE} bytes")
        if len(self.signature) != SIGNATURE_SIZE:
            raise EvidenceFormatError(f"SPDM signature must be {SIGNATURE_SIZE} bytes")
        if len(self.blocks) > 255:
            raise EvidenceFormatError("SPDM response has more than 255 measurement blocks")
        indices = [b.index for b in self.blocks]
        if len(set(indices)) != len(indices):
            raise EvidenceFormatError("SPDM response: a measurement index appears twice")
        if len(self.opaque_bytes()) > MAX_OPAQUE_LENGTH:
            raise EvidenceFormatError(f"SPDM opaque data longer than {MAX_OPAQUE_LENGTH} bytes")

    @classmethod
    def read(cls, r: Reader, request: MeasurementsRequest) -> MeasurementsResponse:
        version = r.u8("response SPDMVersion")
        if version != request.version:
            raise EvidenceFormatError(
                f"SPDM response version {version:#04x} differs from the request's"
            )
        code = r.u8("response RequestResponseCode")
        if code != MEASUREMENTS:
            raise EvidenceFormatError(f"SPDM response code {code:#04x} is not MEASUREMENTS")
        param1 = r.u8("response Param1")
        param2 = r.u8("response Param2")
        if param2 & 0x0F != request.slot_id or param2 & 0xF0:
            raise EvidenceFormatError("SPDM response slot differs from the request's slot")
        count = r.u8("NumberOfBlocks")
        record = Reader(
            r.bytes(_u24(r, "MeasurementRecordLength"), "MeasurementRecord"),
            what="SPDM measurement record",
        )
        blocks = tuple(MeasurementBlock.read(record) for _ in range(count))
        record.expect_end()
        if request.param2 != ALL_MEASUREMENTS and (
            len(blocks) != 1 or blocks[0].index != request.param2
        ):
            raise EvidenceFormatError(
                f"SPDM response does not hold exactly the requested block {request.param2}"
            )
        nonce = r.bytes(NONCE_SIZE, "response Nonce")
        opaque_len = r.u16("OpaqueLength")
        if opaque_len > MAX_OPAQUE_LENGTH:
            raise EvidenceFormatError(f"SPDM OpaqueLength {opaque_len} exceeds {MAX_OPAQUE_LENGTH}")
        opaque = parse_opaque(r.bytes(opaque_len, "OpaqueData"))
        signature = r.bytes(SIGNATURE_SIZE, "Signature")
        return cls(version, param1, param2, blocks, nonce, opaque, signature)

    def opaque_bytes(self) -> bytes:
        return b"".join(f.to_bytes() for f in self.opaque)

    def unsigned_bytes(self) -> bytes:
        record = b"".join(b.to_bytes() for b in self.blocks)
        opaque = self.opaque_bytes()
        w = Writer().u8(self.version).u8(MEASUREMENTS).u8(self.param1).u8(self.param2)
        w.u8(len(self.blocks)).bytes(len(record).to_bytes(3, "little")).bytes(record)
        return w.bytes(self.nonce, NONCE_SIZE).u16(len(opaque)).bytes(opaque).getvalue()

    def to_bytes(self) -> bytes:
        return self.unsigned_bytes() + self.signature


@dataclass(frozen=True)
class NvidiaReport:
    """An NVIDIA attestation report as the GPU driver / NVSwitch returns it."""

    request: MeasurementsRequest
    response: MeasurementsResponse
    trailing: bytes = b""

    def __post_init__(self) -> None:
        if any(self.trailing):
            raise EvidenceFormatError(
                f"{len(self.trailing)} bytes after the SPDM signature are not zero padding"
            )

    @classmethod
    def from_bytes(cls, data: bytes) -> NvidiaReport:
        if not isinstance(data, bytes):
            raise TypeError("NvidiaReport.from_bytes needs bytes")
        if len(data) > MAX_REPORT_BYTES:
            raise EvidenceFormatError(f"NVIDIA report larger than {MAX_REPORT_BYTES} bytes")
        r = Reader(data, what="NVIDIA SPDM report")
        request = MeasurementsRequest.read(r)
        response = MeasurementsResponse.read(r, request)
        return cls(request, response, r.rest("padding"))

    def to_bytes(self) -> bytes:
        return self.request.to_bytes() + self.response.to_bytes() + self.trailing

    def signed_bytes(self) -> bytes:
        """What the device signs (SPDM 1.1 L1/L2): request || response without signature."""
        return self.request.to_bytes() + self.response.unsigned_bytes()

    @property
    def nonce(self) -> bytes:
        """The requester's nonce: the value the relying party binds the report to."""
        return self.request.nonce

    @property
    def measurements(self) -> dict[int, bytes]:
        return {b.index: b.value for b in self.response.blocks}

    def opaque(self, kind: OpaqueType) -> bytes | None:
        for f in self.response.opaque:
            if f.type == kind:
                return f.value
        return None


def decode_text_field(raw: bytes | None) -> str | None:
    """A NUL-padded text opaque field (driver version, chip SKU, project) as Trustee reads it."""
    if raw is None:
        return None
    return raw.decode("utf-8", "replace").rstrip("\0")


def format_vbios_version(raw: bytes) -> str:
    """The VBIOS version as NVIDIA prints it.

    GPUs send 8 binary bytes: the first half reversed, then the first byte of the
    second half (``00 9f 00 96 01 00 00 00`` -> ``96.00.9f.00.01``). NVSwitches
    send the dotted text itself (``96.10.73.00.01``).
    """
    text = raw.rstrip(b"\0")
    if text and all(0x20 <= c < 0x7F for c in text) and b"." in text:
        return text.decode("ascii")
    half = len(raw) // 2
    if half == 0:
        return raw.hex()
    head = ".".join(f"{b:02x}" for b in reversed(raw[:half]))
    return f"{head}.{raw[half]:02x}"
