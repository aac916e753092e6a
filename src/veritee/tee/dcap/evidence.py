"""Decoding the ways a DCAP quote reaches us: raw bytes, hex or base64 text, KBS evidence JSON.

The KBS ``tdx`` evidence is ``{"quote": "<b64>", "cc_eventlog": "<b64>" | null}`` and
the ``sgx`` evidence ``{"quote": "<b64>"}`` (PROTOCOL.md 1.5).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from veritee.errors import EvidenceFormatError
from veritee.tee.dcap.quote import MAX_QUOTE_BYTES

MAX_EVIDENCE_BYTES = 4 << 20
_TEXT = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")
_HEX = re.compile(rb"^[0-9a-fA-F\s]+$")


@dataclass(frozen=True)
class DcapEvidence:
    quote: bytes
    event_log: bytes | None = None


def _b64(text: str, what: str) -> bytes:
    raw = "".join(text.split())
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(f"{what} is not base64") from None


def decode_text(data: bytes, what: str = "quote") -> bytes:
    stripped = b"".join(data.split())
    if _HEX.match(data) and len(stripped) % 2 == 0:
        return bytes.fromhex(stripped.decode("ascii"))
    return _b64(stripped.decode("ascii"), what)


def decode_evidence(data: bytes) -> DcapEvidence:
    """The quote (and CC event log, if the evidence carries one) from any accepted form."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceFormatError(f"evidence larger than {MAX_EVIDENCE_BYTES} bytes")
    if not data or not _TEXT.match(data):
        return DcapEvidence(data)
    if data.lstrip().startswith(b"{"):
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise EvidenceFormatError(f"evidence JSON is malformed ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("quote"), str):
            raise EvidenceFormatError(
                "evidence JSON must be an object with a base64 \"quote\"",
                hint="KBS evidence is {\"quote\": \"<base64>\", \"cc_eventlog\": ...}",
            )
        quote = _b64(doc["quote"], "evidence quote")
        log_text = doc.get("cc_eventlog")
        if log_text is not None and not isinstance(log_text, str):
            raise EvidenceFormatError("evidence cc_eventlog must be base64 text or null")
        log = _b64(log_text, "evidence cc_eventlog") if log_text else None
        if len(quote) > MAX_QUOTE_BYTES:
            raise EvidenceFormatError(f"quote larger than {MAX_QUOTE_BYTES} bytes")
        return DcapEvidence(quote, log)
    try:
        return DcapEvidence(decode_text(data))
    except EvidenceFormatError:
        raise EvidenceFormatError(
            "evidence is text but neither hex, base64 nor KBS evidence JSON",
            hint="pass the raw quote, its hex or base64 encoding, or the KBS evidence JSON",
        ) from None
