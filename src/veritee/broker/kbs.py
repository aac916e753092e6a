"""The KBS protocol state machine (RCAR: Request, Challenge, Attestation, Response).

Framework-free: the HTTP layer parses nothing but the transport; everything a
guest or an admin sends is validated here. Every attestation, release and
denial leaves an audit record; a refused request changes nothing else.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select

from veritee.appraisal import refvalues
from veritee.appraisal.attestation import appraise
from veritee.appraisal.builtin import (
    DEFAULT_ATTESTATION_POLICY_ID,
    RESOURCE_POLICY_ID,
    default_resource_policy,
)
from veritee.appraisal.decision import Decision, Reason, ResourceDecision
from veritee.appraisal.ear import (
    Extension,
    Submod,
    TokenSigner,
    issue_ear,
    tee_pubkey_from_claims,
    verify_ear,
)
from veritee.appraisal.policy import PolicyEngine, RegoPolicy
from veritee.broker import audit, refstore
from veritee.broker.audit import AuditEvent
from veritee.broker.binding import HashAlgorithm, device_digest, primary_digest, select_hash
from veritee.broker.evidence import (
    DEVICE_VERIFIERS,
    INIT_DATA_FIELD,
    VERIFIERS,
    VerifiedEvidence,
    VerifyContext,
    expected_init_data_field,
    supported_tees,
)
from veritee.broker.jwe import encrypt_for
from veritee.broker.keyring import Keyring, SealedSecret, seal, unseal
from veritee.broker.snapshot import GENERATION_SQL, AppraisalSnapshot, SnapshotCache
from veritee.broker.teekey import TeePublicKey
from veritee.clock import utcnow
from veritee.collateral import Fetcher
from veritee.errors import (
    AuthError,
    NotFoundError,
    PolicyDenied,
    ProtocolVersionError,
    RequestError,
    VerificationError,
    VeriteeError,
)
from veritee.store.db import Database
from veritee.store.models import DEFAULT_TENANT, PolicyRow, ResourceRow, SessionRow
from veritee.tee.snp.gather import CertPool, load_directory

log = logging.getLogger("veritee.kbs")

PROTOCOL_VERSION = "0.4.0"
SUPPORTED_VERSIONS = (PROTOCOL_VERSION,)
MAX_RESOURCE_BYTES = 1 << 20
# Why the attestation policy did not affirm, carried in the token so that a
# resource denial can say it (an unregistered EAR extension: negative key).
REASONS_EXTENSION = "veritee.appraisal-reasons"
REASONS_KEY = -70100
# The guest hot path's statements (raw DBAPI, see store.db.Tx).
_INSERT_SESSION = (
    "INSERT INTO kbs_sessions (id, tenant, tee, nonce, hash_alg, selected_hash, created_at, "
    "expires_at, nonce_used, token) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_SELECT_SESSION = (
    "SELECT id, tenant, tee, nonce, hash_alg, expires_at, nonce_used, token, "
    "(SELECT generation FROM config_generation WHERE id = 1) FROM kbs_sessions WHERE id = ?"
)
# Consuming the nonce is one conditional update: of two concurrent attempts one wins.
_CONSUME_NONCE = (
    "UPDATE kbs_sessions SET nonce_used = ?, token = ? "
    "WHERE id = ? AND nonce_used = ? AND expires_at > ?"
)
_SELECT_RESOURCE = (
    "SELECT kek_id, wrapped_dek, nonce, ciphertext FROM resources WHERE tenant = ? AND path = ?"
)
_PATH_PART_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


@dataclass(frozen=True)
class BrokerSettings:
    session_timeout: dt.timedelta = dt.timedelta(minutes=5)
    token_ttl: dt.timedelta = dt.timedelta(minutes=5)
    trust_simulator: bool = False
    production: bool = False
    collateral_dirs: tuple[Path, ...] = ()
    fetcher: Fetcher | None = None
    issuer: str = "veritee"

    def __post_init__(self) -> None:
        if self.production and self.trust_simulator:
            from veritee.errors import ConfigError

            raise ConfigError("trusting the simulator is refused in production mode")


@dataclass(frozen=True)
class Challenge:
    session_id: str
    body: dict[str, object]
    expires_at: dt.datetime


@dataclass(frozen=True)
class SessionRecord:
    id: str
    tenant: str
    tee: str
    nonce: str
    hash_alg: str
    expires_at: int
    nonce_used: bool
    token: str | None


@dataclass(frozen=True)
class AttestResult:
    token: str
    decision: Decision
    evidence: VerifiedEvidence


@dataclass(frozen=True)
class ResourcePath:
    repository: str
    type: str
    tag: str

    @classmethod
    def parse(cls, parts: list[str] | tuple[str, ...]) -> ResourcePath:
        if len(parts) != 3:
            raise NotFoundError("a resource path is <repository>/<type>/<tag>")
        for part in parts:
            if (
                not part
                or len(part) > 128
                or not set(part) <= _PATH_PART_CHARS
                or part
                in (
                    ".",
                    "..",
                )
            ):
                raise RequestError(f"invalid resource path component {part[:40]!r}")
        return cls(parts[0], parts[1], parts[2])

    def __str__(self) -> str:
        return f"{self.repository}/{self.type}/{self.tag}"

    def aad(self, tenant: str = DEFAULT_TENANT) -> bytes:
        """Associated data binding a sealed secret to its place (and owner)."""
        if tenant == DEFAULT_TENANT:
            return f"veritee-resource:{self}".encode()  # unchanged for first-party rows
        return f"veritee-resource:{tenant}:{self}".encode()


def _epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


def _b64url_decode(text: object, what: str) -> bytes:
    if not isinstance(text, str):
        raise RequestError(f"{what} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise RequestError(f"{what} is not valid base64url") from None


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RequestError(f"{what} must be a JSON object")
    return value


@dataclass
class KeyBroker:
    db: Database
    keyring: Keyring
    signer: TokenSigner
    settings: BrokerSettings = field(default_factory=BrokerSettings)
    clock: Callable[[], dt.datetime] = utcnow
    engine: PolicyEngine = field(default_factory=PolicyEngine)
    tenant: str = DEFAULT_TENANT

    def _issuer(self) -> str:
        base = self.settings.issuer
        return base if self.tenant == DEFAULT_TENANT else f"{base}/t/{self.tenant}"

    def for_tenant(self, tenant: str) -> KeyBroker:
        """The same service seen by another tenant: every query is scoped to it."""
        other = copy.copy(self)
        other.tenant = tenant
        return other

    def __post_init__(self) -> None:
        certs: list[Any] = []
        crls: list[Any] = []
        for d in self.settings.collateral_dirs:
            pool = load_directory(d)
            certs.extend(pool.certs)
            crls.extend(pool.crls)
        self._collateral = CertPool(tuple(certs), tuple(crls))
        # Not a field: a broker built with other keys gets its own; tenant views share it.
        self._snapshots = SnapshotCache()

    def snapshot(self, generation: int) -> AppraisalSnapshot:
        """Policies and reference values as of ``generation`` (cached while it is current)."""
        return self._snapshots.get(self.db, self.tenant, refstore.seal(self), generation)

    # -- RCAR: Request -> Challenge ---------------------------------------------------------
    def auth(self, body: object) -> Challenge:
        req = _obj(body, "request")
        version = req.get("version")
        if version not in SUPPORTED_VERSIONS:
            raise ProtocolVersionError(
                f"KBS Client Protocol Version Mismatch: client speaks {version!r}, this server "
                f"supports {', '.join(SUPPORTED_VERSIONS)}",
                hint="update the guest components to a release speaking KBS protocol 0.4.0",
            )
        tee = req.get("tee")
        if tee not in VERIFIERS:
            raise RequestError(
                f"TEE {tee!r} is not supported; supported: {', '.join(supported_tees())}"
            )
        selected = select_hash(_extra_params(req.get("extra-params")))
        now = self.clock()
        session_id = secrets.token_hex(16)
        nonce = base64.b64encode(secrets.token_bytes(32)).decode()
        expires = now + self.settings.session_timeout
        alg = selected or HashAlgorithm.SHA384
        with self.db.tx(write=True) as tx:
            tx.execute(
                _INSERT_SESSION,
                (session_id, self.tenant, str(tee), nonce, alg.value, selected is not None,
                 _epoch(now), _epoch(expires), False, None),
            )
        extra: object = {"selected-hash-algorithm": alg.value} if selected else ""
        return Challenge(session_id, {"nonce": nonce, "extra-params": extra}, expires)

    # -- RCAR: Attestation -> Response ---------------------------------------------------------
    def _load_session(self, session_id: str | None) -> tuple[SessionRecord, int]:
        """The session and, read in the same statement, the config generation."""
        if not session_id:
            raise AuthError("no kbs-session-id cookie: call /auth first")
        now = _epoch(self.clock())
        with self.db.tx(write=False) as tx:
            row = tx.one(_SELECT_SESSION, (session_id,))
        if row is None or row[1] != self.tenant:
            raise AuthError("unknown session: call /auth again")
        record = SessionRecord(
            str(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), int(row[5]),
            bool(row[6]), row[7],
        )
        if record.expires_at <= now:
            raise AuthError("session expired: call /auth again")
        return record, int(row[8] or 0)

    def attest(self, session_id: str | None, body: object, *, client: str = "") -> AttestResult:
        actor = f"session:{session_id or '-'}"
        try:
            return self._attest(session_id, body)
        except VeriteeError as exc:
            self._audit_denial(actor, "attest", exc, tee=_tee_of(self.db, session_id))
            raise

    def _attest(self, session_id: str | None, body: object) -> AttestResult:
        session, generation = self._load_session(session_id)
        if session.nonce_used:
            raise AuthError(
                "this session's nonce was already used: nonces are single-use, "
                "start a new session with /auth"
            )
        att = _obj(body, "attestation")
        runtime = _obj(att.get("runtime-data"), "runtime-data")
        nonce = runtime.get("nonce")
        if not isinstance(nonce, str) or not hmac.compare_digest(
            nonce.encode(), session.nonce.encode()
        ):
            raise VerificationError(
                "runtime-data nonce is not this session's challenge (stale or replayed nonce)",
                hint="use the nonce returned by /auth for this session",
            )
        tee_key = TeePublicKey.from_jwk(runtime.get("tee-pubkey"))
        tee_evidence = _obj(att.get("tee-evidence"), "tee-evidence")
        if "primary_evidence" not in tee_evidence:
            raise RequestError("tee-evidence needs primary_evidence")
        additional = tee_evidence.get("additional_evidence", "")
        if not isinstance(additional, str):
            raise RequestError('additional_evidence must be a string (JSON text or "")')
        alg = HashAlgorithm.parse(session.hash_alg)
        digest = primary_digest(session.nonce, tee_key, additional, alg)
        now = self.clock()
        ctx = VerifyContext(
            now=now,
            collateral=self._collateral,
            fetcher=self.settings.fetcher,
            trust_simulator=self.settings.trust_simulator and not self.settings.production,
            collateral_dirs=self.settings.collateral_dirs,
        )
        verified = VERIFIERS[session.tee](tee_evidence["primary_evidence"], digest, ctx)
        if verified.simulated and not ctx.trust_simulator:  # pragma: no cover - defence in depth
            raise VerificationError("simulated evidence is refused by this server")
        init_data_claims = self._check_init_data(att.get("init-data"), verified)
        devices = self._verify_devices(additional, device_digest(session.nonce, tee_key, alg), ctx)

        runtime_claims = {"nonce": session.nonce, "tee-pubkey": tee_key.canonical_jwk()}
        tee_claims = dict(verified.claims)
        tee_claims["simulated"] = verified.simulated  # policies can refuse simulators by this
        input_doc = {
            session.tee: tee_claims,
            "report_data": verified.report_data.hex(),
            "init_data": verified.init_data.hex(),
            "init_data_claims": init_data_claims,
            "runtime_data_claims": runtime_claims,
        }
        snap = self.snapshot(generation)
        policy, device_policy = snap.attestation_policy, snap.device_policy
        # Only values whose seal verifies are used; refused rows are named in the audit.
        loaded = snap.reference(now)
        reference = {n: rv.value for n, rv in loaded.valid.items()}
        decision = appraise(self.engine, policy, input_doc, reference)
        submods = {"cpu0": _submod(decision, input_doc)}
        counters: dict[str, int] = {}
        for dev in devices:
            dev_claims = dict(dev.claims)
            dev_claims["simulated"] = dev.simulated
            dev_doc = {
                dev.tee: dev_claims,
                "report_data": dev.report_data.hex(),
                "runtime_data_claims": runtime_claims,
            }
            dev_decision = appraise(self.engine, device_policy, dev_doc, reference)
            kind = "switch" if str(dev_claims.get("arch", "")).upper() == "LS10" else "gpu"
            name = f"{kind}{counters.get(kind, 0)}"
            counters[kind] = counters.get(kind, 0) + 1
            submods[name] = _submod(dev_decision, dev_doc)
        token = issue_ear(
            self.signer,
            submods,
            now=now,
            ttl=self.settings.token_ttl,
            issuer=self._issuer(),
            verifier_build=f"veritee {_version()}",
        )
        with self.db.tx(write=True) as tx:
            tx.execute(_CONSUME_NONCE, (True, token, session.id, False, _epoch(now)))
            if tx.rowcount != 1:
                raise AuthError("this session's nonce was already used (concurrent replay)")
            audit.append_tx(
                tx,
                AuditEvent(
                    tenant=self.tenant,
                    actor=f"session:{session.id}",
                    action="attest",
                    tee=session.tee,
                    evidence_digest=verified.evidence_digest,
                    policy_hash=decision.policy_hash,
                    decision=decision.status,
                    detail={
                        "trust_vector": dict(decision.trust_vector),
                        "reasons": [str(r) for r in decision.reasons],
                        "simulated": verified.simulated,
                        # Where every reference value this decision used came from.
                        "reference_values": refvalues.sources_used(
                            loaded, [policy, device_policy] if devices else [policy]
                        ),
                        "reference_values_refused": dict(loaded.refused),
                    },
                ),
                _epoch(now),
            )
        # Debug: the audit record is the durable account of every attestation.
        log.debug(
            "attested session=%s tee=%s status=%s simulated=%s",
            session.id,
            session.tee,
            decision.status,
            verified.simulated,
        )
        return AttestResult(token=token, decision=decision, evidence=verified)

    def _verify_devices(
        self, additional: str, digest: bytes, ctx: VerifyContext
    ) -> list[VerifiedEvidence]:
        """Additional (device) evidence: a JSON text mapping device type to its evidence."""
        if not additional:
            return []
        try:
            doc = json.loads(additional)
        except ValueError:
            raise RequestError("additional_evidence is not JSON text") from None
        if not isinstance(doc, dict) or not doc:
            raise RequestError("additional_evidence must map device types to evidence")
        devices: list[VerifiedEvidence] = []
        for kind, evidence in doc.items():
            verifier = DEVICE_VERIFIERS.get(kind)
            if verifier is None:
                raise RequestError(
                    f"device type {kind!r} is not supported; supported: "
                    + ", ".join(sorted(DEVICE_VERIFIERS))
                )
            devices.extend(verifier(evidence, digest, ctx))
        return devices

    def _check_init_data(self, init: object, verified: VerifiedEvidence) -> object:
        if init is None:
            return None
        spec = _obj(init, "init-data")
        if spec.get("format") != "toml":
            raise RequestError('unsupported init-data format: only "toml" is accepted')
        body = spec.get("body")
        if not isinstance(body, str):
            raise RequestError("init-data body must be a string")
        try:
            doc = tomllib.loads(body)
        except tomllib.TOMLDecodeError as exc:
            raise RequestError(f"init-data is not valid TOML: {exc}") from None
        alg = HashAlgorithm.parse(doc.get("algorithm", "sha256"))
        digest = alg.digest(body.encode())
        size = INIT_DATA_FIELD.get(verified.tee, len(verified.init_data))
        expected = expected_init_data_field(verified.tee, digest, size)
        if not hmac.compare_digest(expected, verified.init_data[:size]):
            raise VerificationError(
                "init-data digest does not match the value bound in the hardware evidence",
                hint="the guest was launched with different init-data",
            )
        data = doc.get("data")
        return data if isinstance(data, dict) else {}

    # -- resources ---------------------------------------------------------------------------
    def _token_claims(
        self, session_id: str | None, bearer: str | None
    ) -> tuple[dict[str, object], int]:
        """The verified token's claims and the config generation."""
        now = self.clock()
        if bearer:
            token = bearer
            with self.db.tx(write=False) as tx:
                row = tx.one(GENERATION_SQL)
            generation = int(row[0]) if row else 0
        else:
            session, generation = self._load_session(session_id)
            if not session.token:
                raise AuthError("session is not attested: call /attest first")
            token = session.token
        # The issuer names the tenant: a token of one tenant is refused by every other.
        claims = verify_ear(token, [self.signer.public_jwk()], now=now, issuer=self._issuer())
        return claims, generation

    def get_resource(
        self, path_parts: list[str], *, session_id: str | None, bearer: str | None
    ) -> dict[str, str]:
        path = ResourcePath.parse(path_parts)
        actor = f"session:{session_id}" if session_id and not bearer else "bearer"
        try:
            claims, generation = self._token_claims(session_id, bearer)
            decision = self._resource_decision(claims, path, self.snapshot(generation))
            if not decision.allowed:
                raise PolicyDenied(
                    f"resource policy denies {path}: "
                    + ("; ".join(str(r) for r in decision.reasons) or "allow is false")
                )
            jwk = tee_pubkey_from_claims(claims)
            if jwk is None:
                raise AuthError("the token carries no tee-pubkey to encrypt the resource to")
            tee_key = TeePublicKey.from_jwk(jwk)
            now = self.clock()
            with self.db.tx(write=False) as tx:
                row = tx.one(_SELECT_RESOURCE, (self.tenant, str(path)))
            if row is None:
                raise NotFoundError(f"resource {path} does not exist")
            sealed = SealedSecret(
                kek_id=str(row[0]), wrapped_dek=bytes(row[1]), nonce=bytes(row[2]),
                ciphertext=bytes(row[3]),
            )
            secret = unseal(self.keyring, sealed, path.aad(self.tenant))
            jwe = encrypt_for(tee_key, secret)
            del secret
            # The JWE leaves only once its release is on the audit chain.
            with self.db.tx(write=True) as tx:
                audit.append_tx(
                    tx,
                    AuditEvent(
                        tenant=self.tenant,
                        actor=actor,
                        action="release",
                        tee=_first_tee(claims),
                        subject=str(path),
                        policy_hash=decision.policy_hash,
                        decision="allow",
                        detail={"token_jti": str(claims.get("jti", ""))},
                    ),
                    _epoch(now),
                )
        except VeriteeError as exc:
            self._audit_denial(actor, "release", exc, subject=str(path))
            raise
        log.debug("released resource=%s to=%s", path, actor)
        return jwe

    def _resource_decision(
        self, claims: Mapping[str, object], path: ResourcePath, snap: AppraisalSnapshot
    ) -> ResourceDecision:
        policy = snap.resource_policy
        data = {
            "plugin": "resource",
            "resource-path": [path.repository, path.type, path.tag],
            "query": {},
        }
        result = self.engine.evaluate(policy, dict(claims), data)
        allowed = result.get("allow") is True
        reasons: list[Reason] = []
        if not allowed:
            submods = claims.get("submods")
            if isinstance(submods, Mapping):
                for name, sub in submods.items():
                    if isinstance(sub, Mapping) and sub.get("ear.status") != "affirming":
                        why = sub.get(REASONS_EXTENSION)
                        detail = f"ear.status is {sub.get('ear.status')!r}"
                        if isinstance(why, list) and why:
                            detail += " because " + "; ".join(str(w) for w in why)
                        reasons.append(Reason(name, detail))
        return ResourceDecision(allowed=allowed, policy_hash=policy.sha384, reasons=tuple(reasons))

    # -- policies ----------------------------------------------------------------------------
    def set_attestation_policy(self, body: object, *, admin: str) -> RegoPolicy:
        req = _obj(body, "attestation policy request")
        if req.get("type", "rego") != "rego":
            raise RequestError('only policy type "rego" is supported')
        policy_id = req.get("policy_id", DEFAULT_ATTESTATION_POLICY_ID)
        if not isinstance(policy_id, str) or not policy_id or len(policy_id) > 128:
            raise RequestError("policy_id must be a short string")
        text = _policy_text(req.get("policy"))
        policy = RegoPolicy.parse(policy_id, text)
        self._store_policy("attestation", policy, admin)
        return policy

    def set_resource_policy(self, body: object, *, admin: str) -> RegoPolicy:
        req = _obj(body, "resource policy request")
        policy = RegoPolicy.parse(RESOURCE_POLICY_ID, _policy_text(req.get("policy")))
        self._store_policy("resource", policy, admin)
        return policy

    def _store_policy(self, kind: str, policy: RegoPolicy, admin: str) -> None:
        now = self.clock()
        with self.db.write() as s:
            row = s.get(PolicyRow, (self.tenant, kind, policy.policy_id))
            if row is None:
                row = PolicyRow(tenant=self.tenant, kind=kind, policy_id=policy.policy_id)
                s.add(row)
            row.body = policy.body
            row.sha384 = policy.sha384
            row.updated_at = _epoch(now)
            audit.append(
                s,
                AuditEvent(
                    tenant=self.tenant,
                    actor=admin,
                    action=f"admin.set_{kind}_policy",
                    subject=policy.policy_id,
                    policy_hash=policy.sha384,
                    decision="allow",
                ),
                _epoch(now),
            )

    def get_policies(self, kind: str) -> list[dict[str, str]]:
        with self.db.read() as s:
            rows = list(
                s.execute(
                    select(PolicyRow).where(PolicyRow.tenant == self.tenant, PolicyRow.kind == kind)
                ).scalars()
            )
        if kind == "resource" and not rows:
            builtin = default_resource_policy()
            return [_policy_json(builtin.policy_id, builtin.body, builtin.sha384, "builtin")]
        return [_policy_json(r.policy_id, r.body, r.sha384, "stored") for r in rows]

    # -- resources (admin) -----------------------------------------------------------------------
    def put_resource(self, path_parts: list[str], data: bytes, *, admin: str) -> None:
        path = ResourcePath.parse(path_parts)
        if len(data) > MAX_RESOURCE_BYTES:
            raise RequestError(f"resource larger than {MAX_RESOURCE_BYTES} bytes")
        sealed = seal(self.keyring, data, path.aad(self.tenant))
        now = self.clock()
        with self.db.write() as s:
            row = s.get(ResourceRow, (self.tenant, str(path)))
            if row is None:
                row = ResourceRow(tenant=self.tenant, path=str(path))
                s.add(row)
            row.kek_id = sealed.kek_id
            row.wrapped_dek = sealed.wrapped_dek
            row.nonce = sealed.nonce
            row.ciphertext = sealed.ciphertext
            row.updated_at = _epoch(now)
            audit.append(
                s,
                AuditEvent(
                    tenant=self.tenant,
                    actor=admin,
                    action="admin.put_resource",
                    subject=str(path),
                    decision="allow",
                    detail={"sha256": hashlib.sha256(data).hexdigest()[:16]},
                ),
                _epoch(now),
            )

    def delete_resource(self, path_parts: list[str], *, admin: str) -> None:
        path = ResourcePath.parse(path_parts)
        now = self.clock()
        with self.db.write() as s:
            result = s.execute(
                delete(ResourceRow).where(
                    ResourceRow.tenant == self.tenant, ResourceRow.path == str(path)
                )
            )
            if not getattr(result, "rowcount", 0):
                raise NotFoundError(f"resource {path} does not exist")
            audit.append(
                s,
                AuditEvent(
                    tenant=self.tenant,
                    actor=admin,
                    action="admin.delete_resource",
                    subject=str(path),
                    decision="allow",
                ),
                _epoch(now),
            )

    # -- reference values (admin) ------------------------------------------------------------------
    def register_reference_values(self, body: object, *, admin: str) -> list[str]:
        return refstore.register(self, body, admin=admin)

    def get_reference_value(self, name: str) -> dict[str, object]:
        return refstore.get(self, name)

    # -- housekeeping ------------------------------------------------------------------------------
    def sweep_sessions(self) -> int:
        """Delete expired sessions; returns how many."""
        with self.db.write() as s:
            result = s.execute(
                delete(SessionRow).where(SessionRow.expires_at <= _epoch(self.clock()))
            )
            return int(getattr(result, "rowcount", 0) or 0)

    def _audit_denial(
        self, actor: str, action: str, exc: VeriteeError, *, tee: str = "", subject: str = ""
    ) -> None:
        try:
            audit.record(
                self.db,
                AuditEvent(
                    tenant=self.tenant,
                    actor=actor,
                    action=action,
                    tee=tee,
                    subject=subject,
                    decision="deny",
                    detail={"code": exc.code, "reason": exc.message},
                ),
                _epoch(self.clock()),
            )
        except Exception:  # pragma: no cover - auditing must not mask the original error
            log.exception("could not write the audit record for a denial")


def _submod(decision: Decision, annotated: Mapping[str, object]) -> Submod:
    reasons = [str(r) for r in decision.reasons]
    return Submod(
        status=decision.status,
        trust_vector=decision.trust_vector,
        policy_id=decision.policy_id,
        annotated_evidence=annotated,
        extensions=(Extension(REASONS_EXTENSION, REASONS_KEY, reasons),) if reasons else (),
    )


def _extra_params(value: object) -> object:
    if isinstance(value, Mapping):
        return value.get("supported-hash-algorithms")
    return None


def _policy_text(value: object) -> str:
    raw = _b64url_decode(value, "policy")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("policy is not UTF-8 text") from None


def _policy_json(pid: str, body: str, sha: str, origin: str) -> dict[str, str]:
    return {
        "policy_id": pid,
        "policy": base64.urlsafe_b64encode(body.encode()).decode().rstrip("="),
        "sha384": sha,
        "origin": origin,
    }


def _first_tee(claims: Mapping[str, object]) -> str:
    submods = claims.get("submods")
    if isinstance(submods, Mapping):
        cpu = submods.get("cpu0")
        if isinstance(cpu, Mapping):
            ev = cpu.get("ear.veraison.annotated-evidence")
            if isinstance(ev, Mapping):
                for key in ev:
                    if isinstance(key, str) and key in VERIFIERS:
                        return key
    return ""


def _tee_of(db: Database, session_id: str | None) -> str:
    if not session_id:
        return ""
    try:
        with db.tx(write=False) as tx:
            row = tx.one("SELECT tee FROM kbs_sessions WHERE id = ?", (session_id,))
        return str(row[0]) if row else ""
    except Exception:  # pragma: no cover
        return ""


def _version() -> str:
    from veritee import __version__

    return str(__version__)


__all__ = ["PROTOCOL_VERSION", "BrokerSettings", "KeyBroker", "ResourcePath"]
