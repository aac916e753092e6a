"""Guest-side decryption of the KBS resource JWE (what guest-components does).

The AAD is rebuilt by re-serializing the decoded protected header in the
guest's member order, as guest-components does; a server whose header bytes
differ would fail GCM authentication on real guests, so the difference is
reported explicitly here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from veritee.errors import VerificationError

_CURVES = {"P-256": ec.SECP256R1(), "P-521": ec.SECP521R1()}


def _d(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise VerificationError(f"JWE {what} missing")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise VerificationError(f"JWE {what} is not base64url") from None


def guest_header_bytes(header: Mapping[str, object]) -> bytes:
    """Compact JSON in the order guest-components serializes: alg, enc, then epk sorted."""
    ordered: dict[str, object] = {"alg": header.get("alg"), "enc": header.get("enc")}
    for key, value in header.items():
        if key not in ordered:
            ordered[key] = dict(sorted(value.items())) if isinstance(value, Mapping) else value
    return json.dumps(ordered, separators=(",", ":")).encode()


def _concat_kdf(z: bytes, alg: str) -> bytes:
    other = (
        len(alg).to_bytes(4, "big") + alg.encode() + bytes(4) + bytes(4) + (256).to_bytes(4, "big")
    )
    return hashlib.sha256((1).to_bytes(4, "big") + z + other).digest()


def decrypt(
    jwe: Mapping[str, object], key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
) -> bytes:
    protected_b64 = jwe.get("protected")
    header_raw = _d(protected_b64, "protected header")
    try:
        header = json.loads(header_raw)
    except ValueError:
        raise VerificationError("JWE protected header is not JSON") from None
    if not isinstance(header, dict) or header.get("enc") != "A256GCM":
        raise VerificationError("JWE must use enc A256GCM")
    aad = base64.urlsafe_b64encode(guest_header_bytes(header)).rstrip(b"=")
    if aad.decode() != protected_b64:
        raise VerificationError(
            "JWE protected header is not in the order real guests re-serialize it"
        )
    alg = header.get("alg")
    encrypted_key = _d(jwe.get("encrypted_key"), "encrypted_key")
    try:
        if alg == "ECDH-ES+A256KW" and isinstance(key, ec.EllipticCurvePrivateKey):
            epk = header.get("epk")
            if not isinstance(epk, dict) or epk.get("crv") not in _CURVES:
                raise VerificationError("JWE epk missing or on an unsupported curve")
            curve = _CURVES[str(epk["crv"])]
            size = (curve.key_size + 7) // 8
            point = ec.EllipticCurvePublicNumbers(
                int.from_bytes(_d(epk.get("x"), "epk.x"), "big"),
                int.from_bytes(_d(epk.get("y"), "epk.y"), "big"),
                curve,
            ).public_key()
            z = key.exchange(ec.ECDH(), point)
            assert len(z) == size
            cek = aes_key_unwrap(_concat_kdf(z, "ECDH-ES+A256KW"), encrypted_key)
        elif alg == "RSA-OAEP-256" and isinstance(key, rsa.RSAPrivateKey):
            cek = key.decrypt(
                encrypted_key,
                padding.OAEP(
                    mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None
                ),
            )
        else:
            raise VerificationError(f"JWE alg {alg!r} does not fit this key")
        iv = _d(jwe.get("iv"), "iv")
        ciphertext = _d(jwe.get("ciphertext"), "ciphertext")
        tag = _d(jwe.get("tag"), "tag")
        return AESGCM(cek).decrypt(iv, ciphertext + tag, aad)
    except (InvalidTag, InvalidUnwrap, ValueError):
        raise VerificationError("JWE does not decrypt with this TEE key") from None
