"""Where a reference value came from, and the service's signature over it.

Every stored reference value carries a :class:`Provenance`: ``computed`` (from
the artifact digests listed, e.g. ``veritee measure snp --json``), ``imported``
(from a signed in-toto statement: its digest and the trusted key that signed
it) or ``admin`` (typed in by the admin named). The row is sealed by the
service: a detached ES256 JWS over the JCS of ``{name, value, expires,
provenance}``.

Why the EAR token signer and not a new key or an HMAC: every replica already
holds that key (tokens must verify across replicas), it is backed up with the
data directory, and its public half is published at ``/.well-known/jwks.json``,
so an auditor can check an exported value without any secret. A seal can never
pass as a token: it has its own ``typ`` (``veritee-rv+jws``), is detached, and
its payload has none of the claims (``exp``, ``iat``, ``submods``) an EAR
verifier requires. What the seal cannot stop: someone with database write
access restoring an older *correctly sealed* row of the same name (a rollback);
the audit log records every change, which is where that shows.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from veritee import b64url
from veritee.appraisal.ear import TokenSigner
from veritee.errors import RequestError
from veritee.jcs import canonicalize

__all__ = ["SEAL_TYP", "Artifact", "Provenance", "ProvenanceKind", "RowSeal"]

SEAL_TYP: Final = "veritee-rv+jws"
ProvenanceKind: TypeAlias = Literal["computed", "imported", "admin"]
KINDS: Final[tuple[ProvenanceKind, ...]] = ("computed", "imported", "admin")
MAX_ARTIFACTS: Final = 64
_HEX = re.compile(r"[0-9a-f]+")
_HEX_LENGTHS: Final = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128}


@dataclass(frozen=True)
class Artifact:
    """An input a value was computed from, or a subject of a signed statement."""

    name: str
    digest: Mapping[str, str]

    @classmethod
    def from_json(cls, doc: object, where: str) -> Artifact:
        if not isinstance(doc, Mapping):
            raise RequestError(f"{where} must be an object with name and digest")
        name = doc.get("name", "")
        digest = doc.get("digest")
        if not isinstance(name, str) or len(name) > 1024:
            raise RequestError(f"{where}: name must be a string of at most 1024 characters")
        if not isinstance(digest, Mapping) or not digest:
            raise RequestError(f"{where}: digest must be a non-empty object algorithm -> value")
        out: dict[str, str] = {}
        for alg, value in digest.items():
            if not isinstance(alg, str) or not isinstance(value, str) or not value:
                raise RequestError(f"{where}: digest entries must be strings")
            if alg in _HEX_LENGTHS:
                value = value.lower()
                if len(value) != _HEX_LENGTHS[alg] or _HEX.fullmatch(value) is None:
                    raise RequestError(f"{where}: {alg} digest must be {_HEX_LENGTHS[alg]} hex")
            out[alg] = value
        return cls(name, dict(sorted(out.items())))

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "digest": dict(self.digest)}

    def short(self) -> str:
        alg, value = next(iter(self.digest.items()))
        return f"{self.name or '(unnamed)'} {alg}:{value[:12]}"


@dataclass(frozen=True)
class Provenance:
    kind: ProvenanceKind
    actor: str  # who stored it: "admin:<subject>"
    recorded_at: int  # UNIX seconds
    artifacts: tuple[Artifact, ...] = ()
    tool: str = ""  # computed: what computed it (e.g. "veritee 0.1.0 measure snp")
    statement_sha256: str = ""  # imported: SHA-256 of the DSSE payload (the statement)
    predicate_type: str = ""  # imported
    signer_keyids: tuple[str, ...] = field(default=())  # imported: trusted keys that signed
    signer_labels: tuple[str, ...] = field(default=())
    builder: str = ""  # imported SLSA provenance: the builder id it states

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RequestError(f"provenance kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if len(self.artifacts) > MAX_ARTIFACTS:
            raise RequestError(f"at most {MAX_ARTIFACTS} artifacts per reference value")
        if self.kind == "imported" and not (self.statement_sha256 and self.signer_keyids):
            raise RequestError("imported provenance needs the statement digest and its signer")
        if self.kind == "computed" and not self.artifacts:
            raise RequestError("computed provenance needs the artifacts it was computed from")

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "kind": self.kind,
            "actor": self.actor,
            "recorded_at": self.recorded_at,
        }
        if self.artifacts:
            out["artifacts"] = [a.to_json() for a in self.artifacts]
        for key in ("tool", "statement_sha256", "predicate_type", "builder"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.signer_keyids:
            out["signer_keyids"] = list(self.signer_keyids)
            out["signer_labels"] = list(self.signer_labels)
        return out

    @classmethod
    def from_json(cls, doc: object) -> Provenance:
        if not isinstance(doc, Mapping):
            raise RequestError("provenance must be a JSON object")
        kind = doc.get("kind")
        actor = doc.get("actor", "")
        recorded = doc.get("recorded_at", 0)
        if kind not in KINDS or not isinstance(actor, str):
            raise RequestError("provenance needs a known kind and an actor")
        if isinstance(recorded, bool) or not isinstance(recorded, int):
            raise RequestError("provenance recorded_at must be an integer")
        raw_artifacts = doc.get("artifacts", [])
        if not isinstance(raw_artifacts, list):
            raise RequestError("provenance artifacts must be a list")
        artifacts = tuple(
            Artifact.from_json(a, f"artifact #{n}") for n, a in enumerate(raw_artifacts)
        )

        def text(key: str) -> str:
            value = doc.get(key, "")
            if not isinstance(value, str):
                raise RequestError(f"provenance {key} must be a string")
            return value

        def texts(key: str) -> tuple[str, ...]:
            value = doc.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RequestError(f"provenance {key} must be a list of strings")
            return tuple(value)

        return cls(
            kind=kind,  # checked against KINDS above
            actor=actor,
            recorded_at=recorded,
            artifacts=artifacts,
            tool=text("tool"),
            statement_sha256=text("statement_sha256"),
            predicate_type=text("predicate_type"),
            signer_keyids=texts("signer_keyids"),
            signer_labels=texts("signer_labels"),
            builder=text("builder"),
        )

    def summary(self) -> str:
        """One line for tables and logs."""
        if self.kind == "imported":
            signers = ", ".join(self.signer_labels or tuple(k[:16] for k in self.signer_keyids))
            text = f"imported: statement sha256:{self.statement_sha256[:16]} signed by {signers}"
            if self.builder:
                text += f" (builder {self.builder})"
            return text + f", by {self.actor}"
        if self.kind == "computed":
            inputs = "; ".join(a.short() for a in self.artifacts[:4])
            more = f" +{len(self.artifacts) - 4}" if len(self.artifacts) > 4 else ""
            via = f" with {self.tool}" if self.tool else ""
            return f"computed{via} from {inputs}{more}, by {self.actor}"
        return f"entered by {self.actor}"

    def audit_json(self) -> dict[str, object]:
        """What an audit record keeps: enough to trace the value to its source."""
        out: dict[str, object] = {"kind": self.kind, "actor": self.actor}
        if self.kind == "imported":
            out["statement_sha256"] = self.statement_sha256
            out["signers"] = list(self.signer_keyids)
            if self.builder:
                out["builder"] = self.builder
        if self.kind == "computed":
            out["artifacts"] = [a.to_json() for a in self.artifacts]
            if self.tool:
                out["tool"] = self.tool
        return out


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


@functools.lru_cache(maxsize=4096)
def _es256_valid(public_der: bytes, signing_input: bytes, raw: bytes) -> bool:
    """Pure, so memoized: an attestation re-reads the same sealed rows every time."""
    key = serialization.load_der_public_key(public_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    try:
        key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


class RowSeal:
    """Seals reference values with the EAR signer; checks seals against its public key."""

    __slots__ = ("_prefix", "_public_der", "_signer", "kid", "tenant")

    def __init__(self, signer: TokenSigner, tenant: str = "default") -> None:
        self._signer = signer
        self.kid = signer.kid
        # Seals of other tenants cover the tenant too: a row copied across tenants fails.
        self.tenant = tenant
        self._prefix = b"" if tenant == "default" else f"veritee-tenant:{tenant}\n".encode()
        self._public_der = signer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def seal(self, payload: bytes) -> str:
        header = {"alg": "ES256", "typ": SEAL_TYP, "kid": self.kid}
        header_b64, _, signature = self._signer.sign_compact(header, self._prefix + payload).split(
            "."
        )
        return f"{header_b64}..{signature}"  # detached (RFC 7515 appendix F)

    def problem(self, payload: bytes, seal: str | None) -> str | None:
        """None when ``seal`` is this service's valid seal over ``payload``; else why not."""
        if not seal:
            return "unsigned: not stored through veritee (or stored before values were sealed)"
        parts = seal.split(".")
        if len(parts) != 3 or parts[1]:
            return "seal is not a detached JWS"
        try:
            header = json.loads(_unb64url(parts[0]))
            raw = _unb64url(parts[2])
        except (ValueError, UnicodeDecodeError):
            return "seal is not a detached JWS"
        if not isinstance(header, dict) or header.get("alg") != "ES256":
            return "seal algorithm is not ES256"
        if header.get("typ") != SEAL_TYP:
            return "seal is not a reference value seal"
        if header.get("kid") != self.kid:
            return f"sealed by another key (kid {str(header.get('kid'))[:24]}), not this service's"
        if len(raw) != 64:
            return "seal signature is not 64 bytes"
        signing_input = f"{parts[0]}.{b64url.encode(self._prefix + payload)}".encode("ascii")
        if not _es256_valid(self._public_der, signing_input, raw):
            return "seal does not verify: the row was altered after it was stored"
        return None


def signed_payload(
    name: str, value: object, expires: int, provenance: Mapping[str, object]
) -> bytes:
    """The bytes a seal covers; a domain tag keeps them from meaning anything else."""
    return canonicalize(
        {
            "veritee-reference-value": 1,
            "name": name,
            "value": value,
            "expires": expires,
            "provenance": dict(provenance),
        }
    )
