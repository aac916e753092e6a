"""KEK rotation: move every stored secret's data key to a new KEK, online.

Each secret is one row (kek_id, wrapped_dek, nonce, ciphertext). Rotation
rewrites only ``kek_id`` and ``wrapped_dek`` of a row, in one UPDATE, so a row
is always either entirely under the old KEK or entirely under the new one, and
a service holding both (a :class:`~veritee.broker.keyring.MultiKeyring`) can
open every secret at every moment. The nonce, the ciphertext and
``updated_at`` are never touched: the secret itself did not change.

Rows are read in small batches, re-wrapped outside any transaction (HSM calls
hold no database lock), and written back in one write transaction per batch
with a compare-and-swap on the old wrapped key: a secret replaced by an admin
meanwhile is left alone (it was sealed under the primary KEK anyway). Because
the selection is "every row not yet under the new KEK", an interrupted
rotation is finished by running it again, and a finished one re-wraps nothing.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from sqlalchemy import CursorResult, func, select, tuple_, update

from veritee.broker import audit
from veritee.broker.audit import AuditEvent
from veritee.broker.kbs import ResourcePath
from veritee.broker.keyring import Keyring, MultiKeyring, rewrap_dek
from veritee.clock import utcnow
from veritee.errors import ConfigError, VeriteeError
from veritee.store.db import Database
from veritee.store.models import DEFAULT_TENANT, ResourceRow

__all__ = ["DEFAULT_BATCH", "RotationStalled", "kek_inventory", "rotate_kek"]

log = logging.getLogger("veritee.rotation")

DEFAULT_BATCH: Final = 50
# Passes over the table before giving up on rows that keep appearing under an
# old KEK (a replica that still seals with the old KEK as its primary).
_MAX_PASSES: Final = 3
AUDIT_ACTION: Final = "admin.rotate_kek"


class RotationStalled(ConfigError):
    """Secrets keep being written under an old KEK while rotating away from it."""

    code = "keyring.rotation_stalled"


@dataclass
class _Count:
    """Secrets re-wrapped so far, kept outside the loop so a failure can report it."""

    done: int = 0


@dataclass(frozen=True)
class _Pending:
    path: str
    kek_id: str
    wrapped_dek: bytes
    tenant: str = DEFAULT_TENANT


def kek_inventory(db: Database) -> dict[str, int]:
    """How many stored secrets are wrapped under each KEK id."""
    with db.read() as s:
        rows = s.execute(
            select(ResourceRow.kek_id, func.count()).group_by(ResourceRow.kek_id)
        ).all()
    return {str(kek_id): int(count) for kek_id, count in rows}


def _held_ids(keyring: Keyring) -> tuple[str, ...]:
    if isinstance(keyring, MultiKeyring):
        return keyring.kek_ids
    return (keyring.kek_id,)


def _aad(path: str, tenant: str = DEFAULT_TENANT) -> bytes:
    # The same AAD the broker sealed the secret with (KeyBroker.put_resource).
    return ResourcePath.parse(path.split("/")).aad(tenant)


def rotate_kek(
    db: Database,
    old: Keyring,
    new: Keyring,
    *,
    batch_size: int = DEFAULT_BATCH,
    actor: str = "cli:keyring-rotate",
    clock: Callable[[], dt.datetime] = utcnow,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Re-wrap every secret not yet under ``new`` (whose KEK ``old`` holds); how many were.

    ``old`` may be a MultiKeyring (every KEK the deployment still holds). Before
    anything is written, every secret must be under a KEK that ``old`` or
    ``new`` holds, or ConfigError names the missing KEKs. One audit record
    tells the outcome (``allow``, or ``error`` with how far it got).
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    target = new.kek_id
    held = _held_ids(old)
    if held == (target,):
        raise ConfigError(
            f"the new KEK {target} is the KEK already in use; nothing to rotate",
            hint="create a new key (file or HSM) and rotate to that one",
        )
    _check_inventory(db, held, target)
    count = _Count()
    try:
        left = _remaining(db, target)
        for _ in range(_MAX_PASSES):
            if not left:
                break
            _one_pass(db, old, new, batch_size, progress, count, budget=left)
            left = _remaining(db, target)
        else:
            raise RotationStalled(
                f"{left} secrets are still under an old KEK after {_MAX_PASSES} passes: "
                "something keeps sealing with the old KEK",
                hint="restart every replica with the new KEK as its keyring in config.toml, "
                "then run the rotation again",
            )
    except BaseException as exc:
        _audit(db, clock, actor, held, target, count.done, error=_error_name(exc))
        raise
    _audit(db, clock, actor, held, target, count.done, error=None)
    log.info("rotated %d secrets to KEK %s", count.done, target)
    return count.done


def _check_inventory(db: Database, held: tuple[str, ...], target: str) -> None:
    stray = {k: n for k, n in kek_inventory(db).items() if k != target and k not in held}
    if stray:
        listed = ", ".join(f"{n} under {k}" for k, n in sorted(stray.items()))
        raise ConfigError(
            f"some secrets are under a KEK this rotation does not hold ({listed})",
            hint="add that KEK as keyring.previous in config.toml, or delete those secrets; "
            "nothing was changed",
        )


def _remaining(db: Database, target: str) -> int:
    with db.read() as s:
        count = s.scalar(
            select(func.count()).select_from(ResourceRow).where(ResourceRow.kek_id != target)
        )
    return int(count or 0)


def _one_pass(
    db: Database,
    old: Keyring,
    new: Keyring,
    batch_size: int,
    progress: Callable[[int], None] | None,
    count: _Count,
    *,
    budget: int,
) -> None:
    """Keyset-paginated pass in path order; every row is visited at most once per pass.

    A pass visits at most ``budget`` rows (those pending when it began), so rows
    that keep arriving ahead of the cursor cannot keep it going for ever; they
    are left to the next pass.
    """
    target = new.kek_id
    after = ("", "")  # (tenant, path): resources are keyed per tenant
    while budget > 0:
        with db.read() as s:
            batch = [
                _Pending(path, kek_id, wrapped, tenant)
                for tenant, path, kek_id, wrapped in s.execute(
                    select(
                        ResourceRow.tenant,
                        ResourceRow.path,
                        ResourceRow.kek_id,
                        ResourceRow.wrapped_dek,
                    )
                    .where(
                        ResourceRow.kek_id != target,
                        tuple_(ResourceRow.tenant, ResourceRow.path) > tuple_(*after),
                    )
                    .order_by(ResourceRow.tenant, ResourceRow.path)
                    .limit(min(batch_size, budget))
                )
            ]
        if not batch:
            return
        budget -= len(batch)
        after = (batch[-1].tenant, batch[-1].path)
        # HSM work happens before the write transaction opens: it holds no lock.
        rewrapped = {
            (p.tenant, p.path): rewrap_dek(
                p.kek_id, p.wrapped_dek, old, new, _aad(p.path, p.tenant)
            )
            for p in batch
        }
        changed = 0
        with db.write() as s:
            for p in batch:
                result = s.execute(
                    update(ResourceRow)
                    .where(
                        ResourceRow.tenant == p.tenant,
                        ResourceRow.path == p.path,
                        ResourceRow.kek_id == p.kek_id,
                        ResourceRow.wrapped_dek == p.wrapped_dek,
                    )
                    .values(kek_id=target, wrapped_dek=rewrapped[(p.tenant, p.path)])
                    .execution_options(synchronize_session=False)
                )
                assert isinstance(result, CursorResult)
                changed += result.rowcount
        count.done += changed
        if progress is not None:
            progress(changed)


def _error_name(exc: BaseException) -> str:
    return exc.code if isinstance(exc, VeriteeError) else type(exc).__name__


def _audit(
    db: Database,
    clock: Callable[[], dt.datetime],
    actor: str,
    held: tuple[str, ...],
    target: str,
    done: int,
    *,
    error: str | None,
) -> None:
    detail: Mapping[str, object] = {
        "from": list(held),
        "to": target,
        "rewrapped": done,
        **({"error": error} if error else {}),
    }
    event = AuditEvent(
        actor=actor,
        action=AUDIT_ACTION,
        subject=f"kek:{target}",
        decision="error" if error else "allow",
        detail=detail,
    )
    try:
        with db.write() as s:
            audit.append(s, event, int(clock().timestamp()))
    except Exception:
        if error is None:
            raise
        # Recording a failed rotation must not hide why it failed: the original
        # exception is re-raised by the caller; this one is only logged.
        log.exception("could not record the failed KEK rotation in the audit log")
