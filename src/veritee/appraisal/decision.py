"""Appraisal outcome: the AR4SI trust vector, its status, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

#: The eight AR4SI trustworthiness claims (draft-ietf-rats-ar4si).
AR4SI_KEYS: Final = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

Status: TypeAlias = Literal["none", "affirming", "warning", "contraindicated"]
STATUSES: Final[tuple[Status, ...]] = ("none", "affirming", "warning", "contraindicated")


def tier(value: object) -> Status:
    """The AR4SI tier of one claim value (draft-ietf-rats-ar4si 2.3).

    Negative values mirror the positive tiers (vendor-specific codes of the
    same tier); a value outside -128..127, or one that is not an integer,
    counts as contraindicated (fail closed).
    """
    if isinstance(value, bool) or not isinstance(value, int) or not -128 <= value <= 127:
        return "contraindicated"
    magnitude = abs(value)
    if magnitude <= 1:
        return "none"
    if magnitude <= 31:
        return "affirming"
    if magnitude <= 95:
        return "warning"
    return "contraindicated"


def status_of(vector: Mapping[str, int]) -> Status:
    """The worst tier of the vector; an empty vector proves nothing ("none")."""
    worst = 0
    for value in vector.values():
        worst = max(worst, STATUSES.index(tier(value)))
    return STATUSES[worst]


@dataclass(frozen=True)
class Reason:
    rule: str  # the trust claim, policy rule or reference value concerned
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.detail}"


@dataclass(frozen=True)
class Decision:
    """What the attestation policy concluded about one attester."""

    status: str
    trust_vector: Mapping[str, int]
    policy_id: str
    policy_hash: str
    reasons: tuple[Reason, ...] = ()

    @property
    def affirming(self) -> bool:
        return self.status == "affirming"

    def explain(self) -> str:
        if not self.reasons:
            return f"status {self.status}"
        return f"status {self.status}: " + "; ".join(str(r) for r in self.reasons)


@dataclass(frozen=True)
class ResourceDecision:
    allowed: bool
    policy_hash: str
    reasons: tuple[Reason, ...] = ()
