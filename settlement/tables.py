"""Every table, in one ``MetaData`` (Alembic's autogenerate compares it with the migrations).

The ledger (migration 0001):

- ``ledger_entries``: one row per credit or reversal debit, hash-chained in id
  order.  Ids are assigned by the ledger under its writer lock (not by a
  sequence) because each row's hash covers its id and the previous row's hash.
- ``ledger_transitions``: the status history; an entry's status is its latest row.
- ``ledger_postings``: double entry.  Each entry moves ``amount`` from
  ``program:funding`` to ``user:<id>`` (a reversal debit has a negative amount,
  so it moves the money back); paying a credit moves it from ``user:<id>`` to
  ``payout:<id>``.  Per currency, all postings sum to zero.

The settlement batch (migration 0002): ``settlement_runs``, the run log, and
``settlement_quarantine``, the bad records of each run; both written once per
run inside the run's own transaction.

Payouts (migration 0005): entries and transitions gain
``business_date`` (the day the movement belongs to, beside its wall-clock
time); a ``payout`` entry is one payout item (see ``settlement.payouts``), its
statuses ``created -> sent -> paid | failed``; ``payees`` is the append-only
history of where each person is paid; ``payout_batches``, ``payout_items`` and
``payout_covers`` say which batch an item belongs to, which payee it pays and
which entries it settles.

Run history (migration 0006): ``settlement_run_events``, written outside the run's
transaction so that failed and killed runs leave a trace too.

Tamper evidence (migration 0007): every row above but the run history carries
``op_id``, the operation that wrote it, and ``ledger_operations`` seals each
operation's rows.

The liabilities report's daily aggregate (migration 0009): ``liability_days``, written
by each operation as it is sealed (``settlement.ledger.daily``), sealed with its rows.

All are append-only: triggers refuse UPDATE and DELETE (migrations 0001, 0002, 0005,
0006, 0007 and 0009).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

STATUSES = ("pending", "confirmed", "paid", "reversed", "created", "sent", "failed")
ENTRY_TYPES = ("credit", "debit", "payout")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC with microseconds, read back identically on both databases.

    PostgreSQL stores ``timestamptz``; SQLite stores the UTC wall-clock text
    (its DATETIME type writes the fields and ignores tzinfo, so binding the
    aware UTC value stores the same text on either database).  Values come back
    as aware UTC datetimes either way, so entry hashes recompute.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: ledger times must be timezone-aware")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OP_ID_LENGTH = 64

metadata = sa.MetaData()


def _op_id(*, index: bool = True) -> sa.Column[str]:
    """0007: the operation (settle run, payout run, hand write) that wrote the row; NULL for
    rows written before operation ids, which the migration sealed as one operation.
    The largest tables have no index on it (0008): an operation's seal reads its rows
    by id from the ids it found when it began (``settlement.operations``)."""
    return sa.Column("op_id", sa.String(OP_ID_LENGTH), nullable=True, index=index)

ledger_entries = sa.Table(
    "ledger_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("reference_id", sa.String(255), nullable=False),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.Column("entry_type", sa.String(6), nullable=False),
    sa.Column("reversal_id", sa.String(255), nullable=True),
    sa.Column("timestamp", UTCDateTime, nullable=False),
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
    # 0004: the earlier grant of the same (rule, referral, role) this credit adjusts.
    sa.Column("adjusts", sa.String(255), nullable=True),
    # Hashed only when set (settlement.ledger.hashing), so rows older than the column keep
    # their hashes; readers take the UTC date of ``timestamp`` for those.
    sa.Column("business_date", sa.Date, nullable=True),
    _op_id(index=False),
    sa.UniqueConstraint("reference_id", name="uq_ledger_entries_reference_id"),
    sa.UniqueConstraint("reversal_id", name="uq_ledger_entries_reversal_id"),
    sa.CheckConstraint(
        "entry_type IN ('credit', 'debit', 'payout')", name="ck_ledger_entries_entry_type"
    ),
    sa.CheckConstraint(
        "(entry_type = 'credit' AND amount > 0 AND reversal_id IS NULL)"
        " OR (entry_type = 'debit' AND amount < 0 AND reversal_id IS NOT NULL)"
        " OR (entry_type = 'payout' AND amount > 0 AND reversal_id IS NULL)",
        name="ck_ledger_entries_amount_sign",
    ),
    sa.Index("ix_ledger_entries_user_id", "user_id"),
    sa.Index("ix_ledger_entries_rule_user", "rule_id", "user_id"),
    sa.Index("ix_ledger_entries_hold_until", "hold_until"),
    sa.Index("ix_ledger_entries_referral", "referral_id"),
)

_STATUS_LIST = ", ".join(f"'{s}'" for s in STATUSES)

ledger_transitions = sa.Table(
    "ledger_transitions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), nullable=False),
    sa.Column("from_status", sa.String(16), nullable=True),
    sa.Column("to_status", sa.String(16), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=True),
    sa.Column("business_date", sa.Date, nullable=True),
    # A credit moved to ``paid`` by a payout item: the item's entry (its postings carry
    # the cash); NULL for ``ledger pay``, whose own postings do.
    sa.Column("item_id", BigId, sa.ForeignKey("ledger_entries.id",
              name="fk_ledger_transitions_item_id"), nullable=True),
    _op_id(index=False),
    sa.CheckConstraint(
        f"from_status IS NULL OR from_status IN ({_STATUS_LIST})",
        name="ck_ledger_transitions_from_status",
    ),
    sa.CheckConstraint(f"to_status IN ({_STATUS_LIST})", name="ck_ledger_transitions_to_status"),
    sa.Index("ix_ledger_transitions_entry", "entry_id", "id"),
)

ledger_postings = sa.Table(
    "ledger_postings",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), nullable=False),
    sa.Column(
        "transition_id", BigId, sa.ForeignKey("ledger_transitions.id"), nullable=True
    ),
    sa.Column("account", sa.String(300), nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.Column("amount", sa.BigInteger, nullable=False),
    _op_id(index=False),
    sa.CheckConstraint("amount <> 0", name="ck_ledger_postings_amount_nonzero"),
    sa.Index("ix_ledger_postings_account", "account", "currency"),
    sa.Index("ix_ledger_postings_entry", "entry_id"),
)

settlement_runs = sa.Table(
    "settlement_runs",
    metadata,
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
    # 0004: what reconciliation did besides posting.
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
      for name in ("adjusted", "moved", "superseded", "stale", "retired", "conflicts")),
    _op_id(),
)

settlement_quarantine = sa.Table(
    "settlement_quarantine",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), sa.ForeignKey("settlement_runs.run_id",
              deferrable=True, initially="DEFERRED"), nullable=False, index=True),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("raw", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    _op_id(),
)

# Run history (migration 0006): what every settle run did, failed and aborted ones too.
# Written OUTSIDE the run's transaction (``settlement.runs``): a start row (status
# ``running``, phase ``start``) committed before the run begins, phase rows while it runs
# (PostgreSQL only: SQLite's one write lock is the run's), and an end row: ``succeeded``
# inside the run's own transaction (atomic with it), ``failed``/``dry_run``/``unknown`` in
# a separate one after the rollback.  No foreign key to ``settlement_runs``: a failed run
# has no row there.
RUN_STATUSES = ("running", "succeeded", "failed", "dry_run", "unknown", "aborted")
settlement_run_events = sa.Table(
    "settlement_run_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("phase", sa.String(32), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    sa.Column("as_of", sa.Date, nullable=True),
    sa.Column("input_name", sa.Text, nullable=True),
    sa.Column("input_size", sa.BigInteger, nullable=True),
    sa.Column("input_digest", sa.CHAR(64), nullable=True),
    sa.Column("host", sa.String(255), nullable=True),
    sa.Column("pid", sa.BigInteger, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    # The counters so far (or at the end), as canonical JSON text: integers only.
    sa.Column("counts", sa.Text, nullable=True),
    sa.CheckConstraint("status IN ('running', 'succeeded', 'failed', 'dry_run', 'unknown', "
                       "'aborted')", name="ck_settlement_run_events_status"),
    sa.Index("ix_settlement_run_events_run", "run_id", "id"),
)


def _run_fk() -> sa.ForeignKey:
    return sa.ForeignKey("settlement_runs.run_id", deferrable=True, initially="DEFERRED")


# Reconciliation (migration 0004).  The newest snapshot of a referral is its last row.
settlement_facts = sa.Table(
    "settlement_facts",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("referral_id", sa.String(255), nullable=False),
    sa.Column("version", sa.BigInteger, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("digest", sa.CHAR(64), nullable=False),
    # The record as canonical JSON (decimals exact): what its entitlement was computed from.
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("file", sa.Text, nullable=False),
    sa.Column("line", sa.Integer, nullable=False),
    sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    _op_id(index=False),
    sa.Index("ix_settlement_facts_referral", "referral_id", "id"),
)

# Every rule version that granted a reward; ``model`` is its JSON (NULL when backfilled).
settlement_rule_versions = sa.Table(
    "settlement_rule_versions",
    metadata,
    sa.Column("rule_id", sa.String(255), primary_key=True),
    sa.Column("rule_hash", sa.String(128), primary_key=True),
    sa.Column("model", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(64), nullable=True),
    _op_id(),
)

settlement_rule_renames = sa.Table(
    "settlement_rule_renames",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("old_id", sa.String(255), nullable=False),
    sa.Column("new_id", sa.String(255), nullable=False),
    sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    _op_id(),
)

# (rule, referral) pairs whose REVERSE IF has held: that rule pays that referral nothing again.
settlement_terminations = sa.Table(
    "settlement_terminations",
    metadata,
    sa.Column("rule_id", sa.String(255), primary_key=True),
    sa.Column("referral_id", sa.String(255), primary_key=True),
    sa.Column("run_id", sa.String(64), _run_fk(), nullable=False),
    _op_id(),
    sa.Index("ix_settlement_terminations_referral", "referral_id"),
)

payees = sa.Table(
    "payees",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("user_id", sa.String(255), nullable=False),
    sa.Column("method", sa.String(32), nullable=False),
    # The method's address fields as canonical JSON text (sorted keys).
    sa.Column("details", sa.Text, nullable=False),
    sa.Column("name", sa.String(255), nullable=True),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("imported_at", UTCDateTime, nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    _op_id(),
    sa.Index("ix_payees_user", "user_id", "id"),
)

payout_batches = sa.Table(
    "payout_batches",
    metadata,
    sa.Column("batch_id", sa.String(64), primary_key=True),
    sa.Column("as_of", sa.Date, nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.Column("min_amount", sa.BigInteger, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("items", sa.BigInteger, nullable=False),
    sa.Column("total", sa.BigInteger, nullable=False),
    # {"reason": count, ...} as canonical JSON text.
    sa.Column("skipped", sa.Text, nullable=False),
    # The ledger head when the batch committed: an anchor for verify, like a run's.
    sa.Column("ledger_head_id", sa.BigInteger, nullable=True),
    sa.Column("ledger_head_hash", sa.CHAR(64), nullable=True),
    _op_id(),
    sa.UniqueConstraint("as_of", "currency", name="uq_payout_batches_as_of_currency"),
)

payout_items = sa.Table(
    "payout_items",
    metadata,
    sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), primary_key=True,
              autoincrement=False),
    sa.Column("item_id", sa.String(64), nullable=False),
    sa.Column("batch_id", sa.String(64), sa.ForeignKey("payout_batches.batch_id",
              deferrable=True, initially="DEFERRED"), nullable=False),
    sa.Column("payee_id", BigId, sa.ForeignKey("payees.id"), nullable=False),
    _op_id(index=False),
    sa.UniqueConstraint("item_id", name="uq_payout_items_item_id"),
    sa.Index("ix_payout_items_batch", "batch_id", "entry_id"),
)

payout_covers = sa.Table(
    "payout_covers",
    metadata,
    sa.Column("item_entry_id", BigId, sa.ForeignKey("ledger_entries.id"), primary_key=True,
              autoincrement=False),
    sa.Column("entry_id", BigId, sa.ForeignKey("ledger_entries.id"), primary_key=True,
              autoincrement=False),
    _op_id(index=False),
    sa.Index("ix_payout_covers_entry", "entry_id"),
)

# The liabilities report's daily aggregate (migration 0009, ``settlement.ledger.daily``):
# per operation, business date, currency and rule, the signed sums the report would read
# from that operation's entries, transitions and payout covers (granted, reversed, pending,
# in payout, paid out).  Written by the operation itself when it is sealed.
liability_days = sa.Table(
    "liability_days",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("business_date", sa.Date, nullable=False),
    sa.Column("currency", sa.CHAR(3), nullable=False),
    sa.Column("rule_id", sa.String(255), nullable=True),
    sa.Column("granted", sa.BigInteger, nullable=False),
    sa.Column("reversed", sa.BigInteger, nullable=False),
    sa.Column("pending", sa.BigInteger, nullable=False),
    sa.Column("in_payout", sa.BigInteger, nullable=False),
    sa.Column("paid_out", sa.BigInteger, nullable=False),
    sa.Column("op_id", sa.String(OP_ID_LENGTH), nullable=False, index=True),
    sa.Index("ix_liability_days_business_date", "business_date"),
)

# The operations log (migration 0007): one row per command that wrote (a settle run, a payout
# run, a hand write), hash-chained in id order like the entries (ids assigned under the ledger
# writer lock).  ``counts`` and ``digest`` seal what the operation wrote: per table of
# ``OPERATION_TABLES``, how many rows carry its op_id and the sha256 of them
# (``settlement.operations``).
ledger_operations = sa.Table(
    "ledger_operations",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),
    sa.Column("op_id", sa.String(OP_ID_LENGTH), nullable=False),
    sa.Column("command", sa.String(255), nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("at", UTCDateTime, nullable=False),
    # {"table": rows, ...} as canonical JSON text (tables with rows only).
    sa.Column("counts", sa.Text, nullable=False),
    sa.Column("digest", sa.CHAR(64), nullable=False),
    sa.Column("prev_hash", sa.CHAR(64), nullable=False),
    sa.Column("hash", sa.CHAR(64), nullable=False),
    sa.UniqueConstraint("op_id", name="uq_ledger_operations_op_id"),
)

# Every table whose rows carry an op_id, with the columns that order its rows (its key).
OPERATION_TABLES: dict[str, tuple[str, ...]] = {
    "ledger_entries": ("id",),
    "ledger_transitions": ("id",),
    "ledger_postings": ("id",),
    "settlement_runs": ("run_id",),
    "settlement_quarantine": ("id",),
    "settlement_facts": ("id",),
    "settlement_rule_versions": ("rule_id", "rule_hash"),
    "settlement_rule_renames": ("id",),
    "settlement_terminations": ("rule_id", "referral_id"),
    "payees": ("id",),
    "payout_batches": ("batch_id",),
    "payout_items": ("entry_id",),
    "payout_covers": ("item_entry_id", "entry_id"),
    "liability_days": ("id",),
}

# Where an operation's rows lie, per table that has no index on op_id: above the newest
# value of (table, column) when it began (writers hold the ledger lock; ids only grow):
# its own id, or for a payout's items and covers the item entries the operation wrote.
RANGED_BY: dict[str, tuple[str, str]] = {
    **{t: (t, "id") for t, key in OPERATION_TABLES.items() if key == ("id",)},
    "payout_items": ("ledger_entries", "entry_id"),
    "payout_covers": ("ledger_entries", "item_entry_id"),
}

APPEND_ONLY_TABLES = ("ledger_entries", "ledger_transitions", "ledger_postings")
PAYOUT_TABLES = ("payees", "payout_batches", "payout_items", "payout_covers")


def latest_status(entries: sa.FromClause) -> sa.ScalarSelect[Any]:
    """An entry's status: the ``to_status`` of its newest transition (correlated)."""
    transitions = ledger_transitions
    return (
        sa.select(transitions.c.to_status)
        .where(transitions.c.entry_id == entries.c.id)
        .order_by(transitions.c.id.desc())
        .limit(1)
        .correlate(entries)
        .scalar_subquery()
    )


# The ledger's one view: every entry column and the entry's status.
entries_with_status = sa.select(*ledger_entries.c, latest_status(ledger_entries).label("status"))
