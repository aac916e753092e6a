"""The DCAP quote container shared by SGX (v3, v4, v5) and TDX (v4, v5) quotes.

Byte format only: no crypto, no policy. Layout (all little-endian)::

    header (48) | [v5: body type u16, body size u32] | body | signature data length u32 |
    signature data: ECDSA signature (64, r||s) | attestation key (64, x||y) |
      v3:    QE report (384) | QE report signature (64) | QE auth data (u16 + n) |
             certification data (type u16, size u32, data)
      v4/v5: certification data type 6 = [QE report | QE report signature |
             QE auth data | certification data (type 5: PEM PCK chain)]

The body is kept as bytes here; ``veritee.tee.tdx.quote`` and
``veritee.tee.sgx.quote`` give it meaning. Bytes after the signature data
(zero padding in many real quotes) are accepted and never used.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError
from veritee.tee.dcap.report import ENCLAVE_REPORT_SIZE, EnclaveReport

HEADER_SIZE = 48
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64
ATT_KEY_TYPE_ECDSA_P256 = 2
ATT_KEY_TYPE_ECDSA_P384 = 3
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
SUPPORTED_VERSIONS = (3, 4, 5)
MAX_QUOTE_BYTES = 1 << 20

CERT_TYPE_PCK_CHAIN = 5
CERT_TYPE_QE_REPORT = 6


class TeeType(enum.IntEnum):
    SGX = 0x00000000
    TDX = 0x00000081


class BodyType(enum.IntEnum):
    """Quote v5 body types."""

    SGX_ENCLAVE = 1
    TD_REPORT10 = 2
    TD_REPORT15 = 3


_TEES = {int(t): t for t in TeeType}
_HEADER = struct.Struct("<HHI4s16s20s")
_QE_FIXED = struct.Struct(f"<{ENCLAVE_REPORT_SIZE}s64sH")

BODY_SIZES: dict[BodyType, int] = {
    BodyType.SGX_ENCLAVE: ENCLAVE_REPORT_SIZE,
    BodyType.TD_REPORT10: 584,
    BodyType.TD_REPORT15: 648,
}


@dataclass(frozen=True)
class QuoteHeader:
    """The 48-byte quote header. In v3 the 4 ``reserved`` bytes are QE SVN and PCE SVN."""

    version: int
    att_key_type: int
    tee_type: int
    reserved: bytes
    qe_vendor_id: bytes
    user_data: bytes

    @property
    def qe_svn(self) -> int:
        return int.from_bytes(self.reserved[:2], "little")

    @property
    def pce_svn(self) -> int:
        return int.from_bytes(self.reserved[2:4], "little")

    @classmethod
    def read(cls, rd: Reader) -> QuoteHeader:
        version, att_key_type, tee_type, reserved, vendor, user_data = _HEADER.unpack(
            rd.bytes(HEADER_SIZE, "header")
        )
        if version not in SUPPORTED_VERSIONS:
            raise EvidenceFormatError(
                f"DCAP quote version {version} is not supported "
                f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})"
            )
        if tee_type not in _TEES:
            raise EvidenceFormatError(f"DCAP quote: unknown TEE type {tee_type:#x}")
        if version == 3 and tee_type != TeeType.SGX:
            raise EvidenceFormatError("DCAP quote v3 is SGX only (TEE type must be 0)")
        return cls(version, att_key_type, tee_type, reserved, vendor, user_data)

    def write(self, w: Writer) -> None:
        w.u16(self.version).u16(self.att_key_type).u32(self.tee_type)
        w.bytes(self.reserved, 4).bytes(self.qe_vendor_id, 16).bytes(self.user_data, 20)


@dataclass(frozen=True)
class CertificationData:
    """``(type, data)``; type 5 = PEM PCK certificate chain, leaf first."""

    cert_type: int
    data: bytes

    @classmethod
    def read(cls, rd: Reader, what: str) -> CertificationData:
        cert_type = rd.u16(f"{what} type")
        size = rd.u32(f"{what} size")
        return cls(cert_type, rd.bytes(size, f"{what} data"))

    def write(self, w: Writer) -> None:
        w.u16(self.cert_type).u32(len(self.data)).bytes(self.data)


@dataclass(frozen=True)
class QeReportCertificationData:
    """The QE report, its signature by the PCK key, QE auth data and the PCK chain data."""

    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    certification_data: CertificationData

    @classmethod
    def read(cls, rd: Reader, what: str) -> QeReportCertificationData:
        raw_report, signature, auth_size = _QE_FIXED.unpack(
            rd.bytes(_QE_FIXED.size, f"{what} QE report, signature and auth data size")
        )
        report = EnclaveReport.from_bytes(raw_report, what="QE report")
        auth = rd.bytes(auth_size, f"{what} QE auth data")
        cert = CertificationData.read(rd, f"{what} certification data")
        return cls(report, signature, auth, cert)

    def write(self, w: Writer) -> None:
        w.bytes(self.qe_report.to_bytes()).bytes(self.qe_report_signature, SIGNATURE_SIZE)
        w.u16(len(self.qe_auth_data)).bytes(self.qe_auth_data)
        self.certification_data.write(w)


@dataclass(frozen=True)
class QuoteSignatureData:
    """ECDSA-256 quote signature data (Intel's ``sgx_ql_ecdsa_sig_data_t`` and v4 variant)."""

    signature: bytes
    attestation_key: bytes
    qe: QeReportCertificationData
    wrapped: bool
    """True when the QE data travels as certification data type 6 (v4/v5 layout)."""

    @classmethod
    def from_bytes(cls, data: bytes, *, version: int) -> QuoteSignatureData:
        rd = Reader(data, what="quote signature data")
        signature = rd.bytes(SIGNATURE_SIZE, "ECDSA signature")
        key = rd.bytes(ATTESTATION_KEY_SIZE, "attestation key")
        if version == 3:
            qe = QeReportCertificationData.read(rd, "v3")
            wrapped = False
        else:
            outer = CertificationData.read(rd, "certification data")
            if outer.cert_type != CERT_TYPE_QE_REPORT:
                raise EvidenceFormatError(
                    f"quote v{version}: certification data type {outer.cert_type} is not "
                    f"{CERT_TYPE_QE_REPORT} (QE report certification data)"
                )
            inner = Reader(outer.data, what="QE report certification data")
            qe = QeReportCertificationData.read(inner, "type 6")
            inner.expect_end()
            wrapped = True
        rd.expect_end()
        return cls(signature, key, qe, wrapped)

    def to_bytes(self) -> bytes:
        w = Writer()
        w.bytes(self.signature, SIGNATURE_SIZE).bytes(self.attestation_key, ATTESTATION_KEY_SIZE)
        if self.wrapped:
            inner = Writer()
            self.qe.write(inner)
            CertificationData(CERT_TYPE_QE_REPORT, inner.getvalue()).write(w)
        else:
            self.qe.write(w)
        return w.getvalue()


@dataclass(frozen=True)
class Quote:
    """One parsed DCAP quote: header, body bytes, signature data."""

    header: QuoteHeader
    body_type: BodyType | None
    """Only quote v5 states a body type; v3/v4 imply it from the TEE type."""
    body: bytes
    signature_data: QuoteSignatureData
    _raw: bytes = field(init=False, default=b"", compare=False, repr=False)
    _trailing: int = field(init=False, default=0, compare=False, repr=False)

    @property
    def tee(self) -> TeeType:
        return _TEES[self.header.tee_type]

    @property
    def version(self) -> int:
        return self.header.version

    @property
    def trailing_bytes(self) -> int:
        """How many bytes followed the signature data in the input (padding, ignored)."""
        return self._trailing

    @property
    def signed_length(self) -> int:
        return HEADER_SIZE + (6 if self.header.version >= 5 else 0) + len(self.body)

    @classmethod
    def from_bytes(cls, data: bytes) -> Quote:
        if not isinstance(data, bytes):
            raise EvidenceFormatError("DCAP quote must be bytes")
        if len(data) > MAX_QUOTE_BYTES:
            raise EvidenceFormatError(f"DCAP quote larger than {MAX_QUOTE_BYTES} bytes")
        rd = Reader(data, what="DCAP quote")
        header = QuoteHeader.read(rd)
        body_type: BodyType | None = None
        if header.version >= 5:
            raw_type = rd.u16("body type")
            try:
                body_type = BodyType(raw_type)
            except ValueError:
                raise EvidenceFormatError(f"quote v5: unknown body type {raw_type}") from None
            size = rd.u32("body size")
            if size != BODY_SIZES[body_type]:
                raise EvidenceFormatError(
                    f"quote v5: body type {body_type.value} must be "
                    f"{BODY_SIZES[body_type]} bytes, not {size}"
                )
            sgx_body = body_type is BodyType.SGX_ENCLAVE
            if sgx_body != (header.tee_type == TeeType.SGX):
                raise EvidenceFormatError(
                    f"quote v5: body type {body_type.value} does not match TEE type "
                    f"{header.tee_type:#x}"
                )
        else:
            size = ENCLAVE_REPORT_SIZE if header.tee_type == TeeType.SGX else BODY_SIZES[
                BodyType.TD_REPORT10
            ]
        body = rd.bytes(size, "body")
        sig_len = rd.u32("signature data length")
        sig = QuoteSignatureData.from_bytes(
            rd.bytes(sig_len, "signature data"), version=header.version
        )
        quote = cls(header=header, body_type=body_type, body=body, signature_data=sig)
        object.__setattr__(quote, "_raw", data[: rd.offset])
        object.__setattr__(quote, "_trailing", rd.remaining)
        return quote

    def signed_bytes(self) -> bytes:
        """What the attestation key signs: header and body (with the v5 type and size)."""
        return self.to_bytes()[: self.signed_length]

    def to_bytes(self) -> bytes:
        """The quote without any trailing padding (equals the parsed input's quote part)."""
        if self._raw:
            return self._raw
        w = Writer()
        self.header.write(w)
        if self.header.version >= 5:
            if self.body_type is None:
                raise ValueError("quote v5 needs a body type")
            w.u16(self.body_type).u32(len(self.body))
        w.bytes(self.body)
        sig = self.signature_data.to_bytes()
        w.u32(len(sig)).bytes(sig)
        return w.getvalue()
