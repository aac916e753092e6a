"""Appraisal outcome: the AR4SI trust vector, its status, and why."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

AR4SI_KEYS = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

# draft-ietf-rats-ar4si tiers; negative values mirror (vendor-specific) ones.
_ORDER = {"none": 0, "affirming": 1, "warning": 2, "contraindicated": 3}


def tier(value: int) -> str:
    v = abs(value)
    if v <= 1:
        return "none"
    if v <= 31:
        return "affirming"
    if v <= 95:
        return "warning"
    return "contraindicated"


def status_of(vector: Mapping[str, int]) -> str:
    """The worst tier of the vector; an empty vector proves nothing ("none")."""
    worst = "none"
    for value in vector.values():
        t = tier(value)
        if _ORDER[t] > _ORDER[worst]:
            worst = t
    return worst


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
