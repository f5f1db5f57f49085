"""Netting: what a person can be paid, and what they owe.

A person's money in one currency, now (or as seen by a payout as of a date):

- **payable credits** ``C``: credits whose status is ``confirmed`` and that no open
  payout item (``created`` or ``sent``) covers;
- **outstanding debt** ``D``: reversal debits whose credit's money left or is
  leaving (paid by ``ledger pay``, or covered by a live item: created, sent or
  paid) and that no live item has recovered yet;
- ``C - D`` is what a payout pays when it is positive; when it is not, the
  credits stay confirmed and the person's net is ``C - D`` (negative: a
  receivable).  Netting is a computation, not a movement: nothing is posted
  until a payout item covers the credits and the debts it settles, and then its
  amount is exactly ``sum(covered credits) - sum(covered debts)``.

The identity ``verify`` checks per person: ``user:<id>`` (the account's postings)
equals ``pending + C - D``.  Live, open: ``settlement.ledger.reads``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.ledger.reads import (
    LIVE_ITEM_STATUSES,
    OPEN_ITEM_STATUSES,
    entry_day,
    move_day,
)
from settlement.tables import latest_status, ledger_entries, ledger_transitions, payout_covers

_E, _T = ledger_entries, ledger_transitions
_COLUMNS = (_E.c.id, _E.c.user_id, _E.c.currency, _E.c.amount, _E.c.rule_id)


def covered_by(entries: Any, statuses: tuple[str, ...]) -> sa.Exists:
    """EXISTS: a payout item in one of ``statuses`` covers the (correlated) entry."""
    item = _E.alias("cover_item")
    return (
        sa.exists()
        .where(payout_covers.c.entry_id == entries.c.id,
               item.c.id == payout_covers.c.item_entry_id,
               latest_status(item).in_(statuses))
        .correlate(entries)
    )


def payable_credits(conn: Connection, as_of: date | None = None) -> sa.Select[Any]:
    """Credits a payout can cover: confirmed, uncovered; with ``as_of``, dated and confirmed
    on or before it.  Columns: id, user_id, currency, amount, rule_id."""
    if as_of is None:
        when: list[Any] = [latest_status(_E) == "confirmed"]
    else:
        # A credit enters ``confirmed`` once (LEGAL_MOVES: from pending, or written so) and
        # leaves it only for paid or reversed: confirmed now, its newest transition is its
        # confirmation.  So one probe of that transition answers both questions (a second
        # one, for the confirmation's date, took half of the payout's read of its credits).
        newest = _T.alias("newest")
        when = [entry_day(conn) <= as_of, (
            sa.select(sa.and_(newest.c.to_status == "confirmed",
                              move_day(conn, newest) <= as_of))
            .where(newest.c.entry_id == _E.c.id)
            .order_by(newest.c.id.desc()).limit(1)
            .correlate(_E).scalar_subquery()
        ).is_(sa.true())]
    stmt = sa.select(*_COLUMNS).where(
        _E.c.entry_type == "credit", *when, ~covered_by(_E, OPEN_ITEM_STATUSES))
    return stmt


def outstanding_debts(conn: Connection, as_of: date | None = None) -> sa.Select[Any]:
    """Reversal debits still owed (see the module docstring); with ``as_of``, dated on or
    before it.  Columns as ``payable_credits`` (amounts negative)."""
    credit = _E.alias("reversed_credit")
    paid = _T.alias("paid_by_hand")
    settled = sa.or_(
        sa.exists().where(paid.c.entry_id == credit.c.id, paid.c.to_status == "paid",
                          paid.c.item_id.is_(None)),
        covered_by(credit, LIVE_ITEM_STATUSES),
    )
    stmt = (
        sa.select(*_COLUMNS)
        .join(credit, credit.c.reference_id == _E.c.reversal_id)
        .where(_E.c.entry_type == "debit", settled, ~covered_by(_E, LIVE_ITEM_STATUSES))
    )
    if as_of is not None:
        stmt = stmt.where(entry_day(conn) <= as_of)
    return stmt
