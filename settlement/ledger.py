"""The reward ledger: append-only, double-entry, idempotent, hash-chained.

Every function takes a SQLAlchemy ``Connection``.  Writers join the caller's
transaction when there is one (the settlement batch posts thousands of entries
in one) and otherwise open their own; either way they first take the ledger
writer lock (``settlement.db.lock_ledger``), so entry ids and the hash chain
are assigned in one order.  Idempotency rests on the UNIQUE reference_id:
inserts are ``INSERT ... ON CONFLICT DO NOTHING``.

Statuses: a credit starts ``pending`` (or ``confirmed``) and may go
``pending -> confirmed -> paid``; ``pending``, ``confirmed`` or ``paid`` go to
``reversed`` only through ``reverse``, which posts a ``confirmed`` debit
``reversal:<reference_id>`` (final: it never moves, and is never reversed).
Repeating the transition an entry is already in is a no-op that says so.

Balances, per user and currency (minor units):

- ``pending``, ``confirmed``, ``paid``, ``reversed``: sums of the user's credit
  amounts whose current status is that status;
- ``net``: what the program owes the user now: the sum of all the user's entry
  amounts (credits positive, reversal debits negative) minus the credits ever
  paid out.  It equals the ``user:<id>`` account's postings.  A reversed paid
  credit (clawback) makes it negative: the user owes that much.

The program balance is the ``program:funding`` account per currency: minus
what the program has granted net of reversals (every currency's postings sum
to zero).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from dsl.errors import MoneyError
from dsl.money import Money, exponent, format_money
from settlement.db import lock_ledger
from settlement.errors import EntryNotFound, IdempotencyConflict, IllegalTransition, LedgerError
from settlement.schema import (
    FUNDING_ACCOUNT,
    UTCDateTime,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
    payout_account,
    user_account,
)

GENESIS_HASH = "0" * 64
REVERSAL_PREFIX = "reversal:"
CHUNK_SIZE = 500
INITIAL_STATUSES = ("pending", "confirmed")
EXPORT_FIELDS = (
    "user_id", "amount", "currency", "entry_type", "status", "reference_id", "reversal_id",
    "timestamp",
)
# (entry_type, from, to) moves allowed after the initial transition.
LEGAL_MOVES = frozenset({
    ("credit", "pending", "confirmed"),
    ("credit", "confirmed", "paid"),
    ("credit", "pending", "reversed"),
    ("credit", "confirmed", "reversed"),
    ("credit", "paid", "reversed"),
})
_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings
_HASHED_COLUMNS = tuple(c.name for c in _E.c if c.name != "hash")



@dataclass(frozen=True)
class Entry:
    """One ledger row plus its current status (its latest transition)."""

    id: int
    reference_id: str
    user_id: str
    amount: int
    currency: str
    entry_type: str
    reversal_id: str | None
    timestamp: datetime
    rule_id: str | None
    rule_hash: str | None
    run_id: str | None
    referral_id: str | None
    role: str | None
    event_date: date | None
    hold_until: date | None
    actor: str
    prev_hash: str
    hash: str
    status: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def export_record(self) -> dict[str, Any]:
        """The seed's fields, in export order, JSON-ready."""
        return {
            "user_id": self.user_id,
            "amount": self.amount,
            "currency": self.currency,
            "entry_type": self.entry_type,
            "status": self.status,
            "reference_id": self.reference_id,
            "reversal_id": self.reversal_id,
            "timestamp": format_timestamp(self.timestamp),
        }


@dataclass(frozen=True)
class Transition:
    id: int
    reference_id: str
    from_status: str | None
    to_status: str
    at: datetime
    reason: str | None
    actor: str
    run_id: str | None


@dataclass(frozen=True)
class PostResult:
    entry: Entry
    created: bool


@dataclass(frozen=True)
class TransitionResult:
    entry: Entry
    changed: bool
    message: str


@dataclass(frozen=True)
class Balance:
    pending: int = 0
    confirmed: int = 0
    paid: int = 0
    reversed: int = 0
    net: int = 0

    def as_json(self) -> dict[str, int]:
        """The documented ``balance --json`` object, keys in this order."""
        return {
            "pending": self.pending,
            "confirmed": self.confirmed,
            "paid": self.paid,
            "reversed": self.reversed,
            "net": self.net,
        }


@dataclass(frozen=True)
class CreditRequest:
    user_id: str
    amount: int
    currency: str
    reference_id: str
    status: str = "pending"
    rule_id: str | None = None
    rule_hash: str | None = None
    referral_id: str | None = None
    role: str | None = None
    event_date: date | None = None
    hold_until: date | None = None


@dataclass
class BulkPostResult:
    created: list[Entry] = field(default_factory=list)
    existing: list[Entry] = field(default_factory=list)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    checked: int


# -- hashing ----------------------------------------------------------------


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


def entry_hash(row: Mapping[str, Any]) -> str:
    """sha256 over the row's canonical JSON (every column but ``hash``, prev_hash included)."""
    content = {name: _canonical(row[name]) for name in _HASHED_COLUMNS}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- plumbing ---------------------------------------------------------------


@contextmanager
def _writing(conn: Connection) -> Iterator[None]:
    """Join the caller's transaction or open one; hold the ledger writer lock either way."""
    if conn.in_transaction():
        lock_ledger(conn)
        yield
    else:
        with conn.begin():
            lock_ledger(conn)
            yield


def _chunks(items: Sequence[Any], size: int = CHUNK_SIZE) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _insert(conn: Connection, table: sa.Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def _append_rows(conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows whose ids the database assigns and nobody reads back.

    PostgreSQL: COPY on the same psycopg connection, so inside the caller's
    transaction (several times faster than multi-row INSERT for a settlement
    run's transitions and postings).  SQLite: executemany.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(table), rows)
        return
    columns = list(rows[0])
    names = ", ".join(columns)
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row([row[c] for c in columns])


def _now() -> datetime:
    return datetime.now(UTC)


def _latest_status(entries: sa.FromClause) -> sa.ScalarSelect[Any]:
    """An entry's status: the ``to_status`` of its newest transition (correlated)."""
    return (
        sa.select(_T.c.to_status)
        .where(_T.c.entry_id == entries.c.id)
        .order_by(_T.c.id.desc())
        .limit(1)
        .correlate(entries)
        .scalar_subquery()
    )


_STATUS = _latest_status(_E).label("status")
_ENTRY_SELECT = sa.select(*_E.c, _STATUS)


def _entry(row: Any) -> Entry:
    return Entry(**row._mapping)


def _sum(value: Any) -> int:
    return int(value or 0)  # PostgreSQL sums BIGINT as NUMERIC (Decimal)


def _describe(user_id: str, amount: int, currency: str, entry_type: str) -> str:
    return f"user {user_id}, {format_money(Money(amount, currency))} {entry_type}"


# -- reads ------------------------------------------------------------------


def get_entry(conn: Connection, ref: str) -> Entry | None:
    row = conn.execute(_ENTRY_SELECT.where(_E.c.reference_id == ref)).first()
    return _entry(row) if row else None


_ANY_REFERENCE = _ENTRY_SELECT.where(
    _E.c.reference_id == sa.any_(sa.bindparam("refs", type_=postgresql.ARRAY(sa.String)))
)


def find_entries(conn: Connection, refs: Iterable[str]) -> dict[str, Entry]:
    """The entries among ``refs`` that exist, by reference_id.

    PostgreSQL: one query with one array parameter (``= ANY(:refs)``), whose
    text is the same for every call; an expanded ``IN (...)`` list of a
    thousand literals cost more to render and parse than to run.  SQLite: IN
    chunks of ``CHUNK_SIZE``.
    """
    wanted = list(dict.fromkeys(refs))
    found: dict[str, Entry] = {}
    if not wanted:
        return found
    if conn.dialect.name == "postgresql":
        for row in conn.execute(_ANY_REFERENCE, {"refs": wanted}):
            found[row.reference_id] = _entry(row)
        return found
    for chunk in _chunks(wanted):
        for row in conn.execute(_ENTRY_SELECT.where(_E.c.reference_id.in_(chunk))):
            found[row.reference_id] = _entry(row)
    return found


_ANY_REFERENCE_ONLY = sa.select(_E.c.reference_id).where(
    _E.c.reference_id == sa.any_(sa.bindparam("refs", type_=postgresql.ARRAY(sa.String)))
)


def existing_references(conn: Connection, refs: Iterable[str]) -> set[str]:
    """Which of ``refs`` name an entry: the unique index alone, no row or status read."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        return set()
    if conn.dialect.name == "postgresql":
        return set(conn.execute(_ANY_REFERENCE_ONLY, {"refs": wanted}).scalars())
    found: set[str] = set()
    for chunk in _chunks(wanted):
        found.update(conn.execute(
            sa.select(_E.c.reference_id).where(_E.c.reference_id.in_(chunk))
        ).scalars())
    return found


def history(conn: Connection, ref: str) -> list[Transition]:
    """The entry's transitions, oldest first (empty when there is no such entry)."""
    rows = conn.execute(
        sa.select(*(c for c in _T.c if c.name != "entry_id"), _E.c.reference_id)
        .join(_E, _E.c.id == _T.c.entry_id)
        .where(_E.c.reference_id == ref)
        .order_by(_T.c.id)
    )
    return [Transition(**row._mapping) for row in rows]


def describe_entry(conn: Connection, ref: str) -> tuple[Entry, list[Transition]]:
    """The entry and its whole history, for ``ledger show``."""
    entry = get_entry(conn, ref)
    if entry is None:
        raise EntryNotFound(f"no ledger entry with reference {ref!r}")
    return entry, history(conn, ref)


def iter_entries(conn: Connection) -> Iterator[Entry]:
    """Every entry in ledger order (id), streamed."""
    stmt = _ENTRY_SELECT.order_by(_E.c.id).execution_options(yield_per=1000)
    for row in conn.execute(stmt):
        yield _entry(row)


def balance(conn: Connection, user_id: str) -> dict[str, Balance]:
    """Per currency: credits by current status, and net (see the module docstring)."""
    entries = _ENTRY_SELECT.where(_E.c.user_id == user_id).subquery()
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for currency, status, total in conn.execute(
        sa.select(entries.c.currency, entries.c.status, sa.func.sum(entries.c.amount))
        .where(entries.c.entry_type == "credit")
        .group_by(entries.c.currency, entries.c.status)
    ):
        totals[currency][status] = _sum(total)
    for currency, total in conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account == user_account(user_id))
        .group_by(_P.c.currency)
    ):
        totals[currency]["net"] = _sum(total)
    return {currency: Balance(**totals[currency]) for currency in sorted(totals)}


def program_balance(conn: Connection) -> dict[str, int]:
    """The funding account per currency (negative: granted to users, net of reversals)."""
    rows = conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account == FUNDING_ACCOUNT)
        .group_by(_P.c.currency)
        .order_by(_P.c.currency)
    )
    return {currency: _sum(total) for currency, total in rows}


def credited_totals(
    conn: Connection,
    rule_id: str,
    user_ids: Iterable[str],
    start: date | None,
    end: date | None,
) -> dict[str, dict[str, int]]:
    """Per user and currency: the rule's credits not reversed with start <= event_date < end.

    Every user asked for is in the result (``{}`` when nothing counts); None
    bounds are open.  Used by settlement's LIMIT caps.
    """
    users = list(dict.fromkeys(user_ids))
    if conn.dialect.name == "postgresql":
        found = credited_totals_many(conn, [(rule_id, user, start, end) for user in users])
        return {key[1]: totals for key, totals in found.items()}
    result: dict[str, dict[str, int]] = {user: {} for user in users}
    for chunk in _chunks(users):
        entries = _ENTRY_SELECT.where(
            _E.c.rule_id == rule_id, _E.c.entry_type == "credit", _E.c.user_id.in_(chunk)
        )
        if start is not None:
            entries = entries.where(_E.c.event_date >= start)
        if end is not None:
            entries = entries.where(_E.c.event_date < end)
        sub = entries.subquery()
        stmt = (
            sa.select(sub.c.user_id, sub.c.currency, sa.func.sum(sub.c.amount))
            .where(sub.c.status != "reversed")
            .group_by(sub.c.user_id, sub.c.currency)
        )
        for user, currency, total in conn.execute(stmt):
            result[user][currency] = _sum(total)
    return result


TotalsKey = tuple[str, str, date | None, date | None]  # rule id, user id, period start, end


def _credited_totals_many_pg() -> Any:
    wanted = (
        sa.func.unnest(
            sa.bindparam("rules", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("users", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("starts", type_=postgresql.ARRAY(sa.Date)),
            sa.bindparam("ends", type_=postgresql.ARRAY(sa.Date)),
        )
        .table_valued("rule_id", "user_id", "start", "end")
        .render_derived(name="wanted")
    )
    entries = (
        _ENTRY_SELECT.where(
            _E.c.rule_id == wanted.c.rule_id,
            _E.c.user_id == wanted.c.user_id,
            _E.c.entry_type == "credit",
            sa.or_(wanted.c.start.is_(None), _E.c.event_date >= wanted.c.start),
            sa.or_(wanted.c.end.is_(None), _E.c.event_date < wanted.c.end),
        )
        # OFFSET 0 is a planner fence: one (rule_id, user_id) index probe per wanted row.
        # Without it (or with ``user_id = ANY(...)``) the planner, whose statistics are stale
        # while a run fills the table, scanned every entry of the rule for each chunk: the
        # run slowed down as the ledger grew.
        .offset(0)
        .lateral("entries")
    )
    return (
        sa.select(wanted.c.rule_id, wanted.c.user_id, wanted.c.start, wanted.c.end,
                  entries.c.currency, sa.func.sum(entries.c.amount))
        .select_from(wanted.join(entries, sa.true()))
        .where(entries.c.status != "reversed")
        .group_by(wanted.c.rule_id, wanted.c.user_id, wanted.c.start, wanted.c.end,
                  entries.c.currency)
    )


_TOTALS_MANY_PG = _credited_totals_many_pg()


def credited_totals_many(
    conn: Connection, wanted: Iterable[TotalsKey]
) -> dict[TotalsKey, dict[str, int]]:
    """Credited totals for many (rule, user, period) at once: one query on PostgreSQL.

    Every key asked for is in the result (``{}`` when nothing counts).
    """
    keys = list(dict.fromkeys(wanted))
    result: dict[TotalsKey, dict[str, int]] = {key: {} for key in keys}
    if not keys:
        return result
    if conn.dialect.name != "postgresql":
        groups: dict[tuple[str, date | None, date | None], list[str]] = defaultdict(list)
        for rule_id, user, start, end in keys:
            groups[(rule_id, start, end)].append(user)
        for (rule_id, start, end), users in groups.items():
            for user, totals in credited_totals(conn, rule_id, users, start, end).items():
                result[(rule_id, user, start, end)] = totals
        return result
    params = {"rules": [k[0] for k in keys], "users": [k[1] for k in keys],
              "starts": [k[2] for k in keys], "ends": [k[3] for k in keys]}
    for rule_id, user, start, end, currency, total in conn.execute(_TOTALS_MANY_PG, params):
        result[(rule_id, user, start, end)][currency] = _sum(total)
    return result


# -- writes -----------------------------------------------------------------


def _validate(req: CreditRequest) -> None:
    if not req.reference_id or not req.reference_id.strip():
        raise LedgerError("a ledger entry needs a non-empty reference")
    if req.reference_id.startswith(REVERSAL_PREFIX):
        raise LedgerError(
            f"reference {req.reference_id!r} is reserved: {REVERSAL_PREFIX!r} names reversals"
        )
    if not req.user_id or not req.user_id.strip():
        raise LedgerError(f"credit {req.reference_id!r} needs a user id")
    if isinstance(req.amount, bool) or not isinstance(req.amount, int) or req.amount <= 0:
        raise LedgerError(
            f"credit {req.reference_id!r}: amount must be a positive number of minor units,"
            f" got {req.amount!r}"
        )
    try:
        exponent(req.currency)
    except MoneyError as e:
        raise LedgerError(f"credit {req.reference_id!r}: {e}") from None
    if req.status not in INITIAL_STATUSES:
        raise LedgerError(
            f"credit {req.reference_id!r}: a new credit is pending or confirmed, not {req.status!r}"
        )


def _check_same(existing: Entry, req: CreditRequest) -> None:
    """Same reference, same payload (user, amount, currency), or a conflict naming both."""
    same = (
        existing.entry_type == "credit"
        and existing.user_id == req.user_id
        and existing.amount == req.amount
        and existing.currency == req.currency
    )
    if not same:
        old = _describe(existing.user_id, existing.amount, existing.currency, existing.entry_type)
        new = _describe(req.user_id, req.amount, req.currency, "credit")
        raise IdempotencyConflict(
            f"idempotency conflict on reference {req.reference_id!r}: "
            f"existing entry is {old}, requested {new}"
        )


def _insert_entries(
    conn: Connection,
    specs: list[dict[str, Any]],
    *,
    actor: str,
    run_id: str | None,
    reason: str | None,
) -> list[Entry]:
    """Append entries (with their initial transition and two postings) under the lock.

    ``specs`` hold the entry columns but id, timestamp, actor and hashes, plus
    ``status`` (the initial one).  Ids and the chain are assigned here.
    """
    if not specs:
        return []
    now = _now()
    last = head(conn)
    next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    statuses: list[str] = []
    for spec in specs:
        row = {name: None for name in _HASHED_COLUMNS}
        row.update({k: v for k, v in spec.items() if k != "status"})
        row.update(id=next_id, timestamp=now, actor=actor, prev_hash=prev)
        row["hash"] = prev = entry_hash(row)
        rows.append(row)
        statuses.append(spec["status"])
        next_id += 1
    if conn.dialect.name == "postgresql":
        inserted = _insert_entries_pg(conn, rows)
    else:
        # executemany: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs from one
        # cached compiled statement.
        stmt = (
            _insert(conn, _E)
            .on_conflict_do_nothing(index_elements=["reference_id"])
            .returning(_E.c.id)
        )
        inserted = len(conn.execute(stmt, rows).scalars().all())
    if inserted != len(rows):
        raise LedgerError(
            "another writer added entries without the ledger lock; nothing was written, retry"
        )
    _append_rows(
        conn,
        _T,
        [
            {"entry_id": row["id"], "from_status": None, "to_status": status, "at": now,
             "reason": reason, "actor": actor, "run_id": run_id}
            for row, status in zip(rows, statuses, strict=True)
        ],
    )
    postings = []
    for row in rows:
        for account, amount in (
            (FUNDING_ACCOUNT, -row["amount"]),
            (user_account(row["user_id"]), row["amount"]),
        ):
            postings.append({"entry_id": row["id"], "transition_id": None, "account": account,
                             "currency": row["currency"], "amount": amount})
    _append_rows(conn, _P, postings)
    return [Entry(**row, status=status) for row, status in zip(rows, statuses, strict=True)]


def _pg_array_type(column: sa.Column[Any]) -> str:
    if isinstance(column.type, sa.BigInteger) or column.name == "id":
        return "bigint"
    if isinstance(column.type, sa.Date):
        return "date"
    if isinstance(column.type, UTCDateTime):
        return "timestamptz"
    return "text"


_ENTRY_COLUMNS = tuple(c.name for c in _E.c)
_INSERT_ENTRIES_PG = (
    f"INSERT INTO {_E.name} ({', '.join(_ENTRY_COLUMNS)}) "
    "SELECT * FROM unnest("
    + ", ".join(f"%s::{_pg_array_type(_E.c[name])}[]" for name in _ENTRY_COLUMNS)
    + ") ON CONFLICT (reference_id) DO NOTHING"
)


def _pg_array_item(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, (date, datetime)) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pg_array(values: list[Any]) -> str:
    """A PostgreSQL array literal (``{"a","b",NULL}``) cast by the statement to its type.

    Built here in one join: psycopg's generic list adapter looked up a dumper for
    every element, which cost more than the INSERT.
    """
    return "{" + ",".join(map(_pg_array_item, values)) + "}"


def _insert_entries_pg(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert entries as one column array per column (``INSERT ... SELECT unnest``).

    One short statement whatever the row count: the multi-row VALUES that
    SQLAlchemy renders for executemany was parsed by psycopg and PostgreSQL
    anew for every chunk, which cost more than the inserts.  ON CONFLICT DO
    NOTHING keeps the unique reference_id the judge of idempotency; the count
    of inserted rows is returned.
    """
    arrays = [_pg_array([row[name] for row in rows]) for name in _ENTRY_COLUMNS]
    cursor = conn.connection.driver_connection.cursor()
    try:
        cursor.execute(_INSERT_ENTRIES_PG, arrays)
        return cursor.rowcount
    finally:
        cursor.close()


def post_credits(
    conn: Connection,
    requests: Sequence[CreditRequest],
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
    known: Mapping[str, Entry] | None = None,
) -> BulkPostResult:
    """Post many credits with set-based SQL; existing references are returned, not reposted.

    A reference that exists with another payload (user, amount, currency)
    raises IdempotencyConflict and nothing is written.  A reference repeated
    within ``requests`` is posted once.

    ``known``: the caller already looked the requests' references up in this
    transaction while holding the ledger lock (``find_entries`` after
    ``lock_ledger``), so the lookup is not repeated.  A reference missing from
    it is taken as absent; the unique reference_id still refuses a duplicate.
    """
    for req in requests:
        _validate(req)
    result = BulkPostResult()
    with _writing(conn):
        existing = (
            find_entries(conn, (req.reference_id for req in requests)) if known is None
            else known
        )
        fresh: dict[str, CreditRequest] = {}
        for req in requests:
            entry = existing.get(req.reference_id)
            if entry is not None:
                _check_same(entry, req)
                result.existing.append(entry)
            elif req.reference_id in fresh:
                first = fresh[req.reference_id]
                if (first.user_id, first.amount, first.currency) != (
                    req.user_id, req.amount, req.currency
                ):
                    old = _describe(first.user_id, first.amount, first.currency, "credit")
                    new = _describe(req.user_id, req.amount, req.currency, "credit")
                    raise IdempotencyConflict(
                        f"idempotency conflict on reference {req.reference_id!r}: "
                        f"requested twice, as {old} and as {new}"
                    )
            else:
                fresh[req.reference_id] = req
        specs = [
            {"reference_id": r.reference_id, "user_id": r.user_id, "amount": r.amount,
             "currency": r.currency, "entry_type": "credit", "reversal_id": None,
             "rule_id": r.rule_id, "rule_hash": r.rule_hash, "run_id": run_id,
             "referral_id": r.referral_id, "role": r.role, "event_date": r.event_date,
             "hold_until": r.hold_until, "status": r.status}
            for r in fresh.values()
        ]
        result.created = _insert_entries(conn, specs, actor=actor, run_id=run_id, reason=reason)
    return result


def post_credit(
    conn: Connection,
    user_id: str,
    amount: int,
    currency: str,
    reference_id: str,
    *,
    status: str = "pending",
    actor: str = "cli",
    run_id: str | None = None,
    reason: str | None = None,
    **provenance: Any,
) -> PostResult:
    """Credit a user once per reference: created, or the existing entry when the payload matches.

    ``provenance``: rule_id, rule_hash, referral_id, role, event_date, hold_until.
    """
    req = CreditRequest(user_id, amount, currency, reference_id, status, **provenance)
    result = post_credits(conn, [req], actor=actor, run_id=run_id, reason=reason)
    if result.created:
        return PostResult(result.created[0], True)
    return PostResult(result.existing[0], False)


def _illegal(entry: Entry, to_status: str) -> IllegalTransition:
    if entry.entry_type == "debit":
        why = "reversal entries are final"
    elif entry.status == "reversed":
        why = "a reversed entry is final"
    elif (entry.status, to_status) == ("pending", "paid"):
        why = "confirm it first"
    else:
        why = "not an allowed transition"
    return IllegalTransition(
        f"entry {entry.reference_id!r} is {entry.status}; "
        f"{entry.status} -> {to_status} refused ({why})"
    )


def transition_many(
    conn: Connection,
    refs: Iterable[str],
    to_status: str,
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
) -> list[TransitionResult]:
    """Move entries to ``confirmed`` or ``paid`` (in input order); all or nothing.

    Entries already in ``to_status`` are reported unchanged.  Paying posts the
    transfer ``user:<id> -> payout:<id>``.  Reversal goes through ``reverse``.
    """
    if to_status not in ("confirmed", "paid"):
        raise LedgerError(
            f"cannot move entries to {to_status!r} directly: use reverse() for reversals"
        )
    wanted = list(refs)
    results: list[TransitionResult] = []
    with _writing(conn):
        current = find_entries(conn, wanted)
        moves: list[tuple[Entry, str]] = []
        for ref in wanted:
            entry = current.get(ref)
            if entry is None:
                raise EntryNotFound(f"no ledger entry with reference {ref!r}")
            if entry.status == to_status:
                results.append(TransitionResult(entry, False, f"no change: already {to_status}"))
                continue
            if (entry.entry_type, entry.status, to_status) not in LEGAL_MOVES:
                raise _illegal(entry, to_status)
            moved = replace(entry, status=to_status)
            current[ref] = moved
            moves.append((entry, entry.status))
            results.append(TransitionResult(moved, True, f"{entry.status} -> {to_status}"))
        _append_transitions(conn, moves, to_status, actor=actor, run_id=run_id, reason=reason)
    return results


def _append_transitions(
    conn: Connection,
    moves: list[tuple[Entry, str]],
    to_status: str,
    *,
    actor: str,
    run_id: str | None,
    reason: str | None,
) -> None:
    if not moves:
        return
    now = _now()
    rows = [
        {"entry_id": entry.id, "from_status": from_status, "to_status": to_status, "at": now,
         "reason": reason, "actor": actor, "run_id": run_id}
        for entry, from_status in moves
    ]
    if to_status != "paid":
        _append_rows(conn, _T, rows)
        return
    ids = conn.execute(
        sa.insert(_T).returning(_T.c.id, sort_by_parameter_order=True), rows
    ).scalars().all()
    postings = []
    for (entry, _), transition_id in zip(moves, ids, strict=True):
        for account, amount in (
            (user_account(entry.user_id), -entry.amount),
            (payout_account(entry.user_id), entry.amount),
        ):
            postings.append({"entry_id": entry.id, "transition_id": transition_id,
                             "account": account, "currency": entry.currency, "amount": amount})
    _append_rows(conn, _P, postings)


def confirm_due(
    conn: Connection,
    as_of: date,
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
) -> int:
    """Confirm every pending credit whose hold ended on or before ``as_of``; how many.

    One ``INSERT ... SELECT`` of ``pending -> confirmed`` transitions (in ledger
    order) under the writer lock: what ``transition_many`` would append for them,
    without a round trip per entry.
    """
    with _writing(conn):
        due = (
            sa.select(
                _E.c.id,
                sa.literal("pending", sa.String),
                sa.literal("confirmed", sa.String),
                sa.literal(_now(), UTCDateTime()),
                sa.literal(reason, sa.Text),
                sa.literal(actor, sa.String),
                sa.literal(run_id, sa.String),
            )
            .where(
                _E.c.entry_type == "credit",
                _E.c.hold_until.is_not(None),
                _E.c.hold_until <= as_of,
                _latest_status(_E) == "pending",
            )
            .order_by(_E.c.id)
        )
        result = conn.execute(
            sa.insert(_T).inline().from_select(
                ["entry_id", "from_status", "to_status", "at", "reason", "actor", "run_id"], due
            ),
            execution_options={"preserve_rowcount": True},
        )
        return result.rowcount


def confirm(
    conn: Connection, ref: str, *, actor: str = "cli", reason: str | None = None
) -> TransitionResult:
    return transition_many(conn, [ref], "confirmed", actor=actor, reason=reason)[0]


def pay(
    conn: Connection, ref: str, *, actor: str = "cli", reason: str | None = None
) -> TransitionResult:
    return transition_many(conn, [ref], "paid", actor=actor, reason=reason)[0]


def reverse_many(
    conn: Connection,
    refs: Iterable[str],
    reason: str,
    *,
    actor: str,
    run_id: str | None = None,
) -> list[PostResult]:
    """Reverse entries (in input order): post ``reversal:<ref>`` debits, mark originals reversed.

    An entry already reversed returns its existing reversal (created=False);
    reversing a reversal is refused.
    """
    if not reason or not reason.strip():
        raise LedgerError("a reversal needs a reason")
    wanted = list(refs)
    with _writing(conn):
        originals = find_entries(conn, wanted)
        reversals = find_entries(conn, (REVERSAL_PREFIX + ref for ref in wanted))
        specs: list[dict[str, Any]] = []
        moves: list[tuple[Entry, str]] = []
        planned: set[str] = set()
        for ref in wanted:
            original = originals.get(ref)
            if original is None:
                raise EntryNotFound(f"no ledger entry with reference {ref!r}")
            if original.entry_type == "debit":
                raise IllegalTransition(
                    f"entry {ref!r} is a reversal ({original.status}); "
                    "reversing a reversal is refused"
                )
            if REVERSAL_PREFIX + ref in reversals or ref in planned:
                continue
            planned.add(ref)
            if original.status == "reversed":
                raise LedgerError(f"entry {ref!r} is reversed but has no reversal entry")
            specs.append({
                "reference_id": REVERSAL_PREFIX + ref, "user_id": original.user_id,
                "amount": -original.amount, "currency": original.currency,
                "entry_type": "debit", "reversal_id": ref, "rule_id": original.rule_id,
                "rule_hash": original.rule_hash, "run_id": run_id,
                "referral_id": original.referral_id, "role": original.role,
                "event_date": original.event_date, "hold_until": None, "status": "confirmed",
            })
            moves.append((original, original.status))
        created = _insert_entries(conn, specs, actor=actor, run_id=run_id, reason=reason)
        _append_transitions(conn, moves, "reversed", actor=actor, run_id=run_id, reason=reason)
    made = {entry.reference_id: entry for entry in created}
    results: list[PostResult] = []
    for ref in wanted:
        key = REVERSAL_PREFIX + ref
        if key in reversals:
            results.append(PostResult(reversals[key], False))
        else:
            first = all(r.entry.reference_id != key for r in results)
            results.append(PostResult(made[key], first))
    return results


def reverse(
    conn: Connection, ref: str, reason: str, *, actor: str = "cli", run_id: str | None = None
) -> PostResult:
    """Reverse one entry; the result is the reversal debit (created=False if it existed)."""
    return reverse_many(conn, [ref], reason, actor=actor, run_id=run_id)[0]


# -- verification -----------------------------------------------------------


def head(conn: Connection) -> tuple[int, str] | None:
    """The newest entry's id and hash (the chain's head), or None for an empty ledger."""
    row = conn.execute(sa.select(_E.c.id, _E.c.hash).order_by(_E.c.id.desc()).limit(1)).first()
    return (row.id, row.hash) if row else None


def verify(
    conn: Connection, anchors: Mapping[int, tuple[str, str]] | None = None
) -> VerifyReport:
    """Re-check the whole ledger; problems come in ledger order, the first broken row first.

    Checks: the hash chain, entry shape, legal transition sequences, each
    entry's postings, reversal links (to a reversed original, at most one per
    original), and that every currency's postings sum to zero.  Entries,
    transitions and postings are streamed side by side in entry order, so
    memory stays flat however large the ledger.

    ``anchors`` (entry id -> (hash, who recorded it)) are heads of the chain
    written down elsewhere, append-only (``settlement_runs``): the chain must
    still pass through each, which catches deleted newest entries too.
    """
    anchors = anchors or {}
    problems: list[str] = []
    last_id = 0
    checked = 0
    prev = GENESIS_HASH
    transitions = _ByEntry(conn.execute(
        sa.select(_T.c.entry_id, _T.c.id, _T.c.from_status, _T.c.to_status)
        .order_by(_T.c.entry_id, _T.c.id)
        .execution_options(yield_per=STREAM_ROWS)
    ))
    postings = _ByEntry(conn.execute(
        sa.select(_P.c.entry_id, _P.c.transition_id, _P.c.account, _P.c.currency, _P.c.amount)
        .order_by(_P.c.entry_id, _P.c.id)
        .execution_options(yield_per=STREAM_ROWS)
    ))
    entries = conn.execute(
        sa.select(_E).order_by(_E.c.id).execution_options(yield_per=STREAM_ROWS)
    ).mappings()
    for row in entries:
        checked += 1
        name = _entry_name(row["id"], row["reference_id"])
        if row["prev_hash"] != prev:
            problems.append(
                f"{name}: prev_hash does not match the previous row's hash"
                " (a row was removed, inserted or reordered)"
            )
        if entry_hash(row) != row["hash"]:
            problems.append(f"{name}: hash mismatch (the row was changed after it was written)")
        last_id = row["id"]
        anchor = anchors.get(last_id)
        if anchor is not None and anchor[0] != row["hash"]:
            problems.append(f"{name}: hash differs from the one {anchor[1]} recorded")
        prev = row["hash"]
        seq = [(t.id, t.from_status, t.to_status) for t in transitions.take(row["id"])]
        problems.extend(f"{name}: {p}" for p in _check_transitions(row["entry_type"], seq))
        expected = [
            (0, FUNDING_ACCOUNT, row["currency"], -row["amount"]),
            (0, user_account(row["user_id"]), row["currency"], row["amount"]),
        ]
        for tid, _, to_status in seq:
            if to_status == "paid":
                expected += [
                    (tid, user_account(row["user_id"]), row["currency"], -row["amount"]),
                    (tid, payout_account(row["user_id"]), row["currency"], row["amount"]),
                ]
        got = [(p.transition_id or 0, p.account, p.currency, p.amount)
               for p in postings.take(row["id"])]
        if sorted(got) != sorted(expected):
            problems.append(f"{name}: postings do not match the entry and its transitions")
        if row["entry_type"] == "credit":
            if row["amount"] <= 0 or row["reversal_id"] is not None:
                problems.append(f"{name}: a credit must be positive and reverse nothing")
        elif row["amount"] >= 0 or row["reference_id"] != REVERSAL_PREFIX + str(
            row["reversal_id"]
        ):
            problems.append(
                f"{name}: a debit must be negative and named reversal:<reversed reference>"
            )
    for anchor_id, (_, recorded_by) in sorted(anchors.items()):
        if anchor_id > last_id:
            problems.append(
                f"entry id={anchor_id} is missing: {recorded_by} recorded it as the ledger head,"
                f" but the ledger ends at id {last_id} (newest entries were removed)"
            )
            break
    problems += _reversal_problems(conn)
    for currency, total in conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .group_by(_P.c.currency)
        .order_by(_P.c.currency)
    ):
        if _sum(total) != 0:
            problems.append(f"postings in {currency} sum to {_sum(total)}, not zero")
    return VerifyReport(ok=not problems, problems=problems, checked=checked)


STREAM_ROWS = 1000


def _entry_name(entry_id: int, reference_id: str) -> str:
    return f"entry id={entry_id} reference {reference_id!r}"


class _ByEntry:
    """The rows of a stream ordered by entry_id, taken one entry at a time, in step
    with the entries (rows of entries that do not exist are skipped: foreign keys)."""

    def __init__(self, rows: Iterable[Any]) -> None:
        self._groups = itertools.groupby(rows, key=lambda r: r.entry_id)
        self._advance()

    def _advance(self) -> None:
        group = next(self._groups, None)
        self._next = None if group is None else (group[0], list(group[1]))

    def take(self, entry_id: int) -> list[Any]:
        while self._next is not None and self._next[0] < entry_id:
            self._advance()
        if self._next is None or self._next[0] != entry_id:
            return []
        rows = self._next[1]
        self._advance()
        return rows


def _reversal_problems(conn: Connection) -> list[str]:
    """Reversal links, checked in SQL: each debit reverses one reversed credit of the same
    user and currency with the opposite amount, once; each reversed credit has its debit."""
    problems: list[str] = []
    debit, original = _E.alias("debit"), _E.alias("original")
    original_status = _latest_status(original)
    times = (
        sa.select(sa.func.count())
        .select_from(_E)
        .where(_E.c.entry_type == "debit", _E.c.reversal_id == debit.c.reversal_id)
        .correlate(debit)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(
            debit.c.id, debit.c.reference_id, debit.c.reversal_id, debit.c.user_id,
            debit.c.amount, debit.c.currency, original.c.entry_type.label("original_type"),
            original.c.user_id.label("original_user"),
            original.c.amount.label("original_amount"),
            original.c.currency.label("original_currency"),
            original_status.label("original_status"),
            times.label("times"),
        )
        .select_from(debit.outerjoin(original, original.c.reference_id == debit.c.reversal_id))
        .where(debit.c.entry_type == "debit")
        .order_by(debit.c.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        name = _entry_name(row.id, row.reference_id)
        if row.times > 1:
            problems.append(f"{name}: reference {row.reversal_id!r} is reversed more than once")
        if row.original_type != "credit":
            problems.append(f"{name}: reverses {row.reversal_id!r}, which is not a credit")
        elif row.original_status != "reversed" or (
            row.original_user, row.original_amount, row.original_currency
        ) != (row.user_id, -row.amount, row.currency):
            problems.append(
                f"{name}: does not match its original {row.reversal_id!r}"
                " (must be reversed, same user and currency, opposite amount)"
            )
    reversal = _E.alias("reversal")
    credits = _ENTRY_SELECT.where(_E.c.entry_type == "credit").subquery()
    unlinked = conn.execute(
        sa.select(credits.c.reference_id)
        .where(
            credits.c.status == "reversed",
            ~sa.exists().where(
                reversal.c.entry_type == "debit",
                reversal.c.reversal_id == credits.c.reference_id,
            ),
        )
        .order_by(credits.c.id)
    )
    for ref in unlinked.scalars():
        problems.append(f"entry reference {ref!r}: reversed but has no reversal entry")
    return problems


def _check_transitions(entry_type: str, seq: list[tuple[int, str | None, str]]) -> list[str]:
    if not seq:
        return ["has no transitions"]
    first_from, first_to = seq[0][1], seq[0][2]
    initial = INITIAL_STATUSES if entry_type == "credit" else ("confirmed",)
    if first_from is not None or first_to not in initial:
        return [f"illegal initial transition {first_from} -> {first_to}"]
    for (_, _, before), (tid, from_status, to_status) in zip(seq, seq[1:], strict=False):
        if from_status != before:
            return [f"transition id={tid} starts from {from_status}, but the entry was {before}"]
        if (entry_type, from_status, to_status) not in LEGAL_MOVES:
            return [f"transition id={tid} {from_status} -> {to_status} is illegal"]
    return []
