"""Tables of the settlement batch: the run log and the quarantine.

Both are written once per run inside the run's own transaction, and, like the
ledger, never updated (migration 0002 adds the same refusing triggers).
"""

from __future__ import annotations

import sqlalchemy as sa

runs_metadata = sa.MetaData()

settlement_runs = sa.Table(
    "settlement_runs",
    runs_metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rules_digest", sa.String(64), nullable=False),
    sa.Column("input_digest", sa.String(64), nullable=False),
    sa.Column("input_name", sa.Text, nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
    sa.Column("rewarded", sa.BigInteger, nullable=False),
    sa.Column("posted", sa.BigInteger, nullable=False),
    sa.Column("already_posted", sa.BigInteger, nullable=False),
    sa.Column("capped", sa.BigInteger, nullable=False),
    sa.Column("reversed", sa.BigInteger, nullable=False),
    sa.Column("confirmed", sa.BigInteger, nullable=False),
    sa.Column("quarantined", sa.BigInteger, nullable=False),
    # {"INR": minor units, ...} as canonical JSON text: integers only.
    sa.Column("amount_posted", sa.Text, nullable=False),
    # The ledger head (newest entry) when the run committed: an anchor for verify.
    sa.Column("ledger_head_id", sa.BigInteger, nullable=True),
    sa.Column("ledger_head_hash", sa.CHAR(64), nullable=True),
)

settlement_quarantine = sa.Table(
    "settlement_quarantine",
    runs_metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("settlement_runs.run_id",
              deferrable=True, initially="DEFERRED"), nullable=False, index=True),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
)


def ledger_anchors(conn: sa.Connection) -> dict[int, tuple[str, str]]:
    """Entry id -> (hash, run id) of the ledger head recorded by each settlement run."""
    rows = conn.execute(
        sa.select(settlement_runs.c.ledger_head_id, settlement_runs.c.ledger_head_hash,
                  settlement_runs.c.run_id)
        .where(settlement_runs.c.ledger_head_id.is_not(None))
        .order_by(settlement_runs.c.ledger_head_id)
    )
    return {row.ledger_head_id: (row.ledger_head_hash, row.run_id) for row in rows}
