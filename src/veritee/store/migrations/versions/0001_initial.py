"""Initial schema: sessions, resources, policies, reference values, audit log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kbs_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tee", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(128), nullable=False),
        sa.Column("hash_alg", sa.String(16), nullable=False),
        sa.Column("selected_hash", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.BigInteger, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("nonce_used", sa.Boolean, nullable=False),
        sa.Column("token", sa.Text, nullable=True),
    )
    op.create_index("ix_kbs_sessions_expires_at", "kbs_sessions", ["expires_at"])
    op.create_table(
        "resources",
        sa.Column("path", sa.String(512), primary_key=True),
        sa.Column("kek_id", sa.String(64), nullable=False),
        sa.Column("wrapped_dek", sa.LargeBinary, nullable=False),
        sa.Column("nonce", sa.LargeBinary, nullable=False),
        sa.Column("ciphertext", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "policies",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("policy_id", sa.String(128), primary_key=True),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("sha384", sa.String(96), nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "reference_values",
        sa.Column("name", sa.String(256), primary_key=True),
        sa.Column("value_json", sa.Text, nullable=False),
        sa.Column("expires_at", sa.BigInteger, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("updated_at", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
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
    )


def downgrade() -> None:
    for table in ("audit_log", "reference_values", "policies", "resources", "kbs_sessions"):
        op.drop_table(table)
