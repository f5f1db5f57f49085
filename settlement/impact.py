"""What a rule change would change in the money: old program vs new, on the same records.

Why run the real ``settle()``: what a program pays is decided by settlement
(one payout per rule, referral and role; LIMIT caps; HOLD; REVERSE IF;
EXCLUSIVE; quarantine of bad records).  A second implementation of those
semantics here would drift from the one that posts money, so each version is
settled for real into its own private, throwaway SQLite database, and the
result read back: what ended up credited and not reversed, per
(rule id, referral id, role, user).  Nothing touches the user's database.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dsl.codec import rule_hash
from dsl.model import Program
from dsl.money import Money, format_money
from settlement import db, ledger
from settlement.batch import settle
from settlement.records import read_records

# (rule id, referral id, role, beneficiary user id)
PayoutKey = tuple[str, str, str, str]

NEW, STOPPED, CHANGED = "new", "stopped", "changed"
RULE_STATUSES = ("added", "removed", "modified", "unchanged")


def money_json(money: Money) -> dict[str, Any]:
    """Integer minor units and the currency (never a float), plus the display text."""
    return {"amount": money.amount, "currency": money.currency, "formatted": format_money(money)}


def signed(money: Money) -> str:
    """``+₹1,200`` / ``-₹500`` / ``₹0``: a change, with its direction."""
    return ("+" if money.amount > 0 else "") + format_money(money)


def _by_currency(amounts: dict[str, int], *, sign: bool = False) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for currency, amount in sorted(amounts.items()):
        m = Money(amount, currency)
        out[currency] = {**money_json(m), "formatted": signed(m) if sign else format_money(m)}
    return out


@dataclass(frozen=True)
class PayoutChange:
    """One referral whose payout from one rule differs between the versions."""

    rule_id: str
    referral_id: str
    role: str
    user_id: str
    kind: str  # NEW, STOPPED or CHANGED
    old: Money | None
    new: Money | None

    def as_json(self) -> dict[str, Any]:
        return {
            "referral_id": self.referral_id,
            "role": self.role,
            "user_id": self.user_id,
            "kind": self.kind,
            "old": money_json(self.old) if self.old else None,
            "new": money_json(self.new) if self.new else None,
        }


@dataclass
class Counts:
    newly_paying: int = 0
    stopped_paying: int = 0
    amount_changed: int = 0
    unchanged: int = 0
    old_paid: dict[str, int] = field(default_factory=dict)
    new_paid: dict[str, int] = field(default_factory=dict)

    def add(self, old: Money | None, new: Money | None) -> str | None:
        """Count one payout key; returns its change kind (None when unchanged)."""
        for money, paid in ((old, self.old_paid), (new, self.new_paid)):
            if money is not None:
                paid[money.currency] = paid.get(money.currency, 0) + money.amount
        if old is None:
            self.newly_paying += 1
            return NEW
        if new is None:
            self.stopped_paying += 1
            return STOPPED
        if old != new:
            self.amount_changed += 1
            return CHANGED
        self.unchanged += 1
        return None

    @property
    def net_change(self) -> dict[str, int]:
        """New minus old, per currency; currencies whose total did not move are left out."""
        out: dict[str, int] = {}
        for currency in sorted(set(self.old_paid) | set(self.new_paid)):
            delta = self.new_paid.get(currency, 0) - self.old_paid.get(currency, 0)
            if delta:
                out[currency] = delta
        return out

    @property
    def changed(self) -> int:
        return self.newly_paying + self.stopped_paying + self.amount_changed

    def as_json(self) -> dict[str, Any]:
        return {
            "newly_paying": self.newly_paying,
            "stopped_paying": self.stopped_paying,
            "amount_changed": self.amount_changed,
            "unchanged": self.unchanged,
            "old_paid": _by_currency(self.old_paid),
            "new_paid": _by_currency(self.new_paid),
            "net_change": _by_currency(self.net_change, sign=True),
        }


@dataclass
class RuleImpact:
    """One rule of either version: how its text changed and what it pays differently."""

    rule_id: str
    status: str  # one of RULE_STATUSES (by the rule's content hash)
    counts: Counts = field(default_factory=Counts)
    changes: list[PayoutChange] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"rule_id": self.rule_id, "status": self.status, **self.counts.as_json(),
                "changes": [c.as_json() for c in self.changes]}


@dataclass
class ImpactReport:
    """``diff_programs``' answer; ``as_json`` is the documented ``rules diff --json``."""

    as_of: date
    records: int
    quarantined_old: int
    quarantined_new: int
    rules: list[RuleImpact]
    totals: Counts

    @property
    def has_changes(self) -> bool:
        return self.totals.changed > 0 or any(r.status != "unchanged" for r in self.rules)

    def as_json(self) -> dict[str, Any]:
        return {
            "as_of": self.as_of.isoformat(),
            "records": self.records,
            "quarantined": {"old": self.quarantined_old, "new": self.quarantined_new},
            "rules": [r.as_json() for r in self.rules],
            "totals": self.totals.as_json(),
        }


@dataclass(frozen=True)
class Payouts:
    """What one program pays on the records: credited and not reversed."""

    paid: dict[PayoutKey, Money]
    records: int
    quarantined: int


def payouts(program: Program, records_path: str, as_of: date) -> Payouts:
    """Settle ``program`` on the records into a private temporary SQLite database."""
    with tempfile.TemporaryDirectory(prefix="referral-impact-") as tmp:
        engine = db.open_engine(f"sqlite:///{Path(tmp) / 'impact.db'}")
        try:
            db.upgrade(engine)
            with engine.connect() as conn:
                # A scratch database: no earlier runs, so no rename to guard against.
                summary = settle(conn, program, read_records(records_path), as_of=as_of,
                                 input_name=records_path, allow_anonymous=True)
                paid = _credited(conn)
        finally:
            engine.dispose()
    return Payouts(paid, summary.records, summary.quarantined)


def _credited(conn: sa.Connection) -> dict[PayoutKey, Money]:
    """What stands per reward and beneficiary: the rule's credits whose current status is
    not ``reversed`` (pending ones will pay), summed over a reward's grants."""
    out: dict[PayoutKey, Money] = {}
    for e in ledger.iter_entries(conn):
        if e.entry_type == "credit" and e.status != "reversed" and e.rule_id is not None \
                and e.referral_id is not None and e.role is not None:
            key = (e.rule_id, e.referral_id, e.role, e.user_id)
            out[key] = out[key] + e.money if key in out else e.money
    return out


def compare(
    old_program: Program, new_program: Program, old: Payouts, new: Payouts, as_of: date
) -> ImpactReport:
    """Old vs new payouts, per rule and in total."""
    old_hashes = {r.id: rule_hash(r) for r in old_program.rules}
    new_hashes = {r.id: rule_hash(r) for r in new_program.rules}
    rule_ids = set(old_hashes) | set(new_hashes) | {k[0] for k in (*old.paid, *new.paid)}
    impacts = {rid: RuleImpact(rid, _rule_status(old_hashes.get(rid), new_hashes.get(rid)))
               for rid in rule_ids}
    totals = Counts()
    for key in sorted(set(old.paid) | set(new.paid)):
        before, after = old.paid.get(key), new.paid.get(key)
        impact = impacts[key[0]]
        totals.add(before, after)
        kind = impact.counts.add(before, after)
        if kind is not None:
            impact.changes.append(PayoutChange(*key, kind=kind, old=before, new=after))
    return ImpactReport(
        as_of=as_of,
        records=new.records,
        quarantined_old=old.quarantined,
        quarantined_new=new.quarantined,
        rules=[impacts[rid] for rid in sorted(rule_ids)],
        totals=totals,
    )


def _rule_status(old_hash: str | None, new_hash: str | None) -> str:
    if old_hash is None:
        return "added"
    if new_hash is None:
        return "removed"
    return "unchanged" if old_hash == new_hash else "modified"


def diff_programs(old: Program, new: Program, records_path: str, as_of: date) -> ImpactReport:
    """Settle both versions on the same records (same ``as_of``) and compare the payouts."""
    return compare(old, new, payouts(old, records_path, as_of),
                   payouts(new, records_path, as_of), as_of)

