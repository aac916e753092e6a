"""Rego policies, reference values, decisions and their explanations."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from veritee.appraisal import refvalues
from veritee.appraisal.attestation import appraise
from veritee.appraisal.builtin import PRESETS, default_attestation_policy, load
from veritee.appraisal.decision import status_of, tier
from veritee.appraisal.ear import TokenSigner
from veritee.appraisal.policy import PolicyEngine, RegoPolicy
from veritee.appraisal.provenance import RowSeal
from veritee.errors import PolicyError, RequestError
from veritee.store.db import Database

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
SNP = {
    "measurement": "aa" * 48,
    "policy_debug_allowed": False,
    "policy_migrate_ma": False,
    "reported_tcb_bootloader": 3,
    "reported_tcb_tee": 0,
    "reported_tcb_snp": 8,
    "reported_tcb_microcode": 115,
    "platform_smt_enabled": True,
    "platform_tsme_enabled": False,
    "policy_abi_major": 0,
    "policy_abi_minor": 0,
    "policy_single_socket": False,
    "policy_smt_allowed": True,
}
GOOD_RV = {
    "snp_launch_measurement": ["aa" * 48],
    "snp_bootloader": [3],
    "snp_microcode": [115],
    "snp_snp_svn": [8],
    "snp_tee_svn": [0],
}


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine()


def test_builtin_policies_compile() -> None:
    for name in PRESETS:
        RegoPolicy.parse(name, load(name))


def test_default_policy_affirms_only_with_matching_reference_values(engine: PolicyEngine) -> None:
    policy = default_attestation_policy()
    d = appraise(engine, policy, {"snp": SNP}, GOOD_RV)
    assert d.status == "affirming"
    assert d.trust_vector == {"executables": 3, "hardware": 2, "configuration": 3}
    assert d.reasons == ()
    nothing = appraise(engine, policy, {"snp": SNP}, {})
    assert nothing.status == "contraindicated"  # hardware 97 without reference values
    assert any("not loaded" in str(r) for r in nothing.reasons)


def test_denial_names_the_failed_reference_value(engine: PolicyEngine) -> None:
    policy = default_attestation_policy()
    d = appraise(engine, policy, {"snp": {**SNP, "measurement": "bb" * 48}}, GOOD_RV)
    assert d.status == "warning"
    text = d.explain()
    assert "executables: 33" in text
    assert "snp_launch_measurement" in text and "snp.measurement = bbbb" in text
    d = appraise(engine, policy, {"snp": {**SNP, "reported_tcb_microcode": 114}}, GOOD_RV)
    assert d.status == "contraindicated"
    assert "snp_microcode" in d.explain()


def test_debug_guest_is_not_affirming(engine: PolicyEngine) -> None:
    d = appraise(
        engine,
        default_attestation_policy(),
        {"snp": {**SNP, "policy_debug_allowed": True}},
        GOOD_RV,
    )
    assert d.trust_vector["configuration"] == 36
    assert d.status == "warning"


def test_trustee_style_policy_runs_unchanged(engine: PolicyEngine) -> None:
    """A policy written for Trustee (query_reference_value, data.reference) works as is."""
    trustee = """package policy
import rego.v1
default executables := 33
default hardware := 97
default configuration := 36
executables := 3 if { input.snp.measurement in query_reference_value("snp_launch_measurement") }
hardware := 2 if {
  input.snp.reported_tcb_bootloader in data.reference.snp_bootloader
  input.snp.reported_tcb_microcode in data.reference.snp_microcode
  input.snp.reported_tcb_snp in data.reference.snp_snp_svn
  input.snp.reported_tcb_tee in data.reference.snp_tee_svn
}
configuration := 2 if { input.snp.policy_debug_allowed == false }
trust_claims := {"executables": executables, "hardware": hardware,
                 "configuration": configuration}
"""
    policy = RegoPolicy.parse("default_cpu", trustee)
    assert set(policy.reference_names()) >= {"snp_launch_measurement", "snp_bootloader"}
    assert appraise(engine, policy, {"snp": SNP}, GOOD_RV).status == "affirming"
    assert appraise(engine, policy, {"snp": SNP}, {}).status == "contraindicated"


def test_policy_errors_are_clear() -> None:
    with pytest.raises(PolicyError, match="does not compile"):
        RegoPolicy.parse("bad", "package policy\nallow if {")
    with pytest.raises(PolicyError, match="package"):
        RegoPolicy.parse("bad", "allow := true")


def test_policy_without_trust_claims_is_refused(engine: PolicyEngine) -> None:
    policy = RegoPolicy.parse("p", "package policy\nimport rego.v1\nallow := true\n")
    with pytest.raises(PolicyError, match="trust_claims"):
        appraise(engine, policy, {"snp": SNP}, {})
    bad = RegoPolicy.parse(
        "p2", 'package policy\nimport rego.v1\ntrust_claims := {"nonsense": 2}\n'
    )
    with pytest.raises(PolicyError, match="AR4SI"):
        appraise(engine, bad, {"snp": SNP}, {})


def test_default_rule_only_is_reported(engine: PolicyEngine) -> None:
    """regopy reports a default-only rule as undefined when queried alone; we don't."""
    policy = RegoPolicy.parse(
        "r", "package policy\nimport rego.v1\ndefault allow := false\nallow if { input.x == 1 }\n"
    )
    assert engine.query(policy, "allow", {"x": 2}, {}) is False
    assert engine.query(policy, "allow", {"x": 1}, {}) is True


def test_resource_policies(engine: PolicyEngine) -> None:
    affirming = RegoPolicy.parse("r", load("affirming"))

    def claims(status: str, simulated: bool) -> dict[str, object]:
        return {
            "submods": {
                "cpu0": {
                    "ear.status": status,
                    "ear.veraison.annotated-evidence": {"snp": {"simulated": simulated}},
                }
            }
        }

    assert engine.query(affirming, "allow", claims("affirming", False), {}) is True
    assert engine.query(affirming, "allow", claims("warning", False), {}) is False
    assert engine.query(affirming, "allow", claims("affirming", True), {}) is False
    assert engine.query(affirming, "allow", {"submods": {}}, {}) is False


def test_tiers_and_status() -> None:
    assert [tier(v) for v in (0, 1, 2, 31, 32, 95, 96, 127, -2, -96)] == [
        "none",
        "none",
        "affirming",
        "affirming",
        "warning",
        "warning",
        "contraindicated",
        "contraindicated",
        "affirming",
        "contraindicated",
    ]
    assert status_of({"a": 2, "b": 33}) == "warning"
    assert status_of({}) == "none"


def test_reference_values_store_and_expiry(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "rv.db")
    db.migrate()
    msg = {
        "version": "0.1.0",
        "type": "sample",
        "payload": base64.b64encode(json.dumps({"a": [1], "b": True}).encode()).decode(),
    }
    values = refvalues.parse_rvps_message(msg, now=NOW, source="test")
    seal = RowSeal(TokenSigner.generate())
    with db.write() as s:
        for rv in values:
            refvalues.put(s, rv, NOW, seal)
    with db.read() as s:
        valid = refvalues.all_valid(s, NOW, seal)
        assert {k: v.value for k, v in valid.items()} == {"a": [1], "b": True}
        later = NOW + dt.timedelta(days=366)
        assert refvalues.all_valid(s, later, seal) == {}
        assert refvalues.get(s, "a", later, seal) is None
        got = refvalues.get(s, "a", NOW, seal)
        assert got is not None and got.to_rvps()["expiration"].startswith("2027-06-01")
    for bad in (
        {"type": "swid", "payload": ""},
        {"type": "sample"},
        [],
        {"type": "sample", "payload": "bm90IGpzb24"},
        {"type": "sample", "payload": "e30"},
    ):
        with pytest.raises(RequestError):
            refvalues.parse_rvps_message(bad, now=NOW, source="t")
