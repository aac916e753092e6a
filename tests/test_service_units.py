"""Store, audit chain and HTTP edge: migrations match the models, tampering is named,
arbitrary client input never yields a 5xx."""

from __future__ import annotations

import json
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from veritee.broker import audit
from veritee.broker.audit import AuditEvent, verify_chain
from veritee.server.app import build_app
from veritee.server.bootstrap import init_data_dir, open_service
from veritee.server.config import ServiceConfig
from veritee.store.db import Database
from veritee.store.models import Base


def test_migrations_match_the_models(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "m.db")
    db.migrate()
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_wal_mode(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "w.db")
    db.migrate()
    with db.read() as s:
        assert s.connection().exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def _chain(tmp_path: Path, n: int = 5) -> Path:
    db = Database.sqlite(tmp_path / "a.db")
    db.migrate()
    for i in range(n):
        audit.record(
            db,
            AuditEvent(actor=f"a{i}", action="attest", decision="allow", detail={"i": i}),
            1000 + i,
        )
    report = verify_chain(db)
    assert report.ok and report.records == n
    db.dispose()
    return tmp_path / "a.db"


@pytest.mark.parametrize(
    ("sql", "broken"),
    [
        ("UPDATE audit_log SET actor='mallory' WHERE seq=3", 3),
        ("UPDATE audit_log SET detail_json='{\"i\": 9}' WHERE seq=2", 2),
        ("DELETE FROM audit_log WHERE seq=2", 2),
        ("UPDATE audit_log SET prev_hash='00' WHERE seq=4", 4),
        ("UPDATE audit_log SET detail_json='nope' WHERE seq=5", 5),
    ],
)
def test_audit_tampering_is_named(tmp_path: Path, sql: str, broken: int) -> None:
    path = _chain(tmp_path)
    con = sqlite3.connect(path)
    con.execute(sql)
    con.commit()
    con.close()
    report = verify_chain(Database.sqlite(path))
    assert not report.ok
    assert report.first_broken == broken


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    data = tmp_path_factory.mktemp("svc") / "kbs"
    init_data_dir(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = build_app(open_service(ServiceConfig.load(data), trust_simulator=True))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=20,
)
attestations = st.fixed_dictionaries(
    {},
    optional={
        "runtime-data": st.fixed_dictionaries(
            {}, optional={"nonce": json_values, "tee-pubkey": json_values}
        ),
        "tee-evidence": st.fixed_dictionaries(
            {}, optional={"primary_evidence": json_values, "additional_evidence": json_values}
        ),
        "init-data": json_values,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.one_of(json_values, st.binary(max_size=64).map(lambda b: b.hex())))
def test_auth_never_5xx(client: TestClient, body: object) -> None:
    r = client.post("/kbs/v0/auth", content=json.dumps(body))
    assert r.status_code < 500, r.text


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=attestations)
def test_attest_never_5xx(client: TestClient, body: dict[str, object]) -> None:
    r = client.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp", "extra-params": ""})
    assert r.status_code == 200
    session = r.cookies["kbs-session-id"]
    r = client.post(
        "/kbs/v0/attest", content=json.dumps(body), headers={"Cookie": f"kbs-session-id={session}"}
    )
    assert r.status_code < 500, r.text
    assert r.status_code != 200


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.lists(st.text(alphabet="abc./-_%~", min_size=1, max_size=8), min_size=1, max_size=4),
    token=st.text(max_size=40),
)
def test_resource_route_never_5xx(client: TestClient, path: list[str], token: str) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token.isascii() and token.strip() else {}
    r = client.get("/kbs/v0/resource/" + "/".join(path), headers=headers)
    assert r.status_code < 500, r.text


def test_expired_sessions_are_swept(tmp_path: Path) -> None:
    import asyncio
    import datetime as dt

    from veritee.server import app as app_module
    from veritee.store.models import SessionRow

    data = tmp_path / "kbs"
    init_data_dir(data)
    service = open_service(ServiceConfig.load(data))
    broker = service.broker
    broker.auth({"version": "0.4.0", "tee": "snp", "extra-params": ""})
    real = broker.clock
    broker.clock = lambda: real() + dt.timedelta(minutes=10)

    def remaining() -> int:
        with service.db.read() as s:
            return int(s.query(SessionRow).count())

    async def run_until_swept() -> None:
        task = asyncio.create_task(app_module._sweep_sessions(service, 0.01))
        try:
            for _ in range(1000):  # bounded: at most ~10 s on a slow machine
                if remaining() == 0:
                    return
                await asyncio.sleep(0.01)
        finally:
            task.cancel()

    assert remaining() == 1
    asyncio.run(run_until_swept())
    assert remaining() == 0


@pytest.mark.parametrize("value", ["true", "-2", "1.5", '"four"', "257"])
def test_guest_threads_must_be_a_small_integer(tmp_path: Path, value: str) -> None:
    from veritee.errors import ConfigError

    data = tmp_path / "kbs"
    init_data_dir(data)
    config = data / "config.toml"
    config.write_text(config.read_text().replace("guest_threads = -1", f"guest_threads = {value}"))
    with pytest.raises(ConfigError, match="guest_threads"):
        ServiceConfig.load(data)


def test_guest_threads_default_and_override() -> None:
    from veritee.server.guest import IO_THREADS, default_threads

    assert default_threads(local_only=True, configured=-1) == 0  # inline on the event loop
    assert default_threads(local_only=False, configured=-1) == IO_THREADS
    assert default_threads(local_only=True, configured=3) == 3
    assert default_threads(local_only=False, configured=0) == 0


@pytest.mark.parametrize("threads", [0, 3])
def test_guest_routes_answer_inline_and_on_threads(tmp_path: Path, threads: int) -> None:
    data = tmp_path / "kbs"
    init_data_dir(data)
    config = data / "config.toml"
    text = config.read_text().replace("guest_threads = -1", f"guest_threads = {threads}")
    config.write_text(text)
    service = open_service(ServiceConfig.load(data))
    with TestClient(build_app(service)) as client:
        ok = client.post("/kbs/v0/auth", json={"version": "0.4.0", "tee": "snp"})
        assert ok.status_code == 200 and len(ok.json()["nonce"]) == 44
        assert ok.headers["set-cookie"].startswith("kbs-session-id=")
        assert ok.headers["x-content-type-options"] == "nosniff"  # edge middleware applies
        old = client.post("/kbs/v0/auth", json={"version": "0.3.0", "tee": "snp"})
        assert old.status_code == 401 and "0.4.0" in old.json()["detail"]
        assert client.get("/kbs/v0/auth").status_code == 405
        no_session = client.get("/kbs/v0/resource/a/b/c")
        assert no_session.status_code == 401
        assert no_session.json()["type"].endswith("TokenNotFound")
    service.db.dispose()


def _rehash_everything_after(path: Path, seq: int) -> None:
    """What an attacker with write access does: change a record, recompute the chain."""
    db = Database.sqlite(path)
    rows = list(audit.iter_rows(db))
    prev = rows[seq - 2].hash if seq > 1 else audit.GENESIS
    con = sqlite3.connect(path)
    for row in rows[seq - 1 :]:
        actor = "mallory" if row.seq == seq else row.actor
        fields = audit._fields(row)
        fields["actor"] = actor
        new = audit._record_hash(prev, fields)
        con.execute("UPDATE audit_log SET actor=?, prev_hash=?, hash=? WHERE seq=?",
                    (actor, prev, new, row.seq))
        prev = new
    con.commit()
    con.close()
    db.dispose()


def test_an_anchor_detects_truncation_and_rehashing(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    db = Database.sqlite(path)
    anchor = audit.head(db)
    assert anchor is not None and anchor.seq == 5
    assert audit.check_anchor(db, anchor) is None
    assert audit.Anchor.parse(str(anchor)) == anchor
    assert audit.Anchor.parse(f"{anchor.seq}:{anchor.hash}") == anchor  # default tenant

    # Deleting the newest records leaves a chain that verifies: only the anchor tells.
    con = sqlite3.connect(path)
    con.execute("DELETE FROM audit_log WHERE seq >= 4")
    con.commit()
    con.close()
    assert verify_chain(db).ok
    problem = audit.check_anchor(db, anchor)
    assert problem is not None and "truncated" in problem and "ends at record 3" in problem
    db.dispose()


def test_an_anchor_detects_a_rewritten_and_rehashed_record(tmp_path: Path) -> None:
    path = _chain(tmp_path)
    db = Database.sqlite(path)
    anchor = audit.head(db)
    assert anchor is not None
    _rehash_everything_after(path, 2)
    assert verify_chain(db).ok  # internally consistent again
    problem = audit.check_anchor(db, anchor)
    assert problem is not None and "rewritten" in problem
    db.dispose()


@pytest.mark.parametrize("text", ["", "5", "x:5:ab", "default:0:" + "a" * 64, "1:" + "A" * 64])
def test_malformed_anchors_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="anchor"):
        audit.Anchor.parse(text)


def test_cli_audit_head_and_expect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from veritee.cli.main import main

    data = tmp_path / "kbs"
    init_data_dir(data)
    db = Database(ServiceConfig.load(data).db_url)
    for i in range(3):
        audit.record(db, AuditEvent(actor=f"a{i}", action="attest", decision="allow"), 1000 + i)
    assert main(["audit", "head", "--data-dir", str(data)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("default:3:")
    assert main(["audit", "verify", "--data-dir", str(data), "--expect", line]) == 0
    with db.write() as s:
        s.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    assert main(["audit", "verify", "--data-dir", str(data), "--expect", line]) == 3
    assert main(["audit", "verify", "--data-dir", str(data), "--expect", "nonsense"]) != 0
    db.dispose()
