"""Writing the ledger: credits, status moves, reversals; all under the ledger writer lock.

Writers join the caller's transaction when there is one (the settlement batch
posts thousands of entries in one) and otherwise open their own; either way
they first take the ledger writer lock (``settlement.locks``), so entry ids and
the hash chain are assigned in one order.  Idempotency rests on the UNIQUE
reference_id: inserts are ``INSERT ... ON CONFLICT DO NOTHING``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.errors import MoneyError
from dsl.money import Money, exponent, format_money
from settlement.dialect import backend
from settlement.errors import EntryNotFound, IdempotencyConflict, IllegalTransition, LedgerError
from settlement.ledger.hashing import GENESIS_HASH, HASHED_COLUMNS, entry_hash
from settlement.ledger.reads import find_entries, head
from settlement.ledger.types import (
    FUNDING_ACCOUNT,
    INITIAL_STATUSES,
    LEGAL_MOVES,
    RESERVED_PREFIXES,
    REVERSAL_PREFIX,
    BulkPostResult,
    CreditRequest,
    Entry,
    PostResult,
    TransitionResult,
    payout_account,
    user_account,
)
from settlement.locks import lock_ledger
from settlement.tables import (
    UTCDateTime,
    latest_status,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings


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


def _now() -> datetime:
    return datetime.now(UTC)


def _describe(user_id: str, amount: int, currency: str, entry_type: str) -> str:
    return f"user {user_id}, {format_money(Money(amount, currency))} {entry_type}"


def _validate(req: CreditRequest, *, reserved: bool) -> None:
    if not req.reference_id or not req.reference_id.strip():
        raise LedgerError("a ledger entry needs a non-empty reference")
    if req.reference_id.startswith(REVERSAL_PREFIX):
        raise LedgerError(
            f"reference {req.reference_id!r} is reserved: {REVERSAL_PREFIX!r} names reversals"
        )
    prefix = next((p for p in RESERVED_PREFIXES if req.reference_id.startswith(p)), None)
    if prefix is not None and not reserved:
        raise LedgerError(
            f"reference {req.reference_id!r} is reserved: {prefix!r} references are posted by"
            " settlement and payouts only"
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
    db = backend(conn)
    now = _now()
    last = head(conn)
    next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    statuses: list[str] = []
    for spec in specs:
        row: dict[str, Any] = dict.fromkeys(HASHED_COLUMNS)
        row.update({k: v for k, v in spec.items() if k != "status"})
        row.update(id=next_id, timestamp=now, actor=actor, prev_hash=prev)
        row["hash"] = prev = entry_hash(row)
        rows.append(row)
        statuses.append(spec["status"])
        next_id += 1
    if db.insert_entries(conn, rows) != len(rows):
        raise LedgerError(
            "another writer added entries without the ledger lock; nothing was written, retry"
        )
    db.append_rows(
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
    db.append_rows(conn, _P, postings)
    return [Entry(**row, status=status) for row, status in zip(rows, statuses, strict=True)]


def post_credits(
    conn: Connection,
    requests: Sequence[CreditRequest],
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
    known: Mapping[str, Entry] | None = None,
    reserved: bool = False,
) -> BulkPostResult:
    """Post many credits with set-based SQL; existing references are returned, not reposted.

    A reference that exists with another payload (user, amount, currency)
    raises IdempotencyConflict and nothing is written.  A reference repeated
    within ``requests`` is posted once.

    ``known``: the caller already looked the requests' references up in this
    transaction while holding the ledger lock (``find_entries`` after
    ``lock_ledger``), so the lookup is not repeated.  A reference missing from
    it is taken as absent; the unique reference_id still refuses a duplicate.

    ``reserved``: the caller is settlement or payouts, which own the reserved
    reference prefixes (``RESERVED_PREFIXES``); anyone else is refused them.
    """
    for req in requests:
        _validate(req, reserved=reserved)
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
             "hold_until": r.hold_until, "adjusts": r.adjusts, "status": r.status}
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

    ``provenance``: rule_id, rule_hash, referral_id, role, event_date, hold_until.  The
    reserved reference prefixes (``reward:``, ``reversal:``, ``payout:``) are refused.
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
        backend(conn).append_rows(conn, _T, rows)
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
    backend(conn).append_rows(conn, _P, postings)


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
                latest_status(_E) == "pending",
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
    known: Mapping[str, Entry] | None = None,
) -> list[PostResult]:
    """Reverse entries (in input order): post ``reversal:<ref>`` debits, mark originals reversed.

    An entry already reversed returns its existing reversal (created=False);
    reversing a reversal is refused.  ``known``: the entries, as the caller read them
    under the ledger lock in this transaction; those not reversed then need no lookup.
    """
    if not reason or not reason.strip():
        raise LedgerError("a reversal needs a reason")
    wanted = list(refs)
    with _writing(conn):
        given = known or {}
        unknown = [ref for ref in wanted if ref not in given or given[ref].status == "reversed"]
        originals = {**given, **find_entries(conn, unknown)}
        reversals = find_entries(conn, (REVERSAL_PREFIX + ref for ref in unknown))
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
                "event_date": original.event_date, "hold_until": None, "adjusts": None,
                "status": "confirmed",
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
