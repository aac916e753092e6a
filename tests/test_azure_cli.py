"""`veritee verify azure-snp-vtpm` / `azure-tdx-vtpm`: JSON output and exit codes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.conftest import CORPUS
from tests.test_azure_verify import (
    CHALLENGE,
    RUNTIME,
    SNP_CASES,
    SNP_IDS,
    TDX_DIR,
    SnpCase,
    flip,
    needs_tdx,
)
from veritee.cli.main import main
from veritee.tee.azure.sim import SimulatedAzureSnpCvm, SimulatedAzureTdxCvm


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def snp_args(case: SnpCase, path: Path, *extra: str) -> list[str]:
    assert CORPUS is not None
    return [
        "verify", "azure-snp-vtpm", str(path), "--collateral", str(CORPUS / "roots" / "amd"),
        "--at", case.at.isoformat(), *extra,
    ]


def write(tmp_path: Path, doc: object, name: str = "evidence.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(doc) if not isinstance(doc, bytes) else doc.decode())
    return path


@pytest.mark.parametrize("case", SNP_CASES, ids=SNP_IDS)
def test_corpus_snp_json_output(
    case: SnpCase, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, case.document)  # trustee-milan-raw is assembled from its files
    code, out, err = run(snp_args(case, path, "--report-data", case.nonce.hex(), "--json"), capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "az-snp-vtpm"
    claims = doc["claims"]
    assert claims["report_data"] == case.observed["nonce"]
    assert claims["tpm"]["pcr00"] == case.observed["pcr0"]
    assert claims["chip_id"].startswith(str(case.observed["chip"]))
    assert claims["simulated"] is False


@pytest.mark.skipif(not SNP_CASES, reason="../shared/corpus not present")
def test_snp_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = next(c for c in SNP_CASES if c.name == "trustee-milan-evidence-v1")
    good = write(tmp_path, case.document)
    code, out, err = run(snp_args(case, good, "--report-data", CHALLENGE.hex()), capsys)
    assert code == 0, err
    assert "verified" in out and "HCLAkPub" in out and "not checked" not in err
    code, _, err = run(snp_args(case, good), capsys)
    assert code == 0 and "nonce was not checked" in err
    # 3: another nonce
    code, _, err = run(snp_args(case, good, "--report-data", "00" * 48), capsys)
    assert code == 3 and "nonce" in err
    # 3: runtime claims altered
    doc = json.loads(case.document)
    raw = case.evidence.hcl.to_bytes()
    doc["hcl_report"] = base64.urlsafe_b64encode(flip(raw, (RUNTIME + 40) * 8)).decode()
    code, _, err = run(snp_args(case, write(tmp_path, doc, "t.json")), capsys)
    assert code == 3 and "runtime claims" in err
    # 3: no AMD chain to anchor the VCEK
    code, _, err = run(["verify", "azure-snp-vtpm", str(good), "--at", case.at.isoformat()],
                       capsys)
    assert code == 3 and "no trusted AMD root" in err
    # 2: malformed
    code, _, err = run(snp_args(case, write(tmp_path, {"version": 1}, "m.json")), capsys)
    assert code == 2
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"\x00\xff not json")
    code, _, _ = run(snp_args(case, bad), capsys)
    assert code == 2
    # 1: usage
    code, _, _ = run(snp_args(case, good, "--report-data", "zz"), capsys)
    assert code == 1


@needs_tdx
def test_corpus_tdx_ends_with_the_missing_collateral_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert TDX_DIR is not None
    for name in ("evidence-v0.json", "evidence-v1.json"):
        code, _, err = run([
            "verify", "azure-tdx-vtpm", str(TDX_DIR / name), "--at", "2025-10-01T00:00:00Z",
            "--report-data", CHALLENGE.hex(), "--collateral", str(TDX_DIR.parent / "collateral"),
        ], capsys)
        assert code == 4, err
        assert "TCB info for FMSPC 00806F050000" in err
    # Tampering is refused (exit 3) even though collateral is missing.
    doc = json.loads((TDX_DIR / "evidence-v1.json").read_text())
    code, _, err = run([
        "verify", "azure-tdx-vtpm", str(TDX_DIR / "evidence-v1.json"),
        "--at", "2025-10-01T00:00:00Z", "--report-data", "00",
    ], capsys)
    assert code == 3 and "nonce" in err
    doc["tpm_quote"]["signature"] = "00" + doc["tpm_quote"]["signature"][2:]
    code, _, err = run([
        "verify", "azure-tdx-vtpm", str(write(tmp_path, doc)), "--at", "2025-10-01T00:00:00Z",
    ], capsys)
    assert code == 3 and "signature" in err


# -- simulated CVMs ------------------------------------------------------------------------------

NONCE = bytes(range(48))
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def cvms() -> Iterator[tuple[SimulatedAzureSnpCvm, SimulatedAzureTdxCvm]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield SimulatedAzureSnpCvm.generate(), SimulatedAzureTdxCvm.generate()


def test_simulated_cvms_verify_only_with_their_root_trusted(
    cvms: tuple[SimulatedAzureSnpCvm, SimulatedAzureTdxCvm],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    snp, tdx = cvms
    evidence = write(tmp_path, snp.evidence(NONCE, version=0, with_chain=True).to_json())
    ark = tmp_path / "ark.pem"
    ark.write_bytes(snp.platform.ark_pem())
    args = ["verify", "azure-snp-vtpm", str(evidence), "--report-data", NONCE.hex()]
    code, _, err = run(args, capsys)
    assert code == 3 and "pinned" in err
    code, out, err = run([*args, "--trust-root", str(ark), "--json"], capsys)
    assert code == 0, err
    claims = json.loads(out)["claims"]
    assert claims["simulated"] is True
    assert claims["measurement"] == snp.measurement.hex()
    code, _, err = run([*args, "--trust-root", str(ark)], capsys)
    assert code == 0 and "SIMULATOR" in err

    collateral = tmp_path / "collateral"
    tdx.platform.dcap.write_collateral(
        collateral, issue=NOW - dt.timedelta(days=1), next_update=NOW + dt.timedelta(days=30)
    )
    root = tmp_path / "intel-root.pem"
    root.write_bytes(tdx.platform.dcap.root.public_bytes(serialization.Encoding.PEM))
    evidence = write(tmp_path, tdx.evidence(NONCE).to_json(), "tdx.json")
    args = ["verify", "azure-tdx-vtpm", str(evidence), "--report-data", NONCE.hex(), "--json"]
    code, _, err = run([*args, "--collateral", str(collateral)], capsys)
    assert code == 3
    code, _, err = run([*args, "--trust-root", str(root)], capsys)
    assert code == 4 and "collateral" in err
    code, out, err = run([*args, "--trust-root", str(root), "--collateral", str(collateral)],
                         capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "az-tdx-vtpm"
    assert doc["claims"]["quote"]["body"]["mr_td"] == tdx.mr_td.hex()
    assert doc["claims"]["tpm"]["pcr11"] == tdx.vtpm.tpm.banks[0x000B][11].hex()
