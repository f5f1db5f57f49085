"""Reading the ledger: entries, histories, balances, LIMIT totals, the chain's head."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.dialect import backend
from settlement.errors import EntryNotFound, LedgerError
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
    ledger_entries,
    ledger_postings,
    ledger_transitions,
    settlement_runs,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings
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
    """Entry id -> (hash, run id) of the ledger head recorded by each settlement run."""
    runs = settlement_runs
    rows = conn.execute(
        sa.select(runs.c.ledger_head_id, runs.c.ledger_head_hash, runs.c.run_id)
        .where(runs.c.ledger_head_id.is_not(None))
        .order_by(runs.c.ledger_head_id)
    )
    return {row.ledger_head_id: (row.ledger_head_hash, row.run_id) for row in rows}
