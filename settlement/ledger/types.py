"""The ledger's values: entries, transitions, results, requests, and its vocabulary.

The vocabulary is closed and small: three kinds of entry, each a transfer
between named accounts, and the status moves each kind allows.  What every
kind posts, when it is written and on each move, is ``opening_postings`` and
``move_postings``: the writers post exactly that and ``verify`` expects it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

from dsl.money import Money

REVERSAL_PREFIX = "reversal:"
PAYOUT_PREFIX = "payout:"
# References that name what settlement and payouts post; a hand-posted credit may not use them.
RESERVED_PREFIXES = ("reward:", REVERSAL_PREFIX, PAYOUT_PREFIX)
INITIAL_STATUSES = ("pending", "confirmed")
# The first status of each kind of entry.
OPENING_STATUSES = {"credit": INITIAL_STATUSES, "debit": ("confirmed",), "payout": ("created",)}
EXPORT_FIELDS = (
    "user_id", "amount", "currency", "entry_type", "status", "reference_id", "reversal_id",
    "timestamp", "business_date", "rule_id", "referral_id", "role", "event_date", "hold_until",
    "run_id", "paid_date", "payout_batch",
)
# (entry_type, from, to) moves allowed after the initial transition.
LEGAL_MOVES = frozenset({
    ("credit", "pending", "confirmed"),
    ("credit", "confirmed", "paid"),
    ("credit", "pending", "reversed"),
    ("credit", "confirmed", "reversed"),
    ("credit", "paid", "reversed"),
    ("payout", "created", "sent"),
    ("payout", "sent", "paid"),
    ("payout", "sent", "failed"),
})
FUNDING_ACCOUNT = "program:funding"
# rule id, user id, role (None: every role), period start, period end
TotalsKey = tuple[str, str, str | None, date | None, date | None]
Posting = tuple[str, int]  # account, amount (minor units; the entry's currency)


def user_account(user_id: str) -> str:
    return f"user:{user_id}"


def payout_account(user_id: str) -> str:
    """Cash that left the program for the person."""
    return f"payout:{user_id}"


def clearing_account(batch_id: str) -> str:
    """Money reserved by a payout batch's open items: created or sent, not yet paid or failed."""
    return f"clearing:{batch_id}"


def opening_postings(
    entry_type: str, user_id: str, amount: int, run_id: str | None
) -> list[Posting]:
    """What an entry moves when it is written.

    A credit (positive) or reversal debit (negative) moves ``amount`` from the
    program to the person; a payout item reserves its amount from the person's
    account in its batch's clearing account (the item's ``run_id`` is the batch).
    """
    if entry_type == "payout":
        return [(user_account(user_id), -amount), (clearing_account(str(run_id)), amount)]
    return [(FUNDING_ACCOUNT, -amount), (user_account(user_id), amount)]


def move_postings(
    entry_type: str, to_status: str, user_id: str, amount: int, run_id: str | None,
    item_id: int | None,
) -> list[Posting]:
    """What a status move transfers: ``ledger pay`` moves a credit's money to the person's
    payout account; a payout item paid moves it there from the clearing account, a failed
    one back to the person.  A credit paid by an item (``item_id``) moves nothing itself."""
    if entry_type == "credit" and to_status == "paid" and item_id is None:
        return [(user_account(user_id), -amount), (payout_account(user_id), amount)]
    if entry_type == "payout" and to_status in ("paid", "failed"):
        to = payout_account(user_id) if to_status == "paid" else user_account(user_id)
        return [(clearing_account(str(run_id)), -amount), (to, amount)]
    return []


@dataclass(frozen=True)
class Entry:
    """One ledger row plus its current status (its latest transition)."""

    id: int
    reference_id: str
    user_id: str
    amount: int
    currency: str
    entry_type: str
    reversal_id: str | None
    timestamp: datetime
    rule_id: str | None
    rule_hash: str | None
    run_id: str | None
    referral_id: str | None
    role: str | None
    event_date: date | None
    hold_until: date | None
    actor: str
    prev_hash: str
    hash: str
    adjusts: str | None
    business_date: date | None
    op_id: str | None
    status: str

    @classmethod
    def written(cls, row: Mapping[str, Any], status: str) -> Entry:
        """The entry of a row just written (every column of ledger_entries): the frozen
        dataclass's ``__init__`` sets each field through ``object.__setattr__``, 3.4 µs of
        a write's every entry; filling ``__dict__`` takes 0.4."""
        if row.keys() != _ENTRY_COLUMNS:
            return cls(**row, status=status)  # names what is missing or unknown
        entry = object.__new__(cls)
        entry.__dict__.update(row)
        entry.__dict__["status"] = status
        return entry

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    @property
    def day(self) -> date:
        """The business date (rows older than the column: the UTC date of the timestamp)."""
        return self.business_date or self.timestamp.astimezone(UTC).date()


_ENTRY_COLUMNS = frozenset(f.name for f in fields(Entry)) - {"status"}


@dataclass(frozen=True)
class Transition:
    id: int
    reference_id: str
    from_status: str | None
    to_status: str
    at: datetime
    reason: str | None
    actor: str
    run_id: str | None
    business_date: date | None
    item_id: int | None
    op_id: str | None = None


@dataclass(frozen=True)
class PostResult:
    entry: Entry
    created: bool


@dataclass(frozen=True)
class TransitionResult:
    entry: Entry
    changed: bool
    message: str


@dataclass(frozen=True)
class Balance:
    pending: int = 0
    confirmed: int = 0
    paid: int = 0
    reversed: int = 0
    net: int = 0

    def as_json(self) -> dict[str, int]:
        """The documented ``balance --json`` object, keys in this order."""
        return {
            "pending": self.pending,
            "confirmed": self.confirmed,
            "paid": self.paid,
            "reversed": self.reversed,
            "net": self.net,
        }


@dataclass(frozen=True)
class CreditRequest:
    user_id: str
    amount: int
    currency: str
    reference_id: str
    status: str = "pending"
    rule_id: str | None = None
    rule_hash: str | None = None
    referral_id: str | None = None
    role: str | None = None
    event_date: date | None = None
    hold_until: date | None = None
    adjusts: str | None = None


@dataclass
class BulkPostResult:
    created: list[Entry] = field(default_factory=list)
    existing: list[Entry] = field(default_factory=list)


@dataclass
class VerifyReport:
    ok: bool
    problems: list[str]
    checked: int
