"""SGX quotes: real Intel-signed quotes, Trustee's claim shape, a simulated platform, the CLI."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.dcap_corpus import SGX_IDS, SGX_SAMPLES, DcapSample, sample
from tests.dcap_sim import ISSUE, NEXT, NOW, generate
from veritee.cli.main import main
from veritee.errors import MismatchError
from veritee.pki.certs import load_certificates
from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.verify import IntelRoots
from veritee.tee.sgx.claims import quote_claims
from veritee.tee.sgx.quote import SgxQuote
from veritee.tee.sgx.sim import SimulatedSgxPlatform
from veritee.tee.sgx.verify import verify_sgx_signatures

needs_samples = pytest.mark.skipif(not SGX_SAMPLES, reason="corpus absent")

# Trustee's own expectation for this quote (deps/verifier/src/sgx/claims.rs, parse_sgx_claims).
TRUSTEE_OCCLUM = {
    "header": {
        "version": "0300",
        "att_key_type": "0200",
        "att_key_data_0": "00000000",
        "qe_svn": "0800",
        "pce_svn": "0d00",
        "vendor_id": "939a7233f79c4ca9940a0db3957f0607",
        "user_data": "dccde9b31ce8860548173bb4a2a57a1600000000",
    },
    "body": {
        "cpu_svn": "06060c0cffff00000000000000000000",
        "misc_select": "01000000",
        "reserved1": "000000000000000000000000",
        "isv_ext_prod_id": "00000000000000000000000000000000",
        "attributes.flags": "0700000000000000",
        "attributes.xfrm": "e700000000000000",
        "mr_enclave": "8f173e4613ff05c52aaf04162d234edae8c9977eae47eb2299ae16a553011c68",
        "reserved2": "00" * 32,
        "mr_signer": "83d719e77deaca1470f6baf62a4d774303c899db69020f9c70ee1dfc08c7ce9e",
        "reserved3": "00" * 32,
        "config_id": "00" * 64,
        "isv_prod_id": "0000",
        "isv_svn": "0000",
        "config_svn": "0000",
        "reserved4": "00" * 42,
        "isv_family_id": "00" * 16,
        "report_data": "74657374" + "00" * 60,
    },
    "report_data": "74657374" + "00" * 60,
    "init_data": "00" * 64,
    "platform_instance_id": "7a3a6941065cd5060bd93d3db2cfc0c8",
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@needs_samples
def test_claims_of_the_occlum_quote_equal_trustees() -> None:
    s = sample("trustee-occlum")
    quote = SgxQuote.from_bytes(s.quote)
    roots = IntelRoots.intel(
        load_certificates(quote.quote.signature_data.qe.certification_data.data)
    )
    verified = verify_sgx_signatures(quote, roots, s.at)
    claims = quote_claims(quote.quote.header, quote.report, verified.pck.platform_instance_id)
    assert claims == TRUSTEE_OCCLUM


@pytest.mark.parametrize("s", SGX_SAMPLES, ids=SGX_IDS)
def test_cli_verifies_each_real_sgx_quote_or_names_missing_collateral(
    s: DcapSample, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["verify", "sgx", str(s.path / "quote.dat"), "--at", s.at.isoformat(), "--json"]
    if s.has_collateral:
        argv += ["--collateral", str(s.path)]
    code, out, err = run(argv, capsys)
    report = s.report
    if not s.has_collateral:
        assert code == 4, err
        assert "SGX TCB info for FMSPC" in err and "Root CA CRL" in err
        return
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "sgx"
    claims = doc["claims"]
    body = claims["body"]
    assert body["mr_enclave"] == report["mr_enclave"]
    assert body["mr_signer"] == report["mr_signer"]
    assert int.from_bytes(bytes.fromhex(body["isv_prod_id"]), "little") == report["isv_prod_id"]
    assert int.from_bytes(bytes.fromhex(body["isv_svn"]), "little") == report["isv_svn"]
    assert body["report_data"] == report["report_data"]
    source = s.expected["source_states"]
    assert isinstance(source, dict)
    assert claims["tcb_status"] == source["tcb_status"]
    assert claims["advisory_ids"] == source["advisory_ids"]
    assert claims["fmspc"] == s.checks["fmspc"]
    assert claims["sgx_type"] == "Standard" and "is_smt_enabled" not in claims


@needs_samples
def test_cli_refuses_a_tampered_sgx_quote_without_collateral(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = bytearray(sample("trustee-occlum").quote)
    raw[48 + 64] ^= 0x80  # MRENCLAVE
    bad = tmp_path / "quote.dat"
    bad.write_bytes(bytes(raw))
    code, _, err = run(["verify", "sgx", str(bad), "--at", "2025-01-01T00:00:00Z"], capsys)
    assert code == 3
    assert "quote signature" in err


@pytest.fixture(scope="module")
def sim() -> SimulatedSgxPlatform:
    return SimulatedSgxPlatform(generate(TeeType.SGX, ca="processor"))


def test_simulated_sgx_quote_via_cli_needs_its_root(
    sim: SimulatedSgxPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    quote = sim.quote(sim.report(report_data=b"nonce", isv_svn=3))
    assert SgxQuote.from_bytes(quote.to_bytes()).to_bytes() == quote.to_bytes()
    (tmp_path / "q.bin").write_bytes(quote.to_bytes())
    col = sim.dcap.write_collateral(tmp_path / "col", issue=ISSUE, next_update=NEXT)
    root = tmp_path / "root.pem"
    root.write_bytes(sim.dcap.root.public_bytes(serialization.Encoding.PEM))
    base = [
        "verify",
        "sgx",
        str(tmp_path / "q.bin"),
        "--collateral",
        str(col),
        "--at",
        NOW.isoformat(),
    ]
    code, _, err = run(base, capsys)
    assert code == 3 and "no trusted Intel SGX Root CA" in err and "--trust-root" in err
    code, out, err = run(
        [*base, "--trust-root", str(root), "--json", "--report-data", b"nonce".hex()], capsys
    )
    assert code == 0, err
    claims = json.loads(out)["claims"]
    assert claims["simulated"] is True and claims["tcb_status"] == "UpToDate"
    assert claims["body"]["isv_svn"] == "0300"
    assert "platform_instance_id" not in claims  # Processor CA PCKs have none
    code, _, err = run([*base, "--trust-root", str(root), "--report-data", "ff"], capsys)
    assert code == 3 and "REPORTDATA" in err


def test_sgx_report_data_mismatch_is_refused(sim: SimulatedSgxPlatform) -> None:
    quote = sim.quote(sim.report(report_data=b"a"))
    roots = IntelRoots.intel(()).with_root(sim.dcap.root)
    verify_sgx_signatures(quote, roots, NOW, expected_report_data=b"a")
    with pytest.raises(MismatchError, match="REPORTDATA"):
        verify_sgx_signatures(quote, roots, NOW, expected_report_data=b"b")


def test_simulated_sgx_quote_v4_layout_also_verifies(sim: SimulatedSgxPlatform) -> None:
    quote = sim.quote(version=4)
    assert quote.quote.signature_data.wrapped
    roots = IntelRoots.intel(()).with_root(sim.dcap.root)
    assert verify_sgx_signatures(quote, roots, NOW + dt.timedelta(days=1)).pck_ca == "processor"
