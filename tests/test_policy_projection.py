"""Policies are evaluated on the part of ``input`` they can read, and decisions are
remembered by it (appraisal/projection.py). The analysis must never drop a value a
policy can see: unit tests pin what it recognizes and refuses, and a differential
property test evaluates every shipped policy, and some adversarial ones, on random
claims both ways and demands the same result."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from veritee.appraisal.builtin import PRESETS, load
from veritee.appraisal.policy import PolicyEngine, RegoPolicy
from veritee.appraisal.projection import Projection, analyse, project

HEADER = "package policy\n\nimport rego.v1\n\n"


def _policy(body: str) -> str:
    return HEADER + body


# -- what the analysis recognizes ------------------------------------------------------------
def test_literal_paths_and_presence_guards() -> None:
    shape = analyse(_policy(
        'allow if {\n\tinput.snp\n\tinput.snp.measurement == "ab"\n'
        '\tinput["az-snp-vtpm"].tpm.pcr11 == "cd"\n}\n'
    ))
    assert shape == Projection(
        values=(("az-snp-vtpm", "tpm", "pcr11"), ("snp", "measurement")),
        presence=(("snp",),),
    )


@pytest.mark.parametrize(
    "body",
    [
        "allow if { input }\n",
        "allow if { x := input; x.a }\n",
        'allow if { some k; input[k] == "a" }\n',
        "allow if { object.get(input, \"a\", false) }\n",
        "allow if { input.a with input.b as 1 }\n",
        "allow if { time.now_ns() > input.a }\n",
        "allow if { rand.intn(\"x\", 2) == input.a }\n",
        "allow if { print(input.a) }\n",
        "allow if { input .a }\n",
        'allow if { input.a == "unterminated }\n',
        "allow if { input.a \n",
    ],
)
def test_anything_it_cannot_see_through_disables_projection(body: str) -> None:
    assert analyse(_policy(body)) is None


def test_import_of_input_disables_projection() -> None:
    assert analyse("package policy\n\nimport input.snp as s\n\nallow if { s.a }\n") is None


def test_strings_comments_and_foreign_fields_named_input_are_not_references() -> None:
    shape = analyse(_policy(
        '# input is everything here\nallow if {\n\tx := "input"\n\tdata.config.input == 1\n'
        "\tinput.a == x\n}\n"
    ))
    assert shape == Projection(values=(("a",),), presence=())


@pytest.mark.parametrize(
    "body",
    [
        # The same text on its own line, but not a statement of a rule body: its value counts.
        "allow if {\n\tcount(\n\t\tinput.snp\n\t) > 0\n}\n",
        "s := {\n\tinput.snp\n}\n",
        "allow if {\n\tx := [\n\t\tinput.snp\n\t]\n\tcount(x) == 1\n}\n",
        "allow if {\n\tsome v in\n\tinput.snp\n\tv == 1\n}\n",
        "allow if {\n\tinput.snp\n\t== {}\n}\n",
        "allow if { input.snp }\n",  # shares its line with the braces
    ],
)
def test_presence_only_for_whole_statements(body: str) -> None:
    # Analysed (not refused), and the reference counts by its value, not its presence.
    assert analyse(_policy(body)) == Projection(values=(("snp",),), presence=())


def test_shipped_policies_project_as_expected() -> None:
    cpu = analyse(load("default_cpu"))
    assert cpu is not None and ("snp", "measurement") in cpu.values and ("snp",) in cpu.presence
    assert ("snp", "report_data") not in cpu.values
    assert analyse(load("affirming")) == Projection(values=(("submods",),), presence=())


# -- what the projection keeps -----------------------------------------------------------------
def test_projection_keeps_values_and_the_truth_of_guards() -> None:
    shape = Projection(values=(("snp", "measurement"), ("x",)), presence=(("snp",), ("tdx",),
                                                                          ("f",), ("e",)))
    doc = {"snp": {"measurement": "ab", "report_data": "ff"}, "x": [1, {"y": 2}],
           "tdx": "present", "f": False, "other": 1}
    assert project(doc, shape) == {"snp": {"measurement": "ab"}, "x": [1, {"y": 2}],
                                   "tdx": True, "f": False}


# -- the differential property ---------------------------------------------------------------------
SNP_FIELDS = ("measurement", "reported_tcb_bootloader", "reported_tcb_microcode",
              "reported_tcb_snp", "reported_tcb_tee", "policy_debug_allowed",
              "policy_migrate_ma", "platform_smt_enabled", "platform_tsme_enabled",
              "policy_abi_major", "policy_abi_minor", "policy_single_socket",
              "policy_smt_allowed", "report_data", "chip_id", "simulated")
leaf = st.sampled_from(["ab", "cd", "", "UpToDate", "81000000"]) | st.integers(0, 3) \
    | st.booleans() | st.none()
claims = st.dictionaries(st.sampled_from(SNP_FIELDS), leaf | st.just({}), max_size=10)
tees = st.sampled_from(["snp", "tdx", "sgx", "tpm", "az-snp-vtpm", "az-tdx-vtpm", "nvidia"])
tdx_like = st.fixed_dictionaries({}, optional={
    "quote": st.fixed_dictionaries({}, optional={
        "body": st.dictionaries(st.sampled_from(["mr_td", "rtmr_1", "rtmr_2", "xfam"]), leaf),
        "header": st.dictionaries(st.just("tee_type"), leaf)}),
    "tcb_status": leaf,
    "td_attributes": st.dictionaries(st.just("debug"), leaf),
    "tpm": st.dictionaries(st.sampled_from(["pcr11", "pcr07"]), leaf),
    "pcr11": leaf, "pcr07": leaf, "ak_public": leaf,
    "body": st.dictionaries(st.sampled_from(["mr_enclave", "mr_signer"]), leaf),
})
tee_claims = st.one_of(claims, tdx_like, leaf, st.lists(leaf, max_size=2))
documents = st.dictionaries(tees, tee_claims, max_size=3).flatmap(
    lambda d: st.fixed_dictionaries({
        "report_data": st.sampled_from(["00", "11"]),
        "submods": st.dictionaries(
            st.sampled_from(["cpu0", "gpu0"]),
            st.dictionaries(st.sampled_from(["ear.status", "ear.veraison.annotated-evidence"]),
                            st.sampled_from(["affirming", "warning"]) | st.just(d)),
            max_size=2),
    }).map(lambda extra: {**d, **extra})
)
reference = st.fixed_dictionaries({
    "snp_launch_measurement": st.sampled_from([["ab"], ["cd"], []]),
    "snp_bootloader": st.sampled_from([[0, 1], [2]]),
    "snp_microcode": st.sampled_from([[0, 1], [2]]),
    "snp_snp_svn": st.sampled_from([[0, 1], [2]]),
    "snp_tee_svn": st.sampled_from([[0, 1], [2]]),
    "snp_smt_enabled": st.booleans(),
    "mr_td": st.sampled_from([["ab"], []]),
    "tpm_pcr11": st.sampled_from([["ab"], []]),
})

ADVERSARIAL = [
    # Trustee's default resource policy: one literal path, so decisions repeat.
    _policy('default allow := false\n\nallow if {\n'
            '\tinput["submods"]["cpu0"]["ear.status"] == "affirming"\n}\n'),
    # A guard whose value is compared: must not be reduced to "present".
    _policy('allow if {\n\tinput.snp == {"measurement": "ab"}\n}\n'),
    # Presence guard plus a value read through the same prefix.
    _policy("hardware := 2 if {\n\tinput.tpm\n}\n\nn := count(input.snp) if {\n\tinput.snp\n}\n"),
    # Falsy values: a false guard fails, null and {} pass.
    _policy("ok if {\n\tinput.snp.simulated\n}\n\nz if {\n\tinput.snp.chip_id\n}\n"),
    _policy("ks := [k | input.snp[k]]\n"),
    _policy('m := object.get(input.snp, "measurement", "none")\n'),
]
POLICIES = [load(n) for n in PRESETS if analyse(load(n)) is not None] + ADVERSARIAL


def _both_ways(body: str, doc: dict[str, object], ref: dict[str, object]) -> None:
    policy = RegoPolicy.parse("p", body)
    data = {"reference": ref}
    full = PolicyEngine(memoize=False)._evaluate(  # the unprojected oracle
        policy, doc, _json(data), "oracle"
    )
    assert PolicyEngine().evaluate(policy, doc, data) == full
    assert PolicyEngine(memoize=False).evaluate(policy, doc, data) == full


def _json(value: object) -> str:
    import json

    return json.dumps(value, sort_keys=True)


def test_every_adversarial_policy_is_projected() -> None:
    assert all(analyse(body) is not None for body in ADVERSARIAL)


@settings(max_examples=150, deadline=None)
@given(doc=documents, ref=reference, index=st.integers(0, len(POLICIES) - 1))
def test_projected_evaluation_equals_full_evaluation(
    doc: dict[str, object], ref: dict[str, object], index: int
) -> None:
    _both_ways(POLICIES[index], doc, ref)


def test_remembered_decisions_are_copies_and_follow_the_data() -> None:
    engine = PolicyEngine()
    policy = RegoPolicy.parse("default_cpu", load("default_cpu"))
    doc = {"snp": {"measurement": "ab", "report_data": "00"}}
    first = engine.evaluate(policy, doc, {"reference": {"snp_launch_measurement": ["ab"]}})
    first["executables"] = "tampered"
    again = engine.evaluate(policy, {**doc, "snp": {"measurement": "ab", "report_data": "11"}},
                            {"reference": {"snp_launch_measurement": ["ab"]}})
    assert again["executables"] == 3
    other = engine.evaluate(policy, doc, {"reference": {"snp_launch_measurement": ["cd"]}})
    assert other["executables"] != 3
