"""TDX quotes: real Intel-signed quotes through the CLI, CCEL replay, a simulated TD (v4 and v5)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.dcap_corpus import TDX_IDS, TDX_SAMPLES, DcapSample, sample
from tests.dcap_sim import ISSUE, NEXT, NOW, bundle, collateral, generate
from veritee.cli.main import main
from veritee.errors import MismatchError
from veritee.tee.dcap.quote import TeeType
from veritee.tee.dcap.sim import SimTcbLevel
from veritee.tee.dcap.verify import IntelRoots
from veritee.tee.tdx.ccel import CcelLog
from veritee.tee.tdx.claims import TdxClaims
from veritee.tee.tdx.quote import TdxQuote
from veritee.tee.tdx.sim import SimulatedTdxPlatform, build_event_log, replayed
from veritee.tee.tdx.verify import replay_rtmrs, verify_tdx_quote, verify_tdx_signatures

needs_samples = pytest.mark.skipif(not TDX_SAMPLES, reason="corpus absent")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def quote_file(s: DcapSample) -> Path:
    return s.path / ("quote.dat" if (s.path / "quote.dat").is_file() else "td-quote.bin")


@pytest.mark.parametrize("s", TDX_SAMPLES, ids=TDX_IDS)
def test_cli_on_every_real_tdx_quote(s: DcapSample, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["verify", "tdx", str(quote_file(s)), "--at", s.full_at.isoformat(), "--json"]
    for d in s.collateral_dirs() if s.has_collateral else ():
        argv += ["--collateral", str(d)]
    code, out, err = run(argv, capsys)
    tcb = s.tcb
    platform = tcb["platform_tcb"] if tcb else None
    if not s.has_collateral:
        assert code == 4, err
        assert f"TDX TCB info for FMSPC {str(s.checks['fmspc']).upper()}" in err
        return
    if isinstance(platform, str):  # the manifest: no TCB level matches
        assert code == 3, err
        assert "TCB level" in err and "TCB_NOT_SUPPORTED" in err
        return
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "tdx"
    claims, report = doc["claims"], s.report
    body = claims["quote"]["body"]
    assert body["mr_td"] == report["mr_td"]
    for i in range(4):
        assert body[f"rtmr_{i}"] == report[f"rtmr{i}"]
    assert body["report_data"] == report["report_data"] == claims["report_data"]
    assert body["tcb_svn"] == report["tee_tcb_svn"]
    assert claims["quote"]["header"]["tee_type"] == "81000000"
    assert claims["quote"]["header"]["version"] == f"0{s.checks['ver']}00"
    if s.checks["ver"] == 5:
        assert (claims["quote"]["type"], claims["quote"]["size"]) == ("0300", "88020000")
        assert body["tee_tcb_svn2"] == report["tee_tcb_svn2"]
    assert isinstance(platform, list)
    assert claims["tcb_status"] == platform[0]
    assert claims["advisory_ids"] == platform[1]
    assert claims["fmspc"] == s.checks["fmspc"]
    attrs = int.from_bytes(bytes.fromhex(str(report["td_attributes"])), "little")
    assert claims["td_attributes"]["debug"] is bool(attrs & 1)
    assert claims["td_attributes"]["septve_disable"] is bool(attrs >> 28 & 1)


@needs_samples
def test_ccel_replay_reproduces_the_real_rtmrs(capsys: pytest.CaptureFixture[str]) -> None:
    s = sample("gcp-cos113-ccel")
    log = CcelLog.from_bytes((s.path / "ccel_data.bin").read_bytes())
    quote = TdxQuote.from_bytes(s.quote)
    assert replay_rtmrs(log) == quote.report.rtmrs
    nonce = (s.path / "nonce.bin").read_bytes().hex()
    code, _, err = run(
        [
            "verify",
            "tdx",
            str(s.path / "quote.dat"),
            "--event-log",
            str(s.path / "ccel_data.bin"),
            "--report-data",
            nonce,
            "--at",
            s.at.isoformat(),
        ],
        capsys,
    )
    assert code == 4, err  # signatures, REPORTDATA and replay pass; TCB info is not in the corpus


@needs_samples
def test_altered_event_log_or_report_data_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = sample("gcp-cos113-ccel")
    data = bytearray((s.path / "ccel_data.bin").read_bytes())
    log = CcelLog.from_bytes(bytes(data))
    digest = log.events[5].digests[0][1]
    data[bytes(data).index(digest)] ^= 1
    bad = tmp_path / "ccel.bin"
    bad.write_bytes(bytes(data))
    code, _, err = run(
        [
            "verify",
            "tdx",
            str(s.path / "quote.dat"),
            "--event-log",
            str(bad),
            "--at",
            s.at.isoformat(),
        ],
        capsys,
    )
    assert code == 3 and "event log replay: RTMR" in err
    code, _, err = run(
        [
            "verify",
            "tdx",
            str(s.path / "quote.dat"),
            "--report-data",
            "01",
            "--at",
            s.at.isoformat(),
        ],
        capsys,
    )
    assert code == 3 and "REPORTDATA" in err


@needs_samples
def test_kbs_evidence_json_with_event_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = sample("gcp-cos113-ccel")
    evidence = {
        "quote": base64.b64encode(s.quote).decode(),
        "cc_eventlog": base64.b64encode((s.path / "ccel_data.bin").read_bytes()).decode(),
    }
    path = tmp_path / "evidence.json"
    path.write_text(json.dumps(evidence))
    code, _, err = run(["verify", "tdx", str(path), "--at", s.at.isoformat()], capsys)
    assert code == 4, err
    evidence["cc_eventlog"] = base64.b64encode(build_event_log([(1, 1, b"x")])).decode()
    path.write_text(json.dumps(evidence))
    code, _, err = run(["verify", "tdx", str(path), "--at", s.at.isoformat()], capsys)
    assert code == 3 and "event log replay" in err


@needs_samples
def test_cli_exit_codes_for_malformed_and_wrong_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x04\x00\x02\x00\x81\x00\x00\x00" + bytes(40))
    assert run(["verify", "tdx", str(junk)], capsys)[0] == 2
    code, _, err = run(["verify", "tdx", str(sample("dcap-qvl-sgx").path / "quote.dat")], capsys)
    assert code == 2 and "verify sgx" in err
    hex_file = tmp_path / "q.hex"
    hex_file.write_text(sample("dcap-qvl-hex-b0c06f-2024").quote.hex())
    code, _, err = run(["verify", "tdx", str(hex_file), "--at", "2025-01-01T00:00:00Z"], capsys)
    assert code == 4, err
    assert run(["verify", "tdx", str(hex_file), "--at", "yesterday"], capsys)[0] == 1


# -- simulated TD ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sim() -> SimulatedTdxPlatform:
    return SimulatedTdxPlatform(generate(TeeType.TDX))


def _roots(p: SimulatedTdxPlatform) -> IntelRoots:
    return IntelRoots.intel(()).with_root(p.dcap.root)


@pytest.mark.parametrize("version", [4, 5])
def test_simulated_td_quote_round_trips_and_verifies(
    sim: SimulatedTdxPlatform, version: int
) -> None:
    events = [(1, 0x80000008, b"firmware"), (2, 0x0D, b"kernel"), (3, 0x0D, b"cmdline")]
    quote = sim.quote(
        sim.report(report_data=b"nonce", rtmrs=replayed(events), td15=version == 5), version=version
    )
    assert TdxQuote.from_bytes(quote.to_bytes()).to_bytes() == quote.to_bytes()
    log = CcelLog.from_bytes(build_event_log(events))
    v = verify_tdx_quote(
        quote, collateral(sim.dcap), _roots(sim), NOW, expected_report_data=b"nonce", event_log=log
    )
    claims = TdxClaims.from_verified(v).to_json()
    assert claims["tcb_status"] == "UpToDate" and claims["simulated"] is True
    assert claims["tdx_module_tcb_status"] == "UpToDate"
    assert [e["index"] for e in claims["uefi_event_logs"]] == [1, 2, 3]  # type: ignore[index, union-attr]
    assert (version == 5) == ("tee_tcb_svn2" in claims["quote"]["body"])  # type: ignore[index, operator]


def test_module_out_of_date_and_td_relaunch_advised(sim: SimulatedTdxPlatform) -> None:
    old_module = bytes([2, 1, 5]) + bytes(13)
    v4 = sim.quote(sim.report(tee_tcb_svn=old_module))
    v = verify_tdx_quote(v4, collateral(sim.dcap), _roots(sim), NOW)
    assert (v.dcap.tcb.status, v.dcap.supplemental.tdx_module_tcb_status) == (
        "OutOfDate",
        "OutOfDate",
    )
    assert v.dcap.tcb.advisory_ids == ("INTEL-SA-01036",)
    assert v.dcap.tcb.tcb_date == dt.datetime(2023, 8, 9, tzinfo=dt.UTC)
    relaunched = bytes([4, 1, 5]) + bytes(13)
    v5 = sim.quote(
        sim.report(tee_tcb_svn=old_module, td15=True, tee_tcb_svn2=relaunched), version=5
    )
    assert verify_tdx_quote(v5, collateral(sim.dcap), _roots(sim), NOW).dcap.tcb.status == (
        "TDRelaunchAdvised"
    )
    still_old = sim.quote(sim.report(tee_tcb_svn=old_module, td15=True), version=5)
    assert verify_tdx_quote(still_old, collateral(sim.dcap), _roots(sim), NOW).dcap.tcb.status == (
        "OutOfDate"
    )


def test_tdx_module_identity_is_checked(sim: SimulatedTdxPlatform) -> None:
    unknown_major = sim.quote(sim.report(tee_tcb_svn=bytes([4, 7, 5]) + bytes(13)))
    with pytest.raises(
        MismatchError, match="TDX module check: the TCB info has no identity TDX_07"
    ):
        verify_tdx_quote(unknown_major, collateral(sim.dcap), _roots(sim), NOW)
    other_signer = sim.dcap.tcb_info_body(
        issue=ISSUE,
        next_update=NEXT,
        module_identities=[
            {
                "id": "TDX_01",
                "mrsigner": "11" * 48,
                "attributes": "00" * 8,
                "attributesMask": "FF" * 8,
                "tcbLevels": [],
            }
        ],
    )
    with pytest.raises(MismatchError, match="MRSIGNERSEAM"):
        verify_tdx_quote(
            sim.quote(),
            collateral(sim.dcap, bundle(sim.dcap, tcb_info=other_signer)),
            _roots(sim),
            NOW,
        )


def test_tdx_components_below_every_level(sim: SimulatedTdxPlatform) -> None:
    levels = [SimTcbLevel(sim.dcap.components, sim.dcap.pcesvn, "UpToDate", (9, 0, 9) + (0,) * 13)]
    tcb = sim.dcap.tcb_info_body(issue=ISSUE, next_update=NEXT, levels=levels)
    with pytest.raises(MismatchError, match="TEE_TCB_SVN 05010500"):
        verify_tdx_quote(
            sim.quote(), collateral(sim.dcap, bundle(sim.dcap, tcb_info=tcb)), _roots(sim), NOW
        )


def test_sgx_tcb_info_cannot_judge_a_td(sim: SimulatedTdxPlatform) -> None:
    tcb = sim.dcap.tcb_info_body(issue=ISSUE, next_update=NEXT, tcb_id="SGX")
    with pytest.raises(MismatchError, match="is for SGX, the quote is TDX"):
        verify_tdx_quote(
            sim.quote(), collateral(sim.dcap, bundle(sim.dcap, tcb_info=tcb)), _roots(sim), NOW
        )


def test_simulated_td_via_cli_with_both_layouts(
    sim: SimulatedTdxPlatform, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "q.bin").write_bytes(sim.quote(sim.report(td15=True), version=5).to_bytes())
    root = tmp_path / "root.pem"
    root.write_bytes(sim.dcap.root.public_bytes(serialization.Encoding.PEM))
    for layout in ("pcs", "json"):
        col = sim.dcap.write_collateral(
            tmp_path / layout, issue=ISSUE, next_update=NEXT, layout=layout
        )
        code, out, err = run(
            [
                "verify",
                "tdx",
                str(tmp_path / "q.bin"),
                "--collateral",
                str(col),
                "--trust-root",
                str(root),
                "--at",
                NOW.isoformat(),
                "--json",
            ],
            capsys,
        )
        assert code == 0, err
        assert json.loads(out)["claims"]["quote"]["type"] == "0300"
    code, _, err = run(
        [
            "verify",
            "tdx",
            str(tmp_path / "q.bin"),
            "--collateral",
            str(col),
            "--trust-root",
            str(root),
            "--at",
            (NEXT + dt.timedelta(hours=1)).isoformat(),
        ],
        capsys,
    )
    assert code == 3
    assert "CRL is stale" in err


def test_replay_refuses_bad_indices_and_missing_sha384() -> None:
    with pytest.raises(MismatchError, match="MR index 9"):
        replay_rtmrs(CcelLog.from_bytes(build_event_log([(9, 1, b"x")])))
    assert replay_rtmrs(CcelLog.from_bytes(build_event_log([(0, 1, b"mrtd")]))) == (bytes(48),) * 4


def test_stage_one_alone_needs_no_collateral(sim: SimulatedTdxPlatform) -> None:
    quote = sim.quote(sim.report(report_data=b"n"))
    verified = verify_tdx_signatures(quote, _roots(sim), NOW, expected_report_data=b"n")
    assert verified.pck_ca == "platform" and verified.simulated
