"""The ledger's values: entries, transitions, results, requests, and its vocabulary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dsl.money import Money
from settlement.ledger.hashing import format_timestamp

REVERSAL_PREFIX = "reversal:"
# References that name what settlement and payouts post; a hand-posted credit may not use them.
RESERVED_PREFIXES = ("reward:", REVERSAL_PREFIX, "payout:")
INITIAL_STATUSES = ("pending", "confirmed")
EXPORT_FIELDS = (
    "user_id", "amount", "currency", "entry_type", "status", "reference_id", "reversal_id",
    "timestamp",
)
# (entry_type, from, to) moves allowed after the initial transition.
LEGAL_MOVES = frozenset({
    ("credit", "pending", "confirmed"),
    ("credit", "confirmed", "paid"),
    ("credit", "pending", "reversed"),
    ("credit", "confirmed", "reversed"),
    ("credit", "paid", "reversed"),
})
FUNDING_ACCOUNT = "program:funding"
# rule id, user id, role (None: every role), period start, period end
TotalsKey = tuple[str, str, str | None, date | None, date | None]


def user_account(user_id: str) -> str:
    return f"user:{user_id}"


def payout_account(user_id: str) -> str:
    return f"payout:{user_id}"


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
    status: str

    @property
    def money(self) -> Money:
        return Money(self.amount, self.currency)

    def export_record(self) -> dict[str, Any]:
        """The seed's fields, in export order, JSON-ready."""
        return {
            "user_id": self.user_id,
            "amount": self.amount,
            "currency": self.currency,
            "entry_type": self.entry_type,
            "status": self.status,
            "reference_id": self.reference_id,
            "reversal_id": self.reversal_id,
            "timestamp": format_timestamp(self.timestamp),
        }


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
