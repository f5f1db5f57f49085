"""The liabilities report's daily aggregate: ``liability_days``.

Most of what ``settlement.ledger.liabilities`` sums is a signed amount that one row (or
one pair of rows) adds on one business date, per currency and rule:

- ``granted`` / ``reversed``: a credit / a reversal debit, on its entry's date;
- ``pending``: a credit's opening ``pending`` move (+) and its move out of ``pending``
  (-), on the move's date;
- ``paid_out``: a credit paid by hand (``ledger pay``), on the move's date;
- ``in_payout`` / ``paid_out``: a payout cover adds the covered entry's amount to
  ``in_payout`` on its item's date; the item's one ``paid`` or ``failed`` move (items
  are final there) takes it out again, and ``paid`` adds it to ``paid_out``, on the
  move's date.  A move is never dated before its entry (``settlement.ledger.writes``),
  so these deltas sum, as of any date, to what the report computes from the rows.

So each operation, when it is sealed (``settlement.operations.seal``, inside its
transaction), folds the rows it wrote into one ``liability_days`` row per business
date, currency and rule (a cover/move pair is folded by whichever of the two operations
comes later in the log), and carries its op id: the rows are sealed with the rest,
append-only, and a report as of ``D`` sums the rows dated on or before ``D``.  A row
dated in the past (``--backfill``) changes the reports of that date on, exactly as the
entries do.

What is left to the report itself: clawbacks and netting (a reversal's debt depends on
where its credit's money was on the day asked about), read from the debits, which are few.

``verify`` checks the rows against a fold of every row (``aggregate_problems``); the
report can still be computed from the history alone (``liabilities(reference=True)``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.ledger.reads import as_int, entry_day, move_day
from settlement.tables import (
    RANGED_BY,
    ledger_entries,
    ledger_operations,
    ledger_transitions,
    liability_days,
    payout_covers,
)

_E, _T, _D, _OPS = ledger_entries, ledger_transitions, liability_days, ledger_operations
_UNSEALED = sa.literal(2**62, sa.BigInteger)
FOLDED = ("granted", "reversed", "pending", "in_payout", "paid_out")
Key = tuple[date, str, str | None]  # business date, currency, rule id
MAX_PROBLEMS = 20


def _row(day: Any, entry: Any, **sums: Any) -> list[Any]:
    zero = sa.literal(0, sa.BigInteger)
    return [day.label("business_date"), entry.c.currency.label("currency"),
            entry.c.rule_id.label("rule_id"),
            *(sa.cast(sums.get(name, zero), sa.BigInteger).label(name) for name in FOLDED)]


def contributions(conn: Connection, op_id: str | None,
                  after: Mapping[str, int] | None = None,
                  upto: Mapping[str, int] | None = None) -> list[sa.Select[Any]]:
    """The signed amounts of the rows ``op_id`` wrote (None: of every row), one select
    per kind of row, each (business_date, currency, rule_id, *FOLDED); ``after``: per
    table, an id the operation's rows all follow (the largest tables have no index on
    op_id, ``settlement.operations.Operation.after``), ``upto`` the newest id now."""
    def by(table: Any) -> Any:
        if op_id is None:
            return sa.true()
        bound, name = RANGED_BY.get(table.name, (table.name, ""))
        if after and bound in after:
            column = table.c[name]
            mine = [column > after[bound], table.c.op_id == op_id]
            if upto and bound in upto:
                mine.append(column <= upto[bound])
            return sa.and_(*mine)
        return table.c.op_id == op_id

    credit = sa.case((_E.c.entry_type == "credit", _E.c.amount), else_=0)
    debit = sa.case((_E.c.entry_type == "debit", -_E.c.amount), else_=0)
    entries = sa.select(*_row(entry_day(conn), _E, granted=credit, reversed=debit)).where(
        _E.c.entry_type != "payout", by(_E))
    opened = sa.and_(_T.c.from_status.is_(None), _T.c.to_status == "pending")
    by_hand = sa.and_(_T.c.to_status == "paid", _T.c.item_id.is_(None))
    moves = (
        sa.select(*_row(move_day(conn), _E,
                        pending=sa.case((opened, _E.c.amount),
                                        (_T.c.from_status == "pending", -_E.c.amount),
                                        else_=0),
                        paid_out=sa.case((by_hand, _E.c.amount), else_=0)))
        .select_from(_T.join(_E, _E.c.id == _T.c.entry_id))
        .where(_E.c.entry_type == "credit", by(_T),
               sa.or_(opened, _T.c.from_status == "pending", by_hand))
    )
    item, covered = _E.alias("item"), _E.alias("covered")
    # Each join in the order of the entries it reads (sorted behind OFFSET 0): the covered
    # entries, then the items, each read in the table's order; in the covers' own order
    # every read was a random one (2.6 s for a payout of 475,000 covers).
    op_covers = (sa.select(payout_covers.c.item_entry_id, payout_covers.c.entry_id)
                 .where(by(payout_covers)).order_by(payout_covers.c.entry_id).offset(0)
                 .subquery("op_covers"))
    valued = (sa.select(op_covers.c.item_entry_id, covered.c.currency, covered.c.rule_id,
                        covered.c.amount)
              .select_from(op_covers.join(covered, covered.c.id == op_covers.c.entry_id))
              .order_by(op_covers.c.item_entry_id).offset(0).subquery("valued"))
    covers = (
        sa.select(*_row(entry_day(conn, item), valued, in_payout=valued.c.amount))
        .select_from(valued.join(item, item.c.id == valued.c.item_entry_id))
    )
    def ends(*where: Any) -> sa.Select[Any]:
        # The (item move, cover) pairs first, behind OFFSET 0, then their covered entries:
        # left to itself the planner read the covered entry of every cover of the
        # operation (half a million random reads) before finding no move to pair it with.
        pairs = (
            sa.select(move_day(conn).label("day"), _T.c.to_status,
                      payout_covers.c.entry_id.label("covered_id"))
            .select_from(_T.join(payout_covers,
                                 payout_covers.c.item_entry_id == _T.c.entry_id))
            .where(_T.c.to_status.in_(("paid", "failed")), *where)
            .offset(0).subquery("pairs")
        )
        paid = pairs.c.to_status == "paid"
        return (
            sa.select(*_row(pairs.c.day, covered, in_payout=-covered.c.amount,
                            paid_out=sa.case((paid, covered.c.amount), else_=0)))
            .select_from(pairs.join(covered, covered.c.id == pairs.c.covered_id))
        )

    if op_id is None:
        return [entries, moves, covers, ends()]
    # A pair is the later operation's (in the log's order; the one being sealed is last),
    # so folding an operation again later (after a rewrite) counts each pair once too.
    mine = _rank(sa.literal(op_id, _OPS.c.op_id.type))
    return [entries, moves, covers,
            ends(by(_T), _rank(payout_covers.c.op_id) <= mine),
            ends(by(payout_covers),
                 sa.or_(_T.c.op_id.is_(None), _T.c.op_id != op_id),
                 _rank(_T.c.op_id) < mine)]


def _rank(op_id: Any) -> Any:
    """An operation's place in the log: 0 for rows without an op id, last if not sealed yet."""
    place = sa.select(_OPS.c.id).where(_OPS.c.op_id == op_id).scalar_subquery()
    return sa.case((op_id.is_(None), 0), else_=sa.func.coalesce(place, _UNSEALED))


def _grouped(conn: Connection, op_id: str | None, after: Mapping[str, int] | None = None,
             upto: Mapping[str, int] | None = None) -> sa.Select[Any]:
    union = sa.union_all(*contributions(conn, op_id, after, upto)).subquery("contributions")
    keys = (union.c.business_date, union.c.currency, union.c.rule_id)
    return sa.select(*keys, *(sa.func.sum(union.c[n]).label(n) for n in FOLDED)).group_by(*keys)


def fold(conn: Connection, op_id: str, *, everything: bool = False,
         after: Mapping[str, int] | None = None, upto: Mapping[str, int] | None = None
         ) -> None:
    """Write the aggregate rows of what ``op_id`` wrote (``everything``: of every row there
    is, under ``op_id``; migration 0009 folds the rows from before it so); ``after`` and
    ``upto`` as for ``contributions``."""
    grouped = _grouped(conn, None if everything else op_id, after, upto).subquery("grouped")
    stmt = sa.insert(_D).from_select(
        ["business_date", "currency", "rule_id", *FOLDED, "op_id"],
        sa.select(grouped.c.business_date, grouped.c.currency, grouped.c.rule_id,
                  *(sa.cast(grouped.c[n], sa.BigInteger) for n in FOLDED),
                  sa.literal(op_id, _D.c.op_id.type))
        .order_by(grouped.c.business_date, grouped.c.currency, grouped.c.rule_id),
    )
    conn.execute(stmt)


def summed(as_of: date | None) -> sa.Select[Any]:
    """(currency, rule_id, *FOLDED) summed over the rows dated on or before ``as_of``."""
    keys = (_D.c.currency, _D.c.rule_id)
    stmt = sa.select(*keys, *(sa.func.sum(_D.c[n]).label(n) for n in FOLDED)).group_by(*keys)
    return stmt if as_of is None else stmt.where(_D.c.business_date <= as_of)


def _by_key(conn: Connection, stmt: sa.Select[Any]) -> dict[Key, tuple[int, ...]]:
    out: dict[Key, list[int]] = defaultdict(lambda: [0] * len(FOLDED))
    for row in conn.execute(stmt):
        sums = out[(_as_date(row[0]), row[1], row[2])]
        for i, total in enumerate(row[3:]):
            sums[i] += as_int(total)
    return {k: tuple(v) for k, v in out.items()}


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def aggregate_problems(conn: Connection) -> list[str]:
    """``liability_days`` per business date, currency and rule against a fold of every
    entry, transition and cover there is."""
    keys = (_D.c.business_date, _D.c.currency, _D.c.rule_id)
    stored = _by_key(conn, sa.select(*keys, *(sa.func.sum(_D.c[n]) for n in FOLDED))
                     .group_by(*keys))
    wanted = _by_key(conn, _grouped(conn, None))
    problems = []
    zero = (0,) * len(FOLDED)
    for key in sorted(set(stored) | set(wanted), key=lambda k: (k[0], k[1], k[2] or "")):
        have, want = stored.get(key, zero), wanted.get(key, zero)
        if have != want:
            day, cur, rule = key
            diff = ", ".join(f"{n} {h} (rows say {w})"
                             for n, h, w in zip(FOLDED, have, want, strict=True) if h != w)
            problems.append(f"liability_days {day} {cur} rule {rule}: {diff}")
            if len(problems) >= MAX_PROBLEMS:
                problems.append("(more liability_days differences not shown)")
                break
    return problems
