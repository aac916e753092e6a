"""Tenant isolation: every tenant tries every other tenant's resources, policies, reference
values and admin routes, with its own and with forged credentials; all refused."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.kbs_fixtures import _free_port
from veritee.appraisal.builtin import load
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.audit import iter_rows, tenants, verify_chain
from veritee.server.admin_auth import AdminKeyPair, mint_admin_token
from veritee.server.app import build_app
from veritee.server.bootstrap import init_data_dir, open_service
from veritee.server.config import ServiceConfig
from veritee.server.tenants import add as add_tenant
from veritee.store.db import Database
from veritee.tee.snp.sim import SimulatedSnpPlatform

ERR = "https://github.com/confidential-containers/kbs/errors/"
NAMES = ("default", "acme", "globex")


@dataclass
class Tenant:
    name: str
    url: str
    admin: AdminKeyPair
    measurement: bytes
    secret: bytes

    def headers(self) -> dict[str, str]:
        token = mint_admin_token(
            self.admin.private_key, now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(minutes=5)
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[str, Tenant], SimulatedSnpPlatform, Database]]:
    data = tmp_path_factory.mktemp("tenants") / "kbs"
    init_data_dir(data)
    add_tenant(data, "acme")
    add_tenant(data, "globex")
    service = open_service(ServiceConfig.load(data), trust_simulator=True)
    server = uvicorn.Server(
        uvicorn.Config(build_app(service), host="127.0.0.1", port=_free_port(), log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    base = f"http://127.0.0.1:{server.config.port}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate(rsa_bits=2048)
    world: dict[str, Tenant] = {}
    for name in NAMES:
        key_dir = data if name == "default" else data / "tenants" / name
        t = Tenant(
            name,
            base if name == "default" else f"{base}/t/{name}",
            AdminKeyPair.load(key_dir / "admin.key"),
            hashlib.sha384(name.encode()).digest(),
            f"secret-of-{name}".encode(),
        )
        world[name] = t
        assert (
            httpx.post(
                f"{t.url}/kbs/v0/resource/default/disk/key", content=t.secret, headers=t.headers()
            ).status_code
            == 200
        )
        tcb = platform.tcb
        rvs = {
            "snp_launch_measurement": [t.measurement.hex()],
            "snp_bootloader": [tcb.bootloader],
            "snp_microcode": [tcb.microcode],
            "snp_snp_svn": [tcb.snp],
            "snp_tee_svn": [tcb.tee],
        }
        r = httpx.post(
            f"{t.url}/kbs/v0/reference-value",
            headers=t.headers(),
            json={
                "version": "0.1.0",
                "type": "sample",
                "payload": base64.b64encode(json.dumps(rvs).encode()).decode(),
            },
        )
        assert r.status_code == 200, r.text
        r = httpx.post(
            f"{t.url}/kbs/v0/resource-policy",
            headers=t.headers(),
            json={
                "policy": base64.urlsafe_b64encode(load("allow_simulated").encode())
                .decode()
                .rstrip("=")
            },
        )
        assert r.status_code == 200, r.text
    try:
        yield world, platform, service.db
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        service.db.dispose()


def guest(t: Tenant, platform: SimulatedSnpPlatform, measurement: bytes | None = None) -> KbsClient:
    c = KbsClient(t.url)
    c.attest(SimulatedSnpProvider(platform, measurement=measurement or t.measurement))
    return c


def test_each_tenant_serves_its_own_secret(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    tenants_, platform, _ = world
    for t in tenants_.values():
        assert guest(t, platform).get_resource("default/disk/key") == t.secret


def test_tokens_and_sessions_do_not_cross_tenants(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    tenants_, platform, _ = world
    for a in tenants_.values():
        client = guest(a, platform)
        for b in tenants_.values():
            if a is b:
                continue
            r = httpx.get(
                f"{b.url}/kbs/v0/resource/default/disk/key",
                headers={"Authorization": f"Bearer {client.token}"},
            )
            assert r.status_code == 401 and r.json()["type"] == ERR + "TokenVerifierError", (
                a.name,
                b.name,
            )
            r = httpx.get(
                f"{b.url}/kbs/v0/resource/default/disk/key",
                headers={"Cookie": f"kbs-session-id={client.session_id}"},
            )
            assert r.status_code == 401, (a.name, b.name)
            assert a.secret not in r.content and b.secret not in r.content


def test_reference_values_are_per_tenant(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    tenants_, platform, _ = world
    for a in tenants_.values():
        for b in tenants_.values():
            if a is b:
                continue
            # A guest measured as tenant A's workload is not B's workload.
            client = guest(b, platform, measurement=a.measurement)
            with pytest.raises(KbsRefused) as info:
                client.get_resource("default/disk/key")
            assert info.value.variant == "PolicyDeny"
            got = httpx.get(
                f"{b.url}/kbs/v0/reference-value/snp_launch_measurement", headers=b.headers()
            ).json()
            assert got["value"] == [b.measurement.hex()]


ADMIN_ROUTES = [
    ("POST", "/kbs/v0/resource/default/disk/key"),
    ("DELETE", "/kbs/v0/resource/default/disk/key"),
    ("POST", "/kbs/v0/attestation-policy"),
    ("GET", "/kbs/v0/attestation-policy"),
    ("POST", "/kbs/v0/resource-policy"),
    ("GET", "/kbs/v0/resource-policy"),
    ("POST", "/kbs/v0/reference-value"),
    ("GET", "/kbs/v0/reference-value/snp_launch_measurement"),
    ("GET", "/kbs/v0/reference-values"),
    ("DELETE", "/kbs/v0/reference-value/snp_launch_measurement"),
]


def test_admin_credentials_of_one_tenant_are_refused_by_every_other(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    tenants_, _, db = world
    stranger = AdminKeyPair.generate()
    forged = "Bearer " + mint_admin_token(
        stranger.private_key, now=dt.datetime.now(dt.UTC), ttl=dt.timedelta(minutes=5)
    )
    before = _rows(db)
    for b in tenants_.values():
        for method, path in ADMIN_ROUTES:
            for a in tenants_.values():
                if a is b:
                    continue
                r = httpx.request(method, f"{b.url}{path}", headers=a.headers(), content=b"{}")
                assert r.status_code == 401, (a.name, b.name, method, path)
                assert r.json()["type"] == ERR + "AdminAuthAccess"
            r = httpx.request(
                method, f"{b.url}{path}", headers={"Authorization": forged}, content=b"{}"
            )
            assert r.status_code == 401
    assert _rows(db) == before  # nothing changed anywhere


def _rows(db: Database) -> list[tuple[object, ...]]:
    from sqlalchemy import text

    out: list[tuple[object, ...]] = []
    with db.read() as s:
        for table in ("resources", "policies", "reference_values"):
            out += [tuple(r) for r in s.execute(text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
    return out


def test_policies_are_per_tenant(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    tenants_, platform, _ = world
    acme, globex = tenants_["acme"], tenants_["globex"]
    deny = "package policy\nimport rego.v1\ndefault allow := false\n"
    r = httpx.post(
        f"{acme.url}/kbs/v0/resource-policy",
        headers=acme.headers(),
        json={"policy": base64.urlsafe_b64encode(deny.encode()).decode().rstrip("=")},
    )
    assert r.status_code == 200
    try:
        with pytest.raises(KbsRefused):
            guest(acme, platform).get_resource("default/disk/key")
        assert guest(globex, platform).get_resource("default/disk/key") == globex.secret
        pol = httpx.get(f"{globex.url}/kbs/v0/resource-policy", headers=globex.headers()).json()
        bodies = [base64.urlsafe_b64decode(p["policy"] + "==").decode() for p in pol]
        assert deny not in bodies and load("allow_simulated") in bodies
    finally:
        httpx.post(
            f"{acme.url}/kbs/v0/resource-policy",
            headers=acme.headers(),
            json={
                "policy": base64.urlsafe_b64encode(load("allow_simulated").encode())
                .decode()
                .rstrip("=")
            },
        )


def test_each_tenant_has_its_own_audit_chain(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    _, _, db = world
    assert set(tenants(db)) == set(NAMES)
    for name in NAMES:
        report = verify_chain(db, name)
        assert report.ok and report.records > 0, (name, report)
        for row in iter_rows(db, tenant=name):
            assert row.tenant == name
            if row.action.startswith("admin."):
                assert (name == "default") == (f"admin:{name}:" not in row.actor)


def test_unknown_tenant_is_404(
    world: tuple[dict[str, Tenant], SimulatedSnpPlatform, Database],
) -> None:
    base = world[0]["default"].url
    r = httpx.post(f"{base}/t/nobody/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"})
    assert r.status_code == 404 and r.json()["type"] == ERR + "InvalidRequestPath"


def test_tenant_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.cli.main import main

    assert main(["init", str(tmp_path / "d")]) == 0
    assert main(["tenant", "add", "acme", "--data-dir", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "tenants" / "acme" / "admin.key").stat().st_mode & 0o077 == 0
    assert main(["tenant", "add", "acme", "--data-dir", str(tmp_path / "d")]) == 1
    assert main(["tenant", "add", "Bad_Name", "--data-dir", str(tmp_path / "d")]) == 1
    assert main(["tenant", "add", "default", "--data-dir", str(tmp_path / "d")]) == 1
    assert main(["tenant", "list", "--data-dir", str(tmp_path / "d")]) == 0
    assert "/t/acme/kbs/v0" in capsys.readouterr().out


def test_a_tenant_added_while_serving_is_served_without_restart(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    data = tmp_path / "kbs"
    init_data_dir(data)
    service = open_service(ServiceConfig.load(data), trust_simulator=True)
    try:
        with TestClient(build_app(service)) as client:
            auth = {"version": "0.4.0", "tee": "snp"}
            assert client.post("/t/newco/kbs/v0/auth", json=auth).status_code == 404
            add_tenant(data, "newco")
            time.sleep(1.1)  # unknown names trigger at most one rescan a second
            assert client.post("/t/newco/kbs/v0/auth", json=auth).status_code == 200
            newco = AdminKeyPair.load(data / "tenants" / "newco" / "admin.key")
            token = mint_admin_token(newco.private_key, now=dt.datetime.now(dt.UTC),
                                     ttl=dt.timedelta(minutes=5))
            put = client.post("/t/newco/kbs/v0/resource/default/disk/key", content=b"n",
                              headers={"Authorization": f"Bearer {token}"})
            assert put.status_code == 200, put.text
            # Its key is newco's only: the first party refuses it.
            other = client.post("/kbs/v0/resource/default/disk/key", content=b"n",
                                headers={"Authorization": f"Bearer {token}"})
            assert other.status_code == 401
            # A tenant whose directory is removed stops being served at the next rescan.
            for f in (data / "tenants" / "newco").iterdir():
                f.unlink()
            (data / "tenants" / "newco").rmdir()
            time.sleep(1.1)
            assert client.post("/t/gone/kbs/v0/auth", json=auth).status_code == 404  # rescans
            assert client.post("/t/newco/kbs/v0/auth", json=auth).status_code == 404
    finally:
        service.db.dispose()
