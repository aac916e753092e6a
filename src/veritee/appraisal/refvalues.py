"""Reference values: a flat name -> JSON value store with expiry and provenance (as RVPS).

Accepted registration message (PROTOCOL.md 3.4):
``{"version": "0.1.0", "type": "sample", "payload": "<base64 JSON {name: value}>"}``,
optionally with ``expiration`` (RFC 3339; default now + 12 months, as RVPS) and
``artifacts`` (``[{"name", "digest": {alg: hex}}]``: the value was *computed*
from these, e.g. by ``veritee measure snp``) plus ``tool`` (what computed it).

Every row is sealed (see :mod:`veritee.appraisal.provenance`) and every read
checks the seal: a row that was altered, inserted or re-dated outside veritee
is refused and logged, never used. Expired values are never returned.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from veritee.appraisal.policy import RegoPolicy
from veritee.appraisal.provenance import Artifact, Provenance, RowSeal, signed_payload
from veritee.errors import RequestError
from veritee.store.models import DEFAULT_TENANT, ReferenceValueRow

log = logging.getLogger("veritee.refvalues")

DEFAULT_TTL = dt.timedelta(days=365)
MAX_NAME = 256
MAX_VALUE_BYTES = 64 * 1024


@dataclass(frozen=True)
class ReferenceValue:
    name: str
    value: object
    expires_at: dt.datetime
    source: str
    provenance: Provenance | None = None

    def to_rvps(self) -> dict[str, object]:
        out: dict[str, object] = {
            "version": "0.1.0",
            "name": self.name,
            "expiration": _rfc3339(self.expires_at),
            "value": self.value,
        }
        if self.provenance is not None:
            out["provenance"] = self.provenance.to_json()
        return out

    def payload(self) -> bytes:
        """The bytes the service's seal covers."""
        if self.provenance is None:
            raise RequestError(f"reference value {self.name!r} has no provenance")
        return signed_payload(
            self.name, self.value, _epoch(self.expires_at), self.provenance.to_json()
        )


@dataclass(frozen=True)
class StoredValue:
    """A row as read back: the value, and whether it may be used."""

    value: ReferenceValue
    state: str  # "valid" | "expired" | "refused"
    problem: str = ""
    updated_at: int = 0

    def to_json(self) -> dict[str, object]:
        out = self.value.to_rvps()
        out["state"] = self.state
        if self.problem:
            out["problem"] = self.problem
        out["source"] = self.value.source
        return out


@dataclass(frozen=True)
class LoadedValues:
    """What an appraisal may use, and what was refused (name -> why)."""

    valid: Mapping[str, ReferenceValue]
    refused: Mapping[str, str]


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_expiration(value: object, *, now: dt.datetime) -> dt.datetime:
    """An RFC 3339 instant in the future (a value born expired would be refused anyway)."""
    if not isinstance(value, str):
        raise RequestError("expiration must be an RFC 3339 string, e.g. 2026-01-01T00:00:00Z")
    raw = value.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        when = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise RequestError(f"expiration {value!r} is not an RFC 3339 instant") from None
    if when.tzinfo is None:
        raise RequestError(f"expiration {value!r} needs a time zone (e.g. Z)")
    if when <= now:
        raise RequestError(
            f"expiration {value!r} is in the past: an expired reference value is refused",
            hint="give a future expiration, or leave it out for the 12-month default",
        )
    return when.astimezone(dt.UTC)


def check_name(name: object) -> str:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        raise RequestError(f"invalid reference value name {name!r}")
    if any(ord(c) < 0x20 for c in name):
        raise RequestError(f"reference value name {name!r} holds control characters")
    return name


def check_value(name: str, value: object) -> object:
    """JSON that round-trips exactly (so the seal verifies on every replica)."""
    try:
        text = json.dumps(value, allow_nan=False)
    except ValueError:
        raise RequestError(f"reference value {name!r} is not plain JSON") from None
    if len(text) > MAX_VALUE_BYTES:
        raise RequestError(f"reference value {name!r} is larger than {MAX_VALUE_BYTES} bytes")
    parsed = json.loads(text)
    try:
        signed_payload(name, parsed, 0, {})
    except (TypeError, ValueError) as exc:
        raise RequestError(f"reference value {name!r} cannot be canonicalized: {exc}") from None
    return parsed


def _artifacts(body: Mapping[str, object]) -> tuple[Artifact, ...]:
    raw = body.get("artifacts")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise RequestError("artifacts must be a non-empty list of {name, digest}")
    return tuple(Artifact.from_json(a, f"artifact #{n}") for n, a in enumerate(raw))


def parse_rvps_message(body: object, *, now: dt.datetime, source: str) -> list[ReferenceValue]:
    """Reference values from an RVPS registration message (``sample`` extractor).

    ``source`` is who registers them (``admin:<subject>``); with ``artifacts``
    the values are recorded as computed from those, else as entered by hand.
    """
    if not isinstance(body, Mapping):
        raise RequestError("reference value message must be a JSON object")
    kind = body.get("type")
    if kind != "sample":
        raise RequestError(
            f"reference value type {kind!r} is not supported", hint="use type 'sample'"
        )
    payload = body.get("payload", body.get("provenance"))
    if not isinstance(payload, str):
        raise RequestError("reference value message needs a string 'payload'")
    try:
        decoded = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    except (binascii.Error, ValueError):
        try:
            decoded = json.loads(payload)
        except ValueError:
            raise RequestError("payload is neither base64 JSON nor JSON") from None
    if not isinstance(decoded, dict) or not decoded:
        raise RequestError("payload must be a non-empty JSON object of name -> value")
    expiration = body.get("expiration")
    expires = now + DEFAULT_TTL if expiration is None else parse_expiration(expiration, now=now)
    artifacts = _artifacts(body)
    tool = body.get("tool", "")
    if not isinstance(tool, str) or len(tool) > 256:
        raise RequestError("tool must be a short string")
    provenance = Provenance(
        kind="computed" if artifacts else "admin",
        actor=source,
        recorded_at=_epoch(now),
        artifacts=artifacts,
        tool=tool,
    )
    out = []
    for name, value in decoded.items():
        checked = check_name(name)
        out.append(
            ReferenceValue(checked, check_value(checked, value), expires, source, provenance)
        )
    return out


def _epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


def put(session: Session, rv: ReferenceValue, now: dt.datetime, seal: RowSeal) -> None:
    """Store (or replace) one value with its provenance, sealed."""
    if rv.provenance is None:
        raise RequestError(f"reference value {rv.name!r} has no provenance: refusing to store it")
    row = session.get(ReferenceValueRow, (seal.tenant, rv.name))
    if row is None:
        row = ReferenceValueRow(tenant=seal.tenant, name=rv.name)
        session.add(row)
    expires = _epoch(rv.expires_at)
    row.value_json = json.dumps(rv.value)
    row.expires_at = expires
    row.source = rv.source
    row.updated_at = _epoch(now)
    row.provenance_json = json.dumps(rv.provenance.to_json())
    row.signature = seal.seal(replace(rv, expires_at=_at(expires)).payload())


def remove(session: Session, name: str, tenant: str = DEFAULT_TENANT) -> bool:
    result = session.execute(
        delete(ReferenceValueRow).where(
            ReferenceValueRow.tenant == tenant, ReferenceValueRow.name == name
        )
    )
    return bool(getattr(result, "rowcount", 0))


def _at(epoch: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _read(row: ReferenceValueRow, now: dt.datetime | None, seal: RowSeal) -> StoredValue:
    """Decode a row and check its seal; a row that fails either is refused, never raised.

    With ``now`` None the expiry is not judged (the caller applies it later)."""
    expires = _at(row.expires_at)
    try:
        value = json.loads(row.value_json)
    except ValueError:
        broken = ReferenceValue(row.name, None, expires, row.source)
        return StoredValue(broken, "refused", "value is not JSON", row.updated_at)
    provenance: Provenance | None = None
    problem: str | None = None
    if row.provenance_json is None:
        problem = "no provenance: not stored through veritee (or stored before values were sealed)"
    else:
        try:
            provenance = Provenance.from_json(json.loads(row.provenance_json))
        except (ValueError, RequestError):
            problem = "provenance is unreadable"
    rv = ReferenceValue(row.name, value, expires, row.source, provenance)
    if problem is None:
        try:
            problem = seal.problem(rv.payload(), row.signature)
        except (TypeError, ValueError):
            problem = "value cannot be canonicalized"
    if problem is not None:
        return StoredValue(rv, "refused", problem, row.updated_at)
    if now is not None and row.expires_at <= _epoch(now):
        return StoredValue(rv, "expired", "", row.updated_at)
    return StoredValue(rv, "valid", "", row.updated_at)


def load(session: Session, now: dt.datetime, seal: RowSeal) -> LoadedValues:
    """Unexpired values whose seal verifies; refused rows are logged and reported."""
    return usable(load_sealed(session, seal), now)


def load_sealed(session: Session, seal: RowSeal) -> tuple[StoredValue, ...]:
    """Every row of the tenant with its seal checked, whatever its expiry (cacheable:
    ``usable`` applies the clock). Rows whose seal fails are logged here."""
    rows = session.execute(
        select(ReferenceValueRow)
        .where(ReferenceValueRow.tenant == seal.tenant)
        .order_by(ReferenceValueRow.name)
    ).scalars()
    out = []
    for row in rows:
        stored = _read(row, None, seal)
        if stored.state == "refused":
            log.warning("reference value %r refused: %s", row.name, stored.problem)
        out.append(stored)
    return tuple(out)


def usable(stored: Iterable[StoredValue], now: dt.datetime) -> LoadedValues:
    """What an appraisal at ``now`` may use: unexpired rows; refused ones are reported."""
    valid: dict[str, ReferenceValue] = {}
    refused: dict[str, str] = {}
    for sv in stored:
        if sv.value.expires_at <= now:
            continue  # expired is not tampered: neither used nor reported
        if sv.state == "valid":
            valid[sv.value.name] = sv.value
        elif sv.state == "refused":
            refused[sv.value.name] = sv.problem
    return LoadedValues(valid, refused)


def reseal(session: Session, old: RowSeal, new: RowSeal) -> tuple[list[str], dict[str, str]]:
    """After the token signer changed: re-seal, under ``new``, every row ``old`` sealed.

    A row whose seal does not verify under the old key either (edited in the
    database, never sealed) is left as it is and reported: it stays refused.
    Rows already sealed by the new key are skipped. Returns (resealed, refused).
    """
    if old.tenant != new.tenant:
        raise ValueError("both seals must be of the same tenant")
    rows = session.execute(
        select(ReferenceValueRow)
        .where(ReferenceValueRow.tenant == new.tenant)
        .order_by(ReferenceValueRow.name)
    ).scalars()
    resealed: list[str] = []
    refused: dict[str, str] = {}
    for row in rows:
        if _read(row, None, new).state == "valid":
            continue
        stored = _read(row, None, old)
        if stored.state != "valid":
            refused[row.name] = stored.problem
            continue
        row.signature = new.seal(stored.value.payload())
        resealed.append(row.name)
    return resealed, refused


def all_valid(session: Session, now: dt.datetime, seal: RowSeal) -> dict[str, ReferenceValue]:
    return dict(load(session, now, seal).valid)


def get(session: Session, name: str, now: dt.datetime, seal: RowSeal) -> ReferenceValue | None:
    """The value if present, sealed by this service and not expired."""
    stored = inspect(session, name, now, seal)
    return stored.value if stored is not None and stored.state == "valid" else None


def inspect(session: Session, name: str, now: dt.datetime, seal: RowSeal) -> StoredValue | None:
    """One row as stored, with its state (for admins: shows refused and expired rows too)."""
    row = session.get(ReferenceValueRow, (seal.tenant, name))
    return None if row is None else _read(row, now, seal)


def list_all(session: Session, now: dt.datetime, seal: RowSeal) -> list[StoredValue]:
    rows = session.execute(
        select(ReferenceValueRow)
        .where(ReferenceValueRow.tenant == seal.tenant)
        .order_by(ReferenceValueRow.name)
    ).scalars()
    return [_read(r, now, seal) for r in rows]


def sources_used(
    loaded: LoadedValues, policies: Iterable[RegoPolicy]
) -> dict[str, dict[str, object]]:
    """Provenance of each loaded value the policies consult, for the decision's audit record.

    A policy that reads ``data.reference`` other than by literal name could
    consult any value, so then every loaded value is named.
    """
    names: set[str] = set()
    every = False
    for policy in policies:
        names.update(policy.reference_names())
        every = every or policy.consults_reference_dynamically()
    chosen = loaded.valid if every else {n: v for n, v in loaded.valid.items() if n in names}
    out: dict[str, dict[str, object]] = {}
    for name in sorted(chosen):
        rv = chosen[name]
        entry: dict[str, object] = (
            rv.provenance.audit_json() if rv.provenance else {"kind": "unknown"}
        )
        entry["expires"] = _rfc3339(rv.expires_at)
        out[name] = entry
    return out
