"""Tamper-evident audit log: every attestation, release and denial, hash-chained.

``hash = SHA-256(prev_hash || JCS(record))`` where the record holds every column
except the hashes; the first record chains from 64 zeros. Appends happen inside
the caller's write transaction, so a record exists iff its effect was committed
(or, for denials, iff the denial was decided).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Select, Table, insert, select, text
from sqlalchemy.orm import Session

from veritee.jcs import canonicalize
from veritee.store.db import Database, Tx
from veritee.store.models import DEFAULT_TENANT, AuditRow

GENESIS = "0" * 64
_AUDIT: Table = AuditRow.__table__  # type: ignore[assignment]
_COLUMNS = tuple(c.name for c in _AUDIT.columns)
_LAST_SQL = "SELECT seq, hash FROM audit_log WHERE tenant = ? ORDER BY seq DESC LIMIT 1"
_INSERT_SQL = (
    f"INSERT INTO audit_log ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608 - column names from the model
)


@dataclass(frozen=True)
class AuditEvent:
    actor: str  # who: session id, admin subject, client address
    action: str  # attest | release | deny | admin.<verb>
    tee: str = ""
    subject: str = ""  # resource path, policy id, ...
    evidence_digest: str = ""
    policy_hash: str = ""
    decision: str = ""  # allow | deny | error
    detail: Mapping[str, object] | None = None
    tenant: str = DEFAULT_TENANT  # each tenant has its own chain


@dataclass(frozen=True)
class AuditRecord:
    """One appended record, column for column (what ``append`` writes)."""

    tenant: str
    seq: int
    ts: int
    actor: str
    action: str
    tee: str
    subject: str
    evidence_digest: str
    policy_hash: str
    decision: str
    detail_json: str
    prev_hash: str
    hash: str


def _record_hash(prev_hash: str, fields: Mapping[str, object]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonicalize(dict(fields))).hexdigest()


def _fields(row: AuditRow | AuditRecord) -> dict[str, object]:
    fields = _common_fields(row)
    if row.tenant != DEFAULT_TENANT:
        fields["tenant"] = row.tenant  # first-party chains hash exactly as before tenants
    return fields


def _common_fields(row: AuditRow | AuditRecord) -> dict[str, object]:
    return {
        "seq": row.seq,
        "ts": row.ts,
        "actor": row.actor,
        "action": row.action,
        "tee": row.tee,
        "subject": row.subject,
        "evidence_digest": row.evidence_digest,
        "policy_hash": row.policy_hash,
        "decision": row.decision,
        "detail": json.loads(row.detail_json),
    }


# Any constant: the advisory lock that serializes chain appends across replicas.
_PG_AUDIT_LOCK = 0x7665726974656501


def _next_row(event: AuditEvent, now: int, last: tuple[object, ...] | None) -> AuditRecord:
    seq = 1 if last is None else int(str(last[0])) + 1
    prev = GENESIS if last is None else str(last[1])
    record = AuditRecord(
        tenant=event.tenant,
        seq=seq,
        ts=now,
        actor=event.actor,
        action=event.action,
        tee=event.tee,
        subject=event.subject,
        evidence_digest=event.evidence_digest,
        policy_hash=event.policy_hash,
        decision=event.decision,
        detail_json=json.dumps(dict(event.detail or {}), sort_keys=True),
        prev_hash=prev,
        hash="",
    )
    return replace(record, hash=_record_hash(prev, _fields(record)))


def _newest(tenant: str) -> Select[Any]:
    """(seq, hash) of the tenant's newest record (``_LAST_SQL`` for raw transactions)."""
    return (
        select(_AUDIT.c.seq, _AUDIT.c.hash)
        .where(_AUDIT.c.tenant == tenant)
        .order_by(_AUDIT.c.seq.desc())
        .limit(1)
    )


def _lock_key(tenant: str) -> int:
    return _PG_AUDIT_LOCK ^ zlib.crc32(tenant.encode())


def append(conn: Session | Connection, event: AuditEvent, now: int) -> AuditRecord:
    """Append one record in the caller's (write) transaction.

    SQLite write transactions are already exclusive (BEGIN IMMEDIATE); on
    PostgreSQL a transaction-scoped advisory lock makes concurrent replicas
    append one at a time, so the chain never forks.
    """
    dialect = (conn.get_bind() if isinstance(conn, Session) else conn).dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(event.tenant)})
    last = conn.execute(_newest(event.tenant)).first()
    row = _next_row(event, now, None if last is None else tuple(last))
    conn.execute(insert(_AUDIT).values({c: getattr(row, c) for c in _COLUMNS}))
    return row


def append_tx(tx: Tx, event: AuditEvent, now: int) -> AuditRecord:
    """``append`` for a raw transaction (the guest hot path), the same rules."""
    if tx.postgres:
        tx.execute("SELECT pg_advisory_xact_lock(?)", (_lock_key(event.tenant),))
    last = tx.one(_LAST_SQL, (event.tenant,))
    row = _next_row(event, now, last)
    tx.execute(_INSERT_SQL, [getattr(row, c) for c in _COLUMNS])
    return row


def record(db: Database, event: AuditEvent, now: int) -> AuditRecord:
    """Append in a transaction of its own (for denials, whose request changes nothing else)."""
    with db.tx(write=True) as tx:
        return append_tx(tx, event, now)


@dataclass(frozen=True)
class ChainReport:
    records: int
    first_broken: int | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.first_broken is None


def tenants(db: Database) -> list[str]:
    """Every tenant that has an audit chain."""
    with db.read() as session:
        found = session.execute(select(AuditRow.tenant).distinct()).scalars()
        return sorted(set(found))


def iter_rows(
    db: Database, batch: int = 1000, tenant: str = DEFAULT_TENANT
) -> Iterator[AuditRow]:
    last = 0
    while True:
        with db.read() as session:
            rows = list(
                session.execute(
                    select(AuditRow)
                    .where(AuditRow.tenant == tenant, AuditRow.seq > last)
                    .order_by(AuditRow.seq)
                    .limit(batch)
                ).scalars()
            )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(db: Database, tenant: str = DEFAULT_TENANT) -> ChainReport:
    """Walk the chain; name the first record whose link or content does not verify."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for row in iter_rows(db, tenant=tenant):
        count += 1
        if row.seq != expected_seq:
            return ChainReport(count, expected_seq, f"record {expected_seq} is missing")
        if row.prev_hash != prev:
            return ChainReport(count, row.seq, "its prev_hash does not match the previous record")
        try:
            fields = _fields(row)
        except ValueError:
            return ChainReport(count, row.seq, "its detail is not valid JSON")
        if _record_hash(prev, fields) != row.hash:
            return ChainReport(count, row.seq, "its content does not match its hash")
        prev = row.hash
        expected_seq += 1
    return ChainReport(count, None, "chain intact")


@dataclass(frozen=True)
class Anchor:
    """A chain head written down outside the database (``veritee audit head``).

    The chain alone cannot show that its newest records were deleted, or that
    someone with write access rewrote a record and re-hashed everything after
    it. A head kept elsewhere can: the record it names must still be there,
    with the same hash.
    """

    tenant: str
    seq: int
    hash: str

    def __str__(self) -> str:
        return f"{self.tenant}:{self.seq}:{self.hash}"

    @classmethod
    def parse(cls, text: str) -> Anchor:
        parts = text.strip().split(":")
        if len(parts) == 2:
            parts.insert(0, DEFAULT_TENANT)
        if (
            len(parts) != 3
            or not parts[1].isdigit()
            or int(parts[1]) < 1
            or len(parts[2]) != 64
            or not all(c in "0123456789abcdef" for c in parts[2])
        ):
            raise ValueError("an audit anchor is [TENANT:]SEQ:SHA256HEX, as `audit head` prints")
        return cls(parts[0], int(parts[1]), parts[2])


def head(db: Database, tenant: str = DEFAULT_TENANT) -> Anchor | None:
    """The newest record of a tenant's chain, to write down elsewhere."""
    with db.read() as session:
        row = session.execute(_newest(tenant)).first()
    return None if row is None else Anchor(tenant, int(row[0]), str(row[1]))


def check_anchor(db: Database, anchor: Anchor) -> str | None:
    """None when the chain still holds the anchored record unchanged, else what is wrong."""
    with db.read() as session:
        found = session.execute(
            select(_AUDIT.c.hash).where(
                _AUDIT.c.tenant == anchor.tenant, _AUDIT.c.seq == anchor.seq
            )
        ).scalar()
        last = session.execute(_newest(anchor.tenant)).scalar()
    if found is None:
        ends = f"the chain ends at record {last}" if last is not None else "the chain is empty"
        return f"record {anchor.seq} is gone ({ends}): the log was truncated"
    if found != anchor.hash:
        return f"record {anchor.seq} no longer has the anchored hash: the log was rewritten"
    return None
