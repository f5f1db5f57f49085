"""An index on ``settlement_terminations.referral_id``.

Why: a run looks up the terminations of each chunk's referrals by referral id, and the
primary key (rule_id, referral_id) cannot answer that alone: every lookup scanned the
table, so a run slowed down as terminations accumulated.

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


def upgrade() -> None:
    op.create_index("ix_settlement_terminations_referral", "settlement_terminations",
                    ["referral_id"])


def downgrade() -> None:
    op.drop_index("ix_settlement_terminations_referral", "settlement_terminations")
