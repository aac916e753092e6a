"""PostgreSQL as the shared store: migrations, and two replicas behaving as one service."""

from __future__ import annotations

import itertools
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, _free_port, _provision
from tests.pg import Postgres, postgres
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.broker.audit import verify_chain
from veritee.server.admin_auth import AdminKeyPair
from veritee.server.app import build_app
from veritee.server.bootstrap import init_data_dir, open_service
from veritee.server.config import ServiceConfig
from veritee.store.db import Database
from veritee.store.models import Base
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["postgres"]


def test_migrations_match_models_on_postgres(postgres: Postgres) -> None:
    db = Database(postgres.createdb("migrations"))
    db.migrate()
    db.migrate()  # idempotent
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    db.dispose()


def _start(data_dir: Path) -> tuple[Kbs, object, threading.Thread]:
    import time

    import uvicorn

    service = open_service(ServiceConfig.load(data_dir), trust_simulator=True)
    server = uvicorn.Server(uvicorn.Config(build_app(service), host="127.0.0.1",
                                           port=_free_port(), log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.config.port
    kbs = Kbs(f"http://127.0.0.1:{port}", data_dir, service, None,  # type: ignore[arg-type]
              AdminKeyPair.load(data_dir / "admin.key"))
    return kbs, server, thread


@pytest.fixture(scope="module")
def replicas(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Kbs, Kbs, SimulatedSnpPlatform]]:
    import shutil

    url = postgres.createdb("replicas")
    root = tmp_path_factory.mktemp("replicas")
    a_dir = root / "a"
    init_data_dir(a_dir, database=url)
    b_dir = root / "b"
    shutil.copytree(a_dir, b_dir)  # a replica runs on a copy: same keys, same config
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        platform = SimulatedSnpPlatform.generate(rsa_bits=2048)
    a, sa, ta = _start(a_dir)
    b, sb, tb = _start(b_dir)
    a.platform = platform
    b.platform = platform
    _provision(a)  # admin writes at A are seen by B
    try:
        yield a, b, platform
    finally:
        for server, thread in ((sa, ta), (sb, tb)):
            server.should_exit = True  # type: ignore[attr-defined]
            thread.join(timeout=10)
        a.service.db.dispose()
        b.service.db.dispose()


def test_a_nonce_from_replica_a_works_once_at_replica_b(
    replicas: tuple[Kbs, Kbs, SimulatedSnpPlatform],
) -> None:
    from veritee.broker.binding import expected_report_data, primary_digest

    a, b, platform = replicas
    client = KbsClient(a.url)
    nonce, _ = client.auth("snp")
    digest = primary_digest(nonce, client.tee_jwk, "")
    evidence = SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT).evidence(
        expected_report_data(digest, 64))
    body = {"runtime-data": {"nonce": nonce, "tee-pubkey": client.tee_jwk.canonical_jwk()},
            "tee-evidence": {"primary_evidence": evidence, "additional_evidence": ""}}
    cookie = {"Cookie": f"kbs-session-id={client.session_id}"}
    first = httpx.post(f"{b.url}/kbs/v0/attest", json=body, headers=cookie, timeout=30)
    assert first.status_code == 200, first.text
    for replica in (a, b):
        again = httpx.post(f"{replica.url}/kbs/v0/attest", json=body, headers=cookie, timeout=30)
        assert again.status_code == 401
        assert "single-use" in again.json()["detail"]
    # The token from B releases the secret at A (bearer), and at B by cookie.
    token = first.json()["token"]
    r = httpx.get(f"{a.url}/kbs/v0/resource/default/disk/key",
                  headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 200
    r = httpx.get(f"{b.url}/kbs/v0/resource/default/disk/key", headers=cookie, timeout=30)
    assert r.status_code == 200


def test_concurrent_flows_across_replicas_and_one_audit_chain(
    replicas: tuple[Kbs, Kbs, SimulatedSnpPlatform],
) -> None:
    a, b, platform = replicas
    errors: list[BaseException] = []

    def flow(i: int) -> None:
        try:
            auth_at, attest_at = (a, b) if i % 2 else (b, a)
            with KbsClient(auth_at.url) as c:
                c.attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT))
                c.base = attest_at.url  # the resource request lands on the other replica
                assert c.get_resource("default/disk/key") == SECRET
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=flow, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors[:3]
    report = verify_chain(a.service.db)
    assert report.ok, report
    assert report.records >= 16 * 2


def test_replay_is_refused_on_either_replica(
    replicas: tuple[Kbs, Kbs, SimulatedSnpPlatform],
) -> None:
    a, b, platform = replicas
    old = KbsClient(a.url).attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT))
    with pytest.raises(KbsRefused) as info:
        KbsClient(b.url).attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT),
                                nonce_override=old.nonce)
    assert "nonce" in info.value.detail


def test_init_with_database_url(postgres: Postgres, tmp_path: Path) -> None:
    from veritee.cli.main import main

    url = postgres.createdb("initcli")
    assert main(["init", str(tmp_path / "d"), "--database", url]) == 0
    config = ServiceConfig.load(tmp_path / "d")
    assert config.db_url == url
    assert main(["audit", "verify", "--data-dir", str(tmp_path / "d")]) == 0
    assert main(["init", str(tmp_path / "e"), "--database", "mysql://x"]) == 1


def test_database_restart_fails_cleanly_and_recovers(
    postgres: Postgres, replicas: tuple[Kbs, Kbs, SimulatedSnpPlatform]
) -> None:
    import time

    a, _, platform = replicas
    before = verify_chain(a.service.db).records
    postgres.stop("fast")
    try:
        r = httpx.post(f"{a.url}/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp",
                                                     "extra-params": ""}, timeout=30)
        assert r.status_code == 503
        assert r.json()["detail"] == "database unavailable, retry later"
        assert "Traceback" not in r.text
        ready = httpx.get(f"{a.url}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["database"] == "unavailable"
    finally:
        postgres.start()
    deadline = time.monotonic() + 30
    while httpx.get(f"{a.url}/readyz", timeout=30).status_code != 200:
        assert time.monotonic() < deadline, "service did not recover"
        time.sleep(0.5)
    with KbsClient(a.url) as c:
        c.attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT))
        assert c.get_resource("default/disk/key") == SECRET
    report = verify_chain(a.service.db)
    assert report.ok and report.records > before


def test_sigkill_of_a_replica_under_load_loses_nothing(postgres: Postgres, tmp_path: Path) -> None:
    """Two `veritee serve` processes on one database; one is SIGKILLed mid-load."""
    import os
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from tests.kbs_fixtures import _provision

    url = postgres.createdb("sigkill")
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    init_data_dir(a_dir, database=url)
    shutil.copytree(a_dir, b_dir)
    env = {**os.environ, "VERITEE_CACHE_DIR": str(tmp_path / "cache")}
    ports = [_free_port(), _free_port()]
    procs = [
        subprocess.Popen([sys.executable, "-m", "veritee.cli.main", "serve", "--data-dir", str(d),
                          "--port", str(p), "--trust-simulator"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        for d, p in ((a_dir, ports[0]), (b_dir, ports[1]))
    ]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    try:
        for u in urls:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{u}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert time.monotonic() < deadline
                time.sleep(0.2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            platform = SimulatedSnpPlatform.generate(rsa_bits=2048)
        admin = Kbs(urls[0], a_dir, None, platform,  # type: ignore[arg-type]
                    AdminKeyPair.load(a_dir / "admin.key"))
        _provision(admin)
        for i in range(20):  # more secrets, written through the replica that will die
            r = httpx.post(f"{urls[1]}/kbs/v0/resource/many/s/{i}", content=f"s{i}".encode(),
                           headers=admin.admin_headers(), timeout=30)
            assert r.status_code == 200

        outcomes: list[str] = []
        stop = threading.Event()

        def guest() -> None:
            while not stop.is_set():
                try:
                    with KbsClient(urls[1]) as c:
                        c.attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT))
                        got = c.get_resource("default/disk/key")
                        outcomes.append("ok" if got == SECRET else "WRONG")
                except (KbsRefused, httpx.HTTPError):
                    outcomes.append("failed")  # the replica died under us: refused, not leaked

        threads = [threading.Thread(target=guest) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(3)
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(timeout=10)
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert "WRONG" not in outcomes and "ok" in outcomes

        # The survivor has every secret and an intact chain; an unattested client gets nothing.
        db = Database(url)
        report = verify_chain(db)
        assert report.ok, report
        from sqlalchemy import func, select

        from veritee.store.models import ResourceRow

        with db.read() as s:
            assert s.execute(select(func.count()).select_from(ResourceRow)).scalar_one() == 21
        db.dispose()
        with KbsClient(urls[0]) as c:
            c.attest(SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT))
            for i in range(20):
                assert c.get_resource(f"many/s/{i}") == f"s{i}".encode()
        r = httpx.get(f"{urls[0]}/kbs/v0/resource/default/disk/key", timeout=30)
        assert r.status_code == 401
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)


def test_generation_triggers_on_postgres(postgres: Postgres) -> None:
    from sqlalchemy import text

    db = Database(postgres.createdb("generation"))
    db.migrate()

    def generation() -> int:
        with db.read() as s:
            return int(s.execute(text("SELECT generation FROM config_generation")).scalar_one())

    seen = [generation()]
    for sql in (
        "INSERT INTO policies (tenant, kind, policy_id, body, sha384, updated_at) "
        "VALUES ('default', 'resource', 'p', 'package policy', 'x', 0)",
        "UPDATE policies SET body = 'package policy\n'",
        "DELETE FROM policies",
        "INSERT INTO reference_values (tenant, name, value_json, expires_at, source, updated_at) "
        "VALUES ('default', 'n', '[]', 0, 's', 0)",
        "TRUNCATE reference_values",
    ):
        with db.write() as s:
            s.execute(text(sql))
        seen.append(generation())
    assert all(b > a for a, b in itertools.pairwise(seen)), seen
    db.dispose()


def test_reference_value_removed_at_one_replica_is_refused_at_the_other(
    replicas: tuple[Kbs, Kbs, SimulatedSnpPlatform],
) -> None:
    a, b, platform = replicas
    provider = SimulatedSnpProvider(platform, measurement=GOOD_MEASUREMENT)
    with KbsClient(a.url) as c:  # A has the values cached now
        c.attest(provider)
        assert c.get_resource("default/disk/key") == SECRET
    removed = httpx.delete(f"{b.url}/kbs/v0/reference-value/snp_launch_measurement",
                           headers=b.admin_headers(), timeout=30)
    assert removed.status_code == 200, removed.text
    try:
        with KbsClient(a.url) as c:
            c.attest(provider)  # a token, but not an affirming one
            with pytest.raises(KbsRefused):
                c.get_resource("default/disk/key")
    finally:
        _provision(b)  # put the module's shared state back
    with KbsClient(a.url) as c:
        c.attest(provider)
        assert c.get_resource("default/disk/key") == SECRET
