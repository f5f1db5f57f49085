"""Verification: the whole ledger re-checked, streamed, problems in ledger order."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.ledger.hashing import GENESIS_HASH, entry_hash
from settlement.ledger.reads import as_int
from settlement.ledger.types import (
    FUNDING_ACCOUNT,
    INITIAL_STATUSES,
    LEGAL_MOVES,
    REVERSAL_PREFIX,
    VerifyReport,
    payout_account,
    user_account,
)
from settlement.tables import (
    entries_with_status,
    latest_status,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings
STREAM_ROWS = 1000


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
        if as_int(total) != 0:
            problems.append(f"postings in {currency} sum to {as_int(total)}, not zero")
    return VerifyReport(ok=not problems, problems=problems, checked=checked)


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
    initial = INITIAL_STATUSES if entry_type == "credit" else ("confirmed",)
    if first_from is not None or first_to not in initial:
        return [f"illegal initial transition {first_from} -> {first_to}"]
    for (_, _, before), (tid, from_status, to_status) in zip(seq, seq[1:], strict=False):
        if from_status != before:
            return [f"transition id={tid} starts from {from_status}, but the entry was {before}"]
        if (entry_type, from_status, to_status) not in LEGAL_MOVES:
            return [f"transition id={tid} {from_status} -> {to_status} is illegal"]
    return []
