"""What the program owes and is owed at the end of a business date, from the history alone.

Per currency (and per rule or per person), as of the end of day ``D``:

- ``pending``: credits still held (posted, not yet confirmed or reversed);
- ``payable``: confirmed credits in no open payout, net of outstanding clawback
  debt (``netting``), per person never below zero;
- ``in_payout``: payout items created or sent, not yet paid or failed;
- ``paid_out``: cash that left (paid items, credits paid by hand), never reduced by
  a later clawback;
- ``clawed_back``: reversals of credits whose money had left or was leaving;
- ``receivable``: clawback debt people still owe, after netting;
- ``liability = pending + payable + in_payout``.

The identity (README): ``granted - reversed = pending + payable + in_payout +
paid_out - receivable``; ``verify`` checks it, and that these figures for the
newest date equal the ledger's current state computed another way.

Every figure is a sum of signed contributions of rows dated (business date) on
or before ``D``: entries, transitions, payout covers.  Rows are never changed or
removed and a move is never dated before the move it follows, so a report for a
past date never changes when later runs post.  Netting is per person, across
rules: with ``by="rule"`` each rule's row is gross (its own confirmed credits and
its own debt; ``rule_id`` None for credits posted by hand) and one row
``NETTING_ROW`` holds the netting, so the rows add up to the totals.  Only people
with debt are grouped one by one; the totals of everyone else come from the
identity.

The totals and the rules' rows sum the daily aggregate (``settlement.ledger.daily``: what
each operation's entries, moves and covers add per business date) plus the reversal
debits, read from the ledger because a clawback's debt depends on where its credit's money
was on the day asked about; ``reference=True`` computes everything from the rows alone
(what ``verify`` compares against).  ``by="user"`` and the debtors' netting read the rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.ledger import daily
from settlement.ledger.netting import outstanding_debts, payable_credits
from settlement.ledger.reads import as_int, entry_day, move_day
from settlement.tables import (
    entries_with_status,
    ledger_entries,
    ledger_transitions,
    payout_covers,
)

_E, _T = ledger_entries, ledger_transitions
FIGURES = ("pending", "payable", "in_payout", "paid_out", "clawed_back", "receivable",
           "liability")
GROUPINGS = ("none", "rule", "user")
# The rule_id of the row that holds the netting across rules (rule ids are identifiers).
NETTING_ROW = "(netting)"
# Past this many debtors, grouping everyone by person beats a long IN list.
MAX_LISTED_DEBTORS = 5000
_BUCKETS = ("g", "r", "p", "i", "o", "d", "c")  # granted reversed pending in-payout paid debt claw


@dataclass
class Standing:
    """The figures of one currency (and rule or person); see the module docstring."""

    pending: int = 0
    payable: int = 0
    in_payout: int = 0
    paid_out: int = 0
    clawed_back: int = 0
    receivable: int = 0
    granted: int = 0
    reversed: int = 0

    @property
    def liability(self) -> int:
        return self.pending + self.payable + self.in_payout

    def balances(self) -> bool:
        """granted - reversed = pending + payable + in_payout + paid_out - receivable."""
        return self.granted - self.reversed == (
            self.pending + self.payable + self.in_payout + self.paid_out - self.receivable)

    def as_json(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIGURES}

    def add(self, other: Standing) -> None:
        for name in ("pending", "payable", "in_payout", "paid_out", "clawed_back", "receivable",
                     "granted", "reversed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class Liabilities:
    as_of: date | None
    by: str
    currencies: dict[str, Standing] = field(default_factory=dict)
    # (rule id or user id or None, currency, figures), in key order.
    rows: list[tuple[str | None, str, Standing]] = field(default_factory=list)


def _zero() -> sa.ColumnElement[Any]:
    return sa.literal(0, sa.BigInteger)


def _piece(keys: list[Any], **buckets: Any) -> list[Any]:
    return keys + [sa.cast(buckets.get(b, _zero()), sa.BigInteger).label(b) for b in _BUCKETS]


def _live_at(conn: Connection, item: Any, as_of: date | None, statuses: tuple[str, ...]) -> Any:
    """EXISTS: the item (correlated) moved to one of ``statuses`` on or before ``as_of``."""
    moved = _T.alias()
    cond = sa.exists().where(moved.c.entry_id == item.c.id, moved.c.to_status.in_(statuses))
    if as_of is not None:
        cond = cond.where(move_day(conn, moved) <= as_of)
    return cond


def _dated(conn: Connection, expr: Any, as_of: date | None) -> Any:
    return sa.true() if as_of is None else expr <= as_of


def _pieces(
    conn: Connection, as_of: date | None, users: list[str] | None
) -> list[sa.Select[Any]]:
    """The signed contributions, one select per kind of row (see the module docstring)."""
    def keys(t: Any) -> list[Any]:
        return [t.c.user_id.label("user_id"), t.c.currency.label("currency"),
                t.c.rule_id.label("rule_id")]

    def only(stmt: sa.Select[Any], t: Any) -> sa.Select[Any]:
        return stmt if users is None else stmt.where(t.c.user_id.in_(users))

    # (users: None for everyone, else the debtors' ids.)

    credit = sa.case((_E.c.entry_type == "credit", _E.c.amount), else_=0)
    debit = sa.case((_E.c.entry_type == "debit", -_E.c.amount), else_=0)
    entries = sa.select(*_piece(keys(_E), g=credit, r=debit)).where(
        _E.c.entry_type != "payout", _dated(conn, entry_day(conn), as_of))
    opened = sa.and_(_T.c.from_status.is_(None), _T.c.to_status == "pending")
    pending = (
        sa.select(*_piece(keys(_E), p=sa.case((opened, _E.c.amount), else_=-_E.c.amount)))
        .select_from(_T.join(_E, _E.c.id == _T.c.entry_id))
        .where(_E.c.entry_type == "credit", sa.or_(opened, _T.c.from_status == "pending"),
               _dated(conn, move_day(conn), as_of))
    )
    by_hand = (
        sa.select(*_piece(keys(_E), o=_E.c.amount))
        .select_from(_T.join(_E, _E.c.id == _T.c.entry_id))
        .where(_E.c.entry_type == "credit", _T.c.to_status == "paid", _T.c.item_id.is_(None),
               _dated(conn, move_day(conn), as_of))
    )
    item = _E.alias("item")
    covered = _E.alias("covered")
    paid = _live_at(conn, item, as_of, ("paid",))
    done = _live_at(conn, item, as_of, ("paid", "failed"))
    covers = (
        sa.select(*_piece(keys(covered),
                          i=sa.case((done, 0), else_=covered.c.amount),
                          o=sa.case((paid, covered.c.amount), else_=0)))
        .select_from(payout_covers.join(item, item.c.id == payout_covers.c.item_entry_id)
                     .join(covered, covered.c.id == payout_covers.c.entry_id))
        .where(_dated(conn, entry_day(conn, item), as_of))
    )
    pieces = [only(entries, _E), only(pending, _E), only(by_hand, _E), only(covers, covered)]
    pieces.append(only(_debts(conn, as_of), _E))
    return pieces


def _debts(conn: Connection, as_of: date | None) -> sa.Select[Any]:
    """Reversal debits (dated by ``as_of``) whose credit's money had left or was leaving then:
    all of them are clawed back; those no live item had recovered are still owed."""
    credit = _E.alias("reversed_credit")
    by_hand = _T.alias("paid_by_hand")
    legacy = sa.exists().where(by_hand.c.entry_id == credit.c.id,
                               by_hand.c.to_status == "paid", by_hand.c.item_id.is_(None),
                               _dated(conn, move_day(conn, by_hand), as_of))
    settled = sa.or_(legacy, _covered_live(conn, credit, as_of))
    owed = sa.case((_covered_live(conn, _E, as_of), 0), else_=-_E.c.amount)
    return (
        sa.select(*_piece([_E.c.user_id.label("user_id"), _E.c.currency.label("currency"),
                           _E.c.rule_id.label("rule_id")], d=owed, c=-_E.c.amount))
        .join(credit, credit.c.reference_id == _E.c.reversal_id)
        .where(_E.c.entry_type == "debit", _dated(conn, entry_day(conn), as_of), settled)
    )


def _covered_live(conn: Connection, entries: Any, as_of: date | None) -> Any:
    """EXISTS: an item created by ``as_of`` and not failed by then covers the entry."""
    item = _E.alias("live_item")
    return (
        sa.exists()
        .where(payout_covers.c.entry_id == entries.c.id,
               item.c.id == payout_covers.c.item_entry_id,
               _dated(conn, entry_day(conn, item), as_of),
               ~_live_at(conn, item, as_of, ("failed",)))
        .correlate(entries)
    )


def _sums(conn: Connection, pieces: list[sa.Select[Any]], keys: tuple[str, ...],
          currency: str | None, *, stream: bool = True
          ) -> Iterator[tuple[tuple[Any, ...], dict[str, int]]]:
    """Bucket sums per ``keys``; ``stream`` (per person: many rows) on a server-side cursor,
    which on PostgreSQL doubles the time of a query of few rows."""
    union = sa.union_all(*pieces).subquery("movements")
    stmt = sa.select(*(union.c[k] for k in keys),
                     *(sa.func.sum(union.c[b]).label(b) for b in _BUCKETS))
    if currency is not None:
        stmt = stmt.where(union.c.currency == currency)
    stmt = stmt.group_by(*(union.c[k] for k in keys)).order_by(*(union.c[k] for k in keys))
    for row in conn.execute(stmt.execution_options(yield_per=1000) if stream else stmt):
        m = row._mapping
        yield tuple(m[k] for k in keys), {b: as_int(m[b]) for b in _BUCKETS}


def _standing(b: dict[str, int], *, gross: bool) -> Standing:
    """Figures from buckets; ``gross``: payable and receivable before netting."""
    confirmed = b["g"] - b["r"] - b["p"] - b["i"] - b["o"] + b["d"]
    payable, receivable = (confirmed, b["d"]) if gross else (
        max(confirmed - b["d"], 0), max(b["d"] - confirmed, 0))
    return Standing(pending=b["p"], payable=payable, in_payout=b["i"], paid_out=b["o"],
                    clawed_back=b["c"], receivable=receivable, granted=b["g"], reversed=b["r"])


def _days(as_of: date | None) -> sa.Select[Any]:
    """The daily aggregate's sums as one more piece (no person: totals and rules only)."""
    d = daily.summed(as_of).subquery("days")
    return sa.select(*_piece([sa.cast(sa.null(), sa.String).label("user_id"),
                              d.c.currency.label("currency"), d.c.rule_id.label("rule_id")],
                             g=d.c.granted, r=d.c.reversed, p=d.c.pending, i=d.c.in_payout,
                             o=d.c.paid_out))


def _with_debts(
    days: Iterator[tuple[tuple[Any, ...], dict[str, int]]],
    owed: list[tuple[tuple[Any, ...], dict[str, int]]], keys: tuple[str, ...],
    currency: str | None,
) -> Iterator[tuple[tuple[Any, ...], dict[str, int]]]:
    """The aggregate's sums per ``keys`` with the debits' (per person, currency, rule)."""
    out = dict(days)
    for (_, cur, rule), b in owed:
        if currency is not None and cur != currency:
            continue
        key = (cur,) if keys == ("currency",) else (rule, cur)
        into = out.setdefault(key, dict.fromkeys(_BUCKETS, 0))
        for name, amount in b.items():
            into[name] += amount
    yield from out.items()


def liabilities(
    conn: Connection, as_of: date | None, *, by: str = "none", currency: str | None = None,
    reference: bool = False,
) -> Liabilities:
    """The standing at the end of ``as_of`` (None: everything the ledger holds).

    Totals and rules come from the daily aggregate (``settlement.ledger.daily``) and the
    debits; ``reference``: from the entries, transitions and covers alone, as ``verify``
    and the tests compare.  Per person (``by="user"``) always reads the history."""
    if by not in GROUPINGS:
        raise ValueError(f"by must be one of {GROUPINGS}, not {by!r}")
    report = Liabilities(as_of=as_of, by=by)
    if by == "user":
        for (user, cur), b in _sums(conn, _pieces(conn, as_of, None), ("user_id", "currency"),
                                    currency):
            s = _standing(b, gross=False)
            report.rows.append((user, cur, s))
            report.currencies.setdefault(cur, Standing()).add(s)
        report.currencies = dict(sorted(report.currencies.items()))
        return report
    keys = ("currency",) if by == "none" else ("rule_id", "currency")
    if reference:
        debtors = _debts(conn, as_of).subquery()
        owing = sa.select(debtors.c.user_id).where(debtors.c.d != 0).distinct()
        people = list(conn.execute(owing).scalars())
        totals = _sums(conn, _pieces(conn, as_of, None), keys, currency)
    else:  # the debits are read once: who owes, and what the rules' rows need
        owed = list(_sums(conn, [_debts(conn, as_of)], ("user_id", "currency", "rule_id"),
                          None, stream=False))
        people = sorted({key[0] for key, b in owed if b["d"]})
        totals = _with_debts(_sums(conn, [_days(as_of)], keys, currency, stream=False), owed,
                             keys, currency)
    netted: dict[str, int] = defaultdict(int)
    if people:  # netting needs each debtor's own figures; nobody else's
        listed = people if len(people) <= MAX_LISTED_DEBTORS else None
        for (_, cur), b in _sums(conn, _pieces(conn, as_of, listed), ("user_id", "currency"),
                                 currency):
            netted[cur] += _standing(b, gross=False).receivable
    for key, b in totals:
        gross = _standing(b, gross=True)
        cur = key[-1]
        total = report.currencies.setdefault(cur, Standing())
        total.add(gross)
        if by == "rule":
            report.rows.append((key[0], cur, gross))
    for cur, total in report.currencies.items():
        # Gross payable - debt + receivable after netting = what people can be paid.
        settled = total.receivable - netted.get(cur, 0)
        total.payable -= settled
        total.receivable -= settled
        if by == "rule" and settled:
            report.rows.append((NETTING_ROW, cur,
                                Standing(payable=-settled, receivable=-settled)))
    report.currencies = dict(sorted(report.currencies.items()))
    report.rows.sort(key=lambda r: (r[1], r[0] == NETTING_ROW, r[0] is not None, r[0] or ""))
    return report


def identity_problems(conn: Connection) -> list[str]:
    """The identity, and the report for all of history against the current state."""
    problems: list[str] = []
    report = liabilities(conn, None, reference=True)
    now = _current(conn)
    for cur in sorted(set(report.currencies) | set(now)):
        got, want = report.currencies.get(cur, Standing()), now.get(cur, Standing())
        if not got.balances():
            problems.append(f"liabilities in {cur} do not balance: granted - reversed = "
                            f"{got.granted - got.reversed}, pending + payable + in_payout + "
                            f"paid_out - receivable = {got.pending + got.payable + got.in_payout}"
                            f" + {got.paid_out} - {got.receivable}")
        for name in ("pending", "payable", "in_payout", "paid_out", "receivable", "granted",
                     "reversed"):
            if getattr(got, name) != getattr(want, name):
                problems.append(f"liabilities in {cur}: {name} from the history is "
                                f"{getattr(got, name)}, the ledger's current state says "
                                f"{getattr(want, name)}")
    return problems


def aggregate_report_problems(conn: Connection) -> list[str]:
    """The report for all of history from the daily aggregate against the history alone."""
    problems = []
    for by in ("none", "rule"):
        fast = liabilities(conn, None, by=by)
        slow = liabilities(conn, None, by=by, reference=True)
        if (fast.currencies, fast.rows) != (slow.currencies, slow.rows):
            problems.append(f"liabilities by {by} from the daily aggregate differ from the"
                            f" history: {_shown(fast)} against {_shown(slow)}")
    return problems


def _shown(report: Liabilities) -> str:
    return "; ".join([f"{c} {s.as_json()}" for c, s in report.currencies.items()]
                     + [f"{k} {c} {s.as_json()}" for k, c, s in report.rows])


def _current(conn: Connection) -> dict[str, Standing]:
    """The figures from current statuses and the netting selects (no business dates)."""
    out: dict[str, Standing] = defaultdict(Standing)
    entries = entries_with_status.subquery()
    rows = conn.execute(
        sa.select(entries.c.currency, entries.c.entry_type, entries.c.status,
                  sa.func.sum(entries.c.amount))
        .group_by(entries.c.currency, entries.c.entry_type, entries.c.status)
    )
    for cur, kind, status, total in rows:
        s, amount = out[cur], as_int(total)
        if kind == "credit":
            s.granted += amount
            s.pending += amount if status == "pending" else 0
        elif kind == "debit":
            s.reversed -= amount
        elif status in ("created", "sent"):
            s.in_payout += amount
        elif status == "paid":
            s.paid_out += amount
    by_hand = conn.execute(
        sa.select(_E.c.currency, sa.func.sum(_E.c.amount))
        .join(_T, _T.c.entry_id == _E.c.id)
        .where(_E.c.entry_type == "credit", _T.c.to_status == "paid", _T.c.item_id.is_(None))
        .group_by(_E.c.currency)
    )
    for cur, total in by_hand:
        out[cur].paid_out += as_int(total)
    per_user: dict[tuple[str, str], int] = defaultdict(int)
    for stmt in (payable_credits(conn), outstanding_debts(conn)):
        sub = stmt.subquery()
        for user, cur, total in conn.execute(
            sa.select(sub.c.user_id, sub.c.currency, sa.func.sum(sub.c.amount))
            .group_by(sub.c.user_id, sub.c.currency)
        ):
            per_user[(user, cur)] += as_int(total)
    for (_, cur), net in per_user.items():
        out[cur].payable += max(net, 0)
        out[cur].receivable += max(-net, 0)
    return dict(out)
