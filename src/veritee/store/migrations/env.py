"""Alembic environment: veritee passes its own connection (see veritee.store.db.migrate)."""

from __future__ import annotations

from alembic import context

from veritee.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - veritee always passes one
    raise RuntimeError("run migrations through veritee.store.db.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
