"""Indexes for a run's cost to stay linear: ``settlement_terminations.referral_id`` added,
``op_id`` dropped from the four largest tables.

Why: a run looks up the terminations of each chunk's referrals by referral id, and the
primary key (rule_id, referral_id) cannot answer that alone: every lookup scanned the
table, so a run slowed down as terminations accumulated.  An operation's seal now reads
its rows of ledger_entries, ledger_transitions, ledger_postings and settlement_facts by
id, from the newest id each held when the operation began (``settlement.operations``), so
the op_id index on them only cost every insert its upkeep (a sixth of a posting's).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BY_ID = ("ledger_entries", "ledger_transitions", "ledger_postings", "settlement_facts")


def upgrade() -> None:
    op.create_index("ix_settlement_terminations_referral", "settlement_terminations",
                    ["referral_id"])
    for table in BY_ID:
        op.drop_index(f"ix_{table}_op_id", table_name=table)


def downgrade() -> None:
    for table in BY_ID:
        op.create_index(f"ix_{table}_op_id", table, ["op_id"])
    op.drop_index("ix_settlement_terminations_referral", "settlement_terminations")
