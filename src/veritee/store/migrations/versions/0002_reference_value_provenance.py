"""Reference values carry their provenance and the service's seal.

Revision ID: 0002
Revises: 0001

Both columns are nullable so existing rows survive the upgrade; such rows have
no seal and are refused when read, until an admin registers them again (their
origin cannot be established after the fact).
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("reference_values") as batch:
        batch.add_column(sa.Column("provenance_json", sa.Text, nullable=True))
        batch.add_column(sa.Column("signature", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("reference_values") as batch:
        batch.drop_column("signature")
        batch.drop_column("provenance_json")
