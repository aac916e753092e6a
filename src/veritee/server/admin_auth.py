"""Admin API authentication: Ed25519 (``EdDSA``) bearer JWTs (PROTOCOL.md 1.8).

This is the scheme Trustee's dev setup uses (``openssl genpkey -algorithm
ed25519``, a JWT with a ``role`` claim), so keys and tokens made for a Trustee
KBS work here when the audience matches. Every failure raises
:class:`~veritee.errors.AuthError` saying what is wrong; no message ever
contains the token or its signature.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import secrets
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from veritee import b64url
from veritee.clock import require_aware
from veritee.errors import AuthError, ConfigError
from veritee.secretfile import read_owner_only, write_new_file

__all__ = [
    "AdminIdentity",
    "AdminKeyPair",
    "load_public_keys",
    "mint_admin_token",
    "verify_admin_token",
]

_ALG: Final = "EdDSA"
_SIGNATURE_BYTES: Final = 64
MAX_TOKEN_CHARS: Final = 16 * 1024
DEFAULT_LEEWAY: Final = dt.timedelta(seconds=30)


@dataclass(frozen=True)
class AdminIdentity:
    """Who an admin token says is calling; ``role`` feeds the endpoint ACL."""

    subject: str
    role: str


@dataclass(frozen=True, repr=False)
class AdminKeyPair:
    private_key: Ed25519PrivateKey
    public_key: Ed25519PublicKey

    def __repr__(self) -> str:
        raw = self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return f"AdminKeyPair(public={b64url.encode(raw)})"

    @classmethod
    def generate(cls) -> AdminKeyPair:
        key = Ed25519PrivateKey.generate()
        return cls(key, key.public_key())

    def save(self, private_path: Path, public_path: Path) -> None:
        """PKCS#8 PEM private key (0600) and SubjectPublicKeyInfo PEM public key (0644)."""
        private_pem = self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        public_pem = self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        write_new_file(private_path, private_pem, "admin private key")
        write_new_file(public_path, public_pem, "admin public key", mode=0o644)

    @classmethod
    def load(cls, private_path: Path) -> AdminKeyPair:
        """Load a private key (e.g. from ``openssl genpkey -algorithm ed25519``), owner-only."""
        data = read_owner_only(private_path, "admin private key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{private_path}: not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError(f"{private_path}: the admin key must be Ed25519")
        return cls(key, key.public_key())

    @staticmethod
    def load_public(path: Path) -> Ed25519PublicKey:
        """Load a PEM public key (SubjectPublicKeyInfo) that verifies admin tokens."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read admin public key {path}: {exc.strerror}") from None
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ConfigError(f"{path}: not a PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"{path}: the admin public key must be Ed25519 (EdDSA)")
        return key


def load_public_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    """The configured verification keys; at least one is required."""
    if not paths:
        raise ConfigError("admin authentication needs at least one public key")
    return [AdminKeyPair.load_public(path) for path in paths]


def mint_admin_token(
    private_key: Ed25519PrivateKey,
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
    subject: str = "admin",
    role: str = "admin",
    audience: str = "veritee",
    issuer: str = "veritee",
) -> str:
    """A compact EdDSA JWT with ``iss, sub, aud, role, iat, exp, jti``."""
    lifetime = math.floor(ttl.total_seconds())
    if lifetime <= 0:
        raise ConfigError(f"admin token lifetime must be at least one second, not {ttl}")
    iat = math.floor(require_aware(now).timestamp())
    header = {"alg": _ALG, "typ": "JWT"}
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "role": role,
        "iat": iat,
        "exp": iat + lifetime,
        "jti": secrets.token_hex(16),
    }
    signing_input = ".".join(
        b64url.encode(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    signature = private_key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url.encode(signature)}"


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError("duplicate member")
        out[name] = value
    return out


def _reject_constant(name: str) -> object:
    raise ValueError("not JSON")


def _segment(text: str, what: str) -> dict[str, object]:
    try:
        value = json.loads(
            b64url.decode(text).decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise AuthError(f"admin token {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise AuthError(f"admin token {what} is not a JSON object")
    return value


def _date(claims: Mapping[str, object], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if value is None:
        raise AuthError(f"admin token has no {name!r} claim")
    # The magnitude check comes first: float() of a huge int raises OverflowError.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not abs(value) < 2**53
        or not math.isfinite(value)
    ):
        raise AuthError(f"admin token claim {name!r} is not a NumericDate")
    return float(value)


def _when(seconds: float) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return "a time out of range"


def verify_admin_token(
    token: object,
    public_keys: Sequence[Ed25519PublicKey],
    *,
    now: dt.datetime,
    audience: str | None = "veritee",
    roles: Collection[str] = ("admin",),
    leeway: dt.timedelta = DEFAULT_LEEWAY,
) -> AdminIdentity:
    """Check an admin bearer token; return who it names or raise :class:`AuthError`.

    The signature must come from one of ``public_keys``; ``exp`` and ``iat``
    are required; ``aud`` (a string or a list) must contain ``audience``
    unless ``audience`` is None; ``role`` is required and must be in ``roles``.
    """
    if not public_keys:
        raise ConfigError("admin authentication has no public keys configured")
    instant = require_aware(now).timestamp()
    slack = leeway.total_seconds()
    if not isinstance(token, str) or not token:
        raise AuthError("admin token is missing")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError(f"admin token is longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError("admin token is not a JWT (expected three dot-separated parts)")
    header_b64, payload_b64, signature_b64 = parts
    if not b64url.is_alphabet(payload_b64):
        raise AuthError("admin token payload is not base64url-encoded JSON")

    header = _segment(header_b64, "header")
    if header.get("alg") != _ALG:
        raise AuthError("admin token algorithm is not accepted: veritee accepts EdDSA only")
    if "crit" in header:
        raise AuthError("admin token has critical header parameters veritee does not support")
    try:
        signature = b64url.decode(signature_b64)
    except ValueError:
        raise AuthError("admin token signature is not base64url") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise AuthError("admin token signature is not a 64-byte Ed25519 signature")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    for key in public_keys:
        try:
            key.verify(signature, signing_input)
            break
        except InvalidSignature:
            continue
    else:
        raise AuthError(
            "admin token signature does not verify with any configured admin key "
            "(wrong key, or the token was altered)"
        )

    claims = _segment(payload_b64, "payload")
    exp = _date(claims, "exp", required=True)
    iat = _date(claims, "iat", required=True)
    nbf = _date(claims, "nbf", required=False)
    assert exp is not None
    assert iat is not None
    if instant >= exp + slack:
        raise AuthError(f"admin token expired at {_when(exp)}")
    if iat > instant + slack:
        raise AuthError(f"admin token is issued in the future ({_when(iat)})")
    if nbf is not None and nbf > instant + slack:
        raise AuthError(f"admin token is not valid before {_when(nbf)}")
    if audience is not None:
        aud = claims.get("aud")
        if aud is None:
            raise AuthError(f"admin token has no 'aud' claim (expected {audience!r})")
        audiences = aud if isinstance(aud, list) else [aud]
        if audience not in audiences:
            raise AuthError(f"admin token is for another audience (expected {audience!r})")
    role = claims.get("role")
    if role is None:
        raise AuthError("admin token has no 'role' claim")
    if not isinstance(role, str) or role not in roles:
        raise AuthError("admin token role is not allowed to use the admin API")
    subject = claims.get("sub", "")
    if not isinstance(subject, str):
        raise AuthError("admin token 'sub' claim is not a string")
    return AdminIdentity(subject=subject, role=role)
