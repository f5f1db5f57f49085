"""Activity: what moved in each day, week or month, by business date.

Per period and currency (and rule, with ``by_rule``):

- ``granted``: new rewards credited (the first credit of a rule, referral and role,
  or a credit posted by hand);
- ``adjusted``: corrections, net: a later credit of a rule, referral and role that
  already had one (a changed amount re-granted by settlement), minus the reversals
  such a credit replaces;
- ``reversed``: reversals nothing replaced (refunds, clawbacks);
- ``confirmed``: credits that became payable (posted confirmed, or at the end of a
  hold, or approved);
- ``paid_out``: cash that left (payout items paid, credits paid by hand).

Weeks start on Monday (ISO 8601); a period is reported when anything moved in
it.  Rows are computed from dated rows only, so a past period never changes
when later runs post.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.errors import ReportError
from settlement.ledger.reads import as_int, entry_day, move_day
from settlement.tables import ledger_entries, ledger_transitions, payout_covers

_E, _T = ledger_entries, ledger_transitions
PERIODS = ("day", "week", "month")
FIGURES = ("granted", "adjusted", "reversed", "confirmed", "paid_out")


def period_start(day: date, by: str) -> date:
    if by == "week":
        return day - timedelta(days=day.weekday())
    if by == "month":
        return day.replace(day=1)
    return day


@dataclass
class ActivityRow:
    period: date
    currency: str
    rule_id: str | None
    figures: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FIGURES, 0))

    def as_json(self, by_rule: bool) -> dict[str, Any]:
        head: dict[str, Any] = {"period": self.period.isoformat(), "currency": self.currency}
        if by_rule:
            head["rule_id"] = self.rule_id
        return {**head, **self.figures}


def _cols(day: Any, t: Any, **figures: Any) -> list[Any]:
    zero = sa.literal(0, sa.BigInteger)
    return [day.label("day"), t.c.currency.label("currency"), t.c.rule_id.label("rule_id")] + [
        sa.cast(figures.get(f, zero), sa.BigInteger).label(f) for f in FIGURES]


def _events(conn: Connection, start: date, end: date) -> list[sa.Select[Any]]:
    def within(expr: Any) -> Any:
        return sa.and_(expr >= start, expr <= end)

    earlier = _E.alias("earlier")
    later = _E.alias("later")
    credit = _E.alias("original")

    def same_key(other: Any, entry: Any) -> Any:
        return sa.and_(other.c.entry_type == "credit", other.c.rule_id == entry.c.rule_id,
                       other.c.referral_id == entry.c.referral_id, other.c.role == entry.c.role,
                       entry.c.rule_id.is_not(None), entry.c.referral_id.is_not(None))

    replaces = sa.exists().where(same_key(earlier, _E), earlier.c.id < _E.c.id)
    credits = sa.select(*_cols(
        entry_day(conn), _E,
        granted=sa.case((replaces, 0), else_=_E.c.amount),
        adjusted=sa.case((replaces, _E.c.amount), else_=0),
    )).where(_E.c.entry_type == "credit", within(entry_day(conn)))
    replaced = sa.exists().where(same_key(later, credit), later.c.id > credit.c.id)
    debits = (
        sa.select(*_cols(entry_day(conn), _E,
                         adjusted=sa.case((replaced, _E.c.amount), else_=0),
                         reversed=sa.case((replaced, 0), else_=-_E.c.amount)))
        .join(credit, credit.c.reference_id == _E.c.reversal_id)
        .where(_E.c.entry_type == "debit", within(entry_day(conn)))
    )
    moves = (
        sa.select(*_cols(
            move_day(conn), _E,
            confirmed=sa.case((_T.c.to_status == "confirmed", _E.c.amount), else_=0),
            paid_out=sa.case((sa.and_(_T.c.to_status == "paid", _T.c.item_id.is_(None)),
                              _E.c.amount), else_=0),
        ))
        .select_from(_T.join(_E, _E.c.id == _T.c.entry_id))
        .where(_E.c.entry_type == "credit", _T.c.to_status.in_(("confirmed", "paid")),
               within(move_day(conn)))
    )
    covered = _E.alias("covered")
    paid = _T.alias("item_paid")
    items = (
        sa.select(*_cols(move_day(conn, paid), covered, paid_out=covered.c.amount))
        .select_from(paid.join(payout_covers, payout_covers.c.item_entry_id == paid.c.entry_id)
                     .join(covered, covered.c.id == payout_covers.c.entry_id))
        .where(paid.c.to_status == "paid", paid.c.item_id.is_(None),
               sa.exists().where(_E.c.id == paid.c.entry_id, _E.c.entry_type == "payout"),
               within(move_day(conn, paid)))
    )
    return [credits, debits, moves, items]


def activity(
    conn: Connection, start: date, end: date, *, by: str = "month", by_rule: bool = False,
    currency: str | None = None,
) -> list[ActivityRow]:
    """Rows in period, currency (and rule) order; see the module docstring."""
    if by not in PERIODS:
        raise ReportError(f"--by must be one of {', '.join(PERIODS)}, not {by!r}")
    if end < start:
        raise ReportError(f"--to {end} is before --from {start}")
    union = sa.union_all(*_events(conn, start, end)).subquery("activity")
    keys = [union.c.day, union.c.currency, union.c.rule_id]
    stmt = sa.select(*keys, *(sa.func.sum(union.c[f]).label(f) for f in FIGURES)).group_by(*keys)
    if currency is not None:
        stmt = stmt.where(union.c.currency == currency)
    rows: dict[tuple[date, str, str | None], ActivityRow] = {}
    for row in conn.execute(stmt):
        m = row._mapping
        day = m["day"] if isinstance(m["day"], date) else date.fromisoformat(m["day"])
        key = (period_start(day, by), m["currency"], m["rule_id"] if by_rule else None)
        target = rows.setdefault(key, ActivityRow(*key))
        for f in FIGURES:
            target.figures[f] += as_int(m[f])
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], k[2] or ""))]
