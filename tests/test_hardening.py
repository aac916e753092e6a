"""Edge protections: security headers, request ids, rate limits, metrics, TLS, JSON logs."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.kbs_fixtures import Kbs, kbs, sim_platform
from veritee.server.hardening import JsonLogFormatter, RateLimiter, request_id

__all__ = ["kbs", "sim_platform"]


def test_security_headers_and_request_id(kbs: Kbs) -> None:
    r = httpx.get(f"{kbs.url}/healthz", headers={"X-Request-Id": "abc-123"})
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["x-request-id"] == "abc-123"
    evil = httpx.get(f"{kbs.url}/healthz", headers={"X-Request-Id": "a b\tc<script>"})
    assert evil.headers["x-request-id"] != "a b\tc<script>"
    err = httpx.get(f"{kbs.url}/kbs/v0/nope")
    assert err.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in r.headers  # CORS is off by default


def test_metrics_count_attestations_and_releases(kbs: Kbs) -> None:
    from tests.kbs_fixtures import GOOD_MEASUREMENT
    from veritee.attester.client import KbsClient
    from veritee.attester.providers import SimulatedSnpProvider

    with KbsClient(kbs.url) as c:
        c.attest(SimulatedSnpProvider(kbs.platform, measurement=GOOD_MEASUREMENT))
        c.get_resource("default/disk/key")
    text = httpx.get(f"{kbs.url}/metrics").text
    assert 'veritee_attestations_total{outcome="affirming",tee="snp"}' in text
    assert 'veritee_releases_total{outcome="released"}' in text
    assert "veritee_request_seconds_bucket" in text
    assert "default/disk/key" not in text  # resource names are not metric labels


def test_rate_limiter_token_bucket() -> None:
    rl = RateLimiter(rate_per_s=2, burst=3)
    assert [rl.allow("c", "/auth", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = rl.allow("c", "/auth", now=0.0)
    assert wait == pytest.approx(0.5)
    assert rl.allow("other", "/auth", now=0.0) == 0.0  # per client
    assert rl.allow("c", "/auth", now=0.5) == 0.0  # refilled


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from veritee.server.app import build_app
    from veritee.server.bootstrap import init_data_dir, open_service
    from veritee.server.config import ServiceConfig

    data = tmp_path / "d"
    init_data_dir(data)
    cfg = (data / "config.toml").read_text()
    cfg = cfg.replace("rate_limit_per_s = 100", "rate_limit_per_s = 1")
    cfg = cfg.replace("rate_limit_burst = 200", "rate_limit_burst = 2")
    (data / "config.toml").write_text(cfg)
    app = build_app(open_service(ServiceConfig.load(data)))
    with TestClient(app) as client:
        body = {"version": "0.4.0", "tee": "snp", "extra-params": ""}
        codes = [client.post("/kbs/v0/auth", json=body).status_code for _ in range(4)]
        assert codes[:2] == [200, 200]
        assert 429 in codes[2:]
        r = client.post("/kbs/v0/auth", json=body)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert client.get("/healthz").status_code == 200  # only /auth and /attest are limited


def test_json_log_lines_carry_the_request_id() -> None:
    token = request_id.set("rid-42")
    try:
        record = logging.LogRecord(
            "veritee.kbs", logging.INFO, __file__, 1, "attested %s", ("x",), None
        )
        doc = json.loads(JsonLogFormatter().format(record))
    finally:
        request_id.reset(token)
    assert doc["request_id"] == "rid-42" and doc["message"] == "attested x"
    assert "simulator_trusted" not in doc
    marked = json.loads(JsonLogFormatter({"simulator_trusted": True}).format(record))
    assert marked["simulator_trusted"] is True


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return tmp / "tls.pem", tmp / "tls.key"


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    from veritee.cli.main import main

    data = tmp_path / "d"
    assert main(["init", str(data)]) == 0
    cert, _ = _self_signed(data)
    cfg = (data / "config.toml").read_text()
    cfg = cfg.replace('tls_cert = ""', 'tls_cert = "tls.pem"').replace(
        'tls_key = ""', 'tls_key = "tls.key"'
    )
    (data / "config.toml").write_text(cfg)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
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
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    url = f"https://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", verify=str(cert), timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.2)
    try:
        yield url, cert
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_tls_from_config(tls_server: tuple[str, Path]) -> None:
    url, cert = tls_server
    r = httpx.post(
        f"{url}/kbs/v0/auth",
        json={"version": "0.4.0", "tee": "snp", "extra-params": ""},
        verify=str(cert),
    )
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):
        httpx.get(url.replace("https", "http") + "/healthz", timeout=5)


def test_metrics_count_collateral_cache_hits(kbs: Kbs, tmp_path: Path) -> None:
    import re
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from veritee.collateral import CollateralRequest, HttpFetcher

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"collateral"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "max-age=600")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def counts() -> dict[str, float]:
        text = httpx.get(f"{kbs.url}/metrics").text
        return {m[0]: float(m[1]) for m in re.findall(
            r'veritee_collateral_cache_total\{outcome="(\w+)"\} ([0-9.]+)', text)}

    try:
        before = counts()
        fetcher = HttpFetcher(cache_dir=tmp_path / "cache")
        req = CollateralRequest(url=f"http://127.0.0.1:{server.server_address[1]}/x",
                                bundle_path="x", description="test collateral")
        assert fetcher.fetch(req).source.startswith("http:")
        assert fetcher.fetch(req).source.startswith("cache:")
        after = counts()
        assert after["miss"] == before.get("miss", 0) + 1
        assert after["hit"] == before.get("hit", 0) + 1
    finally:
        server.shutdown()
        server.server_close()
