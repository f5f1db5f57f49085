"""Settlement: refuse TRUNCATE on the run log and the quarantine (PostgreSQL).

Why: the run log holds the ledger heads that ``ledger verify`` anchors the hash
chain to; emptying it with TRUNCATE (which row triggers do not see) would hide
the deletion of the newest ledger entries.  0001 gave the ledger tables the same
statement trigger; 0002 missed it.  SQLite has no TRUNCATE.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLES = ("settlement_runs", "settlement_quarantine")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
