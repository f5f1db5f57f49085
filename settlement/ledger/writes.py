"""Writing the ledger: credits, status moves, reversals, payout items; all under the ledger
writer lock.

Writers join the caller's transaction when there is one (the settlement batch
posts thousands of entries in one) and otherwise open their own; either way
they first take the ledger writer lock (``settlement.locks``), so entry ids and
the hash chain are assigned in one order.  Idempotency rests on the UNIQUE
reference_id: inserts are ``INSERT ... ON CONFLICT DO NOTHING``.

Business dates: every entry and transition is dated with the day it belongs
to, beside its wall-clock time: the ``business_date`` a writer is given, else
the one ``business_day(conn, day)`` set for the connection (a settlement run
sets its as-of date), else today.  A move is never dated before the entry's
previous move (or the entry itself): an earlier date is raised to that one, so
the state "at the end of day D" that reports compute is always one the ledger
went through.
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
from dsl.money import MAX_MINOR_UNITS, Money, exponent, format_money
from settlement.dialect import backend
from settlement.errors import EntryNotFound, IdempotencyConflict, IllegalTransition, LedgerError
from settlement.ledger.hashing import GENESIS_HASH, HASHED_COLUMNS, entry_hash
from settlement.ledger.reads import (
    find_entries,
    head,
    last_move_dates,
    live_covers,
    pending_credits,
)
from settlement.ledger.types import (
    INITIAL_STATUSES,
    LEGAL_MOVES,
    PAYOUT_PREFIX,
    RESERVED_PREFIXES,
    REVERSAL_PREFIX,
    BulkPostResult,
    CreditRequest,
    Entry,
    PostResult,
    TransitionResult,
    move_postings,
    opening_postings,
)
from settlement.operations import op_id, operation
from settlement.tables import (
    UTCDateTime,
    latest_status,
    ledger_entries,
    ledger_postings,
    ledger_transitions,
)

_E, _T, _P = ledger_entries, ledger_transitions, ledger_postings


def _now() -> datetime:
    return datetime.now(UTC)


_BUSINESS_DATE_KEY = "settlement.business_date"


@contextmanager
def business_day(conn: Connection, day: date) -> Iterator[None]:
    """Within the block, ledger writes on ``conn`` given no business date are dated ``day``."""
    before = conn.info.get(_BUSINESS_DATE_KEY)
    conn.info[_BUSINESS_DATE_KEY] = day
    try:
        yield
    finally:
        if before is None:
            conn.info.pop(_BUSINESS_DATE_KEY, None)
        else:
            conn.info[_BUSINESS_DATE_KEY] = before


def resolve_business_date(conn: Connection, given: date | None) -> date:
    """The business date a write gets: the one given, the connection's, or today."""
    if given is not None:
        return given
    day = conn.info.get(_BUSINESS_DATE_KEY)
    return day if isinstance(day, date) else date.today()


def _describe(user_id: str, amount: int, currency: str, entry_type: str) -> str:
    return f"user {user_id}, {format_money(Money(amount, currency))} {entry_type}"


# The length of ledger_entries' reference_id and user_id (VARCHAR(255); SQLite: a trigger).
MAX_ID_LENGTH = 255


def _validate(req: CreditRequest, *, reserved: bool) -> None:
    if not req.reference_id or not req.reference_id.strip():
        raise LedgerError("a ledger entry needs a non-empty reference")
    for prefix in (REVERSAL_PREFIX, PAYOUT_PREFIX):
        if req.reference_id.startswith(prefix):
            what = "reversals" if prefix == REVERSAL_PREFIX else "payout items"
            raise LedgerError(
                f"reference {req.reference_id!r} is reserved: {prefix!r} names {what}"
            )
    taken = next((p for p in RESERVED_PREFIXES if req.reference_id.startswith(p)), None)
    if taken is not None and not reserved:
        raise LedgerError(
            f"reference {req.reference_id!r} is reserved: {taken!r} references are posted by"
            " settlement only"
        )
    if not req.user_id or not req.user_id.strip():
        raise LedgerError(f"credit {req.reference_id!r} needs a user id")
    if isinstance(req.amount, bool) or not isinstance(req.amount, int) or req.amount <= 0:
        raise LedgerError(
            f"credit {req.reference_id!r}: amount must be a positive number of minor units,"
            f" got {req.amount!r}"
        )
    if req.amount > MAX_MINOR_UNITS:  # the column is a 64-bit BIGINT on both databases
        raise LedgerError(
            f"credit {req.reference_id!r}: {req.amount} minor units is more than the ledger"
            f" holds (at most {MAX_MINOR_UNITS})"
        )
    for name, value in (("reference", req.reference_id), ("user id", req.user_id)):
        if len(value) > MAX_ID_LENGTH:
            raise LedgerError(
                f"credit {req.reference_id[:60]!r}: the {name} is {len(value)} characters; at most"
                f" {MAX_ID_LENGTH}"
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
    """Append entries (with their initial transition and opening postings) under the lock.

    ``specs`` hold the entry columns but id, timestamp, actor and hashes, plus
    ``status`` (the initial one) and ``business_date``.  Ids and the chain are
    assigned here.
    """
    if not specs:
        return []
    db = backend(conn)
    now = _now()
    op = op_id(conn)
    last = head(conn)
    next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    rows: list[dict[str, Any]] = []
    statuses: list[str] = []
    for spec in specs:
        row: dict[str, Any] = dict.fromkeys(HASHED_COLUMNS)
        row.update({k: v for k, v in spec.items() if k != "status"})
        row.update(id=next_id, timestamp=now, actor=actor, prev_hash=prev, op_id=op)
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
             "reason": reason, "actor": actor, "run_id": run_id,
             "business_date": row["business_date"], "item_id": None, "op_id": op}
            for row, status in zip(rows, statuses, strict=True)
        ],
    )
    db.append_rows(conn, _P, [
        {"entry_id": row["id"], "transition_id": None, "account": account,
         "currency": row["currency"], "amount": amount, "op_id": op}
        for row in rows
        for account, amount in opening_postings(
            row["entry_type"], row["user_id"], row["amount"], row["run_id"])
    ])
    return [Entry.written(row, status) for row, status in zip(rows, statuses, strict=True)]


def post_credits(
    conn: Connection,
    requests: Sequence[CreditRequest],
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
    known: Mapping[str, Entry] | None = None,
    reserved: bool = False,
    business_date: date | None = None,
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
    day = resolve_business_date(conn, business_date)
    with operation(conn, "ledger credit", actor):
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
             "hold_until": r.hold_until, "adjusts": r.adjusts, "status": r.status,
             "business_date": day}
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
    business_date: date | None = None,
    reserved: bool = False,
    **provenance: Any,
) -> PostResult:
    """Credit a user once per reference: created, or the existing entry when the payload matches.

    ``provenance``: rule_id, rule_hash, referral_id, role, event_date, hold_until.  The
    reserved reference prefixes (``reward:``, ``reversal:``, ``payout:``) are refused
    unless ``reserved`` (settlement's own writes).
    """
    req = CreditRequest(user_id, amount, currency, reference_id, status, **provenance)
    result = post_credits(conn, [req], actor=actor, run_id=run_id, reason=reason,
                          business_date=business_date, reserved=reserved)
    if result.created:
        return PostResult(result.created[0], True)
    return PostResult(result.existing[0], False)


def _illegal(entry: Entry, to_status: str) -> IllegalTransition:
    if entry.entry_type == "debit":
        why = "reversal entries are final"
    elif entry.status in ("reversed", "paid", "failed") and entry.entry_type == "payout":
        why = "a paid or failed payout item is final"
    elif entry.status == "reversed":
        why = "a reversed entry is final"
    elif (entry.status, to_status) == ("pending", "paid"):
        why = "confirm it first"
    elif (entry.status, to_status) == ("created", "paid"):
        why = "export the batch first"
    else:
        why = "not an allowed transition"
    return IllegalTransition(
        f"entry {entry.reference_id!r} is {entry.status}; "
        f"{entry.status} -> {to_status} refused ({why})"
    )


MOVE_TARGETS = ("confirmed", "paid", "sent", "failed")


def transition_many(
    conn: Connection,
    refs: Iterable[str],
    to_status: str,
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
    business_date: date | None = None,
    paid_by: Mapping[str, int] | None = None,
) -> list[TransitionResult]:
    """Move entries to ``confirmed``, ``paid``, ``sent`` or ``failed`` (in input order); all or
    nothing.

    Entries already in ``to_status`` are reported unchanged.  Paying a credit posts
    the transfer ``user:<id> -> payout:<id>``, unless ``paid_by`` names the payout
    item (entry id) whose payment it is: the item's postings carry the cash then.
    A credit covered by a live payout item is paid by that item only, never by hand.
    Reversal goes through ``reverse``.
    """
    if to_status not in MOVE_TARGETS:
        raise LedgerError(
            f"cannot move entries to {to_status!r} directly: use reverse() for reversals"
        )
    wanted = list(refs)
    paid_by = paid_by or {}
    results: list[TransitionResult] = []
    with operation(conn, f"ledger {to_status}", actor):
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
        if to_status == "paid":
            by_hand = [e for e, _ in moves if e.entry_type == "credit" and e.reference_id
                       not in paid_by]
            covered = live_covers(conn, [e.id for e in by_hand])
            for e in by_hand:
                if e.id in covered:
                    raise IllegalTransition(
                        f"entry {e.reference_id!r} is covered by payout item "
                        f"{covered[e.id]!r}; it is paid when that item is"
                    )
        append_transitions(
            conn, moves, to_status, actor=actor, run_id=run_id, reason=reason,
            business_date=resolve_business_date(conn, business_date),
            items={e.id: paid_by[e.reference_id] for e, _ in moves if e.reference_id in paid_by},
        )
    return results


def move_dates(conn: Connection, entries: Sequence[Entry], day: date) -> dict[int, date]:
    """Per entry, the date its next move gets: ``day``, raised to its previous move's."""
    last = last_move_dates(conn, [e.id for e in entries])
    return {e.id: max(day, e.day, last.get(e.id, day)) for e in entries}


def append_transitions(
    conn: Connection,
    moves: Sequence[tuple[Entry, str]],
    to_status: str,
    *,
    actor: str,
    run_id: str | None,
    reason: str | None,
    business_date: date,
    items: Mapping[int, int] | None = None,
    dates: Mapping[int, date] | None = None,
) -> None:
    """Append ``from -> to_status`` for each (entry, from) and the postings the move makes.

    The caller holds the ledger lock and has checked the moves.  ``items``: entry id ->
    the payout item that pays it; ``dates``: the moves' dates when already computed.
    """
    if not moves:
        return
    now = _now()
    items = items or {}
    if dates is None:
        dates = move_dates(conn, [entry for entry, _ in moves], business_date)
    op = op_id(conn)
    rows = [
        {"entry_id": entry.id, "from_status": from_status, "to_status": to_status, "at": now,
         "reason": reason, "actor": actor, "run_id": run_id, "business_date": dates[entry.id],
         "item_id": items.get(entry.id), "op_id": op}
        for entry, from_status in moves
    ]
    posting = [
        move_postings(entry.entry_type, to_status, entry.user_id, entry.amount, entry.run_id,
                      items.get(entry.id))
        for entry, _ in moves
    ]
    db = backend(conn)
    if not any(posting):
        db.append_rows(conn, _T, rows)
        return
    ids = conn.execute(
        sa.insert(_T).returning(_T.c.id, sort_by_parameter_order=True), rows
    ).scalars().all()
    db.append_rows(conn, _P, [
        {"entry_id": entry.id, "transition_id": transition_id, "account": account,
         "currency": entry.currency, "amount": amount, "op_id": op}
        for (entry, _), transition_id, pairs in zip(moves, ids, posting, strict=True)
        for account, amount in pairs
    ])


def confirm_due(
    conn: Connection,
    as_of: date,
    *,
    actor: str,
    run_id: str | None = None,
    reason: str | None = None,
    business_date: date | None = None,
) -> int:
    """Confirm every pending credit whose hold ended on or before ``as_of``; how many.

    One ``INSERT ... SELECT`` of ``pending -> confirmed`` transitions (in ledger
    order) under the writer lock: what ``transition_many`` would append for them,
    without a round trip per entry.  Dated ``business_date`` (default ``as_of``),
    raised to the entry's own date (a pending entry has moved only once).
    """
    day = business_date or as_of
    entry_day = sa.func.coalesce(_E.c.business_date, day)
    with operation(conn, "confirm due", actor):
        due = (
            sa.select(
                _E.c.id,
                sa.literal("pending", sa.String),
                sa.literal("confirmed", sa.String),
                sa.literal(_now(), UTCDateTime()),
                sa.literal(reason, sa.Text),
                sa.literal(actor, sa.String),
                sa.literal(run_id, sa.String),
                sa.case((entry_day > day, entry_day), else_=sa.literal(day, sa.Date)),
                sa.literal(op_id(conn), sa.String),
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
                ["entry_id", "from_status", "to_status", "at", "reason", "actor", "run_id",
                 "business_date", "op_id"], due
            ),
            execution_options={"preserve_rowcount": True},
        )
        return result.rowcount


def approve(
    conn: Connection,
    *,
    rule_id: str,
    reason: str,
    approver: str,
    until: date | None = None,
    user_id: str | None = None,
    business_date: date | None = None,
) -> list[TransitionResult]:
    """Confirm in bulk the pending credits of a rule (event date up to ``until``, one user's
    when given), in one transaction; every move records the reason and the approver."""
    if not reason or not reason.strip():
        raise LedgerError("an approval needs a reason")
    if not approver or not approver.strip():
        raise LedgerError("an approval needs the approver's name")
    with operation(conn, "ledger approve", approver):
        refs = [e.reference_id for e in
                pending_credits(conn, rule_id=rule_id, user_id=user_id, until=until)]
        return transition_many(conn, refs, "confirmed", actor=approver, reason=reason,
                               business_date=business_date)


def confirm(
    conn: Connection, ref: str, *, actor: str = "cli", reason: str | None = None,
    business_date: date | None = None,
) -> TransitionResult:
    return transition_many(conn, [ref], "confirmed", actor=actor, reason=reason,
                           business_date=business_date)[0]


def pay(
    conn: Connection, ref: str, *, actor: str = "cli", reason: str | None = None,
    business_date: date | None = None,
) -> TransitionResult:
    """Pay one credit by hand (a single correction; people are paid by payout batches)."""
    return transition_many(conn, [ref], "paid", actor=actor, reason=reason,
                           business_date=business_date)[0]


def reverse_many(
    conn: Connection,
    refs: Iterable[str],
    reason: str,
    *,
    actor: str,
    run_id: str | None = None,
    known: Mapping[str, Entry] | None = None,
    business_date: date | None = None,
) -> list[PostResult]:
    """Reverse entries (in input order): post ``reversal:<ref>`` debits, mark originals reversed.

    An entry already reversed returns its existing reversal (created=False);
    reversing a reversal or a payout item is refused.  A debit is dated as its
    original's move to ``reversed``.  ``known``: the entries, as the caller read them
    under the ledger lock in this transaction; those not reversed then need no lookup.
    """
    if not reason or not reason.strip():
        raise LedgerError("a reversal needs a reason")
    wanted = list(refs)
    day = resolve_business_date(conn, business_date)
    with operation(conn, "ledger reverse", actor):
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
            if original.entry_type == "payout":
                raise IllegalTransition(
                    f"entry {ref!r} is a payout item ({original.status}); a payout item is "
                    "failed through its batch, never reversed"
                )
            if REVERSAL_PREFIX + ref in reversals or ref in planned:
                continue
            planned.add(ref)
            if original.status == "reversed":
                raise LedgerError(f"entry {ref!r} is reversed but has no reversal entry")
            moves.append((original, original.status))
        dates = move_dates(conn, [original for original, _ in moves], day)
        for original, _ in moves:
            specs.append({
                "reference_id": REVERSAL_PREFIX + original.reference_id,
                "user_id": original.user_id, "amount": -original.amount,
                "currency": original.currency, "entry_type": "debit",
                "reversal_id": original.reference_id, "rule_id": original.rule_id,
                "rule_hash": original.rule_hash, "run_id": run_id,
                "referral_id": original.referral_id, "role": original.role,
                "event_date": original.event_date, "hold_until": None, "adjusts": None,
                "status": "confirmed", "business_date": dates[original.id],
            })
        created = _insert_entries(conn, specs, actor=actor, run_id=run_id, reason=reason)
        append_transitions(conn, moves, "reversed", actor=actor, run_id=run_id, reason=reason,
                           business_date=day, dates=dates)
    made = {entry.reference_id: entry for entry in created}
    results: list[PostResult] = []
    reported: set[str] = set()  # a reversal repeated in ``refs`` was created once
    for ref in wanted:
        key = REVERSAL_PREFIX + ref
        if key in reversals:
            results.append(PostResult(reversals[key], False))
        else:
            results.append(PostResult(made[key], key not in reported))
            reported.add(key)
    return results


def reverse(
    conn: Connection, ref: str, reason: str, *, actor: str = "cli", run_id: str | None = None,
    business_date: date | None = None,
) -> PostResult:
    """Reverse one entry; the result is the reversal debit (created=False if it existed)."""
    return reverse_many(conn, [ref], reason, actor=actor, run_id=run_id,
                        business_date=business_date)[0]


def post_payout_items(
    conn: Connection,
    items: Sequence[tuple[str, str, int]],
    *,
    currency: str,
    batch_id: str,
    actor: str,
    business_date: date,
) -> list[Entry]:
    """Append one ``payout`` entry per (item id, user id, amount), status ``created``: each
    reserves its amount from the person's account in the batch's clearing account.

    The caller (``settlement.payouts``) holds the ledger lock and has worked out the
    amounts; the item id is the idempotency key (``payout:<item id>``).
    """
    specs = [
        {"reference_id": PAYOUT_PREFIX + item_id, "user_id": user_id, "amount": amount,
         "currency": currency, "entry_type": "payout", "reversal_id": None, "rule_id": None,
         "rule_hash": None, "run_id": batch_id, "referral_id": None, "role": None,
         "event_date": None, "hold_until": None, "status": "created",
         "business_date": business_date}
        for item_id, user_id, amount in items
    ]
    return _insert_entries(conn, specs, actor=actor, run_id=batch_id, reason=None)

