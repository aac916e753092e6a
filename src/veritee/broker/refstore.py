"""Admin operations on reference values: register, import signed statements, list, remove.

Each change is sealed with the broker's token signer (see
:mod:`veritee.appraisal.provenance`) and leaves an audit record naming the
source; a refused import is audited too (who tried to slip which statement in).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from veritee.appraisal import refvalues
from veritee.appraisal.dsse import Envelope, TrustedKey, verify_envelope
from veritee.appraisal.ear import TokenSigner
from veritee.appraisal.intoto import reference_values_from
from veritee.appraisal.provenance import RowSeal
from veritee.broker import audit
from veritee.broker.audit import AuditEvent
from veritee.errors import NotFoundError, RequestError, VerificationError, VeriteeError
from veritee.store.db import Database

if TYPE_CHECKING:
    from veritee.broker.kbs import KeyBroker

log = logging.getLogger("veritee.refstore")

__all__ = ["get", "import_statement", "list_values", "register", "remove", "reseal", "seal"]

_DIGEST_ALGS = ("sha256", "sha384", "sha512")


def seal(broker: KeyBroker) -> RowSeal:
    return RowSeal(broker.signer, tenant=broker.tenant)


def _epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


def _store(
    broker: KeyBroker,
    values: Sequence[refvalues.ReferenceValue],
    *,
    admin: str,
    action: str,
    now: dt.datetime,
    detail: Mapping[str, object],
) -> list[str]:
    sealer = seal(broker)
    with broker.db.write() as s:
        replaced = [rv.name for rv in values if refvalues.inspect(s, rv.name, now, sealer)]
        for rv in values:
            refvalues.put(s, rv, now, sealer)
        first = values[0].provenance
        audit.append(
            s,
            AuditEvent(
                tenant=broker.tenant,
                actor=admin,
                action=action,
                subject=",".join(rv.name for rv in values)[:500],
                decision="allow",
                detail={
                    **detail,
                    "provenance": first.audit_json() if first else {},
                    "replaced": replaced,
                },
            ),
            _epoch(now),
        )
    return [rv.name for rv in values]


def register(broker: KeyBroker, body: object, *, admin: str) -> list[str]:
    """An RVPS ``sample`` message typed in by an admin (``computed`` with ``artifacts``)."""
    now = broker.clock()
    values = refvalues.parse_rvps_message(body, now=now, source=admin)
    return _store(broker, values, admin=admin, action="admin.reference_values", now=now, detail={})


def import_statement(
    broker: KeyBroker, body: object, trusted: Sequence[TrustedKey], *, admin: str
) -> list[str]:
    """Values from an in-toto statement in a DSSE envelope signed by a trusted builder key.

    Body: ``{"envelope": {DSSE}, "name"?, "digest_alg"?, "expiration"?}`` (``name``
    and ``digest_alg`` for SLSA provenance, whose subjects become one value).
    """
    now = broker.clock()
    try:
        if not isinstance(body, Mapping):
            raise RequestError("import request must be a JSON object with an envelope")
        envelope = Envelope.from_json(body.get("envelope"))
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise RequestError("name must be a string")
        digest_alg = body.get("digest_alg", "sha256")
        if digest_alg not in _DIGEST_ALGS:
            raise RequestError(f"digest_alg must be one of {', '.join(_DIGEST_ALGS)}")
        expiration = body.get("expiration")
        expires_at = None if expiration is None else refvalues.parse_expiration(expiration, now=now)
        verified = verify_envelope(envelope, trusted)
        values = reference_values_from(
            verified,
            now=now,
            actor=admin,
            name=name,
            digest_alg=str(digest_alg),
            expires_at=expires_at,
        )
    except VeriteeError as exc:
        _audit_refusal(broker, admin, exc, now)
        raise
    detail = {
        "statement_sha256": verified.payload_sha256,
        "signers": [k.keyid for k in verified.signers],
    }
    names = _store(
        broker,
        values,
        admin=admin,
        action="admin.import_reference_values",
        now=now,
        detail=detail,
    )
    log.info("imported reference values %s from statement %s", names, verified.payload_sha256)
    return names


def _audit_refusal(broker: KeyBroker, admin: str, exc: VeriteeError, now: dt.datetime) -> None:
    try:
        audit.record(
            broker.db,
            AuditEvent(
                tenant=broker.tenant,
                actor=admin,
                action="admin.import_reference_values",
                decision="deny",
                detail={"code": exc.code, "reason": exc.message},
            ),
            _epoch(now),
        )
    except Exception:  # pragma: no cover - auditing must not mask the original error
        log.exception("could not write the audit record for a refused import")


def get(broker: KeyBroker, name: str) -> dict[str, object]:
    """The RVPS record with provenance; a refused (tampered) row is an error, not a value."""
    with broker.db.read() as s:
        stored = refvalues.inspect(s, name, broker.clock(), seal(broker))
    if stored is None or stored.state == "expired":
        raise NotFoundError(f"reference value {name!r} does not exist or has expired")
    if stored.state == "refused":
        raise VerificationError(
            f"reference value {name!r} is refused: {stored.problem}",
            hint="register it again from its source; the audit log shows who changed it",
        )
    return stored.value.to_rvps()


def list_values(broker: KeyBroker) -> list[dict[str, object]]:
    """Every stored row, with its state (valid, expired, refused) and provenance."""
    with broker.db.read() as s:
        rows = refvalues.list_all(s, broker.clock(), seal(broker))
    return [r.to_json() for r in rows]


def remove(broker: KeyBroker, name: str, *, admin: str) -> None:
    now = broker.clock()
    with broker.db.write() as s:
        stored = refvalues.inspect(s, name, now, seal(broker))
        if stored is None:
            raise NotFoundError(f"reference value {name!r} does not exist")
        refvalues.remove(s, name, broker.tenant)
        prov = stored.value.provenance
        audit.append(
            s,
            AuditEvent(
                tenant=broker.tenant,
                actor=admin,
                action="admin.remove_reference_value",
                subject=name[:500],
                decision="allow",
                detail={
                    "state": stored.state,
                    "provenance": prov.audit_json() if prov else {},
                },
            ),
            _epoch(now),
        )


def reseal(
    db: Database, old: TokenSigner, new: TokenSigner, tenant: str, *, admin: str, now: dt.datetime
) -> tuple[list[str], dict[str, str]]:
    """Re-seal a tenant's reference values after the token signer changed (audited).

    Running services notice (the config generation moves) and use the values
    again at once; rows the old key did not seal stay refused and are reported.
    """
    with db.write() as s:
        resealed, refused = refvalues.reseal(s, RowSeal(old, tenant), RowSeal(new, tenant))
        if resealed or refused:
            audit.append(
                s,
                AuditEvent(
                    tenant=tenant,
                    actor=admin,
                    action="admin.reseal_reference_values",
                    decision="allow",
                    detail={"resealed": resealed, "refused": sorted(refused),
                            "old_kid": old.kid, "new_kid": new.kid},
                ),
                _epoch(now),
            )
    return resealed, refused
