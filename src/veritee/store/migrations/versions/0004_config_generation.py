"""A generation counter for what appraisal reads (policies, reference values).

Revision ID: 0004
Revises: 0003

Every replica caches its parsed policies and sealed reference values and
re-reads them when this number moves. Triggers bump it on any change to those
tables, whoever makes it (the API, a restore, a hand-written SQL statement),
so a cache can never outlive the rows it was built from.
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WATCHED = ("policies", "reference_values")


def upgrade() -> None:
    op.create_table(
        "config_generation",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO config_generation (id, generation) VALUES (1, 1)")
    bump = "UPDATE config_generation SET generation = generation + 1 WHERE id = 1"
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION veritee_bump_generation() RETURNS trigger AS $$ "
            f"BEGIN {bump}; RETURN NULL; END $$ LANGUAGE plpgsql"
        )
        for table in _WATCHED:
            op.execute(
                f"CREATE TRIGGER {table}_generation AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
                f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION veritee_bump_generation()"
            )
        return
    for table in _WATCHED:
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_generation_{event.lower()} AFTER {event} ON {table} "
                f"BEGIN {bump}; END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _WATCHED:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_generation ON {table}")
        op.execute("DROP FUNCTION IF EXISTS veritee_bump_generation()")
    else:
        for table in _WATCHED:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_generation_{event}")
    op.drop_table("config_generation")
