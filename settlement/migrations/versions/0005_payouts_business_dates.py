"""Payouts and business dates: payout entries and statuses, payees, batches, items, covers.

Why one revision: the payout vocabulary widens two CHECK constraints of each
ledger table (``entry_type`` gains ``payout``; statuses gain ``created``,
``sent``, ``failed``) and business dates add a column to both, so each table
is altered once.  ``batch_alter_table`` is alembic's portable way: PostgreSQL
alters in place (its triggers stay); SQLite cannot alter a CHECK, so alembic
rebuilds the table from its reflection (columns other revisions added come
along) and the append-only triggers, which a rebuild drops, are put back.
``settlement.db.upgrade`` runs SQLite migrations with foreign keys off (the
rebuild drops a referenced table) and checks them before committing.

No existing row changes: ``business_date`` is NULL for rows written before,
and the hash leaves a NULL ``business_date`` out, so their hashes still hold.

The SQLite rebuilds also drop 0004's length triggers on the two tables: they are
put back too, and the new tables get theirs.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa
from alembic import op

from settlement.dialect import backend

if TYPE_CHECKING:
    from alembic.operations import BatchOperations

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_STATUSES = "'pending', 'confirmed', 'paid', 'reversed'"
STATUSES = OLD_STATUSES + ", 'created', 'sent', 'failed'"
CREDIT_OR_DEBIT = (
    "(entry_type = 'credit' AND amount > 0 AND reversal_id IS NULL)"
    " OR (entry_type = 'debit' AND amount < 0 AND reversal_id IS NOT NULL)"
)
PAYOUT = " OR (entry_type = 'payout' AND amount > 0 AND reversal_id IS NULL)"
LEDGER_TABLES = ("ledger_entries", "ledger_transitions", "ledger_postings")
# Text columns bounded by their PostgreSQL types (0004 made SQLite enforce them too).
BOUNDED = {
    "ledger_entries": {"reference_id": 255, "user_id": 255, "reversal_id": 255, "rule_id": 255,
                       "rule_hash": 128, "run_id": 64, "referral_id": 255, "role": 32,
                       "actor": 255, "adjusts": 255},
    "ledger_transitions": {"actor": 255, "run_id": 64},
    "payees": {"user_id": 255, "method": 32, "name": 255, "actor": 255},
    "payout_batches": {"batch_id": 64, "actor": 255},
    "payout_items": {"item_id": 64, "batch_id": 64},
}
NEW_TABLES = ("payees", "payout_batches", "payout_items", "payout_covers")


def _entry_checks(batch: BatchOperations, entry_types: str, sign: str) -> None:
    batch.drop_constraint("ck_ledger_entries_entry_type", type_="check")
    batch.drop_constraint("ck_ledger_entries_amount_sign", type_="check")
    batch.create_check_constraint("ck_ledger_entries_entry_type", f"entry_type IN ({entry_types})")
    batch.create_check_constraint("ck_ledger_entries_amount_sign", sign)


def _status_checks(batch: BatchOperations, statuses: str) -> None:
    batch.drop_constraint("ck_ledger_transitions_from_status", type_="check")
    batch.drop_constraint("ck_ledger_transitions_to_status", type_="check")
    batch.create_check_constraint("ck_ledger_transitions_from_status",
                                  f"from_status IS NULL OR from_status IN ({statuses})")
    batch.create_check_constraint("ck_ledger_transitions_to_status", f"to_status IN ({statuses})")


def _append_only(tables: tuple[str, ...]) -> None:
    db = backend(op.get_bind())
    for table in tables:
        for statement in db.append_only_ddl(table):
            op.execute(statement)


def upgrade() -> None:
    with op.batch_alter_table("ledger_entries", recreate="auto") as batch:
        batch.add_column(sa.Column("business_date", sa.Date, nullable=True))
        _entry_checks(batch, "'credit', 'debit', 'payout'", CREDIT_OR_DEBIT + PAYOUT)
    with op.batch_alter_table("ledger_transitions", recreate="auto") as batch:
        batch.add_column(sa.Column("business_date", sa.Date, nullable=True))
        batch.add_column(sa.Column("item_id", BigId, nullable=True))
        batch.create_foreign_key("fk_ledger_transitions_item_id", "ledger_entries",
                                 ["item_id"], ["id"])
        _status_checks(batch, STATUSES)

    op.create_table(
        "payees",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.String(255), nullable=False),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("name", sa.String(255), nullable=True),
        sa.Column("business_date", sa.Date, nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
    )
    op.create_index("ix_payees_user", "payees", ["user_id", "id"])
    op.create_table(
        "payout_batches",
        sa.Column("batch_id", sa.String(64), primary_key=True),
        sa.Column("as_of", sa.Date, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("min_amount", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("items", sa.BigInteger, nullable=False),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("skipped", sa.Text, nullable=False),
        sa.Column("ledger_head_id", sa.BigInteger, nullable=True),
        sa.Column("ledger_head_hash", sa.CHAR(64), nullable=True),
        sa.UniqueConstraint("as_of", "currency", name="uq_payout_batches_as_of_currency"),
    )
    op.create_table(
        "payout_items",
        sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), primary_key=True,
                  autoincrement=False),
        sa.Column("item_id", sa.String(64), nullable=False),
        sa.Column("batch_id", sa.String(64),
                  sa.ForeignKey("payout_batches.batch_id", deferrable=True,
                                initially="DEFERRED"),
                  nullable=False),
        sa.Column("payee_id", BigId, sa.ForeignKey("payees.id"), nullable=False),
        sa.UniqueConstraint("item_id", name="uq_payout_items_item_id"),
    )
    op.create_index("ix_payout_items_batch", "payout_items", ["batch_id", "entry_id"])
    op.create_table(
        "payout_covers",
        sa.Column("item_entry_id", BigId, sa.ForeignKey("ledger_entries.id"),
                  primary_key=True, autoincrement=False),
        sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), primary_key=True,
                  autoincrement=False),
    )
    op.create_index("ix_payout_covers_entry", "payout_covers", ["entry_id"])
    _append_only(LEDGER_TABLES + NEW_TABLES)
    db = backend(op.get_bind())
    for table, columns in BOUNDED.items():
        for statement in db.length_ddl(table, columns):
            op.execute(statement)


def downgrade() -> None:
    for table in reversed(NEW_TABLES):
        op.drop_table(table)
    with op.batch_alter_table("ledger_transitions", recreate="auto") as batch:
        batch.drop_constraint("fk_ledger_transitions_item_id", type_="foreignkey")
        batch.drop_column("item_id")
        batch.drop_column("business_date")
        _status_checks(batch, OLD_STATUSES)
    with op.batch_alter_table("ledger_entries", recreate="auto") as batch:
        batch.drop_column("business_date")
        _entry_checks(batch, "'credit', 'debit'", CREDIT_OR_DEBIT)
    _append_only(LEDGER_TABLES)
