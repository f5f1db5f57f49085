"""Tamper evidence: operation ids on every written row, and the sealed operations log.

Every table a command writes gains ``op_id`` (indexed: an operation's rows are read
back to seal it); ``ledger_operations`` is the log, one hash-chained row per operation
with the count and sha256 of its rows per table (``settlement.operations``), and
append-only like the ledger.  Adding a nullable column rewrites nothing (SQLite adds it
in place, so the tables' triggers stay).

Existing rows keep op_id NULL and are sealed here as one operation
(``LEGACY_OP_ID``): verify checks them against that seal, so a row added later without
an op id, or an old row changed or deleted, shows.  Entry hashes cover op_id only when
set, so old entries keep theirs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from settlement.dialect import backend

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("ledger_entries", "ledger_transitions", "ledger_postings", "settlement_runs",
          "settlement_quarantine", "settlement_facts", "settlement_rule_versions",
          "settlement_rule_renames", "settlement_terminations", "payees", "payout_batches",
          "payout_items", "payout_covers")
LOG = "ledger_operations"
LOG_BOUNDS = {"op_id": 64, "command": 255, "actor": 255}


def upgrade() -> None:
    db = backend(op.get_bind())
    op.create_table(
        LOG,
        sa.Column("id", BigId, primary_key=True, autoincrement=False),
        sa.Column("op_id", sa.String(64), nullable=False),
        sa.Column("command", sa.String(255), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("prev_hash", sa.CHAR(64), nullable=False),
        sa.Column("hash", sa.CHAR(64), nullable=False),
        sa.UniqueConstraint("op_id", name="uq_ledger_operations_op_id"),
    )
    for table in TABLES:
        op.add_column(table, sa.Column("op_id", sa.String(64), nullable=True))
        op.create_index(f"ix_{table}_op_id", table, ["op_id"])
        for statement in db.length_ddl(table, {"op_id": 64}):
            op.execute(statement)
    for statement in db.append_only_ddl(LOG) + db.length_ddl(LOG, LOG_BOUNDS):
        op.execute(statement)
    if context.is_offline_mode():
        # An offline script (db upgrade --sql) cannot read the rows already there: a
        # database that holds some must be upgraded online to have them sealed.
        op.execute("-- 0007: rows written before this revision are sealed only by an online"
                   " `referral db upgrade`")
        return
    _seal_existing_rows()


def _seal_existing_rows() -> None:
    from datetime import UTC, datetime

    from settlement import operations

    bind = op.get_bind()
    seal = operations.compute_seal(bind, operations.LEGACY_OP_ID, TABLES)
    if seal.counts:
        legacy = operations.Operation(operations.LEGACY_OP_ID,
                                      "db upgrade 0007: rows written before operation ids",
                                      "migration 0007", datetime.now(UTC))
        operations.append_operation(bind, legacy, seal)


def downgrade() -> None:
    bind = op.get_bind()
    stamped = bind.execute(sa.text("SELECT count(*) FROM ledger_entries WHERE op_id IS NOT NULL")
                           ).scalar()
    if stamped:
        # Their hashes cover their op ids: without the column they would no longer verify.
        raise RuntimeError(f"cannot downgrade below 0007: {stamped} entries carry op ids,"
                           " which their hashes cover")
    op.drop_table(LOG)
    for table in TABLES:
        if bind.dialect.name == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {table}_op_id_length")
        op.drop_index(f"ix_{table}_op_id", table_name=table)
        # SQLite >= 3.35 drops a column in place (no rebuild: the triggers stay).
        op.execute(f"ALTER TABLE {table} DROP COLUMN op_id")
