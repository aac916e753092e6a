"""The ways an NVIDIA report reaches us: raw bytes, hex or base64 text, or device evidence JSON.

JSON forms (each device: its report and, base64 of a PEM chain, its certificates):

- nvtrust PPCIe / attestation SDK: a list of ``{"arch", "evidence" (base64),
  "certificate" (base64 of PEM), "nonce" (hex), "version"}``;
- Trustee KBS evidence: ``{"device_evidence_list": [{"arch", "uuid", "evidence"
  (hex or base64), "certificate" (base64 of PEM)}]}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import string
from dataclasses import dataclass

from veritee.errors import EvidenceFormatError
from veritee.tee.nvidia.report import GET_MEASUREMENTS, MAX_REPORT_BYTES, SPDM_VERSION_1_1

MAX_EVIDENCE_BYTES = 8 * MAX_REPORT_BYTES
_TEXT = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")
_HEX = frozenset(string.hexdigits.encode())
_REPORT_MAGIC = bytes([SPDM_VERSION_1_1, GET_MEASUREMENTS])


@dataclass(frozen=True)
class DeviceEvidence:
    """One device's report, with what its container states about it (unverified)."""

    report: bytes
    cert_chain: bytes | None = None  # PEM
    arch: str | None = None
    uuid: str | None = None
    nonce: bytes | None = None


def _text_to_bytes(text: bytes, what: str) -> bytes:
    stripped = b"".join(text.split())
    if stripped and all(c in _HEX for c in stripped) and len(stripped) % 2 == 0:
        return bytes.fromhex(stripped.decode("ascii"))
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(f"{what} is text but neither hex nor base64") from None


def _field(item: dict[str, object], name: str, index: int) -> str | None:
    value = item.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise EvidenceFormatError(f"device evidence [{index}]: {name} must be a string")
    return value


def _device(item: object, index: int) -> DeviceEvidence:
    if not isinstance(item, dict):
        raise EvidenceFormatError(f"device evidence [{index}] must be an object")
    evidence = _field(item, "evidence", index)
    if evidence is None:
        raise EvidenceFormatError(f"device evidence [{index}] has no 'evidence'")
    report = _text_to_bytes(evidence.encode("ascii", "replace"), "device evidence")
    cert = _field(item, "certificate", index)
    chain = None
    if cert is not None:
        chain = _text_to_bytes(cert.encode("ascii", "replace"), "device certificate")
    nonce_text = _field(item, "nonce", index)
    nonce = None
    if nonce_text is not None:
        try:
            nonce = bytes.fromhex(nonce_text)
        except ValueError:
            raise EvidenceFormatError(f"device evidence [{index}]: nonce is not hex") from None
    return DeviceEvidence(
        report=report,
        cert_chain=chain,
        arch=_field(item, "arch", index),
        uuid=_field(item, "uuid", index),
        nonce=nonce,
    )


def decode_device_evidence(data: bytes) -> list[DeviceEvidence]:
    """Every device in ``data``: a JSON evidence list, or one bare report (raw, hex or base64)."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceFormatError(f"evidence larger than {MAX_EVIDENCE_BYTES} bytes")
    if data.startswith(_REPORT_MAGIC):
        return [DeviceEvidence(report=data)]
    if not data or not _TEXT.match(data):
        raise EvidenceFormatError(
            "not an NVIDIA report: expected SPDM bytes (11 e0 ...), hex, base64 or evidence JSON"
        )
    text = data.strip()
    if text[:1] in (b"[", b"{"):
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise EvidenceFormatError(f"device evidence is not valid JSON ({exc})") from None
        items = doc.get("device_evidence_list") if isinstance(doc, dict) else doc
        if not isinstance(items, list) or not items:
            raise EvidenceFormatError(
                "device evidence JSON must be a non-empty list (or device_evidence_list)"
            )
        return [_device(item, i) for i, item in enumerate(items)]
    return [DeviceEvidence(report=_text_to_bytes(text, "NVIDIA report"))]
