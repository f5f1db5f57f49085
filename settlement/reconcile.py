"""Reconciling one referral: the ledger's standing made equal to the program's entitlement.

For each key (rule, referral, role) the *standing* is what the ledger holds:
its credits not reversed.  The *entitlement* is what the program grants the
referral's newest facts.  The difference is posted:

- a new reward is credited;
- a reward no longer granted (its condition no longer holds, or a higher
  EXCLUSIVE tier now pays the beneficiary) is reversed: *superseded*;
- a larger amount is an increase: a new grant of the difference, which takes
  what LIMIT room is left and is held like a new reward;
- a smaller amount reverses the newest grants until the standing fits and
  credits the remainder, which keeps the hold (and the confirmation) of the
  grant it replaces: *adjusted*;
- another beneficiary (or currency) reverses the old person's grants and
  credits the new one: *moved*;
- once a rule's REVERSE IF has held for a referral, that rule pays that
  referral nothing again (``settlement_terminations``), whatever later
  snapshots say: its standing is reversed.

Paid rewards that shrink or vanish are reversed like any other (a clawback:
the person's net goes negative).  EXCLUSIVE is decided here, after LIMIT: a
rule claims a beneficiary only when it ends up *paying* them, so a tier cut to
nothing by its LIMIT does not stop a lower tier.  Rules are visited in
evaluation order (priority), a referral's reversals free LIMIT room before its
new grants take room, and records are visited in input order.

Nothing here writes: a ``Changes`` collects the chunk's reversals, grants,
terminations and explanations for ``settlement.batch`` to post.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from dsl.evaluate import CompiledProgram, Evaluation, Reward, RuleOutcome
from dsl.model import ROLES, Rule
from dsl.money import Money, format_money
from settlement import ledger
from settlement.limits import LimitBook, applies, period_window
from settlement.records import Record
from settlement.references import Key, grant_seq, reward_reference
from settlement.rulebook import RuleBook

MAX_NOTES = 100

# Why a key's grants are reversed (the ledger transition's reason).
REVERSE_IF = "REVERSE IF condition held"
NOT_GRANTED = "no longer granted"
DECREASED = "amount decreased"
MOVED = "beneficiary changed"
REPERIODED = "event date moved to another LIMIT period"


@dataclass
class Standing:
    """What the ledger holds for one key: its unreversed credits and its newest credit."""

    grants: list[ledger.Entry] = field(default_factory=list)
    newest: ledger.Entry | None = None
    last_seq: int = 0  # of the key's credits posted under its current rule id

    @property
    def total(self) -> int:
        return sum(g.amount for g in self.grants)


def standing_of(credits: Sequence[ledger.Entry], book: RuleBook) -> dict[Key, Standing]:
    """The standing of every key among ``credits`` (in ledger order), renames followed."""
    out: dict[Key, Standing] = defaultdict(Standing)
    for credit in credits:
        assert credit.rule_id is not None and credit.referral_id is not None
        assert credit.role is not None
        current = book.current_id(credit.rule_id)
        standing = out[Key(current, credit.referral_id, credit.role)]
        standing.newest = credit
        if credit.rule_id == current:
            standing.last_seq = max(standing.last_seq, grant_seq(credit.reference_id))
        if credit.status != "reversed":
            standing.grants.append(credit)
    return dict(out)


@dataclass
class Evaluated:
    """A referral's newest facts, evaluated: by the live program and by retired versions."""

    record: Record
    evaluation: Evaluation
    day: date
    # Rule id -> the date its HOLD counts from (HOLD ... FROM a field that has a date).
    hold_from: dict[str, date]
    # Retired rule id -> whether its stored REVERSE IF holds (None: no stored version).
    retired_reverse: dict[str, bool | None]
    stale: bool = False
    explain: dict[str, Any] | None = None
    # The record is its referral's newest snapshot (not older than the kept one): it
    # counts in ``rewarded``.
    current: bool = True


@dataclass
class PlannedGrant:
    request: ledger.CreditRequest
    kind: str  # new | increase | replacement | moved
    capped_from: int | None = None


@dataclass
class Changes:
    """What a chunk changes, in the order it must be written."""

    reversals: dict[str, list[ledger.Entry]] = field(default_factory=lambda: defaultdict(list))
    grants: list[PlannedGrant] = field(default_factory=list)
    terminations: list[tuple[str, str]] = field(default_factory=list)
    granted_rules: set[str] = field(default_factory=set)


@dataclass
class CappedKey:
    """A key this run left below its entitlement because of LIMIT: topped up at the end of
    the run if a later reversal freed room in its period (so a rerun finds nothing to do)."""

    key: Key
    rule: Rule
    user: str
    want: Money
    have: int
    last_seq: int
    newest: str
    day: date
    hold_from: date | None


@dataclass
class Counts:
    """The run's reconciliation counters (``RunSummary`` shows them).

    Two kinds (README, "Settlement counters").  Where the input stands after the run,
    the same on a rerun of the same input: ``rewarded`` (records that are their
    referral's newest snapshot and after whose settlement something stands, room freed
    later in the run included; ``batch`` takes back records a later one supersedes)
    and ``capped`` (keys left below their entitlement by LIMIT after the run, counted
    by ``Reconciler.finish``).
    What the run changed, zero on a rerun: ``posted``, ``reversed``, ``superseded``,
    ``adjusted``, ``moved``.  ``already_posted`` counts keys that needed no change.
    """

    rewarded: int = 0
    posted: int = 0
    already_posted: int = 0
    capped: int = 0
    reversed: int = 0
    superseded: int = 0
    adjusted: int = 0
    moved: int = 0
    retired: int = 0
    capped_notes: list[str] = field(default_factory=list)


def candidate_rewards(outcome: RuleOutcome | None) -> dict[str, Reward]:
    """A matched rule's rewards per role, EXCLUSIVE suppression undone (decided here)."""
    if outcome is None or not outcome.matched:
        return {}
    merged: dict[str, Reward] = {}
    for r in [*outcome.rewards, *outcome.suppressed]:
        prev = merged.get(r.role)
        merged[r.role] = r if prev is None else replace(
            prev, amount=prev.amount + r.amount, capped=prev.capped or r.capped
        )
    return merged


class Reconciler:
    """Plans the changes of a chunk, referral by referral (see the module docstring)."""

    def __init__(self, book: RuleBook, limits: LimitBook, as_of: date, counts: Counts) -> None:
        self.book = book
        self.limits = limits
        self.as_of = as_of
        self.counts = counts
        self.order = {r.id: i for i, r in enumerate(book.program.by_priority())}
        # LIMIT periods -> keys left capped in them by this run, in grant order.
        self.capped: dict[tuple[Any, ...], list[CappedKey]] = defaultdict(list)
        self.capped_of: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.freed: set[tuple[Any, ...]] = set()
        # Referrals whose current record left nothing standing but a key LIMIT cut to
        # nothing: room freed later in the run (top_up) makes them rewarded.
        self.unrewarded: set[str] = set()

    def referral(self, ev: Evaluated, standing: Mapping[Key, Standing],
                 terminated: set[str], changes: Changes) -> None:
        rid = ev.record.referral_id
        waiting = rid in self.unrewarded
        self.unrewarded.discard(rid)
        for bucket in self.capped_of.pop(rid, ()):
            self.capped[bucket] = [c for c in self.capped[bucket] if c.key.referral_id != rid]
        outcomes = {o.rule_id: o for o in ev.evaluation.active_outcomes}
        claims: dict[str, tuple[int, str]] = {}
        stands = False
        for priority, _, rule_id in self._visit(standing, outcomes):
            live = self.book.live.get(rule_id)
            outcome = outcomes.get(rule_id)
            reverse = (outcome is not None and outcome.reverse) or (
                live is None and ev.retired_reverse.get(rule_id) is True)
            if reverse and rule_id not in terminated:
                terminated.add(rule_id)
                changes.terminations.append((rule_id, rid))
            rewards = candidate_rewards(outcome) if live is not None else {}
            for role in ROLES:
                key = Key(rule_id, rid, role)
                held = standing.get(key)
                if held is None and role not in rewards:
                    continue
                if rule_id in terminated:
                    final = self._reverse_all(ev, key, held, REVERSE_IF, changes, "reversed")
                elif live is None:
                    final = self._keep_retired(ev, key, held)
                else:
                    final = self._settle(ev, live, key, held, rewards.get(role), claims, changes)
                stands = stands or final > 0
                exclusive = live.exclusive if live is not None else self._retired_exclusive(held)
                if exclusive and final > 0:
                    claims.setdefault(role, (priority, rule_id))
        if ev.current and stands:
            self.counts.rewarded += 1
        elif not stands and (ev.current or waiting) and self._cut_to_nothing(rid):
            self.unrewarded.add(rid)

    def _cut_to_nothing(self, rid: str) -> bool:
        return any(c.have == 0 for bucket in self.capped_of.get(rid, ())
                   for c in self.capped[bucket] if c.key.referral_id == rid)

    # -- one key ---------------------------------------------------------------

    def _settle(self, ev: Evaluated, rule: Rule, key: Key, held: Standing | None,
                reward: Reward | None, claims: Mapping[str, tuple[int, str]],
                changes: Changes) -> int:
        """Make one key's standing equal its entitlement; the amount that stands after."""
        claim = claims.get(key.role)
        if reward is not None and claim is not None and claim[0] > rule.priority:
            why = f"{NOT_GRANTED}: {claim[1]} (EXCLUSIVE, higher priority) pays the {key.role}"
            return self._reverse_all(ev, key, held, why, changes, "superseded")
        if reward is None:
            return self._reverse_all(ev, key, held, f"{NOT_GRANTED}: the rule no longer matches",
                                     changes, "superseded")
        user = str(ev.record.get(f"{key.role}.id"))
        want = reward.amount
        grants = held.grants if held is not None else []
        total = sum(g.amount for g in grants)
        same = bool(grants) and all(
            g.user_id == user and g.currency == want.currency for g in grants
        )
        # Grants counted in another LIMIT period than the referral's date now falls in are
        # moved into it whole: topping up there would count the old part in neither period.
        reperiod = same and self._other_period(rule, key, grants, ev.day)
        same = same and not reperiod
        if same and total == want.amount:
            self.counts.already_posted += 1
            self._note(ev, key, "already_posted", "the ledger holds it already",
                       amount=total, user_id=user)
            return total
        if same and want.amount > total:
            delta = self._room(ev, rule, key, user, want.amount - total, requested=want.amount,
                               held=total)
            granted = None
            if delta:
                granted = self._grant(ev, rule, key, held, user, Money(delta, want.currency),
                                      "increase", changes, old=total,
                                      capped_from=want.amount - total
                                      if delta < want.amount - total else None)
                self.counts.adjusted += 1
            else:
                self.counts.already_posted += 1
            if total + delta < want.amount:
                self._remember_cap(ev, rule, key, held, user, want, total + delta, granted)
            return total + delta
        if same:  # a decrease: reverse the newest grants until what stands fits
            remaining, replaced = total, None
            for grant in reversed(grants):
                if remaining <= want.amount:
                    break
                self._reverse(ev, key, grant, DECREASED, changes)
                remaining -= grant.amount
                replaced = grant
            if remaining < want.amount:
                assert replaced is not None
                self._grant(ev, rule, key, held, user, Money(want.amount - remaining,
                            want.currency), "replacement", changes, old=total,
                            inherit=replaced)
            self.counts.adjusted += 1
            self._note(ev, key, "adjusted", f"amount decreased from {_money(total, want)} to"
                       f" {format_money(want)}", old=total, new=want.amount, user_id=user)
            return want.amount
        moved = bool(grants)
        for grant in reversed(grants):
            self._reverse(ev, key, grant, REPERIODED if reperiod else MOVED, changes)
        amount = self._room(ev, rule, key, user, want.amount, requested=want.amount, held=0)
        granted = None
        if amount:
            granted = self._grant(ev, rule, key, held, user, Money(amount, want.currency),
                                  "moved" if moved else "new", changes,
                                  old=total if moved else None,
                                  capped_from=want.amount if amount < want.amount else None)
        if amount < want.amount:
            self._remember_cap(ev, rule, key, held, user, want, amount, granted)
        if reperiod:
            self.counts.adjusted += 1
            self._note(ev, key, "adjusted", f"{REPERIODED}: {grants[-1].event_date} to {ev.day}",
                       old=total, new=amount, user_id=user)
        elif moved:
            self.counts.moved += 1
            old_user = grants[-1].user_id
            self._note(ev, key, "moved", f"beneficiary changed from {old_user} to {user}",
                       old_user_id=old_user, user_id=user, old=total, new=amount)
        return amount

    def _other_period(self, rule: Rule, key: Key, grants: Sequence[ledger.Entry],
                      day: date) -> bool:
        """Whether any grant is counted by the rule's LIMIT in another period than ``day``."""
        if rule.limit is None or not applies(rule.limit, key.role):
            return False
        start = period_window(rule.limit.period, day)[0]
        return any(g.event_date is not None
                   and period_window(rule.limit.period, g.event_date)[0] != start
                   for g in grants)

    def _keep_retired(self, ev: Evaluated, key: Key, held: Standing | None) -> int:
        total = held.total if held is not None else 0
        if total:
            self.counts.retired += 1
            why = ("the rule is no longer in the program; its rewards keep their hold"
                   + ("" if ev.retired_reverse.get(key.rule_id) is not None
                      else " (no stored version to evaluate its REVERSE IF)"))
            self._note(ev, key, "retired", why, amount=total)
        return total

    def _retired_exclusive(self, held: Standing | None) -> bool:
        """Whether a retired rule's stored version was EXCLUSIVE (it keeps claiming)."""
        if held is None or not held.grants:
            return False
        newest = held.grants[-1]
        assert newest.rule_id is not None
        stored = self.book.retired(newest.rule_id, newest.rule_hash)
        return stored is not None and stored.program.rules[0].exclusive

    def _reverse_all(self, ev: Evaluated, key: Key, held: Standing | None, why: str,
                     changes: Changes, counter: str) -> int:
        grants = held.grants if held is not None else []
        if grants:
            for grant in reversed(grants):
                self._reverse(ev, key, grant, why, changes)
            setattr(self.counts, counter, getattr(self.counts, counter) + 1)
            self._note(ev, key, counter, why, old=sum(g.amount for g in grants), new=0,
                       user_id=grants[-1].user_id)
        return 0

    def _reverse(self, ev: Evaluated, key: Key, grant: ledger.Entry, why: str,
                 changes: Changes) -> None:
        changes.reversals[why].append(grant)
        rule = self.book.live.get(key.rule_id)
        self.limits.add(rule, grant.user_id, key.role, grant.event_date, grant.currency,
                        -grant.amount)
        if rule is not None and rule.limit is not None and grant.event_date is not None:
            bucket = self.limits.key(rule, grant.user_id, grant.event_date)
            if self.capped.get(bucket):
                self.freed.add(bucket)

    def _room(self, ev: Evaluated, rule: Rule, key: Key, user: str, amount: int, *,
              requested: int, held: int) -> int:
        """What of ``amount`` the rule's LIMIT lets ``user`` have (first come, first served)."""
        limit = rule.limit
        if limit is None or not applies(limit, key.role):
            return amount
        room = self.limits.room(rule, user, ev.day)
        if amount <= room:
            return amount
        note = _capped_note(key, rule, requested, held + room)
        self._note(ev, key, "capped", note, amount=held + room, requested=requested)
        return room

    def _grant(self, ev: Evaluated, rule: Rule, key: Key, held: Standing | None, user: str,
               money: Money, kind: str, changes: Changes, *, old: int | None = None,
               inherit: ledger.Entry | None = None, capped_from: int | None = None
               ) -> tuple[str, int]:
        seq = (held.last_seq if held is not None else 0) + 1
        if held is not None:
            held.last_seq = seq
        adjusts = held.newest.reference_id if held is not None and held.newest else None
        request = self._request(rule, key, user, money, seq, adjusts, ev.day,
                                ev.hold_from.get(rule.id), inherit)
        changes.grants.append(PlannedGrant(request, kind, capped_from))
        changes.granted_rules.add(rule.id)
        self.limits.add(rule, user, key.role, ev.day, money.currency, money.amount)
        why = f"held until {request.hold_until}" if request.status == "pending" else "confirmed"
        if kind != "new":
            why = f"{kind}: {why}"
        self._note(ev, key, "posted", why, reference_id=request.reference_id,
                   amount=money.amount, currency=money.currency, user_id=user, kind=kind,
                   **({"old": old} if old is not None else {}))
        return request.reference_id, seq

    def _request(self, rule: Rule, key: Key, user: str, money: Money, seq: int,
                 adjusts: str | None, day: date, hold_from: date | None,
                 inherit: ledger.Entry | None = None) -> ledger.CreditRequest:
        """The credit of one grant: held like a new reward (from the later of the event date
        and this run's as-of date, or from the HOLD's FROM field), or as what it replaces."""
        if inherit is not None:
            hold_until = inherit.hold_until
            status = "pending" if inherit.status == "pending" else "confirmed"
        elif rule.hold_days:
            start = hold_from or max(day, self.as_of)
            hold_until, status = start + timedelta(days=rule.hold_days), "pending"
        else:
            hold_until, status = None, "confirmed"
        return ledger.CreditRequest(
            user_id=user, amount=money.amount, currency=money.currency,
            reference_id=reward_reference(*key, seq=seq), status=status, rule_id=rule.id,
            rule_hash=self.book.hashes[rule.id], referral_id=key.referral_id, role=key.role,
            event_date=day, hold_until=hold_until, adjusts=adjusts,
        )

    def _remember_cap(self, ev: Evaluated, rule: Rule, key: Key, held: Standing | None,
                      user: str, want: Money, have: int, granted: tuple[str, int] | None) -> None:
        if granted is not None:
            newest, last_seq = granted
        elif held is not None and held.newest is not None:
            newest, last_seq = held.newest.reference_id, held.last_seq
        else:
            newest, last_seq = "", 0
        bucket = self.limits.key(rule, user, ev.day)
        self.capped[bucket].append(CappedKey(key, rule, user, want, have, last_seq, newest,
                                             ev.day, ev.hold_from.get(rule.id)))
        self.capped_of[key.referral_id].append(bucket)

    def finish(self) -> None:
        """End of the run, after ``top_up``: ``capped`` counts the keys still below their
        entitlement, so that a rerun reports the same."""
        left = [c for keys in self.capped.values() for c in keys if c.have < c.want.amount]
        self.counts.capped = len(left)
        self.counts.capped_notes = [_capped_note(c.key, c.rule, c.want.amount, c.have)
                                    for c in left[:MAX_NOTES]]

    def top_up(self, changes: Changes) -> list[dict[str, Any]]:
        """End of the run: keys this run capped get the room later reversals freed, in the
        order they were capped (first come, first served).  Returns explain actions."""
        freed = [b for b in self.freed if self.capped.get(b)]
        self.freed.clear()
        self.limits.prefetch((c.rule, c.user, c.day) for b in freed for c in self.capped[b])
        actions: list[dict[str, Any]] = []
        for bucket in freed:
            for c in self.capped[bucket]:
                room = self.limits.room(c.rule, c.user, c.day)
                delta = min(c.want.amount - c.have, room)
                if delta <= 0:
                    continue
                c.last_seq += 1
                request = self._request(c.rule, c.key, c.user, Money(delta, c.want.currency),
                                        c.last_seq, c.newest or None, c.day, c.hold_from)
                changes.grants.append(PlannedGrant(request, "increase"))
                changes.granted_rules.add(c.rule.id)
                self.limits.add(c.rule, c.user, c.key.role, c.day, c.want.currency, delta)
                self.counts.adjusted += 1
                actions.append({"reference_id": request.reference_id, "rule_id": c.key.rule_id,
                                "referral_id": c.key.referral_id, "role": c.key.role,
                                "outcome": "posted", "kind": "increase", "old": c.have,
                                "amount": delta, "user_id": c.user,
                                "why": "LIMIT room freed later in the run"})
                if c.have == 0 and c.key.referral_id in self.unrewarded:
                    self.unrewarded.discard(c.key.referral_id)
                    self.counts.rewarded += 1
                c.have += delta
                c.newest = request.reference_id
        return actions

    def _note(self, ev: Evaluated, key: Key, outcome: str, why: str, **extra: Any) -> None:
        if ev.explain is not None:
            ev.explain["actions"].append({"reference_id": reward_reference(*key),
                                          "rule_id": key.rule_id, "role": key.role,
                                          "outcome": outcome, "why": why, **extra})

    def _visit(self, standing: Mapping[Key, Standing],
               outcomes: Mapping[str, RuleOutcome]) -> list[tuple[int, int, str]]:
        """The rules to reconcile for a referral, in evaluation order: those that matched
        or whose REVERSE IF holds, and those with standing (retired ones by their stored
        priority)."""
        ids = set(outcomes) | {key.rule_id for key in standing}
        out = []
        for rule_id in ids:
            live = self.book.live.get(rule_id)
            if live is not None:
                out.append((live.priority, self.order[rule_id], rule_id))
            else:
                out.append((self._retired_priority(standing, rule_id), len(self.order), rule_id))
        out.sort(key=lambda t: (-t[0], t[1], t[2]))
        return out

    def _retired_priority(self, standing: Mapping[Key, Standing], rule_id: str) -> int:
        for key, held in standing.items():
            if key.rule_id == rule_id and held.grants:
                newest = held.grants[-1]
                assert newest.rule_id is not None
                stored = self.book.retired(newest.rule_id, newest.rule_hash)
                if stored is not None:
                    return stored.program.rules[0].priority
        return 0


def _capped_note(key: Key, rule: Rule, requested: int, granted: int) -> str:
    limit = rule.limit
    assert limit is not None
    currency = limit.amount.currency
    return (f"{reward_reference(*key)}: {format_money(Money(requested, currency))} cut to "
            f"{format_money(Money(granted, currency))} by LIMIT {format_money(limit.amount)}"
            f" PER {limit.per} PER {limit.period.upper()}")


def _money(amount: int, like: Money) -> str:
    return format_money(Money(amount, like.currency))


def retired_compiled(book: RuleBook, standing: Mapping[Key, Standing]
                     ) -> dict[str, CompiledProgram | None]:
    """The stored versions of the retired rules with standing among ``standing``."""
    out: dict[str, CompiledProgram | None] = {}
    for key, held in standing.items():
        if key.rule_id in book.live or not held.grants or key.rule_id in out:
            continue
        newest = held.grants[-1]
        assert newest.rule_id is not None
        out[key.rule_id] = book.retired(newest.rule_id, newest.rule_hash)
    return out
