"""TPM2_MakeCredential in Python: the verifier's half of credential activation.

A verifier that trusts an EK (by its certificate) but not yet an AK encrypts a random
secret to the EK, bound to the AK's Name (TPM 2.0 Library Part 1, 24 "Credential
Protection"). Only the TPM holding that EK can recover it with TPM2_ActivateCredential,
and only if an object with that Name is loaded beside it; returning the secret proves
the AK lives in the same TPM as the EK.

* seed: RSA EK — random, RSA-OAEP(nameAlg, label "IDENTITY"); ECC EK — ECDH with an
  ephemeral key, seed = KDFe(nameAlg, Z, "IDENTITY", ephemeral.x, EK.x);
* symKey = KDFa(nameAlg, seed, "STORAGE", Name, "", EK symmetric key bits);
* encIdentity = AES-CFB(symKey, IV 0) of TPM2B(credential);
* HMACkey = KDFa(nameAlg, seed, "INTEGRITY", "", "", digest bits);
* credentialBlob = TPM2B(HMAC(HMACkey, encIdentity || Name)) || encIdentity.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass

from cryptography.hazmat.decrepit.ciphers.modes import CFB  # the TPM's credential mode
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from veritee.binary import Reader, Writer
from veritee.errors import EvidenceFormatError, MismatchError, VerificationError
from veritee.tee.tpm.structures import (
    HASH_SIZES,
    EccParms,
    EccPoint,
    ObjectAttr,
    RsaParms,
    TpmAlg,
    TpmtPublic,
    hash_name,
    hashlib_name,
    read_tpm2b,
    write_tpm2b,
)
from veritee.tee.tpm.verify import hash_algorithm, public_key_of

TPM2_TOOLS_MAGIC = 0xBADCC0DE
TPM2_TOOLS_VERSION = 1
# What an AK must be for credential activation to mean what the verifier wants.
AK_ATTRIBUTES = (
    ObjectAttr.FIXED_TPM | ObjectAttr.FIXED_PARENT | ObjectAttr.SENSITIVE_DATA_ORIGIN
    | ObjectAttr.RESTRICTED | ObjectAttr.SIGN_ENCRYPT
)
# An EK is a restricted decryption (storage) key.
EK_ATTRIBUTES = ObjectAttr.RESTRICTED | ObjectAttr.DECRYPT


def kdfa(
    alg: int, key: bytes, label: bytes, context_u: bytes, context_v: bytes, bits: int
) -> bytes:
    """SP 800-108 counter-mode KDF with HMAC (TPM 2.0 Part 1, 11.4.10.2)."""
    if not label.endswith(b"\0"):
        label += b"\0"
    name = hashlib_name(alg)
    out = b""
    counter = 1
    tail = label + context_u + context_v + struct.pack(">I", bits)
    while len(out) * 8 < bits:
        out += hmac.new(key, struct.pack(">I", counter) + tail, name).digest()
        counter += 1
    out = out[: (bits + 7) // 8]
    if bits % 8:
        out = bytes([out[0] & ((1 << (bits % 8)) - 1)]) + out[1:]
    return out


def kdfe(alg: int, z: bytes, label: bytes, party_u: bytes, party_v: bytes, bits: int) -> bytes:
    """SP 800-56A concatenation KDF (TPM 2.0 Part 1, 11.4.10.3)."""
    if not label.endswith(b"\0"):
        label += b"\0"
    name = hashlib_name(alg)
    out = b""
    counter = 1
    while len(out) * 8 < bits:
        block = struct.pack(">I", counter) + z + label + party_u + party_v
        out += hashlib.new(name, block).digest()
        counter += 1
    return out[: (bits + 7) // 8]


@dataclass(frozen=True)
class Credential:
    """TPM2_MakeCredential's outputs: ``credential_blob`` (TPM2B_ID_OBJECT contents) and
    ``secret`` (TPM2B_ENCRYPTED_SECRET contents)."""

    credential_blob: bytes
    secret: bytes

    def to_tpm2_tools(self) -> bytes:
        """The file ``tpm2_makecredential -o`` writes and ``tpm2_activatecredential -i`` reads."""
        w = Writer().u32be(TPM2_TOOLS_MAGIC).u32be(TPM2_TOOLS_VERSION)
        write_tpm2b(w, self.credential_blob)
        write_tpm2b(w, self.secret)
        return w.getvalue()

    @classmethod
    def from_tpm2_tools(cls, data: bytes) -> Credential:
        rd = Reader(data, what="tpm2-tools credential file")
        if rd.u32be("magic") != TPM2_TOOLS_MAGIC:
            raise EvidenceFormatError("not a tpm2-tools credential file (bad magic)")
        version = rd.u32be("version")
        if version != TPM2_TOOLS_VERSION:
            raise EvidenceFormatError(f"tpm2-tools credential file version {version}")
        blob = read_tpm2b(rd, "credentialBlob", 0xFFFF)
        secret = read_tpm2b(rd, "secret", 0xFFFF)
        rd.expect_end()
        return cls(blob, secret)


def _check_ek(ek: TpmtPublic) -> tuple[int, int]:
    """(name hash, symmetric key bits) of a usable EK, else VerificationError."""
    if ek.name_alg not in HASH_SIZES:
        raise VerificationError(f"EK name algorithm {hash_name(ek.name_alg)} is not usable")
    missing = EK_ATTRIBUTES & ~ObjectAttr(ek.object_attributes)
    if missing or ek.has(ObjectAttr.SIGN_ENCRYPT):
        raise VerificationError("the EK is not a restricted decryption key")
    p = ek.parameters
    if not isinstance(p, RsaParms | EccParms):
        raise VerificationError("the EK must be an RSA or ECC key")
    sym = p.symmetric
    if sym.algorithm != TpmAlg.AES or sym.mode != TpmAlg.CFB or sym.key_bits not in (128, 192, 256):
        raise VerificationError("the EK's symmetric definition must be AES-CFB")
    assert sym.key_bits is not None
    return ek.name_alg, sym.key_bits


def make_credential(
    ek: TpmtPublic,
    object_name: bytes,
    credential: bytes,
    *,
    seed: bytes | None = None,
    ephemeral: ec.EllipticCurvePrivateKey | None = None,
) -> Credential:
    """Protect ``credential`` so only the TPM holding ``ek`` can release it, and only to the
    object named ``object_name``. ``seed``/``ephemeral`` exist for reproducible tests."""
    alg, sym_bits = _check_ek(ek)
    digest_size = HASH_SIZES[alg]
    if not 0 < len(credential) <= digest_size:
        raise ValueError(f"credential must be 1..{digest_size} bytes for {hash_name(alg)}")
    if len(object_name) < 2:
        raise ValueError("object name too short")
    key = public_key_of(ek)
    label = b"IDENTITY\0"
    if isinstance(key, rsa.RSAPublicKey):
        seed = seed if seed is not None else os.urandom(digest_size)
        h = hash_algorithm(alg)
        secret = key.encrypt(seed, padding.OAEP(mgf=padding.MGF1(h), algorithm=h, label=label))
    else:
        eph = ephemeral if ephemeral is not None else ec.generate_private_key(key.curve)
        size = (key.curve.key_size + 7) // 8
        z = eph.exchange(ec.ECDH(), key)
        eph_nums = eph.public_key().public_numbers()
        ek_point = ek.unique
        assert isinstance(ek_point, EccPoint)
        ex = eph_nums.x.to_bytes(size, "big")
        seed = kdfe(alg, z, label, ex, ek_point.x, digest_size * 8)
        secret = EccPoint(ex, eph_nums.y.to_bytes(size, "big")).to_bytes()
    sym_key = kdfa(alg, seed, b"STORAGE", object_name, b"", sym_bits)
    plain = len(credential).to_bytes(2, "big") + credential
    enc = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = enc.update(plain) + enc.finalize()
    hmac_key = kdfa(alg, seed, b"INTEGRITY", b"", b"", digest_size * 8)
    outer = hmac.new(hmac_key, enc_identity + object_name, hashlib_name(alg)).digest()
    blob = len(outer).to_bytes(2, "big") + outer + enc_identity
    return Credential(blob, secret)


def check_ak_attributes(ak: TpmtPublic) -> None:
    """An AK must be a fixed, TPM-generated, restricted signing key (not a decryption key)."""
    missing = AK_ATTRIBUTES & ~ObjectAttr(ak.object_attributes)
    if missing:
        raise VerificationError(
            f"the AK lacks required attributes {missing!r}",
            hint="create it with tpm2_createak (fixedtpm|fixedparent|sensitivedataorigin|"
            "restricted|sign)",
        )
    if ak.has(ObjectAttr.DECRYPT):
        raise VerificationError("the AK is also a decryption key")


@dataclass(frozen=True)
class CredentialChallenge:
    """A pending activation: send ``credential`` to the attester, keep the rest."""

    credential: Credential
    ak_name: bytes
    expected: bytes

    def check(self, returned: bytes) -> None:
        """The attester's answer must be the secret (constant-time compare)."""
        if not hmac.compare_digest(returned, self.expected):
            raise MismatchError(
                "credential activation returned the wrong secret",
                hint="the AK is not resident in the TPM of this EK",
            )


def challenge(
    ek: TpmtPublic, ak: TpmtPublic, *, secret: bytes | None = None
) -> CredentialChallenge:
    """Check the AK's attributes and make a credential for its Name under ``ek``."""
    check_ak_attributes(ak)
    name = ak.name()
    digest_size = HASH_SIZES.get(ek.name_alg, 32)
    value = secret if secret is not None else os.urandom(min(32, digest_size))
    return CredentialChallenge(make_credential(ek, name, value), name, value)
