"""Reading the ledger: entries, histories, balances, LIMIT totals, the chain's head, and the
export (every entry with its business dates and the payout that paid it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.dialect import backend
from settlement.errors import EntryNotFound, LedgerError
from settlement.ledger.hashing import format_timestamp
from settlement.ledger.types import (
    FUNDING_ACCOUNT,
    Balance,
    Entry,
    TotalsKey,
    Transition,
    user_account,
)
from settlement.tables import (
    entries_with_status,
    latest_status,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
    payout_batches,
    payout_covers,
    payout_items,
    settlement_runs,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings
LIVE_ITEM_STATUSES = ("created", "sent", "paid")
OPEN_ITEM_STATUSES = ("created", "sent")
_REFERENCES = sa.select(_E.c.reference_id)


_ENTRY_FIELDS = [f.name for f in fields(Entry)]
# Entry's fields are the view's columns in order, so a row builds one positionally
# (``**row._mapping`` cost more than the rest of a chunk's lookup).
assert _ENTRY_FIELDS == [c.name for c in entries_with_status.selected_columns], _ENTRY_FIELDS


def entry(row: Any) -> Entry:
    return Entry(*row)


def as_int(total: Any) -> int:
    """A SUM as an int: PostgreSQL sums BIGINT as NUMERIC (Decimal), and NULL is 0."""
    return int(total or 0)


def get_entry(conn: Connection, ref: str) -> Entry | None:
    row = conn.execute(entries_with_status.where(_E.c.reference_id == ref)).first()
    return entry(row) if row else None


def find_entries(conn: Connection, refs: Iterable[str]) -> dict[str, Entry]:
    """The entries among ``refs`` that exist, by reference_id."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        return {}
    rows = backend(conn).select_references(conn, entries_with_status, wanted)
    return {row.reference_id: entry(row) for row in rows}


def existing_references(conn: Connection, refs: Iterable[str]) -> set[str]:
    """Which of ``refs`` name an entry: the unique index alone, no row or status read."""
    wanted = list(dict.fromkeys(refs))
    if not wanted:
        return set()
    return {row.reference_id for row in backend(conn).select_references(conn, _REFERENCES, wanted)}


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
    found = get_entry(conn, ref)
    if found is None:
        raise EntryNotFound(f"no ledger entry with reference {ref!r}")
    return found, history(conn, ref)


def iter_entries(conn: Connection) -> Iterator[Entry]:
    """Every entry in ledger order (id), streamed."""
    stmt = entries_with_status.order_by(_E.c.id).execution_options(yield_per=1000)
    for row in conn.execute(stmt):
        yield entry(row)


def pending_credits(
    conn: Connection,
    *,
    rule_id: str | None = None,
    user_id: str | None = None,
    until: date | None = None,
) -> list[Entry]:
    """Credits awaiting confirmation, in ledger order; ``until`` bounds the event date (the
    business date for credits without one)."""
    entries = entries_with_status.subquery()
    stmt = sa.select(entries).where(entries.c.entry_type == "credit",
                                    entries.c.status == "pending")
    if rule_id is not None:
        stmt = stmt.where(entries.c.rule_id == rule_id)
    if user_id is not None:
        stmt = stmt.where(entries.c.user_id == user_id)
    if until is not None:
        stmt = stmt.where(sa.func.coalesce(entries.c.event_date, entry_day(conn, entries),
                                           type_=sa.Date) <= until)
    return [entry(row) for row in conn.execute(stmt.order_by(entries.c.id))]


def entry_day(conn: Connection, table: sa.TableClause | sa.Table | Any = _E) -> Any:
    """SQL for an entry's business date (rows older than the column: the timestamp's UTC date)."""
    return sa.func.coalesce(table.c.business_date, backend(conn).utc_date(table.c.timestamp),
                            type_=sa.Date)


def move_day(conn: Connection, table: sa.TableClause | sa.Table | Any = _T) -> Any:
    """SQL for a transition's business date (older rows: the UTC date of ``at``)."""
    return sa.func.coalesce(table.c.business_date, backend(conn).utc_date(table.c.at),
                            type_=sa.Date)


def last_move_dates(conn: Connection, entry_ids: Sequence[int]) -> dict[int, date]:
    """Per entry id, the business date of its latest transition."""
    stmt = sa.select(_T.c.entry_id, sa.func.max(move_day(conn), type_=sa.Date)).group_by(
        _T.c.entry_id)
    rows = backend(conn).select_ids(conn, stmt, _T.c.entry_id, list(entry_ids))
    return {r[0]: r[1] for r in map(tuple, rows)}


def live_covers(conn: Connection, entry_ids: Sequence[int]) -> dict[int, str]:
    """Which of ``entry_ids`` a live payout item (created, sent or paid) covers: id -> item id."""
    item = _E.alias("item")
    stmt = (
        sa.select(payout_covers.c.entry_id, payout_items.c.item_id)
        .join(item, item.c.id == payout_covers.c.item_entry_id)
        .join(payout_items, payout_items.c.entry_id == item.c.id)
        .where(latest_status(item).in_(LIVE_ITEM_STATUSES))
    )
    rows = backend(conn).select_ids(conn, stmt, payout_covers.c.entry_id, list(entry_ids))
    return {r[0]: r[1] for r in map(tuple, rows)}


@dataclass(frozen=True)
class ExportFilter:
    """``ledger export`` filters; None is no filter.  Dates bound the business date."""

    status: str | None = None
    rule_id: str | None = None
    user_id: str | None = None
    start: date | None = None
    end: date | None = None


def iter_export(conn: Connection, where: ExportFilter = ExportFilter()) -> Iterator[dict[str, Any]]:
    """Every entry (filtered) in ledger order as an export record (``EXPORT_FIELDS``), streamed:
    memory stays flat however many rows.  ``paid_date`` is the business date of the move to
    ``paid``; ``payout_batch`` the batch of the item that paid the credit (or, for an item,
    its own batch)."""
    paid = _T.alias("paid")
    item = payout_items.alias("item")
    own = payout_items.alias("own")
    status = latest_status(_E).label("status")
    day = entry_day(conn).label("day")
    stmt = (
        sa.select(*_E.c, status, day, move_day(conn, paid).label("paid_date"),
                  sa.func.coalesce(item.c.batch_id, own.c.batch_id).label("payout_batch"))
        .select_from(
            _E.outerjoin(paid, sa.and_(paid.c.entry_id == _E.c.id, paid.c.to_status == "paid"))
            .outerjoin(item, item.c.entry_id == paid.c.item_id)
            .outerjoin(own, own.c.entry_id == _E.c.id)
        )
        .order_by(_E.c.id)
    )
    if where.rule_id is not None:
        stmt = stmt.where(_E.c.rule_id == where.rule_id)
    if where.user_id is not None:
        stmt = stmt.where(_E.c.user_id == where.user_id)
    if where.start is not None:
        stmt = stmt.where(entry_day(conn) >= where.start)
    if where.end is not None:
        stmt = stmt.where(entry_day(conn) <= where.end)
    if where.status is not None:
        stmt = stmt.where(latest_status(_E) == where.status)
    for row in conn.execute(stmt.execution_options(yield_per=1000)):
        m = row._mapping
        yield {
            "user_id": m["user_id"], "amount": m["amount"], "currency": m["currency"],
            "entry_type": m["entry_type"], "status": m["status"],
            "reference_id": m["reference_id"], "reversal_id": m["reversal_id"],
            "timestamp": format_timestamp(m["timestamp"]),
            "business_date": _iso(m["day"]), "rule_id": m["rule_id"],
            "referral_id": m["referral_id"], "role": m["role"],
            "event_date": _iso(m["event_date"]), "hold_until": _iso(m["hold_until"]),
            "run_id": m["run_id"], "paid_date": _iso(m["paid_date"]),
            "payout_batch": m["payout_batch"],
        }


def _iso(day: date | None) -> str | None:
    return day.isoformat() if day is not None else None


def balance(conn: Connection, user_id: str) -> dict[str, Balance]:
    """Per currency: credits by current status, and net (see the package docstring).

    A sum beyond 64 bits (SQLite's integers) is a LedgerError naming the user and
    currency, not a database failure."""
    try:
        return _balance(conn, user_id)
    except sa.exc.OperationalError as e:
        if not backend(conn).is_overflow(e):
            raise
        currencies = conn.execute(sa.select(_E.c.currency).where(_E.c.user_id == user_id)
                                  .distinct().order_by(_E.c.currency)).scalars().all()
        for currency in currencies:
            try:
                conn.execute(sa.select(sa.func.sum(_P.c.amount)).where(
                    _P.c.account == user_account(user_id), _P.c.currency == currency))
                conn.execute(sa.select(sa.func.sum(_E.c.amount)).where(
                    _E.c.user_id == user_id, _E.c.currency == currency))
            except sa.exc.OperationalError:
                raise LedgerError(f"the balance of user {user_id} in {currency} does not fit"
                                  " 64 bits (more than 9,223,372,036,854,775,807 minor units)"
                                  ) from None
        raise LedgerError(f"a balance of user {user_id} does not fit 64 bits") from None


def _balance(conn: Connection, user_id: str) -> dict[str, Balance]:
    entries = entries_with_status.where(_E.c.user_id == user_id).subquery()
    totals: dict[str, dict[str, int]] = defaultdict(dict)
    for currency, status, total in conn.execute(
        sa.select(entries.c.currency, entries.c.status, sa.func.sum(entries.c.amount))
        .where(entries.c.entry_type == "credit")
        .group_by(entries.c.currency, entries.c.status)
    ):
        totals[currency][status] = as_int(total)
    for currency, total in conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account == user_account(user_id))
        .group_by(_P.c.currency)
    ):
        totals[currency]["net"] = as_int(total)
    return {currency: Balance(**totals[currency]) for currency in sorted(totals)}


def program_balance(conn: Connection) -> dict[str, int]:
    """The funding account per currency (negative: granted to users, net of reversals)."""
    rows = conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account == FUNDING_ACCOUNT)
        .group_by(_P.c.currency)
        .order_by(_P.c.currency)
    )
    return {currency: as_int(total) for currency, total in rows}


def credited_totals_many(
    conn: Connection, wanted: Iterable[TotalsKey]
) -> dict[TotalsKey, dict[str, int]]:
    """Per (rule, user, role, period start, end) and currency: the rule's credits to the user
    (in that role; every role when it is None) not reversed with start <= event_date < end,
    for settlement's LIMIT caps.

    Every key asked for is in the result (``{}`` when nothing counts); None
    bounds are open.  On PostgreSQL one query answers them all.
    """
    keys = list(dict.fromkeys(wanted))
    result: dict[TotalsKey, dict[str, int]] = {key: {} for key in keys}
    if not keys:
        return result
    db = backend(conn)
    try:
        rows = list(db.credited_totals(conn, keys))
    except sa.exc.OperationalError as e:
        if not db.is_overflow(e):
            raise
        for key in keys:  # which one: ask each alone
            try:
                list(db.credited_totals(conn, [key]))
            except sa.exc.OperationalError:
                raise LedgerError(
                    f"the credits of rule {key[0]} to user {key[1]} sum beyond 64 bits"
                    " (more than 9,223,372,036,854,775,807 minor units)") from None
        raise
    for rule_id, user, role, start, end, currency, total in rows:
        result[(rule_id, user, role, start, end)][currency] = as_int(total)
    return result


def head(conn: Connection) -> tuple[int, str] | None:
    """The newest entry's id and hash (the chain's head), or None for an empty ledger."""
    row = conn.execute(sa.select(_E.c.id, _E.c.hash).order_by(_E.c.id.desc()).limit(1)).first()
    return (row.id, row.hash) if row else None


def ledger_anchors(conn: Connection) -> dict[int, tuple[str, str]]:
    """Entry id -> (hash, who recorded it) of the ledger head recorded by each settlement run
    and each payout batch."""
    anchors: dict[int, tuple[str, str]] = {}
    for table, key, what in ((payout_batches, "batch_id", "payout batch"),
                             (settlement_runs, "run_id", "run")):
        rows = conn.execute(
            sa.select(table.c.ledger_head_id, table.c.ledger_head_hash, table.c[key])
            .where(table.c.ledger_head_id.is_not(None))
            .order_by(table.c.ledger_head_id)
        )
        for head_id, head_hash, name in rows:
            anchors[head_id] = (head_hash, name if what == "run" else f"{what} {name}")
    return anchors
