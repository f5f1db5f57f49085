"""Run history: ``settlement_run_events``, every settle run's start, phases and end.

Why a table of its own: ``settlement_runs`` is written inside the run's one
transaction, so a failed, killed or interrupted run leaves nothing there.  These
rows are written outside it (``settlement.runs``), appended only: a run's
status is its newest row.  Append-only triggers like every other table.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from settlement.dialect import backend

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "settlement_run_events"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date, nullable=True),
        sa.Column("input_name", sa.Text, nullable=True),
        sa.Column("input_size", sa.BigInteger, nullable=True),
        sa.Column("input_digest", sa.CHAR(64), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("pid", sa.BigInteger, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("counts", sa.Text, nullable=True),
        sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'dry_run', 'unknown', "
                           "'aborted')", name="ck_settlement_run_events_status"),
    )
    op.create_index("ix_settlement_run_events_run", TABLE, ["run_id", "id"])
    db = backend(op.get_bind())
    for statement in db.append_only_ddl(TABLE):
        op.execute(statement)
    for statement in db.length_ddl(TABLE, {"run_id": 64, "status": 16, "phase": 32,
                                           "host": 255}):
        op.execute(statement)


def downgrade() -> None:
    op.drop_table(TABLE)
