"""`veritee verify nvidia` end to end: JSON shape, evidence forms, RIMs, exit codes."""

from __future__ import annotations

import base64
import json
import os
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from tests.device_corpus import GPU_IDS, GPU_SAMPLES, NVIDIA_AT, SWITCH, GpuSample
from veritee.cli.main import main
from veritee.tee.nvidia.sim import SimulatedNvidiaDevice, SimulatedRimSigner


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _chain_file(sample: GpuSample) -> Path:
    return next(p for p in sample.path.iterdir() if "ert" in p.name and p.suffix == ".txt")


def _args(sample: GpuSample, report: Path | None = None, *extra: str) -> list[str]:
    path = report or next(
        p for p in sample.path.iterdir() if "eport" in p.name and "claims" not in p.name
    )
    return [
        "verify",
        "nvidia",
        str(path),
        "--cert-chain",
        str(_chain_file(sample)),
        "--at",
        NVIDIA_AT.isoformat(),
        *extra,
    ]


@pytest.mark.parametrize("sample", GPU_SAMPLES, ids=GPU_IDS)
def test_corpus_json_output(sample: GpuSample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(_args(sample, None, "--nonce", sample.nonce.hex(), "--json"), capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "nvidia"
    claims = doc["claims"]
    assert claims["arch"] == "Hopper"
    assert claims["report_data"] == sample.observed["req_nonce"]
    assert len(claims["measurements"]) == sample.observed["nblocks"]
    if sample.claims_file is not None:
        expected = json.loads(sample.claims_file.read_text())
        assert claims["config"] == expected["config"]
        assert claims["measurements"] == expected["measurements"]


@pytest.mark.skipif(not GPU_SAMPLES, reason="corpus absent")
def test_exit_codes_on_real_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = GPU_SAMPLES[0]
    raw = bytes.fromhex(sample.report_text.decode())
    # base64 text works as well as hex
    b64 = tmp_path / "report.b64"
    b64.write_bytes(base64.b64encode(raw))
    code, _, err = run(_args(sample, b64), capsys)
    assert code == 0, err
    # 2: malformed (truncated)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(raw[:500])
    code, _, err = run(_args(sample, cut), capsys)
    assert code == 2, err
    # 3: a flipped measurement bit
    flipped = bytearray(raw)
    flipped[37 + 8 + 4 + 3 + 60] ^= 0x01
    bad = tmp_path / "flip.bin"
    bad.write_bytes(bytes(flipped))
    code, _, err = run(_args(sample, bad), capsys)
    assert code == 3 and "signature" in err
    # 3: wrong nonce
    code, _, err = run(_args(sample, None, "--nonce", "11" * 32), capsys)
    assert code == 3 and "nonce" in err
    # 3: before the chain was valid
    args = _args(sample)
    args[args.index("--at") + 1] = "2021-06-01T00:00:00Z"
    code, _, err = run(args, capsys)
    assert code == 3 and "not valid before" in err
    # 1: usage (no chain, nonce not 32 bytes)
    code, _, err = run(["verify", "nvidia", str(b64)], capsys)
    assert code == 1 and "--cert-chain" in err
    code, _, _ = run(_args(sample, None, "--nonce", "00" * 16), capsys)
    assert code == 1


@pytest.mark.skipif(SWITCH is None, reason="corpus absent")
def test_nvswitch_evidence_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert SWITCH is not None
    path, expected = SWITCH
    for index, exp in enumerate(expected["devices"]):  # type: ignore[arg-type]
        args = ["verify", "nvidia", str(path), "--device", str(index), "--nonce", exp["nonce"]]
        code, out, err = run([*args, "--at", NVIDIA_AT.isoformat(), "--json"], capsys)
        assert code == 0, err
        claims = json.loads(out)["claims"]
        assert claims["arch"] == "LS10" and len(claims["measurements"]) == exp["nblocks"]
    code, _, err = run(["verify", "nvidia", str(path), "--device", "4"], capsys)
    assert code == 1


def test_simulated_gpu_with_rims(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpu = SimulatedNvidiaDevice.hopper()
        signer = SimulatedRimSigner.generate()
    nonce = os.urandom(32)
    files = {
        "report.hex": gpu.report(nonce).to_bytes().hex().encode(),
        "chain.pem": gpu.chain_pem(),
        "root.pem": gpu.root.public_bytes(serialization.Encoding.PEM),
        "rim-root.pem": signer.root_pem(),
        "driver.xml": signer.sign(
            tag_id="drv", version="550.90.07", golden={1: [gpu.measurements[1]]}
        ),
        "vbios.xml": signer.sign(
            tag_id="vb", version="96.00.9f.00.01", golden={2: [os.urandom(48)]}
        ),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    base = [
        "verify",
        "nvidia",
        str(tmp_path / "report.hex"),
        "--cert-chain",
        str(tmp_path / "chain.pem"),
        "--nonce",
        nonce.hex(),
        "--uuid",
        "GPU-sim-0",
    ]
    code, _, err = run(base, capsys)
    assert code == 3 and "--trust-root" in err
    trusted = [*base, "--trust-root", str(tmp_path / "root.pem")]
    rim = ["--rim-trust-root", str(tmp_path / "rim-root.pem")]
    code, out, err = run(
        [*trusted, *rim, "--driver-rim", str(tmp_path / "driver.xml"), "--json"], capsys
    )
    assert code == 0, err
    claims = json.loads(out)["claims"]
    assert (claims["uuid"], claims["driver_rim"], claims["simulated"]) == ("GPU-sim-0", "drv", True)
    code, _, err = run([*trusted, *rim, "--vbios-rim", str(tmp_path / "vbios.xml")], capsys)
    assert code == 3 and "block 2" in err
    code, _, err = run([*trusted, "--driver-rim", str(tmp_path / "driver.xml")], capsys)
    assert code == 3  # the RIM root is not trusted without --rim-trust-root
