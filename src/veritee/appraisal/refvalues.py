"""Reference values: a flat name -> JSON value store with expiry and provenance (as RVPS).

Accepted registration message (PROTOCOL.md 3.4):
``{"version": "0.1.0", "type": "sample", "payload": "<base64 JSON {name: value}>"}``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from veritee.errors import RequestError
from veritee.store.models import ReferenceValueRow

DEFAULT_TTL = dt.timedelta(days=365)
MAX_NAME = 256


@dataclass(frozen=True)
class ReferenceValue:
    name: str
    value: object
    expires_at: dt.datetime
    source: str

    def to_rvps(self) -> dict[str, object]:
        return {
            "version": "0.1.0",
            "name": self.name,
            "expiration": self.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "value": self.value,
        }


def parse_rvps_message(body: object, *, now: dt.datetime, source: str) -> list[ReferenceValue]:
    """Reference values from an RVPS registration message (``sample`` extractor)."""
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
    expires = now + DEFAULT_TTL
    out = []
    for name, value in decoded.items():
        if not isinstance(name, str) or not name or len(name) > MAX_NAME:
            raise RequestError(f"invalid reference value name {name!r}")
        out.append(ReferenceValue(name, value, expires, source))
    return out


def _epoch(t: dt.datetime) -> int:
    return int(t.timestamp())


def put(session: Session, rv: ReferenceValue, now: dt.datetime) -> None:
    row = session.get(ReferenceValueRow, rv.name)
    if row is None:
        row = ReferenceValueRow(name=rv.name)
        session.add(row)
    row.value_json = json.dumps(rv.value)
    row.expires_at = _epoch(rv.expires_at)
    row.source = rv.source
    row.updated_at = _epoch(now)


def remove(session: Session, name: str) -> bool:
    result = session.execute(delete(ReferenceValueRow).where(ReferenceValueRow.name == name))
    return bool(getattr(result, "rowcount", 0))


def _from_row(row: ReferenceValueRow) -> ReferenceValue:
    return ReferenceValue(
        name=row.name,
        value=json.loads(row.value_json),
        expires_at=dt.datetime.fromtimestamp(row.expires_at, dt.UTC),
        source=row.source,
    )


def get(session: Session, name: str, now: dt.datetime) -> ReferenceValue | None:
    """The value if present and not expired (expired values are never returned)."""
    row = session.get(ReferenceValueRow, name)
    if row is None or row.expires_at <= _epoch(now):
        return None
    return _from_row(row)


def all_valid(session: Session, now: dt.datetime) -> dict[str, ReferenceValue]:
    rows = session.execute(
        select(ReferenceValueRow).where(ReferenceValueRow.expires_at > _epoch(now))
    ).scalars()
    return {r.name: _from_row(r) for r in rows}


def list_all(session: Session) -> list[ReferenceValue]:
    rows = session.execute(select(ReferenceValueRow).order_by(ReferenceValueRow.name)).scalars()
    return [_from_row(r) for r in rows]
