"""A real KBS on loopback (uvicorn in a thread) for end-to-end tests."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import text

from veritee.server.admin_auth import AdminKeyPair, mint_admin_token
from veritee.server.app import build_app
from veritee.server.bootstrap import Service, init_data_dir, open_service
from veritee.server.config import ServiceConfig
from veritee.tee.snp.sim import SimulatedSnpPlatform

GOOD_MEASUREMENT = bytes.fromhex("5a" * 48)
SECRET = b"the-disk-key-0123456789"


@dataclass
class Kbs:
    url: str
    data_dir: Path
    service: Service
    platform: SimulatedSnpPlatform
    admin: AdminKeyPair

    def admin_headers(self, **kw: object) -> dict[str, str]:
        token = mint_admin_token(
            self.admin.private_key, now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(minutes=5), **kw
        )  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}"}

    def admin_post(self, path: str, **kw: object) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers=self.admin_headers(), timeout=30, **kw)  # type: ignore[arg-type]

    def snapshot(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every table except the audit log."""
        out = {}
        with self.service.db.read() as s:
            for table in ("kbs_sessions", "resources", "policies", "reference_values"):
                out[table] = [tuple(r) for r in s.execute(text(f"SELECT * FROM {table}"))]
        return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_kbs(tmp: Path, platform: SimulatedSnpPlatform, *, strict: bool = False) -> Iterator[Kbs]:
    data_dir = tmp / "kbs"
    init_data_dir(data_dir)
    if strict:
        cfg = (data_dir / "config.toml").read_text()
        (data_dir / "config.toml").write_text(
            cfg.replace("strict_status_codes = false", "strict_status_codes = true")
        )
    service = open_service(ServiceConfig.load(data_dir), trust_simulator=True)
    app = build_app(service)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    kbs = Kbs(
        f"http://127.0.0.1:{port}",
        data_dir,
        service,
        platform,
        AdminKeyPair.load(data_dir / "admin.key"),
    )
    _provision(kbs)
    try:
        yield kbs
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.db.dispose()


def _provision(kbs: Kbs) -> None:
    tcb = kbs.platform.tcb
    assert kbs.admin_post("/kbs/v0/resource/default/disk/key", content=SECRET).status_code == 200
    rvs = {
        "snp_launch_measurement": [GOOD_MEASUREMENT.hex()],
        "snp_bootloader": [tcb.bootloader],
        "snp_microcode": [tcb.microcode],
        "snp_snp_svn": [tcb.snp],
        "snp_tee_svn": [tcb.tee],
    }
    r = kbs.admin_post(
        "/kbs/v0/reference-value",
        json={
            "version": "0.1.0",
            "type": "sample",
            "payload": base64.b64encode(json.dumps(rvs).encode()).decode(),
        },
    )
    assert r.status_code == 200, r.text
    set_resource_policy(kbs, "allow_simulated")


def set_resource_policy(kbs: Kbs, name_or_text: str) -> None:
    from veritee.appraisal.builtin import PRESETS, load

    body = load(name_or_text) if name_or_text in PRESETS else name_or_text
    r = kbs.admin_post(
        "/kbs/v0/resource-policy",
        json={"policy": base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")},
    )
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def sim_platform() -> SimulatedSnpPlatform:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SimulatedSnpPlatform.generate(rsa_bits=2048)


@pytest.fixture(scope="module")
def kbs(
    tmp_path_factory: pytest.TempPathFactory, sim_platform: SimulatedSnpPlatform
) -> Iterator[Kbs]:
    yield from start_kbs(tmp_path_factory.mktemp("kbs"), sim_platform)
