"""Offline policy evaluation for owners (``veritee policy test``): the same appraisal the
KBS runs, on claims from a file, with reference values from a file.

The policy input is built exactly as the KBS builds it (``{<tee>: claims,
"report_data", "init_data", "init_data_claims", "runtime_data_claims"}``), so a
policy that affirms here affirms the same claims on the server.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from veritee.appraisal.attestation import appraise, binding_for, claim_at, consulted_names
from veritee.appraisal.decision import Decision, tier
from veritee.appraisal.policy import PolicyEngine, RegoPolicy
from veritee.appraisal.refvalues import parse_rvps_message
from veritee.errors import RequestError

__all__ = [
    "PolicyInput",
    "PolicyTestResult",
    "ReferenceCheck",
    "policy_input",
    "reference_from",
    "run_policy_test",
]

_CONTEXT_KEYS = frozenset(
    {"report_data", "init_data", "init_data_claims", "runtime_data_claims"}
)


@dataclass(frozen=True)
class PolicyInput:
    tee: str
    document: Mapping[str, object]

    @property
    def claims(self) -> Mapping[str, object]:
        claims = self.document[self.tee]
        assert isinstance(claims, Mapping)
        return claims


def _kbs_document(tee: str, claims: Mapping[str, object]) -> dict[str, object]:
    return {
        tee: dict(claims),
        "report_data": claims.get("report_data", ""),
        "init_data": claims.get("init_data", ""),
        "init_data_claims": None,
        "runtime_data_claims": None,
    }


def policy_input(doc: object, tee: str | None = None) -> PolicyInput:
    """Claims from any of the shapes veritee prints, as the KBS's policy input.

    * ``veritee verify <tee> --json``: ``{"tee": ..., "claims": {...}}``;
    * the KBS's policy input or an EAR's ``ear.veraison.annotated-evidence``:
      ``{"<tee>": {...}, "report_data": ..., ...}``;
    * decoded EAR claims: ``{"submods": {"cpu0": {...}}}`` (the cpu0 appraisal);
    * bare claims ``{...}`` with ``tee`` given.
    """
    if not isinstance(doc, Mapping):
        raise RequestError("evidence must be a JSON object")
    if isinstance(doc.get("submods"), Mapping):
        cpu = doc["submods"].get("cpu0")
        annotated = cpu.get("ear.veraison.annotated-evidence") if isinstance(cpu, Mapping) else None
        if not isinstance(annotated, Mapping):
            raise RequestError("the token claims have no submods.cpu0 annotated evidence")
        return policy_input(annotated, tee)
    if isinstance(doc.get("tee"), str) and isinstance(doc.get("claims"), Mapping):
        if tee is not None and tee != doc["tee"]:
            raise RequestError(f"the evidence is {doc['tee']!r}, not {tee!r}")
        return PolicyInput(doc["tee"], _kbs_document(doc["tee"], doc["claims"]))
    if tee is not None:
        if isinstance(doc.get(tee), Mapping):
            return PolicyInput(tee, dict(doc))
        return PolicyInput(tee, _kbs_document(tee, doc))
    candidates = [k for k, v in doc.items() if isinstance(v, Mapping) and k not in _CONTEXT_KEYS]
    if len(candidates) == 1:
        return PolicyInput(candidates[0], dict(doc))
    raise RequestError(
        "cannot tell which TEE these claims are from",
        hint="pass --tee NAME (e.g. snp, tdx, tpm) with bare claims",
    )


def reference_from(doc: object, *, now: dt.datetime) -> dict[str, object]:
    """Reference values from a file: ``{name: value}``, an RVPS ``sample`` message,
    or ``veritee rv list --json`` output (only its valid rows)."""
    if isinstance(doc, list):
        out: dict[str, object] = {}
        for n, row in enumerate(doc):
            if not isinstance(row, Mapping) or not isinstance(row.get("name"), str):
                raise RequestError(f"reference value record #{n} has no name")
            if row.get("state", "valid") == "valid":
                out[row["name"]] = row.get("value")
        return out
    if not isinstance(doc, Mapping):
        raise RequestError("reference values must be a JSON object name -> value")
    if doc.get("type") == "sample" and "payload" in doc:
        return {rv.name: rv.value for rv in parse_rvps_message(doc, now=now, source="file")}
    return dict(doc)


@dataclass(frozen=True)
class ReferenceCheck:
    name: str
    state: str  # match | mismatch | missing | loaded (claim not known) | other TEE
    claim_path: str
    claim: object
    expected: object

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "state": self.state,
            "claim_path": self.claim_path,
            "claim": self.claim,
            "expected": self.expected,
        }


@dataclass(frozen=True)
class PolicyTestResult:
    tee: str
    decision: Decision
    checks: tuple[ReferenceCheck, ...]
    not_for_production: bool

    def failed_rules(self) -> list[tuple[str, int, str]]:
        return [
            (k, v, tier(v))
            for k, v in self.decision.trust_vector.items()
            if tier(v) in ("warning", "contraindicated")
        ]

    def to_json(self) -> dict[str, object]:
        return {
            "tee": self.tee,
            "status": self.decision.status,
            "trust_vector": dict(self.decision.trust_vector),
            "policy_id": self.decision.policy_id,
            "policy_hash": self.decision.policy_hash,
            "not_for_production": self.not_for_production,
            "failed_rules": [
                {"claim": k, "value": v, "tier": t} for k, v, t in self.failed_rules()
            ],
            "reasons": [{"rule": r.rule, "detail": r.detail} for r in self.decision.reasons],
            "reference_values": [c.to_json() for c in self.checks],
        }


def _checks(
    names: Sequence[str], doc: Mapping[str, object], reference: Mapping[str, object]
) -> tuple[ReferenceCheck, ...]:
    out: list[ReferenceCheck] = []
    for name in names:
        binding = binding_for(name, doc)
        present, claim = claim_at(doc, binding) if binding else (False, None)
        path = ".".join(binding) if binding else ""
        expected = reference.get(name)
        if binding and not present:
            continue  # the policy consults it for another kind of evidence
        if name not in reference:
            state = "missing"
        elif binding is None:
            state = "loaded (claim not known)"
        else:
            hit = claim in expected if isinstance(expected, list) else claim == expected
            state = "match" if hit else "mismatch"
        out.append(ReferenceCheck(name, state, path, claim, expected))
    return tuple(out)


def run_policy_test(
    engine: PolicyEngine,
    policy: RegoPolicy,
    pinput: PolicyInput,
    reference: Mapping[str, object],
) -> PolicyTestResult:
    decision = appraise(engine, policy, pinput.document, reference)
    rules = engine.evaluate(policy, pinput.document, {"reference": dict(reference)})
    return PolicyTestResult(
        tee=pinput.tee,
        decision=decision,
        checks=_checks(consulted_names(policy, rules), pinput.document, reference),
        not_for_production=rules.get("not_for_production") is True,
    )

