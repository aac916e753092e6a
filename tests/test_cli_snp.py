"""`veritee verify snp` end to end: exit codes, JSON, collateral sources, KDS over loopback."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from tests.conftest import SNP_IDS, SNP_SAMPLES, SnpSample
from veritee.cli.main import main
from veritee.tee.snp.certtable import GUID_VCEK, CertEntry, CertTable
from veritee.tee.snp.sim import SimulatedSnpPlatform


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def corpus_args(sample: SnpSample) -> list[str]:
    vek = "vlek.der" if sample.observed["endorsement_key"] == "VLEK" else "vcek.der"
    return [
        "verify",
        "snp",
        str(sample.path / "report.bin"),
        "--vek-placeholder",
        str(sample.path / vek),
        "--collateral",
        str(sample.roots.parent),
        "--at",
        sample.at.isoformat(),
    ]


def _args(sample: SnpSample, *extra: str) -> list[str]:
    args = corpus_args(sample)
    args[args.index("--vek-placeholder")] = "--vcek"
    return [*args, *extra]


@pytest.mark.parametrize("sample", SNP_SAMPLES, ids=SNP_IDS)
def test_corpus_json_output(sample: SnpSample, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(_args(sample, "--json"), capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["tee"] == "snp"
    claims = doc["claims"]
    obs = sample.observed
    for name in ("measurement", "report_data", "chip_id"):
        assert claims[name] == obs[name]
    assert claims["policy_debug_allowed"] is bool(int(str(obs["policy"]), 16) >> 19 & 1)
    assert {
        "reported_tcb_bootloader",
        "reported_tcb_tee",
        "reported_tcb_snp",
        "reported_tcb_microcode",
    } <= set(claims)


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_exit_codes_on_real_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(s for s in SNP_SAMPLES if s.name == "virtee-milan")
    # 2: malformed (truncated)
    cut = tmp_path / "cut.bin"
    cut.write_bytes(sample.report[:1000])
    args = _args(sample)
    args[2] = str(cut)
    code, _, err = run(args, capsys)
    assert code == 2
    assert "1184" in err
    # 3: one flipped measurement bit
    flipped = bytearray(sample.report)
    flipped[0x90] ^= 0x80
    bad = tmp_path / "flip.bin"
    bad.write_bytes(bytes(flipped))
    args[2] = str(bad)
    code, _, err = run(args, capsys)
    assert code == 3
    assert "signature" in err
    # 3: report data mismatch
    code, _, err = run(_args(sample, "--report-data", "00" * 64), capsys)
    assert code == 3
    assert "REPORT_DATA" in err
    # 3: expired at --at
    args = _args(sample)
    args[args.index("--at") + 1] = "2031-01-01T00:00:00Z"
    code, _, err = run(args, capsys)
    assert code == 3
    assert "expired" in err
    # 4: no VCEK anywhere, no fetching
    code, _, err = run(
        [
            "verify",
            "snp",
            str(sample.path / "report.bin"),
            "--collateral",
            str(tmp_path),
            "--at",
            sample.at.isoformat(),
        ],
        capsys,
    )
    assert code == 4
    assert "--fetch" in err
    # 1: usage errors
    code, _, _ = run(
        ["verify", "snp", str(sample.path / "report.bin"), "--certs", "x", "--vcek", "y"], capsys
    )
    assert code == 1
    code, _, _ = run(
        ["verify", "snp", str(sample.path / "report.bin"), "--at", "yesterday"], capsys
    )
    assert code == 1
    code, _, _ = run(["verify", "snp", "--no-such-option"], capsys)
    assert code == 1


@pytest.mark.skipif(not SNP_SAMPLES, reason="corpus absent")
def test_hex_input_and_certs_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sample = next(s for s in SNP_SAMPLES if s.name == "virtee-milan")
    assert (sample.path / "report_milan.hex").is_file()
    certs = tmp_path / "certs"
    certs.mkdir()
    shutil.copy(sample.path / "vcek.der", certs / "vcek.der")
    shutil.copy(sample.roots, certs / "cert_chain.pem")
    code, out, err = run(
        [
            "verify",
            "snp",
            str(sample.path / "report_milan.hex"),
            "--certs",
            str(certs),
            "--at",
            sample.at.isoformat(),
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out)["claims"]["measurement"] == sample.observed["measurement"]


# -- simulator and the certificate table ---------------------------------------------------


@pytest.fixture
def sim_files(sim_milan: SimulatedSnpPlatform, tmp_path: Path) -> Path:
    report = sim_milan.report(report_data=b"\x11" * 48, measurement=b"\x22" * 48)
    (tmp_path / "report.bin").write_bytes(report.to_bytes())
    (tmp_path / "vcek.der").write_bytes(sim_milan.vcek_der())
    (tmp_path / "cert_chain.pem").write_bytes(sim_milan.cert_chain_pem())
    (tmp_path / "ark.pem").write_bytes(sim_milan.ark_pem())
    table = CertTable((CertEntry(GUID_VCEK, sim_milan.vcek_der()),)).to_bytes()
    (tmp_path / "extended.bin").write_bytes(report.to_bytes() + table)
    return tmp_path


def test_simulator_needs_explicit_trust_root(
    sim_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = [
        "verify",
        "snp",
        str(sim_files / "report.bin"),
        "--certs",
        str(sim_files),
        "--at",
        "2026-01-01T00:00:00Z",
    ]
    code, _, err = run(base, capsys)
    assert code == 3
    assert "pinned AMD ARK" in err
    assert "--trust-root" in err
    code, out, err = run(
        [*base, "--trust-root", str(sim_files / "ark.pem"), "--json", "--report-data", "11" * 48],
        capsys,
    )
    assert code == 0, err
    claims = json.loads(out)["claims"]
    assert claims["measurement"] == "22" * 48
    assert claims["simulated"] is True


def test_vcek_from_extended_report_cert_table(
    sim_files: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chain_dir = sim_files / "chain"
    chain_dir.mkdir()
    shutil.copy(sim_files / "cert_chain.pem", chain_dir / "cert_chain.pem")
    code, _out, err = run(
        [
            "verify",
            "snp",
            str(sim_files / "extended.bin"),
            "--collateral",
            str(chain_dir),
            "--trust-root",
            str(sim_files / "ark.pem"),
            "--at",
            "2026-01-01T00:00:00Z",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err


# -- AMD KDS over loopback ------------------------------------------------------------------


class _Kds:
    def __init__(self, platform: SimulatedSnpPlatform, crl: bytes) -> None:
        self.platform = platform
        self.crl = crl
        self.requests: list[str] = []


@pytest.fixture
def kds(sim_milan: SimulatedSnpPlatform) -> Iterator[tuple[str, _Kds]]:
    p = sim_milan
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(p.ark.subject)
        .last_update(dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        .next_update(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .sign(p.ark_key, hashes.SHA384(), rsa_padding=pss)
        .public_bytes(serialization.Encoding.DER)
    )
    state = _Kds(p, crl)
    tcb = p.tcb
    vcek_path = (
        f"/vcek/v1/Milan/{p.chip_id.hex()}?blSPL={tcb.bootloader}&teeSPL={tcb.tee}"
        f"&snpSPL={tcb.snp}&ucodeSPL={tcb.microcode}"
    )
    routes = {
        vcek_path: p.vcek_der(),
        "/vcek/v1/Milan/cert_chain": p.cert_chain_pem(),
        "/vcek/v1/Milan/crl": crl,
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            body = routes.get(self.path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=3600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_from_kds_is_opt_in_and_cached(
    kds: tuple[str, _Kds],
    sim_files: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, state = kds
    monkeypatch.setenv("VERITEE_KDS_URL", url)
    monkeypatch.setenv("VERITEE_CACHE_DIR", str(tmp_path / "cache"))
    base = [
        "verify",
        "snp",
        str(sim_files / "report.bin"),
        "--trust-root",
        str(sim_files / "ark.pem"),
        "--at",
        "2026-01-01T00:00:00Z",
        "--json",
    ]
    code, _, err = run(base, capsys)
    assert code == 4
    assert not state.requests
    code, _, err = run([*base, "--fetch"], capsys)
    assert code == 0, err
    assert len(state.requests) == 3  # VCEK, cert_chain, CRL
    code, _out, err = run([*base, "--fetch"], capsys)
    assert code == 0, err
    assert len(state.requests) == 3  # all fresh in the cache: no new request


def test_fetch_404_is_collateral_unavailable(
    kds: tuple[str, _Kds],
    tmp_path: Path,
    sim_milan: SimulatedSnpPlatform,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url, _state = kds
    monkeypatch.setenv("VERITEE_KDS_URL", url)
    monkeypatch.setenv("VERITEE_CACHE_DIR", str(tmp_path / "cache"))
    from dataclasses import replace

    other_tcb = replace(sim_milan.tcb, snp=sim_milan.tcb.snp + 1)
    (tmp_path / "r.bin").write_bytes(sim_milan.report(tcb=other_tcb).to_bytes())
    code, _, err = run(
        ["verify", "snp", str(tmp_path / "r.bin"), "--fetch", "--at", "2026-01-01T00:00:00Z"],
        capsys,
    )
    assert code == 4
    assert "404" in err


def test_installed_console_script(sim_files: Path) -> None:
    exe = Path(sys.executable).parent / "veritee"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    proc = subprocess.run(
        [
            str(exe),
            "verify",
            "snp",
            str(sim_files / "report.bin"),
            "--certs",
            str(sim_files),
            "--trust-root",
            str(sim_files / "ark.pem"),
            "--at",
            "2026-01-01T00:00:00Z",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tee"] == "snp"
    proc = subprocess.run(
        [str(exe), "verify", "snp", str(sim_files / "nope.bin")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "cannot read" in proc.stderr
