"""Appraise verified claims with the attestation policy and explain the outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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

# Per TEE, the claim each reference value is compared with. The same name can
# bind to the same kind of claim in several evidence types (the SNP report
# inside an Azure CVM's HCL report is still an SNP report); explanations and the
# TCB report look here first, then at KNOWN_BINDINGS.
_SNP_FIELDS: Mapping[str, str] = {
    "snp_launch_measurement": "measurement",
    "snp_bootloader": "reported_tcb_bootloader",
    "snp_microcode": "reported_tcb_microcode",
    "snp_snp_svn": "reported_tcb_snp",
    "snp_tee_svn": "reported_tcb_tee",
    "snp_smt_enabled": "platform_smt_enabled",
    "snp_tsme_enabled": "platform_tsme_enabled",
    "snp_guest_abi_major": "policy_abi_major",
    "snp_guest_abi_minor": "policy_abi_minor",
    "snp_single_socket": "policy_single_socket",
    "snp_smt_allowed": "policy_smt_allowed",
}
_TDX_FIELDS: Mapping[str, tuple[str, ...]] = {
    "mr_td": ("quote", "body", "mr_td"),
    "mr_seam": ("quote", "body", "mr_seam"),
    "rtmr_0": ("quote", "body", "rtmr_0"),
    "rtmr_1": ("quote", "body", "rtmr_1"),
    "rtmr_2": ("quote", "body", "rtmr_2"),
    "rtmr_3": ("quote", "body", "rtmr_3"),
    "xfam": ("quote", "body", "xfam"),
    "mr_config_id": ("quote", "body", "mr_config_id"),
}
_TPM_PCRS = ("tpm_pcr00", "tpm_pcr02", "tpm_pcr04", "tpm_pcr07", "tpm_pcr08", "tpm_pcr09",
             "tpm_pcr11", "tpm_pcr14")
TEE_BINDINGS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "snp": {name: ("snp", field) for name, field in _SNP_FIELDS.items()},
    # Azure vTPM PCRs: tpm_pcrNN as for any TPM, except PCR 11, which Trustee's
    # policies (and default_cpu) call snp_pcr11 / tdx_pcr11.
    "az-snp-vtpm": {
        **{name: ("az-snp-vtpm", field) for name, field in _SNP_FIELDS.items()},
        **{n: ("az-snp-vtpm", "tpm", n.removeprefix("tpm_")) for n in _TPM_PCRS
           if n != "tpm_pcr11"},
        "snp_pcr11": ("az-snp-vtpm", "tpm", "pcr11"),
    },
    "tdx": {name: ("tdx", *path) for name, path in _TDX_FIELDS.items()},
    "az-tdx-vtpm": {
        **{name: ("az-tdx-vtpm", *path) for name, path in _TDX_FIELDS.items()},
        **{n: ("az-tdx-vtpm", "tpm", n.removeprefix("tpm_")) for n in _TPM_PCRS
           if n != "tpm_pcr11"},
        "tdx_pcr11": ("az-tdx-vtpm", "tpm", "pcr11"),
    },
    "sgx": {
        "mr_enclave": ("sgx", "body", "mr_enclave"),
        "mr_signer": ("sgx", "body", "mr_signer"),
    },
    "tpm": {
        **{n: ("tpm", n.removeprefix("tpm_")) for n in _TPM_PCRS},
        "trusted_aks": ("tpm", "ak_public"),
    },
    "nvidia": {
        "nvidia_driver_version": ("nvidia", "config", "driver_version"),
        "nvidia_vbios_version": ("nvidia", "config", "vbios_version"),
    },
}

MEANINGS = {
    "executables": {
        33: "runtime holds executables that are not recognized",
        96: "executables are not approved (reference values missing or not matching)",
    },
    "hardware": {
        97: "hardware or firmware is not recognized",
        96: "hardware or firmware TCB is not approved",
    },
    "configuration": {
        36: "configuration is not approved",
        96: "configuration is unsafe (debug, migration or unapproved settings)",
    },
}


def binding_for(name: str, input_doc: Mapping[str, object]) -> tuple[str, ...] | None:
    """The claim ``name`` is compared with for this evidence (its TEE's binding first).

    A name bound only for other TEEs yields that (absent) binding, so callers
    can tell "concerns another TEE" from "no binding known".
    """
    fallback = KNOWN_BINDINGS.get(name)
    for tee, bindings in TEE_BINDINGS.items():
        if name in bindings:
            if tee in input_doc:
                return bindings[name]
            fallback = fallback or bindings[name]
    return fallback


def _dig(doc: object, path: tuple[str, ...]) -> tuple[bool, object]:
    cur = doc
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return False, None
        cur = cur[key]
    return True, cur


def claim_at(doc: object, path: tuple[str, ...]) -> tuple[bool, object]:
    """(present, value) of the claim at ``path`` in a policy input document."""
    return _dig(doc, path)


def _short(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 24 else text[:20] + "..."


def consulted_names(policy: RegoPolicy, rules: Mapping[str, object]) -> list[str]:
    """The reference values the policy consulted for this input.

    A policy may say so itself with a ``consulted`` rule (a set of names, as
    veritee's presets do, since one policy text names values for several TEEs);
    otherwise every name it looks up literally.
    """
    names = policy.reference_names()
    declared = rules.get("consulted")
    if isinstance(declared, list) and all(isinstance(n, str) for n in declared):
        return [n for n in names if n in declared] + sorted(set(declared) - set(names))
    return names


def explain_reference_values(
    policy: RegoPolicy,
    input_doc: Mapping[str, object],
    reference: Mapping[str, object],
    names: Sequence[str] | None = None,
) -> list[Reason]:
    """For each reference value the policy consults: missing, or not matching the claim."""
    reasons: list[Reason] = []
    missing: list[str] = []
    for name in policy.reference_names() if names is None else names:
        binding = binding_for(name, input_doc)
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
        reasons.append(
            Reason("reference values", "not loaded, expired or refused: " + ", ".join(missing))
        )
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
        reasons.extend(_policy_reasons(result.get("reasons")))
        reasons.extend(
            explain_reference_values(
                policy, input_doc, reference, consulted_names(policy, result)
            )
        )
    return Decision(
        status=status,
        trust_vector=vector,
        policy_id=policy.policy_id,
        policy_hash=policy.sha384,
        reasons=tuple(reasons),
    )


def _policy_reasons(raw: object) -> list[Reason]:
    """A policy may explain itself: ``reasons`` is a list of strings (or {rule, detail})."""
    if not isinstance(raw, list):
        return []
    out: list[Reason] = []
    for item in raw[:32]:
        if isinstance(item, str) and item:
            out.append(Reason("policy", item[:300]))
        elif isinstance(item, Mapping) and isinstance(item.get("detail"), str):
            out.append(Reason(str(item.get("rule", "policy"))[:64], str(item["detail"])[:300]))
    return out
