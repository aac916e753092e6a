"""The KBS ``az-snp-vtpm`` / ``az-tdx-vtpm`` evidence JSON (PROTOCOL.md 1.5), every form real
guests have sent. Format only: no crypto.

``az-snp-vtpm``::

    v0  {"quote": {"signature": [u8], "message": [u8], "pcrs": [[u8; 32], ...]},
         "report": [u8, ... the HCL report], "vcek": "<PEM>"}
    v1  {"version": 1, "tpm_quote": {"signature": "<hex>", "message": "<hex>",
         "pcrs": ["<hex>", ...]}, "hcl_report": "<base64url>", "vcek": "<base64url DER>"}
    v2  as v1 with "version": 2 (the guest also copies its report data into the
        runtime claims' "user-data")

``az-tdx-vtpm``::

    v0  {"tpm_quote": {<byte lists as above>}, "hcl_report": [u8], "td_quote": [u8]}
    v1  {"version": 1, "tpm_quote": {<hex as above>}, "hcl_report": "<base64url>",
         "td_quote": "<base64url>"}

The vTPM quote is the az-cvm-vtpm ``Quote``: ``signature`` is the raw RSASSA-PKCS1-v1_5
signature (not a TPMT_SIGNATURE), ``message`` the signed TPMS_ATTEST, ``pcrs`` the
SHA-256 PCR values in index order. Its bincode form (``quote.bin`` in Trustee's test
data) is ``u64 len | signature | u64 len | message | u64 count | count x 32 bytes``.
Members this module does not know are ignored, as Trustee's serde structs ignore them.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError
from veritee.tee.azure.hcl import HclReport, b64url_decode

MAX_EVIDENCE_BYTES = 1 << 20
MAX_SIGNATURE = 512  # RSA-4096
MAX_MESSAGE = 4096  # a TPMS_ATTEST quote is ~150 bytes
MAX_PCRS = 24
PCR_SIZE = 32
MAX_TD_QUOTE = 128 * 1024
MAX_HCL = 256 * 1024
MAX_VCEK = 64 * 1024
SNP_VERSIONS = (0, 1, 2)
TDX_VERSIONS = (0, 1)


@dataclass(frozen=True)
class VtpmQuote:
    signature: bytes
    message: bytes
    pcrs: tuple[bytes, ...]

    # -- JSON ----------------------------------------------------------------------------
    @classmethod
    def from_json(cls, obj: object, *, hex_form: bool, what: str = "tpm_quote") -> VtpmQuote:
        if not isinstance(obj, Mapping):
            raise EvidenceFormatError(f"azure evidence: {what} must be an object")
        pcrs_raw = obj.get("pcrs")
        if not isinstance(pcrs_raw, list) or len(pcrs_raw) > MAX_PCRS:
            raise EvidenceFormatError(
                f"azure evidence: {what}.pcrs must be a list of at most {MAX_PCRS} values"
            )
        field = _hex if hex_form else _byte_list
        pcrs = tuple(
            field(p, f"{what}.pcrs[{i}]", PCR_SIZE, exact=True) for i, p in enumerate(pcrs_raw)
        )
        return cls(
            signature=field(obj.get("signature"), f"{what}.signature", MAX_SIGNATURE),
            message=field(obj.get("message"), f"{what}.message", MAX_MESSAGE),
            pcrs=pcrs,
        )

    def to_json(self, *, hex_form: bool) -> dict[str, object]:
        if hex_form:
            return {
                "signature": self.signature.hex(),
                "message": self.message.hex(),
                "pcrs": [p.hex() for p in self.pcrs],
            }
        return {
            "signature": list(self.signature),
            "message": list(self.message),
            "pcrs": [list(p) for p in self.pcrs],
        }

    # -- bincode (az-cvm-vtpm's serialization, Trustee's quote.bin) -----------------------
    @classmethod
    def from_bincode(cls, data: bytes) -> VtpmQuote:
        rd = Reader(data, what="vTPM quote (bincode)")
        sig_len = rd.u64("signature length")
        if sig_len > MAX_SIGNATURE:
            raise EvidenceFormatError(f"vTPM quote: signature longer than {MAX_SIGNATURE} bytes")
        signature = rd.bytes(sig_len, "signature")
        msg_len = rd.u64("message length")
        if msg_len > MAX_MESSAGE:
            raise EvidenceFormatError(f"vTPM quote: message longer than {MAX_MESSAGE} bytes")
        message = rd.bytes(msg_len, "message")
        count = rd.u64("PCR count")
        if count > MAX_PCRS:
            raise EvidenceFormatError(f"vTPM quote: more than {MAX_PCRS} PCR values")
        pcrs = tuple(rd.bytes(PCR_SIZE, f"PCR {i}") for i in range(count))
        rd.expect_end()
        return cls(signature, message, pcrs)

    def to_bincode(self) -> bytes:
        w = Writer()
        w.u64(len(self.signature)).bytes(self.signature)
        w.u64(len(self.message)).bytes(self.message)
        w.u64(len(self.pcrs))
        for p in self.pcrs:
            w.bytes(p, PCR_SIZE)
        return w.getvalue()


@dataclass(frozen=True)
class AzureSnpEvidence:
    """``az-snp-vtpm`` evidence. ``vcek`` is as carried: PEM text (v0; may hold the ASK and
    ARK after the VCEK) or DER (v1, v2)."""

    version: int
    quote: VtpmQuote
    hcl: HclReport
    vcek: bytes

    @classmethod
    def from_json(cls, value: str | bytes | Mapping[str, object]) -> AzureSnpEvidence:
        obj = _load(value, "az-snp-vtpm")
        version = _version(obj, SNP_VERSIONS, "az-snp-vtpm")
        if version == 0:
            vcek = obj.get("vcek")
            if not isinstance(vcek, str) or len(vcek) > MAX_VCEK:
                raise EvidenceFormatError("az-snp-vtpm evidence: 'vcek' must be a PEM string")
            if "quote" not in obj or "report" not in obj:
                raise EvidenceFormatError(
                    "az-snp-vtpm evidence needs 'quote', 'report' and 'vcek' "
                    "(v0) or 'version', 'tpm_quote', 'hcl_report' and 'vcek' (v1, v2)"
                )
            return cls(
                version=0,
                quote=VtpmQuote.from_json(obj["quote"], hex_form=False, what="quote"),
                hcl=HclReport.from_bytes(_byte_list(obj["report"], "report", MAX_HCL)),
                vcek=vcek.encode("ascii", "replace"),
            )
        return cls(
            version=version,
            quote=VtpmQuote.from_json(obj.get("tpm_quote"), hex_form=True),
            hcl=HclReport.from_bytes(_b64url(obj.get("hcl_report"), "hcl_report", MAX_HCL)),
            vcek=_b64url(obj.get("vcek"), "vcek", MAX_VCEK),
        )

    def to_json(self) -> dict[str, object]:
        if self.version == 0:
            return {
                "quote": self.quote.to_json(hex_form=False),
                "report": list(self.hcl.to_bytes()),
                "vcek": self.vcek.decode("ascii"),
            }
        return {
            "version": self.version,
            "tpm_quote": self.quote.to_json(hex_form=True),
            "hcl_report": _b64url_encode(self.hcl.to_bytes()),
            "vcek": _b64url_encode(self.vcek),
        }


@dataclass(frozen=True)
class AzureTdxEvidence:
    """``az-tdx-vtpm`` evidence: the vTPM quote, the HCL report (TDREPORT inside) and the
    TD quote the host's quoting enclave made from that TDREPORT."""

    version: int
    quote: VtpmQuote
    hcl: HclReport
    td_quote: bytes

    @classmethod
    def from_json(cls, value: str | bytes | Mapping[str, object]) -> AzureTdxEvidence:
        obj = _load(value, "az-tdx-vtpm")
        version = _version(obj, TDX_VERSIONS, "az-tdx-vtpm")
        if version == 0:
            return cls(
                version=0,
                quote=VtpmQuote.from_json(obj.get("tpm_quote"), hex_form=False),
                hcl=HclReport.from_bytes(_byte_list(obj.get("hcl_report"), "hcl_report", MAX_HCL)),
                td_quote=_byte_list(obj.get("td_quote"), "td_quote", MAX_TD_QUOTE),
            )
        return cls(
            version=version,
            quote=VtpmQuote.from_json(obj.get("tpm_quote"), hex_form=True),
            hcl=HclReport.from_bytes(_b64url(obj.get("hcl_report"), "hcl_report", MAX_HCL)),
            td_quote=_b64url(obj.get("td_quote"), "td_quote", MAX_TD_QUOTE),
        )

    def to_json(self) -> dict[str, object]:
        if self.version == 0:
            return {
                "tpm_quote": self.quote.to_json(hex_form=False),
                "hcl_report": list(self.hcl.to_bytes()),
                "td_quote": list(self.td_quote),
            }
        return {
            "version": self.version,
            "tpm_quote": self.quote.to_json(hex_form=True),
            "hcl_report": _b64url_encode(self.hcl.to_bytes()),
            "td_quote": _b64url_encode(self.td_quote),
        }


# -- helpers ------------------------------------------------------------------------------------


def _load(value: str | bytes | Mapping[str, object], tee: str) -> Mapping[str, object]:
    if isinstance(value, str | bytes):
        if len(value) > MAX_EVIDENCE_BYTES:
            raise EvidenceFormatError(f"{tee} evidence larger than {MAX_EVIDENCE_BYTES} bytes")
        try:
            value = json.loads(value)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise EvidenceFormatError(f"{tee} evidence is not JSON ({exc})") from None
    if not isinstance(value, Mapping):
        raise EvidenceFormatError(f"{tee} evidence must be a JSON object")
    return value


def _version(obj: Mapping[str, object], known: Sequence[int], tee: str) -> int:
    if "version" not in obj:
        return 0
    v = obj["version"]
    if not isinstance(v, int) or isinstance(v, bool) or v not in known or v == 0:
        raise EvidenceFormatError(
            f"{tee} evidence version {v!r} is not supported (known: "
            f"{', '.join(str(k) for k in known if k)}; v0 has no version member)"
        )
    return v


def _byte_list(value: object, what: str, limit: int, *, exact: bool = False) -> bytes:
    if not isinstance(value, list) or len(value) > limit or (exact and len(value) != limit):
        size = f"exactly {limit}" if exact else f"at most {limit}"
        raise EvidenceFormatError(f"azure evidence: {what} must be a list of {size} bytes")
    if not set(map(type, value)) <= {int}:
        raise EvidenceFormatError(f"azure evidence: {what} holds a value that is not a byte")
    try:
        return bytes(value)
    except ValueError:
        raise EvidenceFormatError(
            f"azure evidence: {what} holds a value that is not a byte"
        ) from None


_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")


def _hex(value: object, what: str, limit: int, *, exact: bool = False) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * limit:
        raise EvidenceFormatError(f"azure evidence: {what} must be a hex string")
    if not _HEX.fullmatch(value):
        raise EvidenceFormatError(f"azure evidence: {what} is not hex")
    out = bytes.fromhex(value)
    if exact and len(out) != limit:
        raise EvidenceFormatError(f"azure evidence: {what} must be {limit} bytes")
    return out


def _b64url(value: object, what: str, limit: int) -> bytes:
    if not isinstance(value, str) or len(value) > (limit * 4) // 3 + 4:
        raise EvidenceFormatError(f"azure evidence: {what} must be a base64url string")
    try:
        return b64url_decode(value)
    except ValueError:
        raise EvidenceFormatError(f"azure evidence: {what} is not base64url") from None


def _b64url_encode(data: bytes) -> str:
    # Padded, as serde_with's Base64<UrlSafe> writes it (readers accept both).
    return base64.urlsafe_b64encode(data).decode("ascii")


__all__ = ["AzureSnpEvidence", "AzureTdxEvidence", "VtpmQuote"]
