"""Unpadded base64url (RFC 7515 section 2), decoded strictly.

One implementation for every JOSE object veritee reads or writes (tokens, admin
JWTs, JWKs, JWE members): a lenient decoder would accept aliases a peer refuses.
"""

from __future__ import annotations

import base64
import binascii
import re

_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def encode(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def is_alphabet(text: str) -> bool:
    """Only base64url characters (no padding, no whitespace)."""
    return _ALPHABET.fullmatch(text) is not None


def decode(text: str) -> bytes:
    """Strict unpadded base64url: alphabet, length and canonical trailing bits.

    Raises ``ValueError``; callers translate it into their own error type. The
    re-encoding check refuses aliases such as ``"AB"`` vs ``"AA"`` for one byte,
    which Rust's ``base64`` crate (the peers' decoder) also refuses.
    """
    if len(text) % 4 == 1 or not is_alphabet(text):
        raise ValueError("not unpadded base64url")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):  # pragma: no cover - excluded by the alphabet check
        raise ValueError("not unpadded base64url") from None
    if encode(data) != text:
        raise ValueError("non-canonical base64url (stray trailing bits)")
    return data
