"""``veritee verify tpm`` and ``veritee eventlog show``: output shape and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.tpm_corpus import IMA_DIR, QUOTES, TPM
from veritee.cli.main import main

pytestmark = pytest.mark.skipif(TPM is None or not QUOTES, reason="corpus absent")


@pytest.fixture
def gce(tmp_path: Path) -> dict[str, Path]:
    assert TPM is not None
    d = TPM / "gce-cos85-quote-no-nonce"
    exp = json.loads((d / "expected.json").read_text())
    pcrs = tmp_path / "pcrs.json"
    pcrs.write_text(json.dumps({"sha256": exp["quotes"]["sha256"]["pcrs"]}))
    return {
        "quote": d / "quote-sha256.tpms_attest",
        "sig": d / "quote-sha256.tpmt_signature",
        "ak": d / "ak_pub.tpmt_public",
        "log": d / "event_log.bin",
        "cert": d / "ak_cert.der",
        "pcrs": pcrs,
    }


def _args(g: dict[str, Path], *extra: str) -> list[str]:
    return ["verify", "tpm", "--quote", str(g["quote"]), "--signature", str(g["sig"]),
            "--ak", str(g["ak"]), "--pcrs", str(g["pcrs"]), *extra]


def test_verify_tpm_json_with_event_log_and_ak_certificate(
    gce: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert TPM is not None
    rc = main(_args(gce, "--eventlog", str(gce["log"]), "--ak-cert", str(gce["cert"]),
                    "--tpm-ca", str(TPM.parent / "roots" / "google"),
                    "--at", "2023-01-01T00:00:00Z", "--nonce", "", "--json"))
    out = capsys.readouterr().out
    assert rc == 0, out
    doc = json.loads(out)
    assert doc["tee"] == "tpm"
    claims = doc["claims"]
    assert {f"pcr{i:02d}" for i in range(24)} <= set(claims)
    assert claims["boot"]["secure_boot"] is True
    assert claims["boot"]["kernel_cmdline"].startswith("/syslinux/vmlinuz.A")
    assert claims["nonce_checked"] is True


def test_verify_tpm_human_output_and_pcrs_from_the_log(
    gce: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc = main(_args(gce))
    captured = capsys.readouterr()
    assert rc == 0 and "verified" in captured.out
    assert "freshness was not checked" in captured.err
    # Without --pcrs the log must cover every quoted PCR; this quote selects all 24.
    rc = main(["verify", "tpm", "--quote", str(gce["quote"]), "--signature", str(gce["sig"]),
               "--ak", str(gce["ak"]), "--eventlog", str(gce["log"])])
    assert rc == 2


def test_exit_codes(gce: dict[str, Path], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    bad_sig = tmp_path / "sig"
    raw = bytearray(gce["sig"].read_bytes())
    raw[-1] ^= 1
    bad_sig.write_bytes(bytes(raw))
    assert main(_args({**gce, "sig": bad_sig})) == 3
    assert main(_args(gce, "--nonce", "00")) == 3
    short = tmp_path / "q"
    short.write_bytes(gce["quote"].read_bytes()[:20])
    assert main(_args({**gce, "quote": short})) == 2
    assert main(_args({**gce, "quote": tmp_path / "missing"})) == 1
    assert main(_args(gce, "--nonce", "zz")) == 1
    assert main(_args(gce, "--ak-cert", str(gce["cert"]))) == 1  # needs --tpm-ca
    err = capsys.readouterr().err
    assert "not authentic" in err and "malformed evidence" in err


@pytest.mark.skipif(IMA_DIR is None, reason="corpus absent")
def test_ima_policy_denial_exits_5(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A simulated quote over PCR 10 equal to the real list's aggregate."""
    from veritee.tee.tpm.sim import SimulatedTpm
    from veritee.tee.tpm.structures import PcrSelection, PcrSelectionList, TpmAlg

    assert IMA_DIR is not None
    sim = SimulatedTpm.generate()
    sim.banks[TpmAlg.SHA1][10] = bytes.fromhex("f38695bbd9479953543813fb13bb88235440504e")
    sel = PcrSelectionList((PcrSelection.of(TpmAlg.SHA1, [10]),))
    msg, sig = sim.quote(sel, b"n")
    (tmp_path / "q").write_bytes(msg)
    (tmp_path / "s").write_bytes(sig.to_bytes())
    (tmp_path / "ak").write_bytes(sim.public.to_tpm2b())
    (tmp_path / "p").write_bytes(sim.pcr_banks().to_tpm2_tools(sel))
    base = ["verify", "tpm", "--quote", str(tmp_path / "q"), "--signature", str(tmp_path / "s"),
            "--ak", str(tmp_path / "ak"), "--pcrs", str(tmp_path / "p"), "--nonce", b"n".hex(),
            "--ima", str(IMA_DIR / "binary_runtime_measurements")]
    assert main([*base, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["claims"]["ima"]["entries_verified"] == 922
    (tmp_path / "policy.json").write_text(json.dumps({"digests": {}}))
    assert main([*base, "--ima-policy", str(tmp_path / "policy.json")]) == 5
    assert "IMA policy denied 921 entries" in capsys.readouterr().err
    for pcr10 in (b"\x01" * 20, bytes(20)):  # another value; nothing measured at all
        sim.banks[TpmAlg.SHA1][10] = pcr10
        msg, sig = sim.quote(sel, b"n")
        (tmp_path / "q").write_bytes(msg)
        (tmp_path / "s").write_bytes(sig.to_bytes())
        (tmp_path / "p").write_bytes(sim.pcr_banks().to_tpm2_tools(sel))
        assert main(base) == 3
    msg, sig = sim.quote(sel, b"n")
    (tmp_path / "q").write_bytes(msg)
    (tmp_path / "s").write_bytes(sig.to_bytes())
    (tmp_path / "p").write_bytes(sim.pcr_banks().to_tpm2_tools(sel))
    assert main(base) == 3


def test_eventlog_show(capsys: pytest.CaptureFixture[str]) -> None:
    assert TPM is not None
    log = TPM / "eventlog-gdc-host" / "binary_bios_measurements"
    assert main(["eventlog", "show", str(log), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["startup_locality"] == 3 and doc["banks"] == ["sha256"]
    assert doc["pcrs"]["sha256"]["0"] == (
        "dab77c454bd12c27ff6b6ce1f9adca90b7a330c1cef0b5cd01cb89fb3bd0dffa")
    assert main(["eventlog", "show", str(log)]) == 0
    out = capsys.readouterr().out
    assert "Replayed PCRs" in out and "locality 3" in out
    assert main(["eventlog", "show", str(TPM / "gce-cos85-quote-no-nonce" / "expected.json")]) == 2
