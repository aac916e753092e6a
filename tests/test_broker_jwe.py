"""Resource JWE: decrypted by an independent decryptor written here and by joserfc.

The decryptor below shares no code with veritee.broker.jwe: its own Concat KDF
(hashlib), its own RFC 3394 unwrap (raw AES blocks), and GCM with the
``protected`` string's bytes as AAD.
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from collections.abc import Callable

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc import jwe as jose_jwe
from joserfc.jwk import ECKey, RSAKey

from veritee.broker.jwe import concat_kdf_otherinfo, encrypt_for, protected_header
from veritee.broker.teekey import TeePublicKey

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
SECRET = b"the resource: a disk key \x00\xff and some more bytes" * 3


def _unb64(text: str) -> bytes:
    assert "=" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the independent decryptor --------------------------------------------------


def _concat_kdf(z: bytes, alg: str, key_bits: int, apu: bytes = b"", apv: bytes = b"") -> bytes:
    """NIST SP 800-56A Concat KDF with SHA-256, as RFC 7518 4.6.2 fills it in."""
    alg_id = alg.encode()
    other = b"".join(len(d).to_bytes(4, "big") + d for d in (alg_id, apu, apv))
    other += key_bits.to_bytes(4, "big")
    out = b""
    counter = 1
    while len(out) * 8 < key_bits:
        out += hashlib.sha256(counter.to_bytes(4, "big") + z + other).digest()
        counter += 1
    return out[: key_bits // 8]


def _aes_kw_unwrap(kek: bytes, wrapped: bytes) -> bytes:
    """RFC 3394 2.2.2 (index-based), with AES-ECB as the raw block cipher."""
    n = len(wrapped) // 8 - 1
    a = wrapped[:8]
    r = [wrapped[8 * (i + 1) : 8 * (i + 2)] for i in range(n)]
    decryptor = Cipher(
        algorithms.AES(kek), modes.ECB()
    ).decryptor()  # the raw block cipher RFC 3394 is built on
    for j in range(5, -1, -1):
        for i in range(n, 0, -1):
            t = n * j + i
            a_xor = (int.from_bytes(a, "big") ^ t).to_bytes(8, "big")
            block = decryptor.update(a_xor + r[i - 1])
            a, r[i - 1] = block[:8], block[8:]
    if a != bytes.fromhex("A6A6A6A6A6A6A6A6"):
        raise ValueError("AES key wrap integrity check failed")
    return b"".join(r)


def _guest_aad(protected: str) -> bytes:
    """What the CoCo guest does: decode the header, re-serialize it, use that as AAD."""
    header = json.loads(_unb64(protected))
    ordered: dict[str, object] = {"alg": header.pop("alg"), "enc": header.pop("enc")}
    for name in sorted(header):
        value = header[name]
        ordered[name] = dict(sorted(value.items())) if isinstance(value, dict) else value
    return base64.urlsafe_b64encode(json.dumps(ordered, separators=(",", ":")).encode()).rstrip(
        b"="
    )


def independent_decrypt(jwe: dict[str, str], key: PrivateKey) -> bytes:
    assert set(jwe) == {"protected", "encrypted_key", "iv", "ciphertext", "tag"}
    header = json.loads(_unb64(jwe["protected"]))
    assert header["enc"] == "A256GCM"
    encrypted_key = _unb64(jwe["encrypted_key"])
    if header["alg"] == "ECDH-ES+A256KW":
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        epk = header["epk"]
        curve = {"P-256": ec.SECP256R1(), "P-521": ec.SECP521R1()}[epk["crv"]]
        peer = ec.EllipticCurvePublicNumbers(
            int.from_bytes(_unb64(epk["x"]), "big"), int.from_bytes(_unb64(epk["y"]), "big"), curve
        ).public_key()
        z = key.exchange(ec.ECDH(), peer)
        assert len(encrypted_key) == 40
        cek = _aes_kw_unwrap(_concat_kdf(z, header["alg"], 256), encrypted_key)
    elif header["alg"] == "RSA-OAEP-256":
        assert isinstance(key, rsa.RSAPrivateKey)
        cek = key.decrypt(
            encrypted_key,
            padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None),
        )
    elif header["alg"] == "RSA1_5":
        assert isinstance(key, rsa.RSAPrivateKey)
        cek = key.decrypt(encrypted_key, padding.PKCS1v15())
    else:
        raise AssertionError(header["alg"])
    iv, tag = _unb64(jwe["iv"]), _unb64(jwe["tag"])
    assert len(iv) == 12
    assert len(tag) == 16
    aad = jwe["protected"].encode("ascii")
    return AESGCM(cek).decrypt(iv, _unb64(jwe["ciphertext"]) + tag, aad)


# --- keys ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def rsa_private() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def recipients(rsa_private: rsa.RSAPrivateKey) -> dict[str, tuple[PrivateKey, TeePublicKey]]:
    p256 = ec.generate_private_key(ec.SECP256R1())
    p521 = ec.generate_private_key(ec.SECP521R1())
    out: dict[str, tuple[PrivateKey, TeePublicKey]] = {
        "P-256": (p256, TeePublicKey.from_public_key(p256.public_key())),
        "P-521": (p521, TeePublicKey.from_public_key(p521.public_key())),
        "RSA-OAEP-256": (rsa_private, TeePublicKey.from_public_key(rsa_private.public_key())),
        "RSA1_5": (
            rsa_private,
            TeePublicKey.from_public_key(rsa_private.public_key(), alg="RSA1_5"),
        ),
    }
    return out


KINDS = ["P-256", "P-521", "RSA-OAEP-256", "RSA1_5"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("plaintext", [SECRET, b""])
def test_independent_decryptor_opens_it(
    recipients: dict[str, tuple[PrivateKey, TeePublicKey]], kind: str, plaintext: bytes
) -> None:
    private, public = recipients[kind]
    jwe = encrypt_for(public, plaintext)
    assert list(jwe) == ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
    assert all("=" not in v and "+" not in v and "/" not in v for v in jwe.values())
    assert independent_decrypt(jwe, private) == plaintext
    # The guest's re-serialized header is byte-identical, so its AAD is ours.
    assert _guest_aad(jwe["protected"]) == jwe["protected"].encode()


@pytest.mark.parametrize("kind", KINDS)
def test_joserfc_opens_it(
    recipients: dict[str, tuple[PrivateKey, TeePublicKey]], kind: str
) -> None:
    private, public = recipients[kind]
    jwe = encrypt_for(public, SECRET)
    key: ECKey | RSAKey
    if isinstance(private, ec.EllipticCurvePrivateKey):
        key = ECKey.import_key(private)
    else:
        key = RSAKey.import_key(private)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # joserfc warns that RSA1_5 is deprecated: we know
        result = jose_jwe.decrypt_json(
            dict(jwe),  # type: ignore[arg-type]
            key,
            algorithms=[public.alg, "A256GCM"],
        )
    assert result.plaintext == SECRET


def test_header_bytes_exact(recipients: dict[str, tuple[PrivateKey, TeePublicKey]]) -> None:
    for kind in ("P-256", "P-521"):
        _, public = recipients[kind]
        jwe = encrypt_for(public, SECRET)
        header = _unb64(jwe["protected"]).decode()
        epk = json.loads(header)["epk"]
        assert header == (
            '{"alg":"ECDH-ES+A256KW","enc":"A256GCM","epk":{"crv":"' + kind + '","kty":"EC",'
            '"x":"' + epk["x"] + '","y":"' + epk["y"] + '"}}'
        )
        size = 32 if kind == "P-256" else 66
        assert len(_unb64(epk["x"])) == len(_unb64(epk["y"])) == size
    for alg in ("RSA-OAEP-256", "RSA1_5"):
        _, public = recipients[alg]
        header = _unb64(encrypt_for(public, SECRET)["protected"]).decode()
        assert header == '{"alg":"' + alg + '","enc":"A256GCM"}'


def test_fresh_randomness_each_time(
    recipients: dict[str, tuple[PrivateKey, TeePublicKey]],
) -> None:
    _, public = recipients["P-256"]
    first, second = encrypt_for(public, SECRET), encrypt_for(public, SECRET)
    for member in ("protected", "encrypted_key", "iv", "ciphertext"):
        assert first[member] != second[member]  # new epk, CEK and IV every time


def test_ciphertext_does_not_contain_plaintext(
    recipients: dict[str, tuple[PrivateKey, TeePublicKey]],
) -> None:
    _, public = recipients["RSA-OAEP-256"]
    jwe = encrypt_for(public, SECRET)
    assert SECRET[:16] not in _unb64(jwe["ciphertext"])
    assert len(_unb64(jwe["ciphertext"])) == len(SECRET)


def test_concat_kdf_matches_rfc7518_appendix_c() -> None:
    # RFC 7518 Appendix C (ECDH-ES, A128GCM, apu "Alice", apv "Bob") pins the
    # test decryptor's KDF; veritee's OtherInfo is the same layout with empty parties.
    z = bytes(
        [158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
         110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196]
    )  # fmt: skip
    derived = _concat_kdf(z, "A128GCM", 128, b"Alice", b"Bob")
    assert _b64(derived) == "VqqN6vgjbSBcIijNcacQGg"
    assert concat_kdf_otherinfo("A128GCM", 128) == (
        (7).to_bytes(4, "big") + b"A128GCM" + bytes(8) + (128).to_bytes(4, "big")
    )
    assert concat_kdf_otherinfo("ECDH-ES+A256KW", 256) == (
        (14).to_bytes(4, "big") + b"ECDH-ES+A256KW" + bytes(8) + (256).to_bytes(4, "big")
    )


def test_protected_header_without_epk() -> None:
    assert protected_header("RSA-OAEP-256") == '{"alg":"RSA-OAEP-256","enc":"A256GCM"}'


# --- tampering ------------------------------------------------------------------


def _flip(text: str, index: int = 0) -> str:
    raw = bytearray(_unb64(text))
    raw[index] ^= 0x01
    return _b64(bytes(raw))


def _respaced_header(protected: str) -> str:
    """The same header with one extra space: same meaning, different AAD bytes."""
    return _b64(_unb64(protected).replace(b'"enc":', b'"enc": '))


def _other_epk(protected: str) -> str:
    header = json.loads(_unb64(protected))
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    header["epk"]["x"] = _b64(other.x.to_bytes(32, "big"))
    header["epk"]["y"] = _b64(other.y.to_bytes(32, "big"))
    return _b64(json.dumps(header, separators=(",", ":")).encode())


TAMPER: dict[str, Callable[[dict[str, str]], dict[str, str]]] = {
    "protected-respaced": lambda j: {**j, "protected": _respaced_header(j["protected"])},
    "encrypted_key": lambda j: {**j, "encrypted_key": _flip(j["encrypted_key"], 5)},
    "iv": lambda j: {**j, "iv": _flip(j["iv"])},
    "ciphertext": lambda j: {**j, "ciphertext": _flip(j["ciphertext"], 3)},
    "tag": lambda j: {**j, "tag": _flip(j["tag"], 15)},
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("member", list(TAMPER))
def test_tampering_any_member_fails(
    recipients: dict[str, tuple[PrivateKey, TeePublicKey]], kind: str, member: str
) -> None:
    private, public = recipients[kind]
    jwe = encrypt_for(public, SECRET)
    assert independent_decrypt(jwe, private) == SECRET
    tampered = TAMPER[member](jwe)
    assert tampered != jwe
    # InvalidTag from GCM, or ValueError from the key unwrap / RSA decryption.
    with pytest.raises((InvalidTag, ValueError)):
        independent_decrypt(tampered, private)


def test_tampering_the_epk_fails(recipients: dict[str, tuple[PrivateKey, TeePublicKey]]) -> None:
    private, public = recipients["P-256"]
    jwe = encrypt_for(public, SECRET)
    with pytest.raises((InvalidTag, ValueError)):
        independent_decrypt({**jwe, "protected": _other_epk(jwe["protected"])}, private)


def test_wrong_recipient_fails(recipients: dict[str, tuple[PrivateKey, TeePublicKey]]) -> None:
    _, public = recipients["P-256"]
    jwe = encrypt_for(public, SECRET)
    stranger = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ValueError, match="integrity"):
        independent_decrypt(jwe, stranger)
