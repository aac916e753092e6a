"""Resource response encryption: flattened JWE JSON to the TEE key (PROTOCOL.md 1.7).

Output members, all base64url without padding: ``protected``, ``encrypted_key``,
``iv``, ``ciphertext``, ``tag`` (no ``aad``). Content is A256GCM with a fresh
32-byte CEK and 12-byte IV; the GCM AAD is the ASCII of the ``protected``
string (RFC 7516 5.1 step 14).

Why the header is written by hand: the CoCo guest does not use the received
``protected`` string as AAD; it decodes the header and re-serializes it
(``generate_aad``). Only a compact header with members ``alg``, ``enc``, then
``epk`` whose members are sorted survives that round trip byte for byte;
anything else fails GCM authentication on real guests.
"""

from __future__ import annotations

import json
import os
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.keywrap import aes_key_wrap

from veritee.broker.teekey import TeePublicKey, b64url_encode

__all__ = ["CONTENT_ENCRYPTION", "concat_kdf_otherinfo", "encrypt_for", "protected_header"]

CONTENT_ENCRYPTION: Final = "A256GCM"
_CEK_BYTES: Final = 32
_IV_BYTES: Final = 12
_TAG_BYTES: Final = 16
_KEK_BITS: Final = 256


def concat_kdf_otherinfo(algorithm_id: str, key_bits: int) -> bytes:
    """RFC 7518 4.6.2 OtherInfo with empty PartyUInfo/PartyVInfo (no ``apu``/``apv``).

    AlgorithmID is the ``alg`` value for key agreement with key wrapping, each
    datum is prefixed with its 32-bit big-endian length, and SuppPubInfo is
    keydatalen in bits as 32-bit big-endian.
    """
    alg_id = algorithm_id.encode("ascii")
    return (
        len(alg_id).to_bytes(4, "big")
        + alg_id
        + (0).to_bytes(4, "big")  # PartyUInfo: empty
        + (0).to_bytes(4, "big")  # PartyVInfo: empty
        + key_bits.to_bytes(4, "big")  # SuppPubInfo
    )


def protected_header(alg: str, epk: ec.EllipticCurvePublicKey | None = None) -> str:
    """The protected header JSON, byte-exact with what the guest re-serializes."""
    parts = [f'"alg":{json.dumps(alg)}', f'"enc":"{CONTENT_ENCRYPTION}"']
    if epk is not None:
        jwk = TeePublicKey.from_public_key(epk).canonical_jwk()
        # Sorted members crv, kty, x, y: the guest parses epk into a map that
        # serializes in key order. No alg member: RFC 7518 4.6.1.1 epk is a bare key.
        members = ",".join(f'"{name}":{json.dumps(jwk[name])}' for name in ("crv", "kty", "x", "y"))
        parts.append('"epk":{' + members + "}")
    return "{" + ",".join(parts) + "}"


def encrypt_for(key: TeePublicKey, plaintext: bytes) -> dict[str, str]:
    """Encrypt ``plaintext`` to the TEE key; returns the flattened JWE JSON members."""
    cek = AESGCM.generate_key(bit_length=_CEK_BYTES * 8)
    recipient = key.public_key()
    if key.kty == "EC":
        assert isinstance(recipient, ec.EllipticCurvePublicKey)
        header, encrypted_key = _ecdh_es_a256kw(recipient, key.alg, cek)
    else:
        assert isinstance(recipient, rsa.RSAPublicKey)
        header, encrypted_key = _rsa(recipient, key.alg, cek)
    protected = b64url_encode(header.encode("ascii"))
    iv = os.urandom(_IV_BYTES)
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    ciphertext, tag = sealed[:-_TAG_BYTES], sealed[-_TAG_BYTES:]
    return {
        "protected": protected,
        "encrypted_key": b64url_encode(encrypted_key),
        "iv": b64url_encode(iv),
        "ciphertext": b64url_encode(ciphertext),
        "tag": b64url_encode(tag),
    }


def _ecdh_es_a256kw(
    recipient: ec.EllipticCurvePublicKey, alg: str, cek: bytes
) -> tuple[str, bytes]:
    if alg != "ECDH-ES+A256KW":  # pragma: no cover - TeePublicKey admits no other
        raise ValueError(f"unsupported EC key management algorithm {alg}")
    ephemeral = ec.generate_private_key(recipient.curve)
    # Z is the x-coordinate of the shared point, at the full field length.
    shared = ephemeral.exchange(ec.ECDH(), recipient)
    kek = ConcatKDFHash(
        algorithm=hashes.SHA256(),
        length=_KEK_BITS // 8,
        otherinfo=concat_kdf_otherinfo(alg, _KEK_BITS),
    ).derive(shared)
    return protected_header(alg, ephemeral.public_key()), aes_key_wrap(kek, cek)


def _rsa(recipient: rsa.RSAPublicKey, alg: str, cek: bytes) -> tuple[str, bytes]:
    scheme: padding.AsymmetricPadding
    if alg == "RSA-OAEP-256":
        scheme = padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
        )
    elif alg == "RSA1_5":
        # Deprecated (RFC 8725 3.2, Bleichenbacher) and served only because real
        # guests may still ask; the guest, not veritee, is the decrypting party.
        scheme = padding.PKCS1v15()
    else:  # pragma: no cover - TeePublicKey admits no other
        raise ValueError(f"unsupported RSA key management algorithm {alg}")
    return protected_header(alg), recipient.encrypt(cek, scheme)
