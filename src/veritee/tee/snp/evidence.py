"""Decoding the ways an SNP report reaches us: raw bytes, hex or base64 text, extended report."""

from __future__ import annotations

import base64
import binascii
import re

from veritee.errors import EvidenceFormatError
from veritee.tee.snp.certtable import CertTable
from veritee.tee.snp.report import REPORT_SIZE

MAX_EVIDENCE_BYTES = 1 << 20
_TEXT = re.compile(rb"^[\x09\x0a\x0d\x20-\x7e]*$")
_HEX = re.compile(rb"^[0-9a-fA-F\s]+$")


def decode_report_blob(data: bytes) -> tuple[bytes, CertTable | None]:
    """Return (the 1184 report bytes, the certificate table if one follows the report)."""
    if len(data) > MAX_EVIDENCE_BYTES:
        raise EvidenceFormatError(f"evidence larger than {MAX_EVIDENCE_BYTES} bytes")
    if data and _TEXT.match(data):
        data = _decode_text(data)
    if len(data) < REPORT_SIZE:
        raise EvidenceFormatError(
            f"SNP report must be {REPORT_SIZE} bytes, got {len(data)}",
            hint="the file is truncated, or not an SNP report",
        )
    report, rest = data[:REPORT_SIZE], data[REPORT_SIZE:]
    if not rest.strip(b"\0"):
        return report, None
    return report, CertTable.from_bytes(rest)


def _decode_text(text: bytes) -> bytes:
    stripped = b"".join(text.split())
    if _HEX.match(text) and len(stripped) % 2 == 0:
        return bytes.fromhex(stripped.decode("ascii"))
    try:
        return base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.urlsafe_b64decode(stripped + b"=" * (-len(stripped) % 4))
    except (binascii.Error, ValueError):
        raise EvidenceFormatError(
            "evidence is text but neither hex nor base64",
            hint="pass the raw 1184-byte report, or its hex or base64 encoding",
        ) from None
