"""Policies and reference values are cached per process (broker/snapshot.py) behind a
generation number that database triggers bump. These tests change the rows behind
the API's back, the way a restore or an operator's SQL would, and show that the
very next attestation sees the change: a cache can never keep a deleted reference
value or a replaced policy alive."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.kbs_fixtures import GOOD_MEASUREMENT, SECRET, Kbs, sim_platform, start_kbs
from veritee.attester.client import KbsClient, KbsRefused
from veritee.attester.providers import SimulatedSnpProvider
from veritee.store.db import Database
from veritee.tee.snp.sim import SimulatedSnpPlatform

__all__ = ["sim_platform"]


def _generation(db: Database) -> int:
    with db.read() as s:
        return int(s.execute(text("SELECT generation FROM config_generation")).scalar_one())


def test_triggers_bump_the_generation_on_every_change(tmp_path: Path) -> None:
    db = Database.sqlite(tmp_path / "g.db")
    db.migrate()
    statements = [
        "INSERT INTO policies (tenant, kind, policy_id, body, sha384, updated_at) "
        "VALUES ('default', 'resource', 'p', 'package policy', 'x', 0)",
        "UPDATE policies SET body = 'package policy\n' WHERE policy_id = 'p'",
        "DELETE FROM policies",
        "INSERT INTO reference_values (tenant, name, value_json, expires_at, source, updated_at) "
        "VALUES ('default', 'n', '[]', 0, 's', 0)",
        "UPDATE reference_values SET value_json = '[1]'",
        "DELETE FROM reference_values",
    ]
    seen = [_generation(db)]
    for sql in statements:
        with db.write() as s:
            s.execute(text(sql))
        seen.append(_generation(db))
    assert all(b > a for a, b in itertools.pairwise(seen)), seen
    # Other tables do not invalidate appraisal caches.
    with db.write() as s:
        s.execute(text("DELETE FROM kbs_sessions"))
    assert _generation(db) == seen[-1]
    db.dispose()


@pytest.fixture
def fresh_kbs(tmp_path: Path, sim_platform: SimulatedSnpPlatform) -> Iterator[Kbs]:
    yield from start_kbs(tmp_path, sim_platform)


def _attest_and_fetch(kbs: Kbs) -> bytes:
    with KbsClient(kbs.url) as client:
        client.attest(SimulatedSnpProvider(kbs.platform, measurement=GOOD_MEASUREMENT))
        return client.get_resource("default/disk/key")


def test_reference_values_deleted_by_sql_stop_affirming_at_once(fresh_kbs: Kbs) -> None:
    assert _attest_and_fetch(fresh_kbs) == SECRET  # warms every cache
    with fresh_kbs.service.db.write() as s:
        s.execute(text("DELETE FROM reference_values"))
    with pytest.raises(KbsRefused) as refused:
        _attest_and_fetch(fresh_kbs)
    assert "affirming" in str(refused.value) or "PolicyDeny" in str(refused.value)


def test_resource_policy_replaced_by_sql_applies_at_once(fresh_kbs: Kbs) -> None:
    assert _attest_and_fetch(fresh_kbs) == SECRET
    deny = "package policy\n\nimport rego.v1\n\ndefault allow := false\n"
    with fresh_kbs.service.db.write() as s:
        s.execute(
            text("UPDATE policies SET body = :b WHERE kind = 'resource'"), {"b": deny}
        )
    with pytest.raises(KbsRefused) as refused:
        _attest_and_fetch(fresh_kbs)
    assert "PolicyDeny" in str(refused.value) or "denies" in str(refused.value)


def test_attestation_policy_set_through_the_api_applies_to_the_next_guest(
    fresh_kbs: Kbs,
) -> None:
    assert _attest_and_fetch(fresh_kbs) == SECRET
    never = (
        "package policy\n\nimport rego.v1\n\ndefault executables := 33\n"
        "default hardware := 97\ndefault configuration := 36\n"
    )
    r = fresh_kbs.admin_post(
        "/kbs/v0/attestation-policy",
        json={"policy_id": "default_cpu",
              "policy": base64.urlsafe_b64encode(never.encode()).decode().rstrip("=")},
    )
    assert r.status_code == 200, r.text
    with pytest.raises(KbsRefused):
        _attest_and_fetch(fresh_kbs)
