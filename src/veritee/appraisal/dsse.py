"""DSSE (Dead Simple Signing Envelope) v1: parse, PAE, verify against trusted keys, sign.

A DSSE signature covers ``PAE(payloadType, payload)``::

    "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body

with LEN the ASCII decimal byte length, so the payload type is authenticated
together with the body: a statement signed as one type cannot be replayed as
another. The envelope's ``keyid`` is an unauthenticated hint (the spec forbids
using it for security decisions); it only narrows which trusted keys to try,
and a signer is identified by the trusted key that verified, never by the hint.

Trusted keys are PEM public keys: ECDSA P-256 (SHA-256), ECDSA P-384
(SHA-384) or Ed25519. ECDSA signatures are accepted DER-encoded (in-toto,
sigstore) or as raw ``r || s`` (the DSSE spec's own test vector); both encode
the same (r, s), so accepting both widens nothing an attacker can forge.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee.errors import ConfigError, RequestError, SignatureError

__all__ = [
    "INTOTO_PAYLOAD_TYPE",
    "Envelope",
    "EnvelopeSignature",
    "TrustedKey",
    "VerifiedEnvelope",
    "load_trusted_keys",
    "pae",
    "sign_envelope",
    "verify_envelope",
]

INTOTO_PAYLOAD_TYPE: Final = "application/vnd.in-toto+json"
MAX_ENVELOPE_PAYLOAD: Final = 1 << 20  # a statement of reference values, not a disk image
MAX_SIGNATURES: Final = 16
MAX_TRUSTED_KEY_FILES: Final = 256
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")

PublicKey: TypeAlias = ec.EllipticCurvePublicKey | Ed25519PublicKey
PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | Ed25519PrivateKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-Authentication Encoding of DSSE v1 (lengths in bytes, UTF-8 type)."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _b64decode(text: object, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not: DSSE verifiers must accept either."""
    if not isinstance(text, str) or _BASE64.fullmatch(text) is None:
        raise RequestError(f"DSSE {what} is not base64 text")
    body = text.rstrip("=").replace("-", "+").replace("_", "/")
    if len(body) % 4 == 1:
        raise RequestError(f"DSSE {what} is not valid base64 (bad length)")
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(f"DSSE {what} is not valid base64") from None


@dataclass(frozen=True)
class EnvelopeSignature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """The standard JSON envelope: ``payloadType``, ``payload`` (base64), ``signatures``."""

    payload_type: str
    payload: bytes
    signatures: tuple[EnvelopeSignature, ...]

    @classmethod
    def from_json(cls, doc: object) -> Envelope:
        if isinstance(doc, bytes | str):
            try:
                doc = json.loads(doc)
            except (ValueError, UnicodeDecodeError):
                raise RequestError("DSSE envelope is not JSON") from None
        if not isinstance(doc, Mapping):
            raise RequestError("DSSE envelope must be a JSON object")
        payload_type = doc.get("payloadType")
        if not isinstance(payload_type, str):
            raise RequestError("DSSE envelope needs a string payloadType")
        raw_payload = doc.get("payload", "")
        if isinstance(raw_payload, str) and len(raw_payload) > MAX_ENVELOPE_PAYLOAD * 4 // 3 + 4:
            raise RequestError(f"DSSE payload is larger than {MAX_ENVELOPE_PAYLOAD} bytes")
        payload = _b64decode(raw_payload, "payload")
        raw_sigs = doc.get("signatures", [])
        if not isinstance(raw_sigs, list):
            raise RequestError("DSSE signatures must be a list")
        if len(raw_sigs) > MAX_SIGNATURES:
            raise RequestError(f"DSSE envelope carries more than {MAX_SIGNATURES} signatures")
        sigs: list[EnvelopeSignature] = []
        for n, entry in enumerate(raw_sigs):
            if not isinstance(entry, Mapping):
                raise RequestError(f"DSSE signature #{n} is not an object")
            keyid = entry.get("keyid", "")
            if not isinstance(keyid, str):
                raise RequestError(f"DSSE signature #{n}: keyid must be a string")
            sigs.append(EnvelopeSignature(keyid, _b64decode(entry.get("sig"), f"signature #{n}")))
        return cls(payload_type, payload, tuple(sigs))

    def to_json(self) -> dict[str, object]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }


@dataclass(frozen=True)
class TrustedKey:
    """A builder key the owner trusts. ``keyid`` is the SHA-256 of its SubjectPublicKeyInfo."""

    keyid: str
    label: str
    key: PublicKey

    @classmethod
    def from_public_key(cls, key: object, label: str = "") -> TrustedKey:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if not isinstance(key.curve, ec.SECP256R1 | ec.SECP384R1):
                raise ConfigError(
                    f"trusted key {label or '?'}: curve {key.curve.name} is not accepted",
                    hint="use ECDSA P-256, ECDSA P-384 or Ed25519",
                )
        elif not isinstance(key, Ed25519PublicKey):
            raise ConfigError(
                f"trusted key {label or '?'}: {type(key).__name__} is not accepted",
                hint="use ECDSA P-256, ECDSA P-384 or Ed25519",
            )
        spki = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        keyid = hashlib.sha256(spki).hexdigest()
        return cls(keyid=keyid, label=label or keyid[:16], key=key)

    @classmethod
    def from_pem(cls, data: bytes, label: str = "") -> TrustedKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError):
            raise ConfigError(f"trusted key {label or '?'} is not a PEM public key") from None
        return cls.from_public_key(key, label)

    @property
    def algorithm(self) -> str:
        if isinstance(self.key, Ed25519PublicKey):
            return "ed25519"
        return "ecdsa-p256-sha256" if self.key.curve.key_size == 256 else "ecdsa-p384-sha384"

    def names(self) -> frozenset[str]:
        """Key ids a signature's hint may use to name this key."""
        return frozenset({self.keyid, self.label})

    def verifies(self, message: bytes, sig: bytes) -> bool:
        key = self.key
        if isinstance(key, Ed25519PublicKey):
            try:
                key.verify(sig, message)
            except InvalidSignature:
                return False
            return True
        size = (key.curve.key_size + 7) // 8
        algorithm = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
        candidates = [sig]
        if len(sig) == 2 * size:  # raw r || s (IEEE P1363)
            r = int.from_bytes(sig[:size], "big")
            s = int.from_bytes(sig[size:], "big")
            candidates.append(encode_dss_signature(r, s))
        for der in candidates:
            try:
                key.verify(der, message, ec.ECDSA(algorithm))
            except (InvalidSignature, ValueError):
                continue
            return True
        return False


def load_trusted_keys(directory: Path) -> tuple[TrustedKey, ...]:
    """Every ``*.pem`` / ``*.pub`` public key in ``directory`` (label = file stem).

    A missing directory means no builder is trusted: imports are then refused,
    which is the safe default. A file that is not an accepted key is a
    ConfigError naming it, so a typo never silently drops a trusted key.
    """
    if not directory.is_dir():
        return ()
    files = sorted(p for p in directory.iterdir() if p.suffix in (".pem", ".pub") and p.is_file())
    if len(files) > MAX_TRUSTED_KEY_FILES:
        raise ConfigError(f"{directory} holds more than {MAX_TRUSTED_KEY_FILES} key files")
    keys = [TrustedKey.from_pem(p.read_bytes(), p.stem) for p in files]
    return tuple(keys)


@dataclass(frozen=True)
class VerifiedEnvelope:
    payload_type: str
    payload: bytes
    signers: tuple[TrustedKey, ...]

    @property
    def payload_sha256(self) -> str:
        return hashlib.sha256(self.payload).hexdigest()


def verify_envelope(
    envelope: Envelope,
    trusted: Sequence[TrustedKey],
    *,
    payload_types: Iterable[str] = (INTOTO_PAYLOAD_TYPE,),
    threshold: int = 1,
) -> VerifiedEnvelope:
    """Accept when at least ``threshold`` distinct trusted keys signed PAE(type, payload).

    Errors say which case it is: no signature at all, no trusted key
    configured, a signature whose hint names a trusted key but does not verify
    (the statement was altered after signing, or the type was swapped), or no
    signature from any trusted key.
    """
    if threshold < 1:
        raise ConfigError("a DSSE threshold is at least 1")
    if not envelope.signatures:
        raise SignatureError(
            "DSSE envelope carries no signature: unsigned statements are refused",
            hint="sign the statement with a builder key this service trusts",
        )
    if not trusted:
        raise SignatureError(
            "no trusted builder keys are configured, so no statement can be accepted",
            hint="put the builder's PEM public key in <data-dir>/trusted-builders/",
        )
    message = pae(envelope.payload_type, envelope.payload)
    accepted: dict[str, TrustedKey] = {}
    named_but_failed: list[str] = []
    for sig in envelope.signatures:
        hinted = [k for k in trusted if sig.keyid and sig.keyid in k.names()]
        # The hint only narrows the search; without a matching hint every key is tried.
        candidates = [k for k in hinted or trusted if k.keyid not in accepted]
        match = next((k for k in candidates if k.verifies(message, sig.sig)), None)
        if match is not None:
            accepted[match.keyid] = match
        elif hinted and all(k.keyid not in accepted for k in hinted):
            named_but_failed.append(hinted[0].label)
    if len(accepted) >= threshold:
        if envelope.payload_type not in set(payload_types):
            raise RequestError(
                f"DSSE payloadType {envelope.payload_type!r} is not supported",
                hint=f"expected {', '.join(sorted(set(payload_types)))}",
            )
        return VerifiedEnvelope(
            envelope.payload_type, envelope.payload, tuple(accepted.values())
        )
    if named_but_failed:
        raise SignatureError(
            "DSSE signature by trusted key "
            + ", ".join(sorted(set(named_but_failed)))
            + " does not verify: the statement or its payloadType was altered after signing",
            hint="obtain the statement again from the builder; never edit a signed statement",
        )
    hints = sorted({s.keyid for s in envelope.signatures if s.keyid})
    if accepted:
        raise SignatureError(
            f"DSSE envelope is signed by {len(accepted)} trusted key(s); {threshold} required"
        )
    raise SignatureError(
        "no DSSE signature verifies with a trusted builder key"
        + (f" (signatures name key ids {', '.join(h[:24] for h in hints)})" if hints else "")
        + ": the signer is not trusted, or the statement was altered",
        hint="trust the builder's public key (PEM in <data-dir>/trusted-builders/) "
        "only if you trust that builder",
    )


def sign_envelope(
    payload_type: str, payload: bytes, keys: Sequence[tuple[PrivateKey, str]]
) -> Envelope:
    """An envelope signed by each ``(private key, keyid hint)``; ECDSA signatures are DER."""
    message = pae(payload_type, payload)
    sigs: list[EnvelopeSignature] = []
    for key, keyid in keys:
        if isinstance(key, Ed25519PrivateKey):
            sig = key.sign(message)
        elif isinstance(key, ec.EllipticCurvePrivateKey):
            algorithm = hashes.SHA256() if key.curve.key_size == 256 else hashes.SHA384()
            sig = key.sign(message, ec.ECDSA(algorithm))
        else:  # pragma: no cover - typed away
            raise ConfigError(f"cannot sign with a {type(key).__name__}")
        sigs.append(EnvelopeSignature(keyid, sig))
    return Envelope(payload_type, payload, tuple(sigs))
