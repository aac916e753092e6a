"""The TEE public key a guest sends in ``runtime-data.tee-pubkey`` (a JWK).

Secrets are released only inside a JWE to this key, and the key is bound into
the hardware evidence through ``H(JCS({..., "tee-pubkey": <JWK>}))``. Trustee
deserializes the JWK into a typed enum and re-serializes it before hashing, so
any member outside the typed form (``kid``, ``use``, ...) silently changes the
hash and surfaces as a baffling report-data mismatch. veritee accepts exactly
the typed forms (PROTOCOL.md 1.3) and names the offending member instead.

Parsing is strict: unpadded base64url only, canonical encodings, EC coordinates
of the full field length and on the curve, RSA moduli of at least 2048 bits.
Every rejection is a :class:`~veritee.errors.RequestError`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from veritee import b64url
from veritee.errors import RequestError

__all__ = [
    "EC_ALGORITHMS",
    "RSA_ALGORITHMS",
    "TeeKeyObject",
    "TeePublicKey",
    "b64url_decode",
    "b64url_encode",
]

TeeKeyObject: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey

#: Key-management algorithms Trustee's ``jwe()`` serves, per key type.
EC_ALGORITHMS: Final = frozenset({"ECDH-ES+A256KW"})
RSA_ALGORITHMS: Final = frozenset({"RSA-OAEP-256", "RSA1_5"})
_DEPRECATED_ALGORITHMS: Final = frozenset({"RSA1_5"})

# JWK curve name -> (curve, coordinate length in bytes). RFC 7518 6.2.1.2: x and y
# are the full field length; P-384 is not offered because Trustee does not serve it.
_CURVES: Final[Mapping[str, tuple[ec.EllipticCurve, int]]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-521": (ec.SECP521R1(), 66),
}

_EC_MEMBERS: Final = ("kty", "crv", "alg", "x", "y")
_RSA_MEMBERS: Final = ("kty", "alg", "n", "e")

MIN_RSA_BITS: Final = 2048
# Bounds the work an untrusted key can cause (RSA encryption cost grows with both).
MAX_RSA_BITS: Final = 16384
_MAX_EXPONENT_BYTES: Final = 32

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_WHERE = "runtime-data.tee-pubkey"
_SHAPE_HINT = (
    "the guest must send exactly kty/crv/alg/x/y (EC) or kty/alg/n/e (RSA): "
    "Trustee-compatible servers drop any other member before hashing, "
    "so the report-data binding would not match"
)


b64url_encode = b64url.encode
b64url_decode = b64url.decode


def _shown(value: object) -> str:
    """A short, printable rendering of an untrusted value for an error message."""
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."


@dataclass(frozen=True)
class TeePublicKey:
    """A validated ``tee-pubkey``: EC (``crv``/``x``/``y``) or RSA (``n``/``e``).

    The base64url strings are kept exactly as the guest sent them, because
    those strings (not the decoded numbers) are what both sides hash. Any
    instance is valid: construction re-checks everything :meth:`from_jwk` does.
    """

    kty: str
    alg: str
    crv: str | None = None
    x: str | None = None
    y: str | None = None
    n: str | None = None
    e: str | None = None
    _key: TeeKeyObject = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("kty", "alg", "crv", "x", "y", "n", "e"):
            value = getattr(self, name)
            if not (isinstance(value, str) or (value is None and name not in ("kty", "alg"))):
                raise RequestError(f"{_WHERE}.{name} must be a string")
        key: TeeKeyObject
        if self.kty == "EC":
            key = self._ec_key()
        elif self.kty == "RSA":
            key = self._rsa_key()
        else:
            raise RequestError(
                f"{_WHERE}: unsupported key type {_shown(self.kty)}",
                hint="use kty EC (P-256 or P-521) or RSA",
            )
        object.__setattr__(self, "_key", key)

    @classmethod
    def from_jwk(cls, obj: object) -> TeePublicKey:
        """Validate the JWK object from the Attestation request."""
        if not isinstance(obj, Mapping):
            raise RequestError(f"{_WHERE} must be a JSON object (a JWK)")
        kty = obj.get("kty")
        allowed: tuple[str, ...]
        if kty == "EC":
            allowed = _EC_MEMBERS
        elif kty == "RSA":
            allowed = _RSA_MEMBERS
        elif kty is None:
            raise RequestError(f"{_WHERE} has no 'kty' member", hint=_SHAPE_HINT)
        else:
            raise RequestError(
                f"{_WHERE}: unsupported key type {_shown(kty)}",
                hint="use kty EC (P-256 or P-521) or RSA",
            )
        for name in obj:
            if name not in allowed:
                raise RequestError(
                    f"{_WHERE} has member {_shown(name)}, which veritee does not accept "
                    f"for kty {kty}",
                    hint=_SHAPE_HINT,
                )
        values: dict[str, str] = {}
        for name in allowed:
            if name not in obj:
                raise RequestError(f"{_WHERE} (kty {kty}) is missing member {name!r}")
            value = obj[name]
            if not isinstance(value, str):
                raise RequestError(f"{_WHERE}.{name} must be a string")
            values[name] = value
        return cls(**values)

    @classmethod
    def from_public_key(cls, key: TeeKeyObject, alg: str | None = None) -> TeePublicKey:
        """The JWK form of a key object (guest side, simulators and tests)."""
        if isinstance(key, ec.EllipticCurvePublicKey):
            for crv, (curve, size) in _CURVES.items():
                if curve.name == key.curve.name:
                    numbers = key.public_numbers()
                    return cls(
                        kty="EC",
                        alg=alg or "ECDH-ES+A256KW",
                        crv=crv,
                        x=b64url_encode(numbers.x.to_bytes(size, "big")),
                        y=b64url_encode(numbers.y.to_bytes(size, "big")),
                    )
            raise RequestError(f"curve {key.curve.name} is not supported for a TEE key")
        numbers_rsa = key.public_numbers()
        return cls(
            kty="RSA",
            alg=alg or "RSA-OAEP-256",
            n=b64url_encode(_minimal_bytes(numbers_rsa.n)),
            e=b64url_encode(_minimal_bytes(numbers_rsa.e)),
        )

    @property
    def deprecated(self) -> bool:
        """True for ``RSA1_5``: served because real guests may ask, but PKCS#1 v1.5 is legacy."""
        return self.alg in _DEPRECATED_ALGORITHMS

    def canonical_jwk(self) -> dict[str, str]:
        """The typed re-serialization both sides hash: exactly these members, no others."""
        if self.kty == "EC":
            # Narrowing only: __post_init__ guarantees these for kty EC.
            assert self.crv is not None
            assert self.x is not None
            assert self.y is not None
            return {"kty": "EC", "crv": self.crv, "alg": self.alg, "x": self.x, "y": self.y}
        assert self.n is not None
        assert self.e is not None
        return {"kty": "RSA", "alg": self.alg, "n": self.n, "e": self.e}

    def public_key(self) -> TeeKeyObject:
        """The ``cryptography`` key object (validated at construction)."""
        return self._key

    # --- validation -------------------------------------------------------

    def _ec_key(self) -> ec.EllipticCurvePublicKey:
        if self.n is not None or self.e is not None:
            raise RequestError(f"{_WHERE}: an EC key has no 'n'/'e'", hint=_SHAPE_HINT)
        if self.alg not in EC_ALGORITHMS:
            raise RequestError(
                f"{_WHERE}: alg {_shown(self.alg)} is not supported for an EC key",
                hint="use ECDH-ES+A256KW",
            )
        if self.crv is None or self.crv not in _CURVES:
            raise RequestError(
                f"{_WHERE}: curve {_shown(self.crv)} is not supported",
                hint="use P-256 (the guest default) or P-521",
            )
        curve, size = _CURVES[self.crv]
        x = _decode_member("x", self.x, max_chars=size * 2)
        y = _decode_member("y", self.y, max_chars=size * 2)
        if len(x) != size or len(y) != size:
            raise RequestError(
                f"{_WHERE}: {self.crv} coordinates must be {size} bytes each "
                f"(got x {len(x)}, y {len(y)})",
                hint="encode x and y at the full field length (RFC 7518 6.2.1.2)",
            )
        numbers = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve
        )
        try:
            return numbers.public_key()
        except ValueError:
            raise RequestError(f"{_WHERE}: the point (x, y) is not on {self.crv}") from None

    def _rsa_key(self) -> rsa.RSAPublicKey:
        if self.crv is not None or self.x is not None or self.y is not None:
            raise RequestError(f"{_WHERE}: an RSA key has no 'crv'/'x'/'y'", hint=_SHAPE_HINT)
        if self.alg not in RSA_ALGORITHMS:
            raise RequestError(
                f"{_WHERE}: alg {_shown(self.alg)} is not supported for an RSA key",
                hint="use RSA-OAEP-256",
            )
        n_bytes = _decode_member("n", self.n, max_chars=(MAX_RSA_BITS // 8) * 2)
        e_bytes = _decode_member("e", self.e, max_chars=_MAX_EXPONENT_BYTES * 2)
        # RFC 7518 6.3.1: minimal octets. A leading zero would also make two strings
        # (hence two report-data hashes) name the same key.
        for name, raw in (("n", n_bytes), ("e", e_bytes)):
            if not raw or raw[0] == 0:
                raise RequestError(
                    f"{_WHERE}.{name} must be a big-endian integer without leading zero octets"
                )
        if len(e_bytes) > _MAX_EXPONENT_BYTES:
            raise RequestError(f"{_WHERE}.e is longer than {_MAX_EXPONENT_BYTES} bytes")
        modulus = int.from_bytes(n_bytes, "big")
        bits = modulus.bit_length()
        if bits < MIN_RSA_BITS or bits > MAX_RSA_BITS:
            raise RequestError(
                f"{_WHERE}: RSA modulus is {bits} bits",
                hint=f"use {MIN_RSA_BITS} to {MAX_RSA_BITS} bits",
            )
        exponent = int.from_bytes(e_bytes, "big")
        try:
            return rsa.RSAPublicNumbers(exponent, modulus).public_key()
        except ValueError:
            raise RequestError(
                f"{_WHERE}: not a usable RSA public key (the exponent must be odd and >= 3, "
                "the modulus odd)"
            ) from None


def _decode_member(name: str, value: str | None, *, max_chars: int) -> bytes:
    if not isinstance(value, str):
        raise RequestError(f"{_WHERE}.{name} must be a string")
    if len(value) > max_chars:
        raise RequestError(f"{_WHERE}.{name} is too long ({len(value)} characters)")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise RequestError(
            f"{_WHERE}.{name}: {exc}", hint="use base64url without padding"
        ) from None


def _minimal_bytes(value: int) -> bytes:
    return value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
