"""Settlement: the run log and the quarantine of bad records; append-only like the ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("settlement_runs", "settlement_quarantine")
COUNTS = ("records", "rewarded", "posted", "already_posted", "capped", "reversed",
          "confirmed", "quarantined")


def upgrade() -> None:
    op.create_table(
        "settlement_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rules_digest", sa.String(64), nullable=False),
        sa.Column("input_digest", sa.String(64), nullable=False),
        sa.Column("input_name", sa.Text, nullable=False),
        *(sa.Column(name, sa.BigInteger, nullable=False) for name in COUNTS),
        sa.Column("amount_posted", sa.Text, nullable=False),
        # The ledger's newest entry when the run committed: verify checks the chain
        # still reaches it, so deleting the newest entries is detected too.
        sa.Column("ledger_head_id", sa.BigInteger, nullable=True),
        sa.Column("ledger_head_hash", sa.CHAR(64), nullable=True),
    )
    op.create_table(
        "settlement_quarantine",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.String(64),
            sa.ForeignKey("settlement_runs.run_id", deferrable=True, initially="DEFERRED"),
            nullable=False,
        ),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
    )
    op.create_index("ix_settlement_quarantine_run_id", "settlement_quarantine", ["run_id"])

    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
    else:
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                    f" BEGIN SELECT RAISE(ABORT, 'settlement log is append-only: {verb} on"
                    f" {table} refused'); END"
                )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
