"""Verification: the whole ledger re-checked, streamed, problems in ledger order.

Beyond the chain and each entry's shape, postings and moves, the payout
invariants: every item is in its batch and its amount is exactly what its
covered credits minus its covered debts come to (so every rupee that leaves is
traced to the entries it settles); no entry is covered by two live items; a
credit paid by an item is covered by it; the ``payout:`` accounts hold exactly
the paid items plus the credits paid by hand; each batch's clearing account
holds exactly its open items; per person ``user:<id> = pending + C - D``
(``netting``); and per currency ``granted - reversed = pending + payable +
in_payout + paid_out - receivable`` (the liabilities identity of the README); the
liabilities report's daily aggregate equals a fold of every row, and the report from
it equals the one from the history alone.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.ledger.daily import aggregate_problems
from settlement.ledger.hashing import GENESIS_HASH, entry_hash
from settlement.ledger.liabilities import aggregate_report_problems, identity_problems
from settlement.ledger.netting import outstanding_debts, payable_credits
from settlement.ledger.reads import LIVE_ITEM_STATUSES, OPEN_ITEM_STATUSES, as_int
from settlement.ledger.types import (
    LEGAL_MOVES,
    OPENING_STATUSES,
    PAYOUT_PREFIX,
    REVERSAL_PREFIX,
    VerifyReport,
    clearing_account,
    move_postings,
    opening_postings,
)
from settlement.operations import verify_operations
from settlement.tables import (
    entries_with_status,
    latest_status,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
    payout_batches,
    payout_covers,
    payout_items,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings
STREAM_ROWS = 1000


def verify(
    conn: Connection, anchors: Mapping[int, tuple[str, str]] | None = None
) -> VerifyReport:
    """Re-check the whole ledger; problems come in ledger order, the first broken row first.

    Checks: the hash chain, entry shape, legal transition sequences, each
    entry's postings, reversal links (to a reversed original, at most one per
    original), payout items, batches and covers, and that every currency's
    postings sum to zero; then, when all of that holds, the balances derived
    from it (netting per person, the liabilities identity).  Entries,
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
        sa.select(_T.c.entry_id, _T.c.id, _T.c.from_status, _T.c.to_status, _T.c.item_id)
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
        moves = transitions.take(row["id"])
        found = [
            _link_problem(row, prev), _hash_problem(row), _anchor_problem(row, anchors),
            *_check_transitions(row["entry_type"], [(t.id, t.from_status, t.to_status)
                                                    for t in moves]),
            _postings_problem(row, moves, postings.take(row["id"])),
            *_shape_problems(row),
        ]
        problems.extend(f"{name}: {p}" for p in found if p is not None)
        last_id = row["id"]
        prev = row["hash"]
    problems += _missing_anchor_problems(anchors, last_id)
    problems += verify_operations(conn)
    problems += _reversal_problems(conn)
    problems += _payout_problems(conn)
    for currency, total in conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .group_by(_P.c.currency)
        .order_by(_P.c.currency)
    ):
        if as_int(total) != 0:
            problems.append(f"postings in {currency} sum to {as_int(total)}, not zero")
    if not problems:  # balances derived from broken rows would only repeat the news
        problems += _netting_problems(conn)
    return VerifyReport(ok=not problems, problems=problems, checked=checked)


# The detectors of the entry stream, one function each (a test switches each off alone).


def _link_problem(row: Any, prev: str) -> str | None:
    if row["prev_hash"] != prev:
        return ("prev_hash does not match the previous row's hash"
                " (a row was removed, inserted or reordered)")
    return None


def _hash_problem(row: Any) -> str | None:
    if entry_hash(row) != row["hash"]:
        return "hash mismatch (the row was changed after it was written)"
    return None


def _anchor_problem(row: Any, anchors: Mapping[int, tuple[str, str]]) -> str | None:
    anchor = anchors.get(row["id"])
    if anchor is not None and anchor[0] != row["hash"]:
        return f"hash differs from the one {anchor[1]} recorded"
    return None


def _missing_anchor_problems(anchors: Mapping[int, tuple[str, str]], last_id: int
                             ) -> list[str]:
    for anchor_id, (_, recorded_by) in sorted(anchors.items()):
        if anchor_id > last_id:
            return [
                f"entry id={anchor_id} is missing: {recorded_by} recorded it as the ledger head,"
                f" but the ledger ends at id {last_id} (newest entries were removed)"
            ]
    return []


def _postings_problem(row: Any, moves: list[Any], postings: list[Any]) -> str | None:
    kind, user, amount, run = row["entry_type"], row["user_id"], row["amount"], row["run_id"]
    expected = [(0, account, row["currency"], value)
                for account, value in opening_postings(kind, user, amount, run)]
    for t in moves:
        expected += [(t.id, account, row["currency"], value) for account, value in
                     move_postings(kind, t.to_status, user, amount, run, t.item_id)]
    got = [(p.transition_id or 0, p.account, p.currency, p.amount) for p in postings]
    if sorted(got) != sorted(expected):
        return "postings do not match the entry and its transitions"
    return None


def _shape_problems(row: Any) -> list[str]:
    kind, amount, reversal_id = row["entry_type"], row["amount"], row["reversal_id"]
    if kind == "credit" and (amount <= 0 or reversal_id is not None):
        return ["a credit must be positive and reverse nothing"]
    if kind == "debit" and (amount >= 0 or row["reference_id"] != REVERSAL_PREFIX + str(
            reversal_id)):
        return ["a debit must be negative and named reversal:<reversed reference>"]
    if kind == "payout" and (amount <= 0 or reversal_id is not None or row["run_id"] is None
                             or not row["reference_id"].startswith(PAYOUT_PREFIX)):
        return ["a payout item must be positive, in a batch, and named payout:<item id>"]
    return []


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
    original_status = latest_status(original)
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
    credits = entries_with_status.where(_E.c.entry_type == "credit").subquery()
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
    initial = OPENING_STATUSES.get(entry_type, ())
    if first_from is not None or first_to not in initial:
        return [f"illegal initial transition {first_from} -> {first_to}"]
    for (_, _, before), (tid, from_status, to_status) in zip(seq, seq[1:], strict=False):
        if from_status != before:
            return [f"transition id={tid} starts from {from_status}, but the entry was {before}"]
        if (entry_type, from_status, to_status) not in LEGAL_MOVES:
            return [f"transition id={tid} {from_status} -> {to_status} is illegal"]
    return []


def _item_name(item_id: str) -> str:
    return f"payout item {item_id!r}"


def _payout_problems(conn: Connection) -> list[str]:
    """Items, their batches and covers; the payout and clearing accounts."""
    problems: list[str] = []
    items = entries_with_status.where(_E.c.entry_type == "payout").subquery()
    covered = _E.alias("covered")
    cover_sum = (
        sa.select(sa.func.sum(covered.c.amount))
        .select_from(payout_covers.join(covered, covered.c.id == payout_covers.c.entry_id))
        .where(payout_covers.c.item_entry_id == items.c.id)
        .correlate(items)
        .scalar_subquery()
    )
    foreign = (
        sa.select(sa.func.count())
        .select_from(payout_covers.join(covered, covered.c.id == payout_covers.c.entry_id))
        .where(payout_covers.c.item_entry_id == items.c.id,
               sa.or_(covered.c.user_id != items.c.user_id,
                      covered.c.currency != items.c.currency,
                      covered.c.entry_type == "payout"))
        .correlate(items)
        .scalar_subquery()
    )
    rows = conn.execute(
        sa.select(items.c.id, items.c.reference_id, items.c.amount, items.c.currency,
                  items.c.run_id, payout_items.c.item_id, payout_items.c.batch_id,
                  payout_batches.c.currency.label("batch_currency"),
                  cover_sum.label("covered"), foreign.label("foreign"))
        .select_from(items.outerjoin(payout_items, payout_items.c.entry_id == items.c.id)
                     .outerjoin(payout_batches,
                                payout_batches.c.batch_id == payout_items.c.batch_id))
        .order_by(items.c.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    for row in rows:
        name = _entry_name(row.id, row.reference_id)
        if row.item_id is None or row.reference_id != PAYOUT_PREFIX + row.item_id:
            problems.append(f"{name}: is not a payout item of any batch")
            continue
        if row.batch_id != row.run_id or row.batch_currency != row.currency:
            problems.append(f"{name}: does not match its batch {row.batch_id!r}")
        if row.foreign:
            problems.append(f"{name}: covers entries of another person, currency or kind")
        if as_int(row.covered) != row.amount:
            problems.append(
                f"{name}: amount {row.amount} is not what its covered credits minus its "
                f"covered debts come to ({as_int(row.covered)})"
            )
    problems += _cover_problems(conn)
    problems += _account_problems(conn)
    return problems


def _cover_problems(conn: Connection) -> list[str]:
    """No entry under two live items; a credit paid by an item is covered by it."""
    problems: list[str] = []
    item = _E.alias("item")
    twice = conn.execute(
        sa.select(payout_covers.c.entry_id)
        .join(item, item.c.id == payout_covers.c.item_entry_id)
        .where(latest_status(item).in_(LIVE_ITEM_STATUSES))
        .group_by(payout_covers.c.entry_id)
        .having(sa.func.count() > 1)
        .order_by(payout_covers.c.entry_id)
    )
    for entry_id in twice.scalars():
        problems.append(f"entry id={entry_id}: covered by more than one live payout item")
    paid = _T.alias("paid")
    unlinked = conn.execute(
        sa.select(paid.c.entry_id, paid.c.item_id)
        .where(paid.c.item_id.is_not(None),
               ~sa.exists().where(payout_covers.c.item_entry_id == paid.c.item_id,
                                  payout_covers.c.entry_id == paid.c.entry_id))
        .order_by(paid.c.entry_id)
    )
    for entry_id, item_id in unlinked:
        problems.append(f"entry id={entry_id}: paid by item entry id={item_id}, which does "
                        "not cover it")
    return problems


def _account_problems(conn: Connection) -> list[str]:
    """Per currency: ``payout:`` postings = paid items + credits paid by hand; per batch: its
    clearing account = its open items; the batch row's totals = its items."""
    problems: list[str] = []
    items = entries_with_status.where(_E.c.entry_type == "payout").subquery()
    paid_items = dict(conn.execute(
        sa.select(items.c.currency, sa.func.sum(items.c.amount))
        .where(items.c.status == "paid").group_by(items.c.currency)
    ).all())
    by_hand = dict(conn.execute(
        sa.select(_E.c.currency, sa.func.sum(_E.c.amount))
        .join(_T, _T.c.entry_id == _E.c.id)
        .where(_E.c.entry_type == "credit", _T.c.to_status == "paid", _T.c.item_id.is_(None))
        .group_by(_E.c.currency)
    ).all())
    cash = dict(conn.execute(
        sa.select(_P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account.like("payout:%")).group_by(_P.c.currency)
    ).all())
    for currency in sorted(set(paid_items) | set(by_hand) | set(cash)):
        expected = as_int(paid_items.get(currency)) + as_int(by_hand.get(currency))
        if as_int(cash.get(currency)) != expected:
            problems.append(
                f"payout: accounts in {currency} hold {as_int(cash.get(currency))}, but paid "
                f"items and credits paid by hand come to {expected}"
            )
    open_by_batch = dict(conn.execute(
        sa.select(items.c.run_id, sa.func.sum(items.c.amount))
        .where(items.c.status.in_(OPEN_ITEM_STATUSES)).group_by(items.c.run_id)
    ).all())
    clearing = dict(conn.execute(
        sa.select(_P.c.account, sa.func.sum(_P.c.amount))
        .where(_P.c.account.like("clearing:%")).group_by(_P.c.account)
    ).all())
    totals = {row.batch_id: row for row in conn.execute(
        sa.select(payout_items.c.batch_id, sa.func.count().label("n"),
                  sa.func.sum(_E.c.amount).label("total"))
        .join(_E, _E.c.id == payout_items.c.entry_id)
        .group_by(payout_items.c.batch_id)
    )}
    for batch in conn.execute(sa.select(payout_batches).order_by(payout_batches.c.batch_id)):
        held = as_int(clearing.pop(clearing_account(batch.batch_id), 0))
        if held != as_int(open_by_batch.get(batch.batch_id)):
            problems.append(f"payout batch {batch.batch_id!r}: clearing account holds {held}, "
                            f"its open items {as_int(open_by_batch.get(batch.batch_id))}")
        got = totals.get(batch.batch_id)
        n, total = (got.n, as_int(got.total)) if got is not None else (0, 0)
        if (n, total) != (batch.items, batch.total):
            problems.append(f"payout batch {batch.batch_id!r}: records {batch.items} items of "
                            f"{batch.total}, has {n} of {total}")
    for account, held in sorted(clearing.items()):
        if as_int(held):
            problems.append(f"{account} holds {as_int(held)} but no batch owns it")
    return problems


def _netting_problems(conn: Connection) -> list[str]:
    """Per person and currency ``user:<id> = pending + C - D``; per currency the liabilities
    identity, each side computed from its own rows."""
    problems: list[str] = []
    side: dict[tuple[str, str], int] = {}
    credits = entries_with_status.where(_E.c.entry_type == "credit").subquery()
    pending = sa.select(credits.c.user_id, credits.c.currency, credits.c.amount).where(
        credits.c.status == "pending")
    for stmt in (pending, payable_credits(conn), outstanding_debts(conn)):
        sub = stmt.subquery()
        for user, currency, total in conn.execute(
            sa.select(sub.c.user_id, sub.c.currency, sa.func.sum(sub.c.amount))
            .group_by(sub.c.user_id, sub.c.currency)
        ):
            side[(user, currency)] = side.get((user, currency), 0) + as_int(total)
    accounts = conn.execute(
        sa.select(_P.c.account, _P.c.currency, sa.func.sum(_P.c.amount))
        .where(_P.c.account.like("user:%")).group_by(_P.c.account, _P.c.currency)
    )
    held = {(account[len("user:"):], currency): as_int(total)
            for account, currency, total in accounts}
    for key in sorted(set(held) | set(side)):
        if held.get(key, 0) != side.get(key, 0):
            problems.append(
                f"user {key[0]} {key[1]}: account holds {held.get(key, 0)}, but pending + "
                f"payable credits - outstanding debt come to {side.get(key, 0)}"
            )
            if len(problems) >= 20:
                break
    problems += identity_problems(conn)
    problems += aggregate_problems(conn) + aggregate_report_problems(conn)
    return problems
