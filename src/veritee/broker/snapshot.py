"""What appraisal reads for a tenant, cached per process and reloaded when it changes.

Every attestation needs the tenant's policies and its sealed reference values;
reading and re-verifying them per request cost more than the evidence check.
Database triggers bump one generation number on any change to those tables
(migration 0004), the guest's session lookup reads that number in the same
statement, and a snapshot is used only while its generation is current. A
change made through any replica, a restore or plain SQL is seen by the next
request everywhere.
"""

from __future__ import annotations

import datetime as dt
import threading
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.orm import Session

from veritee.appraisal import refvalues
from veritee.appraisal.builtin import (
    DEFAULT_ATTESTATION_POLICY_ID,
    DEFAULT_DEVICE_POLICY_ID,
    RESOURCE_POLICY_ID,
    default_attestation_policy,
    default_device_policy,
    default_resource_policy,
)
from veritee.appraisal.policy import RegoPolicy
from veritee.appraisal.provenance import RowSeal
from veritee.store.db import Database
from veritee.store.models import PolicyRow

GENERATION_SQL = "SELECT generation FROM config_generation WHERE id = 1"


@dataclass(frozen=True)
class AppraisalSnapshot:
    tenant: str
    generation: int
    attestation_policy: RegoPolicy
    device_policy: RegoPolicy
    resource_policy: RegoPolicy
    values: tuple[refvalues.StoredValue, ...]  # seals checked; expiry applied per use

    def reference(self, now: dt.datetime) -> refvalues.LoadedValues:
        return refvalues.usable(self.values, now)


def _policy(s: Session, tenant: str, kind: str, ids: tuple[str, ...]) -> RegoPolicy | None:
    for pid in ids:
        row = s.get(PolicyRow, (tenant, kind, pid))
        if row is not None:
            return RegoPolicy.parse(row.policy_id, row.body)
    return None


def load(db: Database, tenant: str, seal: RowSeal) -> AppraisalSnapshot:
    """Read everything in one transaction; the generation first, so the rows are at least
    as new as the number they are filed under."""
    with db.read() as s:
        generation = int(s.execute(text(GENERATION_SQL)).scalar() or 0)
        attestation = _policy(
            s, tenant, "attestation", (DEFAULT_ATTESTATION_POLICY_ID, "default")
        ) or default_attestation_policy()
        device = _policy(
            s, tenant, "attestation", (DEFAULT_DEVICE_POLICY_ID,)
        ) or default_device_policy()
        resource = _policy(s, tenant, "resource", (RESOURCE_POLICY_ID,)) or (
            default_resource_policy()
        )
        values = refvalues.load_sealed(s, seal)
    return AppraisalSnapshot(tenant, generation, attestation, device, resource, values)


class SnapshotCache:
    """Per-process snapshots by tenant; shared by every tenant view of one broker."""

    def __init__(self) -> None:
        self._by_tenant: dict[str, AppraisalSnapshot] = {}
        self._lock = threading.Lock()

    def get(
        self, db: Database, tenant: str, seal: RowSeal, generation: int
    ) -> AppraisalSnapshot:
        cached = self._by_tenant.get(tenant)
        if cached is not None and cached.generation == generation:
            return cached
        fresh = load(db, tenant, seal)
        with self._lock:
            current = self._by_tenant.get(tenant)
            if current is None or current.generation <= fresh.generation:
                self._by_tenant[tenant] = fresh
        return fresh
