"""The foreign keys of the tables the ledger writes in bulk are checked once per statement
on PostgreSQL: ledger_transitions, ledger_postings, payout_items, payout_covers.

Why: a row-by-row foreign key runs a query and takes a row lock on the parent for every
row inserted (a payout's covers lock every credit they settle); on a payout run that was a
third of the time.  Parents and children are append-only, so the rows an INSERT adds are
all there is to check: one AFTER INSERT trigger per statement looks them up by index and
refuses the statement as the foreign key did (SQLSTATE 23503).  SQLite keeps its foreign
keys (a row's check is an index lookup there, with no lock).

``payout_items.batch_id`` was checked at commit (items were written before their batch);
a batch is now written before its items.

The op_id indexes of payout_items and payout_covers go too: an operation's seal and fold
read a payout's items and covers by the range of item entries it wrote
(``settlement.tables.RANGED_BY``), as 0008 did for the four largest tables.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import op

from settlement.dialect import Reference, backend

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# As migrations 0001 and 0005 named them on PostgreSQL.
REFERENCES = {
    "ledger_transitions": (
        Reference("entry_id", "ledger_entries", "id", "ledger_transitions_entry_id_fkey"),
        Reference("item_id", "ledger_entries", "id", "fk_ledger_transitions_item_id"),
    ),
    "ledger_postings": (
        Reference("entry_id", "ledger_entries", "id", "ledger_postings_entry_id_fkey"),
        Reference("transition_id", "ledger_transitions", "id",
                  "ledger_postings_transition_id_fkey"),
    ),
    "payout_items": (
        Reference("entry_id", "ledger_entries", "id", "payout_items_entry_id_fkey"),
        Reference("batch_id", "payout_batches", "batch_id", "payout_items_batch_id_fkey",
                  deferred=True),
        Reference("payee_id", "payees", "id", "payout_items_payee_id_fkey"),
    ),
    "payout_covers": (
        Reference("item_entry_id", "ledger_entries", "id", "payout_covers_item_entry_id_fkey"),
        Reference("entry_id", "ledger_entries", "id", "payout_covers_entry_id_fkey"),
    ),
}


BY_ENTRY = ("payout_items", "payout_covers")


def upgrade() -> None:
    db = backend(op.get_bind())
    for table, references in REFERENCES.items():
        for statement in db.reference_checks_ddl(table, references):
            op.execute(statement)
    for table in BY_ENTRY:
        op.drop_index(f"ix_{table}_op_id", table_name=table)


def downgrade() -> None:
    for table in BY_ENTRY:
        op.create_index(f"ix_{table}_op_id", table, ["op_id"])
    db = backend(op.get_bind())
    for table, references in REFERENCES.items():
        for statement in db.row_references_ddl(table, references):
            op.execute(statement)
