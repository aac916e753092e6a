"""The KBS ``tpm`` evidence (PROTOCOL.md 1.5) and its verification.

Wire shape, exactly as the CoCo attester sends it::

    {"ak_public": "<base64 DER SubjectPublicKeyInfo>",
     "tpm_quote": {"message": "<base64 TPMS_ATTEST>",
                   "signature": "<base64 TPMT_SIGNATURE>",
                   "pcrs": ["<hex SHA-256 PCR 0>", ..., "<hex PCR 23>"]}}

The quote's extraData binds the KBS runtime data: it is the runtime-data digest (H of
the JCS object of PROTOCOL.md 1.4) truncated — or zero-padded — to 32 bytes. (Trustee
releases after the one PROTOCOL.md was read from pad to 64 bytes instead; pass
``extra_data_size=64`` for those attesters.) PCR 8 carries the init-data digest as
SHA-256(32 zero bytes || digest), one extension of a fresh PCR.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from veritee.errors import EvidenceFormatError, MismatchError, VerificationError
from veritee.tee.tpm.claims import INIT_DATA_PCR, TpmClaims
from veritee.tee.tpm.pcrs import PcrBanks
from veritee.tee.tpm.structures import PCR_COUNT, Attest, TpmAlg, TpmtSignature
from veritee.tee.tpm.verify import load_attestation_key, verify_quote

DEFAULT_EXTRA_DATA_SIZE = 32
MAX_EVIDENCE_BYTES = 64 << 10


@dataclass(frozen=True)
class TpmEvidence:
    ak_public: bytes
    message: bytes
    signature: bytes
    pcrs: tuple[bytes, ...]

    @classmethod
    def from_json(cls, value: str | bytes | Mapping[str, object]) -> TpmEvidence:
        if isinstance(value, str | bytes):
            if len(value) > MAX_EVIDENCE_BYTES:
                raise EvidenceFormatError(f"tpm evidence larger than {MAX_EVIDENCE_BYTES} bytes")
            try:
                value = json.loads(value)
            except (ValueError, UnicodeDecodeError) as exc:
                raise EvidenceFormatError(f"tpm evidence is not JSON ({exc})") from None
        if not isinstance(value, Mapping):
            raise EvidenceFormatError("tpm evidence must be a JSON object")
        quote = value.get("tpm_quote")
        if not isinstance(quote, Mapping):
            raise EvidenceFormatError("tpm evidence: 'tpm_quote' must be an object")
        pcrs = quote.get("pcrs")
        if not isinstance(pcrs, list) or len(pcrs) > PCR_COUNT:
            raise EvidenceFormatError(f"tpm evidence: 'pcrs' must be a list of <= {PCR_COUNT}")
        values = []
        for i, p in enumerate(pcrs):
            if not isinstance(p, str) or len(p) != 64:
                raise EvidenceFormatError(f"tpm evidence: pcrs[{i}] must be 64 hex characters")
            try:
                values.append(bytes.fromhex(p))
            except ValueError:
                raise EvidenceFormatError(f"tpm evidence: pcrs[{i}] is not hex") from None
        return cls(
            ak_public=_b64(value.get("ak_public"), "ak_public"),
            message=_b64(quote.get("message"), "tpm_quote.message"),
            signature=_b64(quote.get("signature"), "tpm_quote.signature"),
            pcrs=tuple(values),
        )

    def to_json(self) -> dict[str, object]:
        return {
            "ak_public": base64.b64encode(self.ak_public).decode("ascii"),
            "tpm_quote": {
                "message": base64.b64encode(self.message).decode("ascii"),
                "signature": base64.b64encode(self.signature).decode("ascii"),
                "pcrs": [p.hex() for p in self.pcrs],
            },
        }


def _b64(value: object, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise EvidenceFormatError(f"tpm evidence: '{field}' must be a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(f"tpm evidence: '{field}' is not standard base64") from None


def expected_extra_data(report_data: bytes, size: int = DEFAULT_EXTRA_DATA_SIZE) -> bytes:
    """The extraData a quote must carry for this runtime-data digest."""
    return report_data[:size].ljust(size, b"\0")


def init_data_pcr(init_data_digest: bytes) -> bytes:
    """PCR 8 after the attester extended the init-data digest once into the SHA-256 bank."""
    return hashlib.sha256(bytes(32) + init_data_digest[:32].ljust(32, b"\0")).digest()


def verify_evidence(
    evidence: TpmEvidence,
    *,
    expected_report_data: bytes | None,
    trusted_ak_sha256: Collection[bytes] | None = None,
    expected_init_data: bytes | None = None,
    extra_data_size: int = DEFAULT_EXTRA_DATA_SIZE,
) -> TpmClaims:
    """Verify KBS ``tpm`` evidence and return its typed claims.

    ``expected_report_data`` is the runtime-data digest the KBS computed (None only when
    the caller binds the evidence another way: the claims then say ``nonce_checked`` is
    false). ``trusted_ak_sha256`` is the allow-list of SHA-256(DER AK) values, or None
    when AK trust is left to appraisal (claims carry ``ak_public``).
    """
    ak = load_attestation_key(evidence.ak_public)
    if trusted_ak_sha256 is not None:
        digest = hashlib.sha256(ak.spki_der).digest()
        if not any(hmac.compare_digest(digest, t) for t in trusted_ak_sha256):
            raise VerificationError(
                f"the AK (sha256 {digest.hex()}) is not in the trusted AK list",
                hint="register the AK as a reference value after enrolling it",
            )
    attest = Attest.from_bytes(evidence.message)
    signature = TpmtSignature.from_bytes(evidence.signature)
    quote = attest.quote
    if quote is None:
        raise EvidenceFormatError("tpm evidence: message is not a quote")
    banks = {s.hash_alg for s in quote.pcr_select.selections}
    if banks - {TpmAlg.SHA256}:
        raise EvidenceFormatError("tpm evidence: the quote must select SHA-256 PCRs only")
    pcrs = PcrBanks.from_mapping({TpmAlg.SHA256: dict(enumerate(evidence.pcrs))})
    nonce = (
        expected_extra_data(expected_report_data, extra_data_size)
        if expected_report_data is not None
        else None
    )
    verified = verify_quote(attest, signature, ak, pcrs, expected_nonce=nonce,
                            message=evidence.message)
    if expected_init_data is not None:
        pcr8 = verified.pcrs.get(TpmAlg.SHA256, INIT_DATA_PCR)
        if pcr8 is None:
            raise MismatchError("init-data expected but the quote does not cover PCR 8")
        if not hmac.compare_digest(pcr8, init_data_pcr(expected_init_data)):
            raise MismatchError(
                "PCR 8 does not match the expected init-data digest",
                hint="the guest booted with other init-data",
            )
    return TpmClaims.from_verified(verified)
