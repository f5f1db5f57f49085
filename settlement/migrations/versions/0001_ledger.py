"""Ledger: entries, transitions, postings; append-only triggers.

Revision ID: 0001
Revises:
Create Date: 2024-06-01

Spelled out rather than imported from settlement.schema, so that this
migration stays what it was when later revisions change the schema.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
STATUSES = "'pending', 'confirmed', 'paid', 'reversed'"
TABLES = ("ledger_entries", "ledger_transitions", "ledger_postings")

PG_REFUSE_FUNCTION = """
CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'raise_exception';
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", BigId, primary_key=True, autoincrement=False),
        sa.Column("reference_id", sa.String(255), nullable=False),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("entry_type", sa.String(6), nullable=False),
        sa.Column("reversal_id", sa.String(255), nullable=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=True),
        sa.Column("rule_hash", sa.String(128), nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.Column("referral_id", sa.String(255), nullable=True),
        sa.Column("role", sa.String(32), nullable=True),
        sa.Column("event_date", sa.Date, nullable=True),
        sa.Column("hold_until", sa.Date, nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("prev_hash", sa.CHAR(64), nullable=False),
        sa.Column("hash", sa.CHAR(64), nullable=False),
        sa.UniqueConstraint("reference_id", name="uq_ledger_entries_reference_id"),
        sa.UniqueConstraint("reversal_id", name="uq_ledger_entries_reversal_id"),
        sa.CheckConstraint(
            "entry_type IN ('credit', 'debit')", name="ck_ledger_entries_entry_type"
        ),
        sa.CheckConstraint(
            "(entry_type = 'credit' AND amount > 0 AND reversal_id IS NULL)"
            " OR (entry_type = 'debit' AND amount < 0 AND reversal_id IS NOT NULL)",
            name="ck_ledger_entries_amount_sign",
        ),
    )
    op.create_index("ix_ledger_entries_user_id", "ledger_entries", ["user_id"])
    op.create_index("ix_ledger_entries_rule_user", "ledger_entries", ["rule_id", "user_id"])
    op.create_index("ix_ledger_entries_hold_until", "ledger_entries", ["hold_until"])

    op.create_table(
        "ledger_transitions",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), nullable=False),
        sa.Column("from_status", sa.String(16), nullable=True),
        sa.Column("to_status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=True),
        sa.CheckConstraint(
            f"from_status IS NULL OR from_status IN ({STATUSES})",
            name="ck_ledger_transitions_from_status",
        ),
        sa.CheckConstraint(f"to_status IN ({STATUSES})", name="ck_ledger_transitions_to_status"),
    )
    op.create_index("ix_ledger_transitions_entry", "ledger_transitions", ["entry_id", "id"])

    op.create_table(
        "ledger_postings",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), nullable=False),
        sa.Column(
            "transition_id", BigId, sa.ForeignKey("ledger_transitions.id"), nullable=True
        ),
        sa.Column("account", sa.String(300), nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount <> 0", name="ck_ledger_postings_amount_nonzero"),
    )
    op.create_index("ix_ledger_postings_account", "ledger_postings", ["account", "currency"])
    op.create_index("ix_ledger_postings_entry", "ledger_postings", ["entry_id"])

    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_REFUSE_FUNCTION)
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
    else:
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                    f" BEGIN SELECT RAISE(ABORT, 'ledger is append-only: {verb} on {table}"
                    " refused'); END"
                )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)  # drops its triggers too
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
