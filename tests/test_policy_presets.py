"""`veritee policy test` and the presets, on real corpus claims and on simulator claims.

Expected outcomes come from the corpus manifests (policy bits, Intel TCB status as the
collector evaluated it), not from the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SNP_IDS, SNP_SAMPLES, SnpSample
from tests.dcap_corpus import TDX_SAMPLES, DcapSample
from tests.tpm_corpus import QUOTES, TPM
from veritee.appraisal.builtin import POLICY_PRESETS, preset
from veritee.cli.main import main

PRESETS = list(POLICY_PRESETS)
SNP_NAMES = ["snp_launch_measurement", "snp_bootloader", "snp_microcode", "snp_snp_svn",
             "snp_tee_svn"]
# TDX samples that verify completely offline (their TCB info is in the corpus).
TDX_FULL = [s for s in TDX_SAMPLES
            if s.has_collateral and isinstance((s.tcb or {}).get("platform_tcb"), list)]


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def presets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("presets")
    out = {}
    for name in PRESETS:
        assert main(["policy", "preset", name, "--out", str(d / f"{name}.rego")]) == 0
        out[name] = d / f"{name}.rego"
    return out


def _snp_claims(sample: SnpSample, tmp: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    vek = "vlek.der" if sample.observed["endorsement_key"] == "VLEK" else "vcek.der"
    code, out, err = cli(["verify", "snp", str(sample.path / "report.bin"), "--vcek",
                          str(sample.path / vek), "--collateral", str(sample.roots.parent),
                          "--at", sample.at.isoformat(), "--json"], capsys)
    assert code == 0, err
    path = tmp / f"{sample.name}.json"
    path.write_text(out)
    return path


def _own_values(claims: dict[str, object]) -> dict[str, object]:
    """Reference values equal to what the evidence reports (the owner's golden values)."""
    return {
        "snp_launch_measurement": [claims["measurement"]],
        "snp_bootloader": [claims["reported_tcb_bootloader"]],
        "snp_microcode": [claims["reported_tcb_microcode"]],
        "snp_snp_svn": [claims["reported_tcb_snp"]],
        "snp_tee_svn": [claims["reported_tcb_tee"]],
    }


def _test(policy: Path, evidence: Path, capsys: pytest.CaptureFixture[str], *extra: str
          ) -> tuple[int, dict[str, object]]:
    code, out, err = cli(["policy", "test", str(policy), "--evidence", str(evidence), *extra,
                          "--json"], capsys)
    assert out, err
    return code, json.loads(out)


def _missing(result: dict[str, object]) -> list[str]:
    checks = result["reference_values"]
    assert isinstance(checks, list)
    return [c["name"] for c in checks if c["state"] == "missing"]


def _reasons(result: dict[str, object]) -> str:
    reasons = result["reasons"]
    assert isinstance(reasons, list)
    return " | ".join(f"{r['rule']}: {r['detail']}" for r in reasons)


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_presets_on_real_snp_reports(
    sample: SnpSample, presets: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    evidence = _snp_claims(sample, tmp_path, capsys)
    claims = json.loads(evidence.read_text())["claims"]
    policy_bits = int(str(sample.observed["policy"]), 16)
    debug = bool(policy_bits >> 19 & 1)
    migrate = bool(policy_bits >> 18 & 1)

    # No reference values loaded: a denial that names every missing value, never a warning.
    for name in ("allow-all-reference-values", "strict-production"):
        code, result = _test(presets[name], evidence, capsys)
        assert code == 5
        assert result["status"] == "contraindicated"
        assert _missing(result) == SNP_NAMES
        assert "not loaded, expired or refused: " + ", ".join(SNP_NAMES) in _reasons(result)

    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps(_own_values(claims)))
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys, "--rv", str(rv))
    assert (code, result["status"]) == (0, "affirming")
    assert {c["state"] for c in result["reference_values"]} == {"match"}  # type: ignore[union-attr]

    code, result = _test(presets["strict-production"], evidence, capsys, "--rv", str(rv))
    assert result["status"] == ("affirming" if not (debug or migrate) else "contraindicated")
    if debug:
        assert "debugging is allowed" in _reasons(result)

    code, result = _test(presets["dev"], evidence, capsys)
    assert result["status"] == ("affirming" if not debug else "contraindicated")
    assert result["not_for_production"] is True

    # One reference value off: the denial names it and the claim it was compared with.
    wrong = _own_values(claims)
    wrong["snp_microcode"] = [int(str(claims["reported_tcb_microcode"])) + 1]
    rv.write_text(json.dumps(wrong))
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys, "--rv", str(rv))
    assert code == 5
    states = {c["name"]: c["state"] for c in result["reference_values"]}  # type: ignore[union-attr]
    assert states["snp_microcode"] == "mismatch"
    assert "snp_microcode: snp.reported_tcb_microcode" in _reasons(result)
    assert result["trust_vector"]["hardware"] == 97  # type: ignore[index]


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Claims of simulated SNP reports (debug off and on), verified against the sim root."""
    out = {}
    for debug in (False, True):
        d = tmp_path_factory.mktemp(f"sim-debug-{debug}")
        args = ["sim", "snp", "report", "--out", str(d), "--measurement", "4d" * 48]
        assert main([*args, "--debug"] if debug else args) == 0
        evidence = d / "claims.json"
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            code = main(["verify", "snp", str(d / "report.bin"), "--certs", str(d),
                         "--trust-root", str(d / "ark.pem"), "--json"])
        assert code == 0
        evidence.write_text(buf.getvalue())
        out[debug] = evidence
    return out


def test_presets_on_simulator_claims(
    simulated: dict[bool, Path], presets: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    claims = json.loads(simulated[False].read_text())["claims"]
    assert claims["simulated"] is True
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps(_own_values(claims)))
    code, result = _test(presets["allow-all-reference-values"], simulated[False], capsys,
                         "--rv", str(rv))
    assert result["status"] == "affirming"
    # Strict production refuses a simulator even when every value matches.
    code, result = _test(presets["strict-production"], simulated[False], capsys, "--rv", str(rv))
    assert (code, result["status"]) == (5, "contraindicated")
    assert "snp: simulated TEE, refused in production" in _reasons(result)
    assert result["trust_vector"] == {"configuration": 2, "executables": 2, "hardware": 97}
    # dev: hardware + no debug, nothing else.
    code, result = _test(presets["dev"], simulated[False], capsys)
    assert (code, result["status"]) == (0, "affirming")
    code, result = _test(presets["dev"], simulated[True], capsys)
    assert (code, result["status"]) == (5, "contraindicated")
    assert "debugging is enabled: snp.policy_debug_allowed" in _reasons(result)
    code, result = _test(presets["strict-production"], simulated[True], capsys, "--rv", str(rv))
    assert "snp: debugging is allowed (policy_debug_allowed)" in _reasons(result)


@pytest.mark.skipif(not TDX_FULL, reason="corpus absent")
@pytest.mark.parametrize("sample", TDX_FULL, ids=[s.name for s in TDX_FULL])
def test_strict_production_on_real_tdx_quotes(
    sample: DcapSample, presets: dict[str, Path], tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["verify", "tdx", str(sample.path / "quote.dat"), "--at", sample.full_at.isoformat(),
            "--json"]
    for d in sample.collateral_dirs():
        argv += ["--collateral", str(d)]
    code, out, err = cli(argv, capsys)
    assert code == 0, err
    evidence = tmp_path / "tdx.json"
    evidence.write_text(out)
    code, result = _test(presets["strict-production"], evidence, capsys)
    assert code == 5 and _missing(result) == ["mr_td", "rtmr_1", "rtmr_2", "xfam"]
    report = sample.report
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({"mr_td": [report["mr_td"]], "rtmr_1": [report["rtmr1"]],
                              "rtmr_2": [report["rtmr2"]], "xfam": [report["xfam"]]}))
    code, result = _test(presets["strict-production"], evidence, capsys, "--rv", str(rv))
    tcb = sample.tcb
    assert tcb is not None
    platform = tcb["platform_tcb"]
    assert isinstance(platform, list)
    debug = bool(int(str(report["td_attributes"])[:2], 16) & 1)
    up_to_date = platform[0] == "UpToDate" and tcb["qe_tcb"][0] == "UpToDate"  # type: ignore[index]
    assert result["status"] == ("affirming" if up_to_date and not debug else "contraindicated")


@pytest.mark.skipif(TPM is None or not QUOTES, reason="corpus absent")
def test_allow_all_on_a_real_tpm_quote_names_the_missing_pcrs(
    presets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert TPM is not None
    d = TPM / "gce-cos85-quote-no-nonce"
    exp = json.loads((d / "expected.json").read_text())
    pcrs = tmp_path / "pcrs.json"
    pcrs.write_text(json.dumps({"sha256": exp["quotes"]["sha256"]["pcrs"]}))
    code, out, err = cli(["verify", "tpm", "--quote", str(d / "quote-sha256.tpms_attest"),
                          "--signature", str(d / "quote-sha256.tpmt_signature"),
                          "--ak", str(d / "ak_pub.tpmt_public"), "--pcrs", str(pcrs), "--json"],
                         capsys)
    assert code == 0, err
    evidence = tmp_path / "tpm.json"
    evidence.write_text(out)
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys)
    assert code == 5 and result["status"] == "contraindicated"
    assert _missing(result) == ["tpm_pcr00", "tpm_pcr04", "tpm_pcr07", "trusted_aks"]
    claims = json.loads(out)["claims"]
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({
        "tpm_pcr00": [claims["pcr00"]], "tpm_pcr04": [claims["pcr04"]],
        "tpm_pcr07": [claims["pcr07"]], "trusted_aks": [claims["ak_public"]],
    }))
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys, "--rv", str(rv))
    assert (code, result["status"]) == (0, "affirming")
    assert result["trust_vector"] == {"configuration": 2, "executables": 2,
                                      "instance-identity": 2}
    # The verify output does not say whether a TPM is simulated: strict production refuses.
    code, result = _test(presets["strict-production"], evidence, capsys, "--rv", str(rv))
    assert "tpm: the evidence does not state whether it is simulated" in _reasons(result)


def test_evidence_of_a_type_the_preset_does_not_know_is_refused(
    presets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evidence = tmp_path / "nitro.json"
    evidence.write_text(json.dumps({"tee": "nitro", "claims": {"debug": False, "pcr0": "00"}}))
    for name in ("allow-all-reference-values", "strict-production"):
        code, result = _test(presets[name], evidence, capsys)
        assert code == 5 and result["status"] == "contraindicated"
        assert "no reference values for the evidence (nitro)" in _reasons(result)


def test_policy_test_input_shapes_and_errors(
    presets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    claims = {"measurement": "aa", "policy_debug_allowed": False, "simulated": False}
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(claims))
    kbs_input = tmp_path / "input.json"
    kbs_input.write_text(json.dumps({"snp": claims, "report_data": "", "init_data": "",
                                     "init_data_claims": None, "runtime_data_claims": None}))
    ear = tmp_path / "ear.json"
    ear.write_text(json.dumps({"submods": {"cpu0": {
        "ear.veraison.annotated-evidence": json.loads(kbs_input.read_text())}}}))
    rvps = tmp_path / "rvps.json"
    import base64

    rvps.write_text(json.dumps({"version": "0.1.0", "type": "sample", "payload": base64.b64encode(
        json.dumps({"snp_launch_measurement": ["aa"]}).encode()).decode()}))
    dev = presets["dev"]
    code, out, _ = cli(["policy", "test", str(dev), "--claims", str(bare), "--tee", "snp",
                        "--json"], capsys)
    assert code == 0 and json.loads(out)["tee"] == "snp"
    for path in (kbs_input, ear):
        code, out, _ = cli(["policy", "test", str(dev), "--evidence", str(path), "--json"], capsys)
        assert code == 0 and json.loads(out)["status"] == "affirming"
    code, out, _ = cli(["policy", "test", str(presets["allow-all-reference-values"]),
                        "--evidence", str(kbs_input), "--rv", str(rvps), "--json"], capsys)
    states = {c["name"]: c["state"] for c in json.loads(out)["reference_values"]}
    assert states["snp_launch_measurement"] == "match"
    code, _, err = cli(["policy", "test", str(dev), "--claims", str(bare)], capsys)
    assert code == 1 and "--tee" in err
    code, _, err = cli(["policy", "test", str(dev)], capsys)
    assert code == 1 and "exactly one of" in err
    broken = tmp_path / "broken.rego"
    broken.write_text("package policy\nallow := {\n")
    code, _, err = cli(["policy", "test", str(broken), "--claims", str(bare), "--tee", "snp"],
                       capsys)
    assert code == 5 and "does not compile" in err
    # Human output: the banner for a policy marked not for production, and the reasons.
    code, out, err = cli(["policy", "test", str(dev), "--claims", str(bare), "--tee", "snp"],
                         capsys)
    assert code == 0 and "affirming" in out and "NOT FOR PRODUCTION" in err


def test_preset_command(capsys: pytest.CaptureFixture[str]) -> None:
    for name in PRESETS:
        code, out, err = cli(["policy", "preset", name], capsys)
        assert code == 0
        assert out == preset(name).body and out.startswith(f'# veritee preset "{name}"')
        assert ("NOT FOR PRODUCTION" in err) == (name == "dev")
    code, _, err = cli(["policy", "preset", "yolo"], capsys)
    assert code != 0 and "allow-all-reference-values" in err


def test_allow_all_on_a_real_azure_snp_cvm(
    presets: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.conftest import CORPUS

    base = CORPUS / "azure-snp-vtpm" / "trustee-genoa-evidence" if CORPUS else None
    if base is None or not base.is_dir():
        pytest.skip("corpus absent")
    assert CORPUS is not None
    code, out, err = cli(["verify", "azure-snp-vtpm", str(base / "evidence-genoa.json"),
                          "--collateral", str(CORPUS / "roots" / "amd"),
                          "--at", "2025-06-01T00:00:00Z", "--json"], capsys)
    assert code == 0, err
    evidence = tmp_path / "az.json"
    evidence.write_text(out)
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys)
    assert code == 5 and _missing(result) == [*SNP_NAMES, "snp_pcr11"]
    claims = json.loads(out)["claims"]
    rv = tmp_path / "rv.json"
    rv.write_text(json.dumps({**_own_values(claims), "snp_pcr11": [claims["tpm"]["pcr11"]]}))
    code, result = _test(presets["allow-all-reference-values"], evidence, capsys, "--rv", str(rv))
    assert (code, result["status"]) == (0, "affirming")
