"""Tenants: every owner's sessions, resources, policies, reference values and audit chain
are keyed by tenant. Existing rows belong to the implicit first-party tenant "default".

Revision ID: 0003
Revises: 0002

Primary keys change, which SQLite cannot do in place: each keyed table is
rebuilt explicitly (create, copy, drop, rename), the same way on PostgreSQL.
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("tenant", sa.String(64), nullable=False, server_default="default")


def _tables() -> dict[str, tuple[list[sa.Column], list[str]]]:  # type: ignore[type-arg]
    return {
        "resources": ([
            sa.Column("path", sa.String(512), nullable=False),
            sa.Column("kek_id", sa.String(64), nullable=False),
            sa.Column("wrapped_dek", sa.LargeBinary, nullable=False),
            sa.Column("nonce", sa.LargeBinary, nullable=False),
            sa.Column("ciphertext", sa.LargeBinary, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
        ], ["tenant", "path"]),
        "policies": ([
            sa.Column("kind", sa.String(32), nullable=False),
            sa.Column("policy_id", sa.String(128), nullable=False),
            sa.Column("body", sa.Text, nullable=False),
            sa.Column("sha384", sa.String(96), nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
        ], ["tenant", "kind", "policy_id"]),
        "reference_values": ([
            sa.Column("name", sa.String(256), nullable=False),
            sa.Column("value_json", sa.Text, nullable=False),
            sa.Column("expires_at", sa.BigInteger, nullable=False),
            sa.Column("source", sa.Text, nullable=False),
            sa.Column("updated_at", sa.BigInteger, nullable=False),
            sa.Column("provenance_json", sa.Text, nullable=True),
            sa.Column("signature", sa.Text, nullable=True),
        ], ["tenant", "name"]),
        "audit_log": ([
            sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
            sa.Column("ts", sa.BigInteger, nullable=False),
            sa.Column("actor", sa.String(256), nullable=False),
            sa.Column("action", sa.String(64), nullable=False),
            sa.Column("tee", sa.String(32), nullable=False),
            sa.Column("subject", sa.String(512), nullable=False),
            sa.Column("evidence_digest", sa.String(128), nullable=False),
            sa.Column("policy_hash", sa.String(128), nullable=False),
            sa.Column("decision", sa.String(32), nullable=False),
            sa.Column("detail_json", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False),
        ], ["tenant", "seq"]),
    }


def upgrade() -> None:
    with op.batch_alter_table("kbs_sessions") as batch:
        batch.add_column(_tenant())
        batch.create_index("ix_kbs_sessions_tenant", ["tenant"])
    for table, (columns, key) in _tables().items():
        names = ", ".join(c.name for c in columns)
        op.create_table(f"{table}_new", _tenant(), *columns,
                        sa.PrimaryKeyConstraint(*key, name=f"pk_{table}"))
        op.execute(f"INSERT INTO {table}_new (tenant, {names}) "  # noqa: S608 - fixed names
                   f"SELECT 'default', {names} FROM {table}")
        op.drop_table(table)
        op.rename_table(f"{table}_new", table)


def downgrade() -> None:  # pragma: no cover - forward-only in practice
    raise NotImplementedError("tenants cannot be merged back into one namespace")
