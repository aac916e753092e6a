"""The only place that reads the wall clock.

Verification code never calls this: it receives ``now`` explicitly. Edges (CLI,
server) call :func:`utcnow` once and pass the value down.
"""

from __future__ import annotations

import datetime as _dt

from veritee.errors import ConfigError


def utcnow() -> _dt.datetime:
    """Current time, timezone-aware UTC."""
    return _dt.datetime.now(_dt.UTC)


def parse_instant(text: str) -> _dt.datetime:
    """Parse an ISO-8601 instant; a naive value is taken as UTC."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        value = _dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise ConfigError(
            f"not an ISO-8601 time: {text!r}", hint="use e.g. 2025-06-01T00:00:00Z"
        ) from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.UTC)
    return value.astimezone(_dt.UTC)


def require_aware(now: _dt.datetime) -> _dt.datetime:
    """Refuse naive datetimes: a verification time must be unambiguous."""
    if now.tzinfo is None:
        raise ConfigError("verification time must be timezone-aware")
    return now.astimezone(_dt.UTC)
