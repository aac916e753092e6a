"""The service as an operator and a guest use it: veritee init / serve / resource / policy /
rv / attest / sim / audit, over a real `veritee serve --workers 2` subprocess."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from veritee.appraisal.builtin import load
from veritee.cli.main import main
from veritee.tee.snp.sim import cached_platform

MEASUREMENT = "ab" * 48


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def veritee(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "veritee.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path, dict[str, str]]]:
    root = tmp_path_factory.mktemp("cli")
    data = root / "kbs"
    env = {**os.environ, "VERITEE_CACHE_DIR": str(root / "cache")}
    r = veritee("init", str(data), env=env)
    assert r.returncode == 0, r.stderr
    assert (data / "admin.key").stat().st_mode & 0o077 == 0
    assert (data / "kek.key").stat().st_mode & 0o077 == 0
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "veritee.cli.main",
            "serve",
            "--data-dir",
            str(data),
            "--port",
            str(port),
            "--workers",
            "2",
            "--trust-simulator",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "serve did not start"
        time.sleep(0.2)
    try:
        yield url, data, env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_operator_and_guest_flow(served: tuple[str, Path, dict[str, str]], tmp_path: Path) -> None:
    url, data, env = served
    key = str(data / "admin.key")
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"s3cr3t-for-the-cli")
    r = veritee(
        "resource",
        "put",
        "--kbs",
        url,
        "--admin-key",
        key,
        "apps/db/password",
        str(secret),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    policy = tmp_path / "allow.rego"
    policy.write_text(load("allow_simulated"))
    r = veritee("policy", "set", "--kbs", url, "--admin-key", key, "resource", str(policy), env=env)
    assert r.returncode == 0, r.stderr
    platform = cached_platform(Path(env["VERITEE_CACHE_DIR"]))
    t = platform.tcb
    for name, value in (
        ("snp_launch_measurement", MEASUREMENT),
        ("snp_bootloader", str(t.bootloader)),
        ("snp_microcode", str(t.microcode)),
        ("snp_snp_svn", str(t.snp)),
        ("snp_tee_svn", str(t.tee)),
    ):
        r = veritee("rv", "add", "--kbs", url, "--admin-key", key, name, value, env=env)
        assert r.returncode == 0, r.stderr
    r = veritee("rv", "get", "--kbs", url, "--admin-key", key, "snp_launch_measurement", env=env)
    assert json.loads(r.stdout)["value"] == [MEASUREMENT]

    out = tmp_path / "got.bin"
    r = veritee(
        "attest",
        "--kbs",
        url,
        "--tee",
        "snp-sim",
        "--measurement",
        MEASUREMENT,
        "--resource",
        "apps/db/password",
        "--out",
        str(out),
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == b"s3cr3t-for-the-cli"

    r = veritee(
        "attest",
        "--kbs",
        url,
        "--tee",
        "snp-sim",
        "--measurement",
        "00" * 48,
        "--resource",
        "apps/db/password",
        env=env,
    )
    assert r.returncode == 3
    assert "PolicyDeny" in r.stderr and "snp_launch_measurement" in r.stderr

    r = veritee(
        "resource",
        "put",
        "--kbs",
        url,
        "--admin-key",
        str(tmp_path / "nokey"),
        "a/b/c",
        str(secret),
        env=env,
    )
    assert r.returncode != 0

    r = veritee("audit", "verify", "--data-dir", str(data), env=env)
    assert r.returncode == 0, r.stderr
    assert "intact" in r.stdout


def test_wrong_admin_key_is_refused(
    served: tuple[str, Path, dict[str, str]], tmp_path: Path
) -> None:
    url, _, env = served
    other = tmp_path / "other"
    assert veritee("init", str(other), env=env).returncode == 0
    f = tmp_path / "x"
    f.write_bytes(b"x")
    r = veritee(
        "resource",
        "put",
        "--kbs",
        url,
        "--admin-key",
        str(other / "admin.key"),
        "a/b/c",
        str(f),
        env=env,
    )
    assert r.returncode == 1
    assert "admin credentials" in r.stderr


def test_sim_evidence_matches_the_kbs_snp_shape(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from veritee.tee.snp.kbs import parse_evidence

    monkeypatch.setenv("VERITEE_CACHE_DIR", str(tmp_path))
    assert (
        main(
            [
                "sim",
                "snp",
                "evidence",
                "--report-data",
                "11" * 64,
                "--measurement",
                MEASUREMENT,
                "--debug",
            ]
        )
        == 0
    )
    evidence = json.loads(capsys.readouterr().out)
    assert set(evidence) == {"attestation_report", "cert_chain"}
    report, table = parse_evidence(evidence)
    assert report.report_data == bytes.fromhex("11" * 64)
    assert report.measurement.hex() == MEASUREMENT
    assert report.policy.debug_allowed
    assert table is not None and [e.name for e in table.entries] == ["VCEK", "ASK", "ARK"]


def test_serve_refuses_plain_http_off_loopback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", str(tmp_path / "d")]) == 0
    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0"]) == 1
    assert "plain HTTP" in capsys.readouterr().err


def test_init_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "d")]) == 0
    key = (tmp_path / "d" / "kek.key").read_bytes()
    assert main(["init", str(tmp_path / "d")]) == 1
    assert (tmp_path / "d" / "kek.key").read_bytes() == key


def _auth_count(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text  # a new connection: any worker answers
    for line in text.splitlines():
        if line.startswith('veritee_request_seconds_count{') and 'route="/kbs/v0/auth"' in line \
                and 'status="2xx"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_sum_every_worker(served: tuple[str, Path, dict[str, str]]) -> None:
    url, _, _ = served
    before = _auth_count(url)
    for _ in range(40):  # each on its own connection, so both workers serve some
        r = httpx.post(f"{url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"}, timeout=10)
        assert r.status_code == 200
    # Whichever worker answers /metrics, it reports the requests of both.
    assert {_auth_count(url) for _ in range(6)} == {before + 40}
