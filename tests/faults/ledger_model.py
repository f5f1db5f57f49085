"""A plain-Python model of what settlement, hand writes and payouts leave standing.

The state machine (``test_faults_state_machine``) checks the real ledger against this
after every step.  The model knows the program only through the DSL's interpreter
(``CompiledProgram.evaluate_closures``, not the generated evaluator settlement runs)
and keeps its books in dictionaries: per key (rule, referral, role) the grants that
stand, in grant order; the hand credits; the payout items.

Settlement's documented semantics, applied record by record in input order
(``settlement.reconcile``'s docstring): each referral is settled on its newest
snapshot (by version); a key's standing is made equal to its entitlement (a new
reward, an increase taking what LIMIT room is left, a decrease reversing the newest
grants and crediting the remainder, another beneficiary or LIMIT period reversing all
and granting anew); EXCLUSIVE is decided after LIMIT (a rule claims a role only when
it ends up paying it); once REVERSE IF held, the rule pays that referral nothing again;
LIMIT is first come, first served, and keys capped in a run get room freed later in
the same run at its end, in the order they were capped.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from dsl.evaluate import CompiledProgram, RuleOutcome
from dsl.model import ROLES, Program, Rule

Key = tuple[str, str, str]  # rule id, referral id, role
Bucket = tuple[str, str, date | None]  # rule id, user, LIMIT period start


@dataclass
class Grant:
    reference_id: str
    user: str
    amount: int
    day: date


@dataclass
class Capped:
    key: Key
    user: str
    want: int
    have: int
    day: date


@dataclass
class HandCredit:
    user: str
    amount: int
    reversed: bool = False


@dataclass
class Item:
    user: str
    amount: int
    status: str  # created | sent | paid | failed


def period_start(period: str, day: date) -> date | None:
    if period == "day":
        return day
    if period == "month":
        return day.replace(day=1)
    if period == "year":
        return date(day.year, 1, 1)
    return None


def reference(key: Key, seq: int) -> str:
    base = f"reward:{key[0]}:{key[1]}:{key[2]}"
    return base if seq == 1 else f"{base}#{seq}"


@dataclass
class Model:
    """The books the ledger must agree with (see the module docstring)."""

    program: Program
    compiled: CompiledProgram
    grants: dict[Key, list[Grant]] = field(default_factory=lambda: defaultdict(list))
    last_seq: dict[Key, int] = field(default_factory=lambda: defaultdict(int))
    kept: dict[str, dict[str, Any]] = field(default_factory=dict)  # referral -> newest snapshot
    terminated: set[tuple[str, str]] = field(default_factory=set)
    hand: dict[str, HandCredit] = field(default_factory=dict)
    items: dict[str, Item] = field(default_factory=dict)
    caps: int = 0  # grants LIMIT cut, over the whole life of the model
    top_ups: int = 0

    def __post_init__(self) -> None:
        self.rules = {r.id: r for r in self.program.rules}
        self.order = {r.id: i for i, r in enumerate(self.program.by_priority())}

    # -- settle ----------------------------------------------------------------

    def settle(self, snapshots: list[dict[str, Any]]) -> None:
        """One run over ``snapshots`` in input order."""
        self._capped: dict[Bucket, list[Capped]] = defaultdict(list)
        self._freed: set[Bucket] = set()
        for snap in snapshots:
            rid = snap["referral_id"]
            kept = self.kept.get(rid)
            if kept is None or snap["version"] > kept["version"]:
                self.kept[rid] = kept = snap
            self._referral(kept)
        for bucket in list(self._freed):
            rule = self.rules[bucket[0]]
            for c in self._capped.get(bucket, []):
                delta = min(c.want - c.have, self._room(rule, c.user, c.day))
                if delta > 0:
                    self._grant(c.key, c.user, delta, c.day)
                    c.have += delta
                    self.top_ups += 1

    def _referral(self, snap: dict[str, Any]) -> None:
        rid = snap["referral_id"]
        for bucket, capped in self._capped.items():
            self._capped[bucket] = [c for c in capped if c.key[1] != rid]
        day = _utc_day(snap["referral"]["created_at"])
        outcomes = {o.rule_id: o for o in self.compiled.evaluate_closures(snap).outcomes
                    if o.matched or o.reverse}
        standing = {k[0] for k, g in self.grants.items() if k[1] == rid and g}
        visit = sorted(set(outcomes) | standing,
                       key=lambda r: (-self.rules[r].priority, self.order[r], r))
        claims: dict[str, int] = {}
        for rule_id in visit:
            rule = self.rules[rule_id]
            outcome = outcomes.get(rule_id)
            if outcome is not None and outcome.reverse:
                self.terminated.add((rule_id, rid))
            wanted = _candidates(outcome)
            for role in ROLES:
                key = (rule_id, rid, role)
                if not self.grants.get(key) and role not in wanted:
                    continue
                if (rule_id, rid) in self.terminated:
                    final = self._reverse_all(key)
                else:
                    final = self._settle_key(rule, key, wanted.get(role), claims,
                                             str(snap[role]["id"]), day)
                if rule.exclusive and final > 0:
                    claims.setdefault(role, rule.priority)

    def _settle_key(self, rule: Rule, key: Key, want: int | None, claims: dict[str, int],
                    user: str, day: date) -> int:
        claim = claims.get(key[2])
        if want is None or (claim is not None and claim > rule.priority):
            return self._reverse_all(key)
        grants = self.grants[key]
        total = sum(g.amount for g in grants)
        same = bool(grants) and all(g.user == user for g in grants)
        if same and self._limited(rule, key[2]):
            assert rule.limit is not None
            start = period_start(rule.limit.period, day)
            same = all(period_start(rule.limit.period, g.day) == start for g in grants)
        if same and total == want:
            return total
        if same and want > total:
            delta = min(want - total, self._room(rule, user, day, key[2]))
            if delta:
                self._grant(key, user, delta, day)
            if total + delta < want:
                self._cap(rule, key, user, want, total + delta, day)
            return total + delta
        if same:  # a decrease: the newest grants go until what stands fits
            remaining = total
            while remaining > want:
                remaining -= self._reverse(key, grants[-1]).amount
            if remaining < want:
                self._grant(key, user, want - remaining, day)
            return want
        for grant in reversed(list(grants)):
            self._reverse(key, grant)
        amount = min(want, self._room(rule, user, day, key[2]))
        if amount:
            self._grant(key, user, amount, day)
        if amount < want:
            self._cap(rule, key, user, want, amount, day)
        return amount

    # -- LIMIT -----------------------------------------------------------------

    @staticmethod
    def _limited(rule: Rule, role: str) -> bool:
        return rule.limit is not None and rule.limit.per in ("person", role)

    def _bucket(self, rule: Rule, user: str, day: date) -> Bucket:
        assert rule.limit is not None
        return (rule.id, user, period_start(rule.limit.period, day))

    def _room(self, rule: Rule, user: str, day: date, role: str | None = None) -> int:
        """What the rule's LIMIT still lets ``user`` earn in the period of ``day``."""
        if rule.limit is None or (role is not None and not self._limited(rule, role)):
            return 1 << 62
        counted = None if rule.limit.per == "person" else rule.limit.per
        bucket = self._bucket(rule, user, day)
        held = sum(g.amount for (rule_id, _, role_), gs in self.grants.items()
                   if rule_id == rule.id and (counted is None or role_ == counted)
                   for g in gs if self._bucket(rule, g.user, g.day) == bucket)
        return max(rule.limit.amount.amount - held, 0)

    def _cap(self, rule: Rule, key: Key, user: str, want: int, have: int, day: date) -> None:
        self.caps += 1
        self._capped[self._bucket(rule, user, day)].append(Capped(key, user, want, have, day))

    # -- the books -------------------------------------------------------------

    def _grant(self, key: Key, user: str, amount: int, day: date) -> None:
        self.last_seq[key] += 1
        self.grants[key].append(Grant(reference(key, self.last_seq[key]), user, amount, day))

    def _reverse(self, key: Key, grant: Grant) -> Grant:
        self.grants[key].remove(grant)
        rule = self.rules.get(key[0])
        if rule is not None and self._limited(rule, key[2]):
            bucket = self._bucket(rule, grant.user, grant.day)
            if getattr(self, "_capped", {}).get(bucket):
                self._freed.add(bucket)
        return grant

    def _reverse_all(self, key: Key) -> int:
        for grant in reversed(list(self.grants.get(key, []))):
            self._reverse(key, grant)
        return 0

    def reverse_by_hand(self, reference_id: str) -> None:
        """``ledger reverse`` of a reward or a hand credit."""
        if reference_id in self.hand:
            self.hand[reference_id].reversed = True
            return
        for grants in self.grants.values():
            for grant in grants:
                if grant.reference_id == reference_id:
                    grants.remove(grant)
                    return
        raise AssertionError(f"the model holds no standing {reference_id}")

    # -- what the ledger must show ---------------------------------------------

    def standing_rewards(self) -> set[tuple[str, str, int]]:
        """(reference, user, amount) of every reward credit not reversed."""
        return {(g.reference_id, g.user, g.amount) for gs in self.grants.values() for g in gs}

    def standing_hand(self) -> set[tuple[str, str, int]]:
        return {(ref, h.user, h.amount) for ref, h in self.hand.items() if not h.reversed}

    def net(self, user: str) -> int:
        """What the program owes ``user``: credits not reversed, less payout items not
        failed (clawback debt makes it negative)."""
        rewards = sum(g.amount for gs in self.grants.values() for g in gs if g.user == user)
        hand = sum(h.amount for h in self.hand.values() if h.user == user and not h.reversed)
        out = sum(i.amount for i in self.items.values()
                  if i.user == user and i.status != "failed")
        return rewards + hand - out

    def users(self) -> set[str]:
        return ({g.user for gs in self.grants.values() for g in gs}
                | {h.user for h in self.hand.values()} | {i.user for i in self.items.values()})


def _candidates(outcome: RuleOutcome | None) -> dict[str, int]:
    """A matched rule's reward per role, with EXCLUSIVE suppression undone (the model
    decides EXCLUSIVE itself, after LIMIT)."""
    if outcome is None or not outcome.matched:
        return {}
    out: dict[str, int] = {}
    for r in [*outcome.rewards, *outcome.suppressed]:
        out[r.role] = out.get(r.role, 0) + r.amount.amount
    return out


def _utc_day(stamp: str) -> date:
    """The referral's event date on the program's calendar (UTC: it names no zone)."""
    if "T" not in stamp:
        return date.fromisoformat(stamp)
    return datetime.fromisoformat(stamp).astimezone(UTC).date()
