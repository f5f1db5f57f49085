"""The liabilities report's daily aggregate: ``liability_days``.

Why: the report as of a date read every entry with its transitions and payout covers
(about 40 times a plain sum over the entries on PostgreSQL); each operation now folds
what it wrote into one row per business date, currency and rule when it is sealed
(``settlement.ledger.daily``), and the report sums those rows.  Append-only and sealed
like every table a command writes.

The rows already in the ledger are folded here, into rows under one operation of this
migration's (sealed and chained like any other), so the report needs no fallback.
A populated aggregate cannot be downgraded: the operations' seals cover its rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context, op

from settlement.dialect import backend

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLE = "liability_days"
OP_ID = "0009:folded-before-liability-days"


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("business_date", sa.Date, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("rule_id", sa.String(255), nullable=True),
        sa.Column("granted", sa.BigInteger, nullable=False),
        sa.Column("reversed", sa.BigInteger, nullable=False),
        sa.Column("pending", sa.BigInteger, nullable=False),
        sa.Column("in_payout", sa.BigInteger, nullable=False),
        sa.Column("paid_out", sa.BigInteger, nullable=False),
        sa.Column("op_id", sa.String(64), nullable=False),
    )
    op.create_index(f"ix_{TABLE}_op_id", TABLE, ["op_id"])
    op.create_index(f"ix_{TABLE}_business_date", TABLE, ["business_date"])
    db = backend(op.get_bind())
    for statement in db.append_only_ddl(TABLE) + db.length_ddl(
            TABLE, {"rule_id": 255, "op_id": 64}):
        op.execute(statement)
    if context.is_offline_mode():
        op.execute("-- 0009: rows written before this revision are folded into liability_days"
                   " only by an online `referral db upgrade`")
        return
    _fold_existing_rows()


def _fold_existing_rows() -> None:
    from datetime import UTC, datetime

    from settlement import operations
    from settlement.ledger.daily import fold

    bind = op.get_bind()
    fold(bind, OP_ID, everything=True)
    seal = operations.compute_seal(bind, OP_ID, (TABLE,))
    if seal.counts:
        folded = operations.Operation(OP_ID, "db upgrade 0009: the liabilities of the rows"
                                      " before it, per day", "migration 0009",
                                      datetime.now(UTC))
        operations.append_operation(bind, folded, seal)


def downgrade() -> None:
    held = op.get_bind().execute(sa.text(f"SELECT count(*) FROM {TABLE}")).scalar()
    if held:
        # Operations sealed them (this one among them): their seals would no longer hold.
        raise RuntimeError(f"cannot downgrade below 0009: {held} liability_days rows are"
                           " sealed by the operations that wrote them")
    op.drop_table(TABLE)
