"""EAR attestation tokens (PROTOCOL.md 2.1): issue, verify, publish the JWKS.

The token is a JWS compact ES256 with the Trustee EAR profile, so resource
policies and Bearer-token clients written for Trustee read it unchanged. The
TEE key that secrets are released to sits at
``/submods/cpu0/ear.veraison.annotated-evidence/runtime_data_claims/tee-pubkey``.

Verification is deliberately narrow: ES256 only, a key chosen by the verifier
from its own trusted set (by ``kid``, or by the thumbprint of the header
``jwk`` for Trustee tokens that carry no ``kid``), never a key taken from the
token itself. Failures raise :class:`~veritee.errors.VerificationError`
subclasses: :class:`~veritee.errors.SignatureError` for algorithm, key and
signature, :class:`~veritee.errors.ExpiredError` for time, the base class for
malformed tokens.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from veritee import b64url
from veritee.appraisal.decision import AR4SI_KEYS, STATUSES, Status, status_of
from veritee.clock import require_aware
from veritee.errors import (
    ConfigError,
    ExpiredError,
    PolicyError,
    SignatureError,
    VerificationError,
)
from veritee.jcs import canonicalize
from veritee.secretfile import read_owner_only, write_new_file

__all__ = [
    "AR4SI_KEYS",
    "EAR_PROFILE",
    "TEE_PUBKEY_PATHS",
    "Extension",
    "Signer",
    "Status",
    "Submod",
    "TokenSigner",
    "TrustedKey",
    "ec_thumbprint",
    "issue_ear",
    "status_from_vector",
    "tee_pubkey_from_claims",
    "verify_ear",
]

EAR_PROFILE: Final = "tag:github.com,2024:confidential-containers/Trustee"
DEFAULT_DEVELOPER: Final = "urn:veritee"  # no public project URL yet; never invent one

_STATUSES = STATUSES

#: Where a KBS finds the TEE key in a token, in the order Trustee tries them.
TEE_PUBKEY_PATHS: Final[tuple[tuple[str, ...], ...]] = (
    ("submods", "cpu0", "ear.veraison.annotated-evidence", "runtime_data_claims", "tee-pubkey"),
    ("customized_claims", "runtime_data", "tee-pubkey"),
    ("tdx", "attester_runtime_data", "tee-pubkey"),
    ("tdx", "attester_user_data", "tee-pubkey"),
    ("tee-pubkey",),
)

_ALG: Final = "ES256"
_SIGNATURE_BYTES: Final = 64
_COORD_BYTES: Final = 32
MAX_TOKEN_CHARS: Final = 4 * 1024 * 1024
_MAX_NUMERIC_DATE: Final = 2**53
_STANDARD_NAMES: Final = frozenset(
    {
        "ear.status",
        "ear.trustworthiness-vector",
        "ear.appraisal-policy-id",
        "ear.veraison.annotated-evidence",
    }
)


# --- AR4SI ------------------------------------------------------------------


def status_from_vector(vector: Mapping[str, int]) -> Status:
    """The worst tier over the vector's claims; ``none`` for an empty vector."""
    return status_of(vector)


@dataclass(frozen=True)
class Extension:
    """A policy-defined appraisal extension, e.g. ``ear.trustee.identifiers`` (key -18).

    In the JSON token it appears as a member ``name: value`` of the submod;
    ``key`` is its CBOR label, kept for completeness.
    """

    name: str
    key: int
    value: object

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PolicyError("an appraisal extension needs a non-empty string name")
        if self.name in _STANDARD_NAMES:
            raise PolicyError(f"extension name {self.name!r} collides with a standard EAR claim")
        if isinstance(self.key, bool) or not isinstance(self.key, int):
            raise PolicyError(f"extension {self.name!r}: key must be an integer")


@dataclass(frozen=True)
class Submod:
    """One appraisal (one attester: ``cpu0``, ``gpu0``, ...) of the token.

    ``status`` is one of :data:`Status` (checked at construction; typed ``str``
    so callers holding a plain string need no cast).
    """

    status: str
    trust_vector: Mapping[str, int]
    policy_id: str
    annotated_evidence: Mapping[str, object]
    extensions: Sequence[Extension] = field(default=())

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise PolicyError(f"EAR status {self.status!r} is not one of " + ", ".join(_STATUSES))
        for name, value in self.trust_vector.items():
            if name not in AR4SI_KEYS:
                raise PolicyError(
                    f"trust vector claim {name!r} is not an AR4SI claim",
                    hint="use " + ", ".join(AR4SI_KEYS),
                )
            if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
                raise PolicyError(f"trust vector claim {name!r} must be an integer in -128..127")
        names = [ext.name for ext in self.extensions]
        if len(set(names)) != len(names):
            raise PolicyError("an appraisal extension name appears twice")
        object.__setattr__(self, "extensions", tuple(self.extensions))

    @classmethod
    def appraise(
        cls,
        trust_vector: Mapping[str, int],
        policy_id: str,
        annotated_evidence: Mapping[str, object],
        extensions: Sequence[Extension] = (),
    ) -> Submod:
        """A submod whose status is derived from its vector, as Trustee does."""
        return cls(
            status=status_from_vector(trust_vector),
            trust_vector=trust_vector,
            policy_id=policy_id,
            annotated_evidence=annotated_evidence,
            extensions=extensions,
        )

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "ear.status": self.status,
            "ear.trustworthiness-vector": dict(self.trust_vector),
            "ear.appraisal-policy-id": self.policy_id,
            "ear.veraison.annotated-evidence": self.annotated_evidence,
        }
        for ext in self.extensions:
            out[ext.name] = ext.value
        return out


# --- keys -------------------------------------------------------------------


def ec_thumbprint(crv: str, x: str, y: str) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) of an EC key."""
    return b64url.encode(
        hashlib.sha256(canonicalize({"crv": crv, "kty": "EC", "x": x, "y": y})).digest()
    )


def _p256_jwk(key: ec.EllipticCurvePublicKey) -> dict[str, str]:
    numbers = key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": b64url.encode(numbers.x.to_bytes(_COORD_BYTES, "big")),
        "y": b64url.encode(numbers.y.to_bytes(_COORD_BYTES, "big")),
    }


class Signer(Protocol):
    """What signs EAR tokens (and reference-value seals): an ES256 key, wherever it is held.

    :class:`TokenSigner` holds the key in memory; an HSM-backed signer
    (``veritee.broker.signer_pkcs11``) keeps it in the token.
    """

    @property
    def kid(self) -> str:
        """RFC 7638 thumbprint of the public key."""
        ...

    def public_key(self) -> ec.EllipticCurvePublicKey: ...

    def public_jwk(self) -> dict[str, str]: ...

    def jwks(self) -> dict[str, list[dict[str, str]]]: ...

    def sign_compact(self, header: Mapping[str, object], payload: bytes) -> str: ...


class TokenSigner:
    """The ES256 key that signs EAR tokens; its ``kid`` is the RFC 7638 thumbprint.

    This class holds the private key in memory. Subclasses that keep it elsewhere
    (an HSM) call :meth:`_set_public` instead of this ``__init__`` and override
    :meth:`public_key`, :meth:`_sign_raw` and :meth:`save_pem`.
    """

    __slots__ = ("_key", "_public_jwk", "kid")

    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey) or not isinstance(
            private_key.curve, ec.SECP256R1
        ):
            raise ConfigError("the EAR signing key must be an EC P-256 key (ES256)")
        self._key = private_key
        self._set_public(private_key.public_key())

    def _set_public(self, public_key: ec.EllipticCurvePublicKey) -> None:
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ConfigError("the EAR signing key must be an EC P-256 key (ES256)")
        jwk = _p256_jwk(public_key)
        self.kid: str = ec_thumbprint(jwk["crv"], jwk["x"], jwk["y"])
        self._public_jwk = {**jwk, "alg": _ALG, "kid": self.kid}

    def __repr__(self) -> str:
        return f"TokenSigner(kid={self.kid!r})"

    @classmethod
    def generate(cls) -> TokenSigner:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def load_pem(cls, path: Path) -> TokenSigner:
        """Load a PEM private key (PKCS#8 or SEC1) that only its owner can read."""
        data = read_owner_only(path, "EAR signing key")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ConfigError(
                f"{path}: not an unencrypted PEM private key",
                hint="generate one with `openssl genpkey -algorithm EC "
                "-pkeyopt ec_paramgen_curve:P-256`",
            ) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ConfigError(f"{path}: the EAR signing key must be an EC P-256 key (ES256)")
        return cls(key)

    def save_pem(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM, mode 0600; never overwrites a file."""
        data = self._key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_new_file(path, data, "EAR signing key")

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """``kty, crv, alg ES256, x, y, kid``: the header ``jwk`` and the JWKS entry."""
        return dict(self._public_jwk)

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWK Set served at ``/.well-known/jwks.json``."""
        return {"keys": [self.public_jwk()]}

    def sign_compact(self, header: Mapping[str, object], payload: bytes) -> str:
        """JWS compact serialization over ``payload`` (header must say ES256)."""
        if header.get("alg") != _ALG:
            raise ValueError("TokenSigner signs ES256 only")
        header_b64 = b64url.encode(json.dumps(header, separators=(",", ":")).encode("utf-8"))
        signing_input = f"{header_b64}.{b64url.encode(payload)}"
        raw = self._sign_raw(signing_input.encode("ascii"))
        if len(raw) != _SIGNATURE_BYTES:
            raise ConfigError(f"the token signer returned a {len(raw)}-byte ES256 signature")
        return f"{signing_input}.{b64url.encode(raw)}"

    def _sign_raw(self, signing_input: bytes) -> bytes:
        """ECDSA P-256 over SHA-256(``signing_input``), as JWS wants it: r || s, 32 bytes each."""
        der = self._key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return r.to_bytes(_COORD_BYTES, "big") + s.to_bytes(_COORD_BYTES, "big")


# --- issue ------------------------------------------------------------------


def _json_default(value: object) -> object:
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"EAR claims cannot hold a {type(value).__name__}")


def issue_ear(
    signer: Signer,
    submods: Mapping[str, Submod],
    *,
    now: dt.datetime,
    ttl: dt.timedelta,
    issuer: str = "veritee",
    verifier_build: str,
    developer: str = DEFAULT_DEVELOPER,
) -> str:
    """Sign an EAR for these appraisals, valid from ``now`` for ``ttl``."""
    if not submods:
        raise ValueError("an EAR needs at least one submod (cpu0 for the primary attester)")
    lifetime = math.floor(ttl.total_seconds())
    if lifetime <= 0:
        raise ConfigError(f"token lifetime must be at least one second, not {ttl}")
    iat = math.floor(require_aware(now).timestamp())
    claims: dict[str, object] = {
        "eat_profile": EAR_PROFILE,
        "iat": iat,
        "exp": iat + lifetime,
        "iss": issuer,
        "jti": secrets.token_hex(16),
        "ear.verifier-id": {"developer": developer, "build": verifier_build},
        "submods": {name: submod.to_json() for name, submod in submods.items()},
    }
    header = {"alg": _ALG, "typ": "JWT", "kid": signer.kid, "jwk": signer.public_jwk()}
    payload = json.dumps(
        claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    ).encode("utf-8")
    return signer.sign_compact(header, payload)


# --- verify -----------------------------------------------------------------

TrustedKey: TypeAlias = Mapping[str, object] | ec.EllipticCurvePublicKey


def _trusted_index(keys: Sequence[TrustedKey]) -> dict[str, tuple[str, ec.EllipticCurvePublicKey]]:
    """Map kid (declared or thumbprint) -> (thumbprint, key). Bad entries are config errors."""
    index: dict[str, tuple[str, ec.EllipticCurvePublicKey]] = {}
    for position, entry in enumerate(keys):
        declared: object = None
        if isinstance(entry, ec.EllipticCurvePublicKey):
            if not isinstance(entry.curve, ec.SECP256R1):
                raise ConfigError(f"trusted token key #{position} is not P-256 (ES256)")
            key = entry
        elif isinstance(entry, Mapping):
            key = _key_from_jwk(entry, position)
            declared = entry.get("kid")
        else:
            raise ConfigError(f"trusted token key #{position} is neither a JWK nor an EC key")
        jwk = _p256_jwk(key)
        thumb = ec_thumbprint(jwk["crv"], jwk["x"], jwk["y"])
        index[thumb] = (thumb, key)
        if isinstance(declared, str) and declared:
            index[declared] = (thumb, key)
    return index


def _key_from_jwk(jwk: Mapping[str, object], position: int) -> ec.EllipticCurvePublicKey:
    where = f"trusted token key #{position}"
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise ConfigError(f"{where} is not an EC P-256 JWK (ES256)")
    if jwk.get("alg", _ALG) != _ALG:
        raise ConfigError(f"{where} is not for ES256")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise ConfigError(f"{where} needs string members x and y")
    try:
        xb, yb = b64url.decode(x), b64url.decode(y)
        if len(xb) != _COORD_BYTES or len(yb) != _COORD_BYTES:
            raise ValueError("coordinates must be 32 bytes")
        return ec.EllipticCurvePublicNumbers(
            int.from_bytes(xb, "big"), int.from_bytes(yb, "big"), ec.SECP256R1()
        ).public_key()
    except ValueError as exc:
        raise ConfigError(f"{where} is not a valid P-256 key: {exc}") from None


def _shown(value: object) -> str:
    text = ascii(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _reject_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"duplicate member {_shown(name)}")
        out[name] = value
    return out


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _json_object(segment: str, what: str) -> dict[str, object]:
    try:
        raw = b64url.decode(segment)
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise VerificationError(f"attestation token {what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise VerificationError(f"attestation token {what} is not a JSON object")
    return value


def _numeric_date(claims: Mapping[str, object], name: str, *, required: bool) -> float | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        raise VerificationError(f"attestation token claim {name!r} must be a NumericDate")
    return float(value)


def _finite(value: float) -> bool:
    """Finite and a plausible time (a huge int would overflow float conversion)."""
    return abs(value) < _MAX_NUMERIC_DATE and math.isfinite(value)


def _instant(seconds: float) -> str:
    try:
        return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat()
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (unix time)"


def verify_ear(
    token: str,
    trusted_keys: Sequence[TrustedKey],
    *,
    now: dt.datetime,
    leeway: dt.timedelta = dt.timedelta(seconds=30),
    issuer: str | None = None,
) -> dict[str, object]:
    """Verify an ES256 attestation token against the trusted keys; return its claims.

    ``trusted_keys`` are JWKs (e.g. the ``keys`` of a JWKS; a declared ``kid``
    is honoured besides the thumbprint) or P-256 public key objects. ``issuer``,
    when given, must equal the ``iss`` claim.
    """
    instant = require_aware(now).timestamp()
    slack = leeway.total_seconds()
    index = _trusted_index(trusted_keys)
    if not isinstance(token, str):
        raise VerificationError("attestation token must be a string")
    if len(token) > MAX_TOKEN_CHARS:
        raise VerificationError(f"attestation token is longer than {MAX_TOKEN_CHARS} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError("attestation token is not a JWS compact serialization")
    header_b64, payload_b64, signature_b64 = parts
    if not b64url.is_alphabet(payload_b64):
        # Checked before the signature so the signing input is known to be ASCII.
        raise VerificationError("attestation token payload is not base64url")

    header = _json_object(header_b64, "header")
    alg = header.get("alg")
    if alg != _ALG:
        raise SignatureError(
            f"attestation token algorithm {_shown(alg)} is not accepted",
            hint="veritee accepts ES256 tokens only",
        )
    if "crit" in header:
        raise VerificationError("attestation token has critical header parameters veritee lacks")
    thumb, key = _select_key(header, index)

    try:
        signature = b64url.decode(signature_b64)
    except ValueError:
        raise SignatureError("attestation token signature is not base64url") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise SignatureError("attestation token signature is not a 64-byte ES256 signature")
    der = encode_dss_signature(
        int.from_bytes(signature[:_COORD_BYTES], "big"),
        int.from_bytes(signature[_COORD_BYTES:], "big"),
    )
    try:
        key.verify(der, f"{header_b64}.{payload_b64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(
            f"attestation token signature does not verify with trusted key {thumb}",
            hint="the token was altered or signed by another key",
        ) from None

    claims = _json_object(payload_b64, "payload")
    exp = _numeric_date(claims, "exp", required=True)
    iat = _numeric_date(claims, "iat", required=True)
    nbf = _numeric_date(claims, "nbf", required=False)
    assert exp is not None
    assert iat is not None
    if instant >= exp + slack:
        raise ExpiredError(f"attestation token expired at {_instant(exp)}")
    if iat > instant + slack:
        raise ExpiredError(f"attestation token is issued in the future ({_instant(iat)})")
    if nbf is not None and nbf > instant + slack:
        raise ExpiredError(f"attestation token is not valid before {_instant(nbf)}")
    if issuer is not None and claims.get("iss") != issuer:
        raise VerificationError(
            f"attestation token issuer {_shown(claims.get('iss'))} is not {issuer!r}"
        )
    return claims


def _select_key(
    header: Mapping[str, object], index: Mapping[str, tuple[str, ec.EllipticCurvePublicKey]]
) -> tuple[str, ec.EllipticCurvePublicKey]:
    """The trusted key the header names; the header ``jwk`` only names, never supplies."""
    kid = header.get("kid")
    header_jwk = header.get("jwk")
    header_thumb: str | None = None
    if header_jwk is not None:
        if not isinstance(header_jwk, Mapping):
            raise VerificationError("attestation token header jwk is not an object")
        crv, x, y = header_jwk.get("crv"), header_jwk.get("x"), header_jwk.get("y")
        if header_jwk.get("kty") != "EC" or not all(isinstance(v, str) for v in (crv, x, y)):
            raise SignatureError("attestation token header jwk is not an EC key")
        header_thumb = ec_thumbprint(str(crv), str(x), str(y))
    if kid is not None:
        if not isinstance(kid, str) or kid not in index:
            raise SignatureError(
                f"attestation token kid {_shown(kid)} is not a trusted key",
                hint="add the issuer's JWKS to the trusted token keys",
            )
        thumb, key = index[kid]
        if header_thumb is not None and header_thumb != thumb:
            raise SignatureError("attestation token header jwk is not the key its kid names")
        return thumb, key
    if header_thumb is None:
        raise SignatureError("attestation token names no key (neither kid nor jwk)")
    if header_thumb not in index:
        raise SignatureError(
            f"attestation token header jwk (thumbprint {header_thumb}) is not a trusted key",
            hint="a key in the token is never trusted by itself; configure the issuer's key",
        )
    return index[header_thumb]


def tee_pubkey_from_claims(claims: Mapping[str, object]) -> dict[str, object] | None:
    """The ``tee-pubkey`` JWK object from verified claims, at the first path present."""
    for path in TEE_PUBKEY_PATHS:
        node: object = claims
        for step in path:
            if not isinstance(node, Mapping):
                node = None
                break
            node = node.get(step)
        if isinstance(node, Mapping):
            return dict(node)
    return None
