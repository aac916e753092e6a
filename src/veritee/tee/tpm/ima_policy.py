"""Allowlist / denylist appraisal of IMA entries by path and file digest.

A policy never raises on a violation: :meth:`ImaPolicy.evaluate` returns an
:class:`ImaAppraisal` whose ``violations`` name every entry that failed and why (the
caller turns a non-empty list into a denial). Accepted input is keylime's runtime
policy JSON (``{"digests": {path: [hex, ...]}, "excludes": [regex, ...]}``) with an
optional veritee ``"deny"`` section (``{"digests": [hex, ...], "paths": [regex, ...]}``).

Order of rules for each entry: a denied digest or path is always a violation; an
excluded path is accepted; otherwise the path must be listed with that digest (or, when
``require_listed`` is off, a listed path must carry a listed digest). Violation entries
of IMA itself (ToMToU, open-writers) are violations unless ``allow_ima_violations``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from veritee.errors import ConfigError
from veritee.tee.tpm.ima import ImaEntry


@dataclass(frozen=True)
class ImaViolation:
    entry: ImaEntry
    rule: str  # "denied-digest", "denied-path", "unlisted-path", "digest-not-allowed", ...
    detail: str

    def describe(self) -> str:
        return f"{self.entry.describe()}: {self.detail} [{self.rule}]"


@dataclass(frozen=True)
class ImaAppraisal:
    checked: int
    excluded: int
    violations: tuple[ImaViolation, ...]

    @property
    def allowed(self) -> bool:
        return not self.violations


@dataclass(frozen=True)
class ImaPolicy:
    allow: Mapping[str, frozenset[bytes]] = field(default_factory=dict)
    excludes: tuple[re.Pattern[str], ...] = ()
    deny_digests: frozenset[bytes] = frozenset()
    deny_paths: tuple[re.Pattern[str], ...] = ()
    require_listed: bool = True
    allow_ima_violations: bool = False

    @classmethod
    def from_json(cls, text: str | bytes | Mapping[str, object]) -> ImaPolicy:
        try:
            obj = json.loads(text) if isinstance(text, str | bytes) else text
        except (ValueError, UnicodeDecodeError) as exc:
            raise ConfigError(f"IMA policy is not valid JSON ({exc})") from None
        if not isinstance(obj, Mapping):
            raise ConfigError("IMA policy must be a JSON object")
        allow: dict[str, frozenset[bytes]] = {}
        digests = obj.get("digests", {})
        if not isinstance(digests, Mapping):
            raise ConfigError("IMA policy 'digests' must map paths to lists of hex digests")
        for path, values in digests.items():
            allow[str(path)] = frozenset(_hexes(values, f"digests[{path!r}]"))
        deny = obj.get("deny", {})
        if not isinstance(deny, Mapping):
            raise ConfigError("IMA policy 'deny' must be an object")
        return cls(
            allow=allow,
            excludes=_patterns(obj.get("excludes", []), "excludes"),
            deny_digests=frozenset(_hexes(deny.get("digests", []), "deny.digests")),
            deny_paths=_patterns(deny.get("paths", []), "deny.paths"),
            require_listed=bool(obj.get("require_listed", True)),
            allow_ima_violations=bool(obj.get("allow_ima_violations", False)),
        )

    def evaluate(self, entries: Iterable[ImaEntry]) -> ImaAppraisal:
        violations: list[ImaViolation] = []
        checked = excluded = 0
        for e in entries:
            checked += 1
            if e.is_violation and not self.allow_ima_violations:
                violations.append(ImaViolation(
                    e, "ima-violation", "IMA logged a measurement violation (file changed "
                    "while open, or opened for write while measured)"))
                continue
            if e.path == "boot_aggregate" and e.number == 0:
                continue  # checked against the quoted PCRs, not against file digests
            if e.file_digest in self.deny_digests:
                violations.append(ImaViolation(
                    e, "denied-digest", f"digest {e.file_digest.hex()} is on the denylist"))
                continue
            denied = next((p for p in self.deny_paths if p.fullmatch(e.path)), None)
            if denied is not None:
                violations.append(ImaViolation(
                    e, "denied-path", f"path matches denied pattern {denied.pattern!r}"))
                continue
            if any(p.match(e.path) for p in self.excludes):
                excluded += 1
                continue
            allowed = self.allow.get(e.path)
            if allowed is None:
                if self.require_listed:
                    violations.append(ImaViolation(
                        e, "unlisted-path", "path is not in the allowlist"))
                continue
            if e.file_digest not in allowed:
                violations.append(ImaViolation(
                    e, "digest-not-allowed",
                    f"{e.digest_alg}:{e.file_digest.hex()} is not an allowed digest for the path"))
        return ImaAppraisal(checked, excluded, tuple(violations))


def _hexes(values: object, where: str) -> list[bytes]:
    if not isinstance(values, list):
        raise ConfigError(f"IMA policy {where} must be a list of hex digests")
    out = []
    for v in values:
        try:
            out.append(bytes.fromhex(str(v)))
        except ValueError:
            raise ConfigError(f"IMA policy {where}: {v!r} is not hex") from None
    return out


def _patterns(values: object, where: str) -> tuple[re.Pattern[str], ...]:
    if not isinstance(values, list):
        raise ConfigError(f"IMA policy {where} must be a list of regular expressions")
    out = []
    for v in values:
        try:
            out.append(re.compile(str(v)))
        except re.error as exc:
            raise ConfigError(f"IMA policy {where}: bad pattern {v!r} ({exc})") from None
    return tuple(out)
