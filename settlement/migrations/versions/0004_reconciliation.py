"""Settlement as a reconciliation: kept facts, rule versions, renames, terminations, links.

- ``settlement_facts``: the snapshots of each referral that settlement kept (the newest
  is the one whose entitlement the ledger must equal).
- ``settlement_rule_versions``: every rule version that granted a reward, by content hash,
  so a rule removed from the program keeps its REVERSE IF (backfilled from the ledger's
  provenance, without a model: those versions can be matched for renames only).
- ``settlement_rule_renames``: ``settle --renamed OLD=NEW``, carrying standing rewards over.
- ``settlement_terminations``: (rule, referral) pairs whose REVERSE IF has held: terminal.
- ``ledger_entries.adjusts``: a credit that increases, replaces or moves an earlier grant of
  the same (rule, referral, role) names it; an index on ``referral_id`` for the standing.
- ``settlement_runs`` counts the new outcomes.
- SQLite refuses values longer than the PostgreSQL columns (``VARCHAR(n)``), so a test on
  SQLite fails where PostgreSQL would.

Every new table is append-only, like the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from settlement.dialect import backend

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TABLES = ("settlement_facts", "settlement_rule_versions", "settlement_rule_renames",
          "settlement_terminations")
COUNTS = ("adjusted", "moved", "superseded", "stale", "retired", "conflicts")
# Text columns whose PostgreSQL type bounds their length: table -> column -> characters.
BOUNDED = {
    "ledger_entries": {"reference_id": 255, "user_id": 255, "reversal_id": 255, "rule_id": 255,
                       "rule_hash": 128, "run_id": 64, "referral_id": 255, "role": 32,
                       "actor": 255, "adjusts": 255},
    "ledger_transitions": {"actor": 255, "run_id": 64},
    "ledger_postings": {"account": 300},
    "settlement_facts": {"referral_id": 255, "run_id": 64},
    "settlement_rule_versions": {"rule_id": 255, "rule_hash": 128, "run_id": 64},
    "settlement_rule_renames": {"old_id": 255, "new_id": 255, "run_id": 64},
    "settlement_terminations": {"rule_id": 255, "referral_id": 255, "run_id": 64},
}


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("settlement_runs.run_id", deferrable=True, initially="DEFERRED")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.add_column("ledger_entries", sa.Column("adjusts", sa.String(255), nullable=True))
    op.create_index("ix_ledger_entries_referral", "ledger_entries", ["referral_id"])
    for name in COUNTS:
        op.add_column("settlement_runs",
                      sa.Column(name, sa.BigInteger, nullable=False, server_default="0"))

    op.create_table(
        "settlement_facts",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("referral_id", sa.String(255), nullable=False),
        sa.Column("version", sa.BigInteger, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("digest", sa.CHAR(64), nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    )
    op.create_index("ix_settlement_facts_referral", "settlement_facts", ["referral_id", "id"])
    op.create_table(
        "settlement_rule_versions",
        sa.Column("rule_id", sa.String(255), primary_key=True),
        sa.Column("rule_hash", sa.String(128), primary_key=True),
        sa.Column("model", sa.Text, nullable=True),
        sa.Column("run_id", sa.String(64), nullable=True),
    )
    op.create_table(
        "settlement_rule_renames",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("old_id", sa.String(255), nullable=False),
        sa.Column("new_id", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    )
    op.create_table(
        "settlement_terminations",
        sa.Column("rule_id", sa.String(255), primary_key=True),
        sa.Column("referral_id", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    )
    op.execute(
        "INSERT INTO settlement_rule_versions (rule_id, rule_hash, model, run_id)"
        " SELECT DISTINCT rule_id, rule_hash, NULL, NULL FROM ledger_entries"
        " WHERE rule_id IS NOT NULL AND rule_hash IS NOT NULL AND entry_type = 'credit'"
    )

    if postgres:
        for table in TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
                " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
            op.execute(
                f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
                " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()"
            )
        return
    for table in TABLES:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
                f" BEGIN SELECT RAISE(ABORT, 'settlement log is append-only: {verb} on"
                f" {table} refused'); END"
            )
    db = backend(op.get_bind())
    for table, columns in BOUNDED.items():
        for statement in db.length_ddl(table, columns):
            op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for table, columns in BOUNDED.items():
            for column in columns:
                op.execute(f"DROP TRIGGER IF EXISTS {table}_{column}_length")
    for table in reversed(TABLES):
        op.drop_table(table)  # drops its triggers too
    # Plain ALTER TABLE (SQLite >= 3.35 too): a batch rebuild would drop the ledger's triggers.
    for name in COUNTS:
        op.execute(f"ALTER TABLE settlement_runs DROP COLUMN {name}")
    op.drop_index("ix_ledger_entries_referral", "ledger_entries")
    op.execute("ALTER TABLE ledger_entries DROP COLUMN adjusts")
