"""Payouts: pay people in bulk, net their clawback debt, reconcile with the provider.

A **batch** pays, in one currency, everyone with a payee whose payable balance
as of a date is at least a minimum.  Its id is deterministic, ``<as-of>-<CUR>``
(``2026-11-30-INR``): creating it again creates nothing and returns it.  Each
**item** pays one person, id ``<batch>-<n>`` (people in user-id order; at most
30 characters, the longest provider reference field, PayPal's Customer ID).

In the ledger an item is an entry of kind ``payout`` (reference ``payout:<item
id>``), a two-phase transfer: created, it moves its amount from ``user:<id>`` to
``clearing:<batch>`` (so no other batch can pay it, whatever runs meanwhile);
``sent`` when its provider file is exported; ``paid`` moves it on to
``payout:<id>`` (cash that left) and the credits it covers become ``paid``;
``failed`` moves it back to ``user:<id>``, its credits stay confirmed and a
later batch pays them.  ``payout_covers`` lists what each item settles: the
person's confirmed credits no open item covers, confirmed on or before the
as-of date, and their outstanding clawback debt (``settlement.ledger.netting``);
the item's amount is exactly the credits minus the debts, and ``ledger verify``
checks it.  So a person with ₹700 confirmed and ₹500 of debt is paid ₹200 and
ends at net ₹0; one with ₹100 and ₹500 of debt is skipped (``in_debt``): the
₹100 stays confirmed, set against the debt, and the person's net is −₹400.

Why the rules are these:

- the balances are read under the ledger writer lock, in the batch's one
  transaction, so two concurrent runs (any dates) never put the same money in
  two batches; a person with an item still open (created or sent) is skipped
  (``payout_in_flight``): one payment in flight per person;
- batches go forward: a batch dated before an existing one of the currency is
  refused, so what a batch saw as of its date stays what the reports see;
- a settlement run may reverse a covered credit at any moment: the item still
  pays what was exported (the provider has the file), and the reversal becomes
  debt the next batch recovers; credits posted meanwhile wait for the next batch;
- an item pays the payee row current when the batch was created
  (``payout_items.payee_id``), so a later change of details never redirects it;
- each item is sent through one file format: exporting again in the same format
  gives the same file, in another format is refused (paying twice is the risk).
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.money import exponent
from settlement import ledger
from settlement.csvcells import SafeWriter
from settlement.dialect import backend
from settlement.errors import EntryNotFound, PayoutError
from settlement.ledger.netting import outstanding_debts, payable_credits
from settlement.ledger.reads import OPEN_ITEM_STATUSES
from settlement.operations import op_id, operation
from settlement.payees import Payee, payees_by_id, paying_payees
from settlement.tables import (
    latest_status,
    ledger_entries,
    ledger_transitions,
    liability_days,
    payout_batches,
    payout_covers,
    payout_items,
)

_E, _T = ledger_entries, ledger_transitions
SKIP_REASONS = ("payout_in_flight", "in_debt", "below_minimum", "no_payee", "method_currency")
FORMATS = ("csv", "paypal")
ITEM_STATUSES = ("created", "sent", "paid", "failed")
PAID_WORDS = frozenset({"paid", "success", "successful", "succeeded", "completed", "complete"})
FAILED_WORDS = frozenset({"failed", "failure", "returned", "denied", "blocked", "rejected",
                          "refunded", "reversed", "cancelled", "canceled"})
OPEN_WORDS = frozenset({"pending", "processing", "unclaimed", "onhold", "on_hold", "sent"})
ITEM_COLUMNS = ("item_id", "reference", "reference_id", "customer_id", "customer id",
                "sender_item_id")
STATUS_COLUMNS = ("status", "transaction status", "transaction_status")
REASON_COLUMNS = ("reason", "error", "failure_reason", "errors")
CSV_HEADER = ("item_id", "batch_id", "user_id", "name", "method", "amount", "currency",
              "amount_minor", "account_number", "ifsc", "iban", "bic", "routing_number", "vpa",
              "email")


def batch_id_for(as_of: date, currency: str) -> str:
    return f"{as_of.isoformat()}-{currency}"


@dataclass(frozen=True)
class Item:
    item_id: str
    entry_id: int
    user_id: str
    amount: int
    currency: str
    status: str
    payee_id: int

    def as_json(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "user_id": self.user_id, "amount": self.amount,
                "status": self.status}


@dataclass
class Batch:
    """A payout batch and its items; ``as_json`` is the documented ``--json`` object."""

    batch_id: str
    as_of: date
    currency: str
    min_amount: int
    total: int
    skipped: dict[str, int]
    items: list[Item] = field(default_factory=list)
    created: bool = False

    @property
    def status(self) -> str:
        """``empty``; ``created``; ``partly_sent``; ``sent``; ``completed`` (all paid or failed)."""
        seen = Counter(i.status for i in self.items)
        if not self.items:
            return "empty"
        if seen["paid"] + seen["failed"] == len(self.items):
            return "completed"
        if seen["created"]:
            return "partly_sent" if seen["sent"] else "created"
        return "sent"

    def counts(self) -> dict[str, int]:
        seen = Counter(i.status for i in self.items)
        return {s: seen[s] for s in ITEM_STATUSES}

    def as_json(self) -> dict[str, Any]:
        return {"batch_id": self.batch_id, "as_of": self.as_of.isoformat(),
                "currency": self.currency, "status": self.status, "total": self.total,
                "skipped": self.skipped, "items": [i.as_json() for i in self.items]}


# -- create -----------------------------------------------------------------------


def create_batch(
    conn: Connection, *, as_of: date, currency: str | None = None, min_amount: int = 0,
    actor: str = "cli",
) -> Batch:
    """Create the batch of ``as_of`` and ``currency`` in one transaction (see the module
    docstring); the existing batch when there is one (``created`` False).  Without a
    currency: the only one the ledger's confirmed credits are in."""
    if min_amount < 0:
        raise PayoutError("the minimum payout cannot be negative")
    with operation(conn, "payout create", actor):
        currency = currency or _only_currency(conn)
        exponent(currency)
        batch_id = batch_id_for(as_of, currency)
        existing = _find_batch(conn, batch_id)
        if existing is not None:
            if existing.min_amount != min_amount:
                raise PayoutError(
                    f"batch {batch_id} exists with minimum {existing.min_amount}, not "
                    f"{min_amount}: a batch is created once per as-of date and currency"
                )
            return existing
        later = conn.execute(
            sa.select(payout_batches.c.batch_id)
            .where(payout_batches.c.currency == currency, payout_batches.c.as_of > as_of)
            .order_by(payout_batches.c.as_of.desc()).limit(1)
        ).scalar()
        if later is not None:
            raise PayoutError(f"batch {later} is dated after {as_of}: batches go forward, "
                              "create one dated on or after it")
        return _create(conn, batch_id, as_of, currency, min_amount, actor)


def _only_currency(conn: Connection) -> str:
    # The daily aggregate has a row with granted money for each date, currency and rule
    # credited (settlement.ledger.daily): a few rows, where the entries are the ledger.
    found = sorted(conn.execute(
        sa.select(liability_days.c.currency).where(liability_days.c.granted > 0).distinct()
    ).scalars())
    if len(found) != 1:
        raise PayoutError("give --currency: the ledger holds credits in "
                          + (", ".join(found) if found else "no currency"))
    return found[0]


def _balances(
    conn: Connection, as_of: date, currency: str
) -> dict[str, tuple[int, int, list[int]]]:
    """Per person: payable credits, outstanding debt (positive), the entries they are (in
    id order; sorted here, where the database's sort of every payable row spilled to
    disk)."""
    credits: dict[str, int] = defaultdict(int)
    debts: dict[str, int] = defaultdict(int)
    ids: dict[str, list[int]] = defaultdict(list)
    for stmt, sums, sign in ((payable_credits(conn, as_of), credits, 1),
                             (outstanding_debts(conn, as_of), debts, -1)):
        sub = stmt.where(_E.c.currency == currency).subquery()
        for entry_id, user, amount in conn.execute(sa.select(sub.c.id, sub.c.user_id,
                                                             sub.c.amount)):
            sums[user] += sign * amount
            ids[user].append(entry_id)
    return {user: (credits[user], debts[user], sorted(found)) for user, found in ids.items()}


def _in_flight(conn: Connection, currency: str) -> set[str]:
    stmt = sa.select(_E.c.user_id).where(
        _E.c.entry_type == "payout", _E.c.currency == currency,
        latest_status(_E).in_(OPEN_ITEM_STATUSES))
    return set(conn.execute(stmt).scalars())


def _create(
    conn: Connection, batch_id: str, as_of: date, currency: str, min_amount: int, actor: str
) -> Batch:
    balances = _balances(conn, as_of, currency)
    busy = _in_flight(conn, currency)
    skipped: Counter[str] = Counter()
    payable: list[tuple[str, int, list[int]]] = []  # user, amount, entries
    for user in sorted(balances):
        credits, debt, ids = balances[user]
        if credits <= 0:
            continue  # debt alone: nothing to pay, nothing to skip
        if user in busy:
            skipped["payout_in_flight"] += 1
        elif credits - debt <= 0:
            skipped["in_debt"] += 1
        elif credits - debt < max(min_amount, 1):
            skipped["below_minimum"] += 1
        else:
            payable.append((user, credits - debt, ids))
    people = paying_payees(conn, currency, {user for user, _, _ in payable})
    planned: list[tuple[str, int, list[int], int]] = []  # user, amount, entries, payee id
    for user, amount, ids in payable:
        payee = people.get(user)
        if payee is None:
            skipped["no_payee"] += 1
        elif not payee[1]:
            skipped["method_currency"] += 1
        else:
            planned.append((user, amount, ids, payee[0]))
    items = [(f"{batch_id}-{n:06d}", user, amount) for n, (user, amount, _, _) in
             enumerate(planned, start=1)]
    entries = ledger.post_payout_items(conn, items, currency=currency, batch_id=batch_id,
                                       actor=actor, business_date=as_of)
    total = sum(amount for _, _, amount in items)
    skips = {reason: skipped[reason] for reason in SKIP_REASONS if skipped[reason]}
    head = ledger.head(conn)
    op = op_id(conn)
    # The batch before its items: their reference to it is checked as they are written.
    conn.execute(payout_batches.insert(), {
        "batch_id": batch_id, "as_of": as_of, "currency": currency, "min_amount": min_amount,
        "created_at": datetime.now(UTC), "actor": actor, "items": len(items), "total": total,
        "skipped": json.dumps(skips, sort_keys=True),
        "ledger_head_id": head[0] if head else None,
        "ledger_head_hash": head[1] if head else None, "op_id": op,
    })
    db = backend(conn)
    db.append_rows(conn, payout_items, [
        {"entry_id": e.id, "item_id": item_id, "batch_id": batch_id, "payee_id": p[3],
         "op_id": op}
        for e, (item_id, _, _), p in zip(entries, items, planned, strict=True)
    ])
    db.append_rows(conn, payout_covers, [
        {"item_entry_id": e.id, "entry_id": covered, "op_id": op}
        for e, p in zip(entries, planned, strict=True) for covered in p[2]
    ])
    batch = Batch(batch_id, as_of, currency, min_amount, total, skips, created=True)
    batch.items = [Item(item_id, e.id, user, amount, currency, "created", p[3])
                   for (item_id, user, amount), e, p in zip(items, entries, planned, strict=True)]
    return batch


# -- read -------------------------------------------------------------------------


def _find_batch(conn: Connection, batch_id: str) -> Batch | None:
    row = conn.execute(sa.select(payout_batches).where(payout_batches.c.batch_id == batch_id)
                       ).first()
    if row is None:
        return None
    batch = Batch(row.batch_id, row.as_of, row.currency, row.min_amount, row.total,
                  json.loads(row.skipped))
    batch.items = list(_items(conn, [batch_id]).get(batch_id, []))
    return batch


def _items(conn: Connection, batch_ids: Iterable[str]) -> dict[str, list[Item]]:
    rows = conn.execute(
        sa.select(payout_items.c.batch_id, payout_items.c.item_id, _E.c.id, _E.c.user_id,
                  _E.c.amount, _E.c.currency, latest_status(_E).label("status"),
                  payout_items.c.payee_id)
        .join(_E, _E.c.id == payout_items.c.entry_id)
        .where(payout_items.c.batch_id.in_(list(batch_ids)))
        .order_by(payout_items.c.batch_id, payout_items.c.item_id)
    )
    found: dict[str, list[Item]] = defaultdict(list)
    for r in rows:
        found[r.batch_id].append(Item(r.item_id, r.id, r.user_id, r.amount, r.currency,
                                      r.status, r.payee_id))
    return found


def get_batch(conn: Connection, batch_id: str) -> Batch:
    batch = _find_batch(conn, batch_id)
    if batch is None:
        raise EntryNotFound(f"no payout batch {batch_id!r}")
    return batch


def list_batches(conn: Connection) -> list[Batch]:
    """Every batch, oldest first, with its items."""
    rows = list(conn.execute(sa.select(payout_batches)
                             .order_by(payout_batches.c.as_of, payout_batches.c.currency)))
    items = _items(conn, [r.batch_id for r in rows])
    return [Batch(r.batch_id, r.as_of, r.currency, r.min_amount, r.total,
                  json.loads(r.skipped), items.get(r.batch_id, [])) for r in rows]


# -- export -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProviderFile:
    """A file for the payment provider, and what exporting it did."""

    text: str
    items: int
    marked_sent: int
    left_out: int  # open items of the batch another format pays


def _decimal(amount: int, currency: str) -> str:
    digits = exponent(currency)
    if digits == 0:
        return str(amount)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10 ** digits)
    return f"{sign}{whole}.{frac:0{digits}d}"


def _sent_formats(conn: Connection, entry_ids: list[int]) -> dict[int, str]:
    stmt = sa.select(_T.c.entry_id, _T.c.reason).where(_T.c.to_status == "sent")
    rows = backend(conn).select_ids(conn, stmt, _T.c.entry_id, entry_ids)
    return {r[0]: str(r[1]).removeprefix("exported as ") for r in map(tuple, rows)}


def export_batch(
    conn: Connection, batch_id: str, fmt: str, *, business_date: date | None = None,
    actor: str = "cli",
) -> ProviderFile:
    """The provider file of the batch's open items in ``fmt`` (``csv``: every method;
    ``paypal``: PayPal's payouts CSV, the items paid by PayPal), and mark them sent."""
    if fmt not in FORMATS:
        raise PayoutError(f"unknown payout file format {fmt!r} (one of {', '.join(FORMATS)})")
    with operation(conn, "payout export", actor):
        batch = get_batch(conn, batch_id)
        open_items = [i for i in batch.items if i.status in OPEN_ITEM_STATUSES]
        details = payees_by_id(conn, [i.payee_id for i in open_items])
        chosen = [i for i in open_items
                  if fmt == "csv" or details[i.payee_id].method == "paypal"]
        formats = _sent_formats(conn, [i.entry_id for i in chosen if i.status == "sent"])
        other = [i.item_id for i in chosen if formats.get(i.entry_id, fmt) != fmt]
        if other:
            raise PayoutError(
                f"{len(other)} item(s) of batch {batch_id} were exported as "
                f"{formats[next(i.entry_id for i in chosen if i.item_id == other[0])]} already"
                f" (first {other[0]}); export that format again: two files could pay twice"
            )
        fresh = [i for i in chosen if i.status == "created"]
        ledger.transition_many(
            conn, [ledger.PAYOUT_PREFIX + i.item_id for i in fresh], "sent", actor=actor,
            reason=f"exported as {fmt}", business_date=business_date, run_id=batch_id,
        )
    text = (_paypal_file if fmt == "paypal" else _csv_file)(batch, chosen, details)
    return ProviderFile(text, len(chosen), len(fresh), len(open_items) - len(chosen))


def _csv_file(batch: Batch, items: list[Item], people: Mapping[int, Payee]) -> str:
    out = io.StringIO()
    writer = SafeWriter(out)
    writer.writerow(CSV_HEADER)
    for i in items:
        p = people[i.payee_id]
        writer.writerow([i.item_id, batch.batch_id, i.user_id, p.name or "", p.method,
                         _decimal(i.amount, i.currency), i.currency, i.amount,
                         *(p.details.get(f, "") for f in CSV_HEADER[8:])])
    return out.getvalue()


def _paypal_file(batch: Batch, items: list[Item], people: Mapping[int, Payee]) -> str:
    """PayPal Payouts web upload: no header; recipient e-mail, amount, currency, customer id
    (the item id: unique, at most 30 characters, no spaces), note, wallet."""
    out = io.StringIO()
    writer = SafeWriter(out)
    for i in items:
        writer.writerow([people[i.payee_id].details["email"], _decimal(i.amount, i.currency),
                         i.currency, i.item_id, f"Referral rewards {batch.batch_id}", "PAYPAL"])
    return out.getvalue()


# -- complete ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    status: str  # paid | failed
    reason: str | None
    line: int


@dataclass(frozen=True)
class Completion:
    paid: int
    failed: int
    still_sent: int
    credits_paid: int


def read_results(path: Path) -> dict[str, Outcome]:
    """A provider's result CSV: a header row with an item reference column (``item_id``,
    ``reference``, PayPal's ``Customer ID``...) and a status column; statuses still in
    progress (pending, unclaimed) are left out.  Errors name file and line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise PayoutError(f"{path}: cannot read the results file: {e}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    names = {n.strip().lower(): n for n in reader.fieldnames or []}
    item_col = next((names[c] for c in ITEM_COLUMNS if c in names), None)
    status_col = next((names[c] for c in STATUS_COLUMNS if c in names), None)
    reason_col = next((names[c] for c in REASON_COLUMNS if c in names), None)
    if item_col is None or status_col is None:
        raise PayoutError(f"{path}:1: the header needs an item reference column "
                          f"({', '.join(ITEM_COLUMNS)}) and a status column (status)")
    found: dict[str, Outcome] = {}
    for row in reader:
        line = reader.line_num
        item = (row.get(item_col) or "").strip()
        word = (row.get(status_col) or "").strip().lower().replace(" ", "_")
        if not item:
            raise PayoutError(f"{path}:{line}: {item_col}: missing")
        if item in found:
            raise PayoutError(f"{path}:{line}: {item_col}: {item} appears again (first on "
                              f"line {found[item].line})")
        if word in PAID_WORDS:
            status = "paid"
        elif word in FAILED_WORDS:
            status = "failed"
        elif word in OPEN_WORDS:
            continue
        else:
            raise PayoutError(f"{path}:{line}: {status_col}: unknown status {word!r} (paid: "
                              f"{', '.join(sorted(PAID_WORDS))}; failed: "
                              f"{', '.join(sorted(FAILED_WORDS))})")
        reason = (row.get(reason_col) or "").strip() or None if reason_col else None
        found[item] = Outcome(status, reason, line)
    return found


def complete_batch(
    conn: Connection, batch_id: str, results: Mapping[str, Outcome] | None = None, *,
    business_date: date | None = None, actor: str = "cli",
) -> Completion:
    """Mark the batch's sent items paid or failed, in one transaction: without ``results``
    every sent item is paid.  A paid item's covered credits become ``paid``."""
    with operation(conn, "payout complete", actor):
        batch = get_batch(conn, batch_id)
        by_id = {i.item_id: i for i in batch.items}
        if results is None:
            if any(i.status == "created" for i in batch.items):
                raise PayoutError(f"batch {batch_id} has items not exported yet: export "
                                  "them first (payout export), or give --results")
            results = {i.item_id: Outcome("paid", None, 0) for i in batch.items
                       if i.status == "sent"}
        for item_id, outcome in results.items():
            item = by_id.get(item_id)
            where = f"line {outcome.line}: " if outcome.line else ""
            if item is None:
                raise PayoutError(f"{where}item {item_id} is not in batch {batch_id}")
            if item.status == "created":
                raise PayoutError(f"{where}item {item_id} was never sent (export it first)")
        paid = [by_id[i] for i, o in results.items() if o.status == "paid"]
        failed = [(by_id[i], o) for i, o in results.items() if o.status == "failed"]
        ledger.transition_many(
            conn, [ledger.PAYOUT_PREFIX + i.item_id for i in paid], "paid", actor=actor,
            reason="paid by the provider", business_date=business_date, run_id=batch_id)
        reasons: dict[str, list[str]] = defaultdict(list)
        for item, outcome in failed:
            reasons[outcome.reason or "failed at the provider"].append(item.item_id)
        for reason, failed_ids in reasons.items():
            ledger.transition_many(
                conn, [ledger.PAYOUT_PREFIX + i for i in failed_ids], "failed", actor=actor,
                reason=reason, business_date=business_date, run_id=batch_id)
        credits = _covered_confirmed(conn, [i.entry_id for i in paid])
        ledger.transition_many(
            conn, list(credits), "paid", actor=actor, business_date=business_date,
            run_id=batch_id, reason="paid by payout item", paid_by=credits)
        still = sum(1 for i in batch.items if i.status == "sent" and i.item_id not in results)
    return Completion(len(paid), len(failed), still, len(credits))


def _covered_confirmed(conn: Connection, item_entry_ids: list[int]) -> dict[str, int]:
    """reference -> item entry id, for the still-confirmed credits those items cover."""
    stmt = (
        sa.select(_E.c.reference_id, payout_covers.c.item_entry_id)
        .join(payout_covers, payout_covers.c.entry_id == _E.c.id)
        .where(_E.c.entry_type == "credit", latest_status(_E) == "confirmed")
        .order_by(_E.c.id)
    )
    rows = backend(conn).select_ids(conn, stmt, payout_covers.c.item_entry_id, item_entry_ids)
    return {r[0]: r[1] for r in map(tuple, rows)}
