"""`veritee verify nitro` end to end: JSON shape, carriers, exit codes."""

from __future__ import annotations

import base64
import datetime as dt
import json
import warnings
from pathlib import Path

import pytest

from tests.device_corpus import NITRO_IDS, NITRO_SAMPLES, NitroSample
from veritee.cli.main import main
from veritee.tee.nitro.sim import SimulatedNitroHypervisor

NOW = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _args(sample: NitroSample, path: Path | None = None, *extra: str) -> list[str]:
    doc = path or sample.path / "attestation_doc.cose"
    return ["verify", "nitro", str(doc), "--at", sample.at.isoformat(), *extra]


@pytest.mark.parametrize("sample", NITRO_SAMPLES, ids=NITRO_IDS)
def test_corpus_json_output(sample: NitroSample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(_args(sample, None, "--json"), capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "nitro"
    obs = sample.observed
    assert doc["claims"]["module_id"] == obs["module_id"]
    assert doc["claims"]["pcr0"] == obs["pcr0"]
    assert doc["claims"]["timestamp"] == obs["timestamp_ms"]


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_carriers_base64_and_tls_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for sample in NITRO_SAMPLES:
        b64 = tmp_path / f"{sample.name}.b64"
        b64.write_bytes(base64.b64encode(sample.cose) + b"\n")
        code, out, err = run(_args(sample, b64, "--json"), capsys)
        assert code == 0, err
    san = next(s for s in NITRO_SAMPLES if (s.path / "tls_cert_with_doc_in_san.pem").is_file())
    code, out, err = run(_args(san, san.path / "tls_cert_with_doc_in_san.pem"), capsys)
    assert code == 0, err
    assert "TLS key bound" in out


@pytest.mark.skipif(not NITRO_SAMPLES, reason="corpus absent")
def test_exit_codes_on_real_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(s for s in NITRO_SAMPLES if s.name == "evervault-2022-10-13-nondebug")
    # 2: malformed (truncated)
    cut = tmp_path / "cut.cose"
    cut.write_bytes(sample.cose[:-10])
    code, _, err = run(_args(sample, cut), capsys)
    assert code == 2, err
    # 3: one flipped signature bit
    flipped = bytearray(sample.cose)
    flipped[-5] ^= 0x10
    bad = tmp_path / "flip.cose"
    bad.write_bytes(bytes(flipped))
    code, _, err = run(_args(sample, bad), capsys)
    assert code == 3
    assert "signature" in err
    # 3: wrong nonce, then the right one
    nonce = str(sample.observed["nonce"])
    code, _, err = run(_args(sample, None, "--nonce", "00" * 32), capsys)
    assert code == 3 and "nonce" in err
    code, _, err = run(_args(sample, None, "--nonce", nonce), capsys)
    assert code == 0, err
    # 3: an hour after the leaf expired
    args = _args(sample)
    args[args.index("--at") + 1] = "2022-10-13T12:58:03Z"
    code, _, err = run(args, capsys)
    assert code == 3 and "expired" in err
    # 1: usage
    code, _, _ = run(_args(sample, None, "--nonce", "xyz"), capsys)
    assert code == 1


def test_simulator_needs_its_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hv = SimulatedNitroHypervisor.generate(now=NOW)
    doc = tmp_path / "sim.cose"
    doc.write_bytes(hv.document(nonce=b"\x07" * 16).to_bytes())
    root = tmp_path / "root.pem"
    root.write_bytes(hv.root_pem())
    base = ["verify", "nitro", str(doc), "--at", NOW.isoformat()]
    code, _, err = run(base, capsys)
    assert code == 3 and "pinned AWS Nitro root" in err
    code, out, err = run([*base, "--trust-root", str(root), "--nonce", "07" * 16, "--json"], capsys)
    assert code == 0, err
    assert json.loads(out)["claims"]["simulated"] is True
    code, _, err = run([*base, "--trust-root", str(root)], capsys)
    assert code == 0 and "SIMULATOR" in err
