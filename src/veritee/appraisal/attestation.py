"""Appraise verified claims with the attestation policy and explain the outcome."""

from __future__ import annotations

from collections.abc import Mapping

from veritee.appraisal.decision import AR4SI_KEYS, Decision, Reason, status_of, tier
from veritee.appraisal.policy import PolicyEngine, RegoPolicy
from veritee.errors import PolicyError

# Which claim each well-known reference value is compared with (for explanations).
KNOWN_BINDINGS: Mapping[str, tuple[str, ...]] = {
    "snp_launch_measurement": ("snp", "measurement"),
    "snp_bootloader": ("snp", "reported_tcb_bootloader"),
    "snp_microcode": ("snp", "reported_tcb_microcode"),
    "snp_snp_svn": ("snp", "reported_tcb_snp"),
    "snp_tee_svn": ("snp", "reported_tcb_tee"),
    "snp_smt_enabled": ("snp", "platform_smt_enabled"),
    "snp_tsme_enabled": ("snp", "platform_tsme_enabled"),
    "snp_guest_abi_major": ("snp", "policy_abi_major"),
    "snp_guest_abi_minor": ("snp", "policy_abi_minor"),
    "snp_single_socket": ("snp", "policy_single_socket"),
    "snp_smt_allowed": ("snp", "policy_smt_allowed"),
    "mr_td": ("tdx", "quote", "body", "mr_td"),
    "rtmr_1": ("tdx", "quote", "body", "rtmr_1"),
    "rtmr_2": ("tdx", "quote", "body", "rtmr_2"),
    "xfam": ("tdx", "quote", "body", "xfam"),
    "mr_enclave": ("sgx", "body", "mr_enclave"),
    "mr_signer": ("sgx", "body", "mr_signer"),
    "tpm_pcr11": ("tpm", "pcr11"),
    "snp_pcr11": ("az-snp-vtpm", "tpm", "pcr11"),
    "tdx_pcr11": ("az-tdx-vtpm", "tpm", "pcr11"),
    "nvidia_driver_version": ("nvidia", "config", "driver_version"),
    "nvidia_vbios_version": ("nvidia", "config", "vbios_version"),
    "tpm_pcr07": ("tpm", "pcr07"),
    "trusted_aks": ("tpm", "ak_public"),
}

MEANINGS = {
    "executables": {33: "runtime holds executables that are not recognized"},
    "hardware": {97: "hardware or firmware is not recognized"},
    "configuration": {36: "configuration is not approved"},
}


def _dig(doc: object, path: tuple[str, ...]) -> tuple[bool, object]:
    cur = doc
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return False, None
        cur = cur[key]
    return True, cur


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def explain_reference_values(
    policy: RegoPolicy, input_doc: Mapping[str, object], reference: Mapping[str, object]
) -> list[Reason]:
    """For each reference value the policy consults: missing, or not matching the claim."""
    reasons: list[Reason] = []
    missing: list[str] = []
    for name in policy.reference_names():
        binding = KNOWN_BINDINGS.get(name)
        present, claim = _dig(input_doc, binding) if binding else (False, None)
        if binding and not present:
            continue  # concerns another TEE than this evidence
        if name not in reference:
            missing.append(name)
            continue
        if binding is None:
            continue
        expected = reference[name]
        matches = claim in expected if isinstance(expected, list) else claim == expected
        if not matches:
            count = f"{len(expected)} value(s)" if isinstance(expected, list) else _short(expected)
            reasons.append(
                Reason(name, f"{'.'.join(binding)} = {_short(claim)} does not match ({count})")
            )
    if missing:
        reasons.append(Reason("reference values", "not loaded or expired: " + ", ".join(missing)))
    return reasons


def appraise(
    engine: PolicyEngine,
    policy: RegoPolicy,
    input_doc: Mapping[str, object],
    reference: Mapping[str, object],
) -> Decision:
    """Evaluate ``trust_claims``; a policy without a usable vector is a PolicyError."""
    result = engine.evaluate(policy, input_doc, {"reference": dict(reference)})
    raw = result.get("trust_claims")
    if not isinstance(raw, Mapping) or not raw:
        raise PolicyError(
            f"attestation policy {policy.policy_id!r} produced no trust_claims object",
            hint="an attestation policy must define data.policy.trust_claims",
        )
    vector: dict[str, int] = {}
    for key, value in raw.items():
        if key not in AR4SI_KEYS:
            raise PolicyError(f"trust_claims key {key!r} is not an AR4SI claim")
        if not isinstance(value, int) or isinstance(value, bool) or not -128 <= value <= 127:
            raise PolicyError(f"trust_claims[{key!r}] must be an integer in -128..127")
        vector[key] = value
    status = status_of(vector)
    reasons: list[Reason] = []
    if status != "affirming":
        for key, value in vector.items():
            if tier(value) in ("warning", "contraindicated"):
                meaning = MEANINGS.get(key, {}).get(value, tier(value))
                reasons.append(Reason(key, f"{value} ({meaning})"))
        reasons.extend(explain_reference_values(policy, input_doc, reference))
    return Decision(
        status=status,
        trust_vector=vector,
        policy_id=policy.policy_id,
        policy_hash=policy.sha384,
        reasons=tuple(reasons),
    )
