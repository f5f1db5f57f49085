"""The nightly settlement run: records -> rules -> ledger, in one transaction.

Why one transaction: a crash, a kill or a bad record under ``--strict`` must
leave the ledger exactly as it was, and a rerun must then produce what an
uninterrupted run would have.  Idempotency comes from deterministic reference
ids (``reward:<rule id>:<referral_id>:<role>``) that the ledger's unique
constraint guards, so reruns and overlapping inputs post nothing twice.

Work is set-based: records are taken in chunks; each chunk costs one lookup of
existing references, a few LIMIT total queries, and bulk inserts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import IO, TYPE_CHECKING, Any

import sqlalchemy as sa

from dsl.codec import rule_hash
from dsl.errors import EvaluationError
from dsl.evaluate import Reward, compile_program, iso_date
from dsl.model import ROLES, Program, Rule
from dsl.money import MAX_MINOR_UNITS, Money, format_money
from settlement import ledger
from settlement.db import require_schema
from settlement.errors import SettlementError
from settlement.locks import lock_ledger, lock_settlement_run, settlement_transaction
from settlement.records import BadRecord, Record
from settlement.tables import settlement_quarantine, settlement_runs

if TYPE_CHECKING:
    from dsl.evaluate import Evaluation

log = logging.getLogger(__name__)

CHUNK = 1000
# (rule id, beneficiary user id, start of the LIMIT period)
LimitKey = tuple[str, str, date | None]
# How many LIMIT totals a run keeps between chunks (least recently used go first).
LIMIT_CACHE_KEYS = 20_000
MAX_CAPPED_NOTES = 100


def reward_reference(rule_id: str, referral_id: str, role: str) -> str:
    return f"reward:{rule_id}:{referral_id}:{role}"


@dataclass
class RunSummary:
    """What a run did; ``as_json`` is the documented ``--json`` output."""

    run_id: str
    as_of: date
    dry_run: bool = False
    records: int = 0
    rewarded: int = 0
    posted: int = 0
    already_posted: int = 0
    capped: int = 0
    reversed: int = 0
    confirmed: int = 0
    quarantined: int = 0
    amount_posted: dict[str, int] = field(default_factory=dict)
    capped_notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "records": self.records,
            "rewarded": self.rewarded,
            "posted": self.posted,
            "already_posted": self.already_posted,
            "capped": self.capped,
            "reversed": self.reversed,
            "confirmed": self.confirmed,
            "quarantined": self.quarantined,
            "amount_posted": dict(sorted(self.amount_posted.items())),
        }


@dataclass(frozen=True)
class PlannedReward:
    """One reward this run posts (or would post, in a dry run)."""

    request: ledger.CreditRequest
    capped_from: int | None = None


def per_beneficiary(rewards: Iterable[Reward]) -> list[Reward]:
    """One reward per role: a rule that pays a role twice pays one summed entry.

    The reference names rule, referral and role, so two entries for the same
    role would collide; the validator keeps a rule's rewards in one currency.
    """
    merged: dict[str, Reward] = {}
    for r in rewards:
        prev = merged.get(r.role)
        merged[r.role] = r if prev is None else replace(
            prev, amount=prev.amount + r.amount, capped=prev.capped or r.capped
        )
    return list(merged.values())


def program_digest(program: Program) -> str:
    hashes = sorted(f"{r.id}:{rule_hash(r)}" for r in program.rules)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def period_window(period: str, day: date) -> tuple[date | None, date | None]:
    """The LIMIT period holding ``day``, as a half-open [start, end) range."""
    if period == "day":
        return day, day + timedelta(days=1)
    if period == "month":
        start = day.replace(day=1)
        end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
        return start, end
    if period == "year":
        return date(day.year, 1, 1), date(day.year + 1, 1, 1)
    return None, None


def event_date(record: Record, as_of: date) -> date:
    """The record's own date (``referral.created_at``); LIMIT periods and HOLDs count from it."""
    value = record.get("referral.created_at")
    if value is None:
        return as_of
    day = iso_date(value)
    if day is None:
        raise EvaluationError(
            f"referral.created_at must be an ISO date, got {json.dumps(value, default=str)}"
        )
    return day


@dataclass
class _Evaluated:
    record: Record
    evaluation: Evaluation
    day: date
    explain: dict[str, Any] | None


class Settlement:
    """One run over one connection; see ``settle`` for the entry point."""

    def __init__(
        self,
        conn: sa.Connection,
        program: Program,
        *,
        as_of: date,
        run_id: str,
        strict: bool,
        default_currency: str | None,
        explain: IO[str] | None,
        on_plan: Callable[[PlannedReward], None] | None,
        dry_run: bool,
    ) -> None:
        self.conn = conn
        self.program = program
        self.rules: dict[str, Rule] = {r.id: r for r in program.rules}
        self.hashes = {r.id: rule_hash(r) for r in program.rules}
        self.compiled = compile_program(program, default_currency=default_currency)
        # Rules with two rewards to one role: their sum is checked (each alone already is).
        self.summing_rules = {
            r.id for r in program.rules if len({a.to for a in r.actions}) < len(r.actions)
        }
        self.as_of = as_of
        self.strict = strict
        self.explain = explain
        self.on_plan = on_plan
        self.summary = RunSummary(run_id=run_id, as_of=as_of, dry_run=dry_run)
        self.actor = f"settle:{run_id}"
        self.input_hash = hashlib.sha256()
        self.quarantine_rows: list[dict[str, Any]] = []
        # LIMIT totals per currency, kept in step with what this run posts and reverses.
        self.limit_cache: OrderedDict[LimitKey, dict[str, int]] = OrderedDict()
        self.explain_lines: list[dict[str, Any]] = []

    # -- records -----------------------------------------------------------

    def run(self, items: Iterable[Record | BadRecord]) -> None:
        for chunk in _chunks(items, CHUNK):
            self._settle_chunk(chunk)
        self._confirm_due()

    def _quarantine(self, bad: BadRecord) -> None:
        if self.strict:
            raise SettlementError(f"{bad.file}:{bad.line}: error: {bad.reason} (--strict)")
        self.summary.quarantined += 1
        self.quarantine_rows.append(
            {"run_id": self.summary.run_id, "file": bad.file, "line": bad.line,
             "raw": bad.raw, "reason": bad.reason}
        )
        if self.explain is not None:
            self.explain_lines.append({"file": bad.file, "line": bad.line,
                                       "quarantined": bad.reason})

    def _evaluate(self, item: Record | BadRecord) -> _Evaluated | None:
        self.input_hash.update(item.raw.encode() + b"\n")
        self.summary.records += 1
        if isinstance(item, BadRecord):
            self._quarantine(item)
            return None
        try:
            day = event_date(item, self.as_of)
            evaluation = self.compiled.evaluate(item.data, trace=self.explain is not None)
            if self.summing_rules:
                self._check_sums(evaluation)
        except EvaluationError as e:
            self._quarantine(BadRecord(item.file, item.line, item.raw, e.message))
            return None
        explain = None
        if self.explain is not None:
            explain = {"file": item.file, "line": item.line, "referral_id": item.referral_id,
                       "rules": [], "actions": []}
            self.explain_lines.append(explain)
        return _Evaluated(item, evaluation, day, explain)

    def _check_sums(self, evaluation: Evaluation) -> None:
        """A rule paying one role twice pays the sum, which must fit the ledger's BIGINT."""
        for outcome in evaluation.active_outcomes:
            if outcome.rule_id not in self.summing_rules:
                continue
            for reward in per_beneficiary(outcome.rewards):
                if reward.amount.amount > MAX_MINOR_UNITS:
                    raise EvaluationError(
                        f"rule {outcome.rule_id}: the rewards to {reward.role} sum to "
                        f"{reward.amount.amount} minor units; at most {MAX_MINOR_UNITS}"
                    )

    def _settle_chunk(self, chunk: list[Record | BadRecord]) -> None:
        evaluated = [e for e in map(self._evaluate, chunk) if e is not None]
        # Only rewards to pay and rewards to reverse need a look at the ledger.
        # Rewards to pay only need to know whether their reference exists (a rerun is all
        # lookups); rewards to reverse need the entry and its status.
        to_pay_refs: list[str] = []
        to_reverse_refs: list[str] = []
        for ev in evaluated:
            for o in ev.evaluation.active_outcomes:
                if o.reverse:
                    to_reverse_refs += (reward_reference(o.rule_id, ev.record.referral_id, role)
                                        for role in ROLES)
                elif o.rewards:
                    to_pay_refs += (reward_reference(o.rule_id, ev.record.referral_id, role)
                                    for role in {r.role for r in o.rewards})
        posted = ledger.existing_references(self.conn, to_pay_refs)
        existing = ledger.find_entries(self.conn, to_reverse_refs)
        totals = self._limit_totals(evaluated, posted)
        to_post: list[PlannedReward] = []
        to_reverse: list[str] = []
        for ev in evaluated:
            rid = ev.record.referral_id
            rewarded = False
            # --explain shows every rule; otherwise only rules that matched or reverse act.
            outcomes = (ev.evaluation.outcomes if ev.explain is not None
                        else ev.evaluation.active_outcomes)
            for outcome in outcomes:
                rule = self.rules[outcome.rule_id]
                if ev.explain is not None:
                    ev.explain["rules"].append({
                        "rule_id": rule.id, "matched": outcome.matched, "reverse": outcome.reverse,
                        "trace": outcome.trace,
                        "suppressed_by": outcome.suppressed_by,
                    })
                if outcome.reverse:
                    for role in ROLES:
                        ref = reward_reference(rule.id, rid, role)
                        entry = existing.get(ref)
                        if entry is not None and entry.status != "reversed":
                            to_reverse.append(ref)
                            self._note(ev, ref, "reversed", f"REVERSE IF of {rule.id} holds")
                    continue
                for reward in per_beneficiary(outcome.rewards):
                    rewarded = True
                    ref = reward_reference(rule.id, rid, reward.role)
                    if ref in posted:
                        self.summary.already_posted += 1
                        self._note(ev, ref, "already_posted", "posted by an earlier run")
                        continue
                    planned = self._plan(ev, rule, reward, ref, totals)
                    if planned is not None:
                        to_post.append(planned)
            if rewarded:
                self.summary.rewarded += 1
        self._post(to_post)
        if to_reverse:
            results = ledger.reverse_many(
                self.conn, to_reverse, "REVERSE IF condition held", actor=self.actor,
                run_id=self.summary.run_id,
            )
            self.summary.reversed += sum(1 for r in results if r.created)
            for ref in to_reverse:
                entry = existing[ref]
                self._count_limit(entry.rule_id, entry.user_id, entry.event_date,
                                  entry.currency, -entry.amount)
        if self.quarantine_rows:
            self.conn.execute(settlement_quarantine.insert(), self.quarantine_rows)
            self.quarantine_rows = []
        if self.explain is not None:
            for line in self.explain_lines:  # input order, decisions included
                self.explain.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            self.explain_lines = []

    def _note(self, ev: _Evaluated, ref: str, outcome: str, why: str, **extra: Any) -> None:
        if ev.explain is not None:
            ev.explain["actions"].append({"reference_id": ref, "outcome": outcome, "why": why,
                                          **extra})

    # -- LIMIT ---------------------------------------------------------------

    def _limit_totals(
        self, evaluated: list[_Evaluated], posted: set[str]
    ) -> dict[LimitKey, dict[str, int]]:
        """What each capped beneficiary already has in the ledger, per rule and period.

        Only rewards still to post need it (a rerun asks nothing).  Totals are
        kept between chunks in a bounded LRU cache that this run updates as it
        posts and reverses (so a prolific referrer is not summed anew for every
        chunk); the rest are queried per chunk: earlier chunks of this run are
        already in the ledger (same transaction), so memory stays flat however
        long the input.
        """
        wanted: list[ledger.TotalsKey] = []
        totals: dict[LimitKey, dict[str, int]] = {}
        for ev in evaluated:
            for outcome in ev.evaluation.active_outcomes:
                limit = self.rules[outcome.rule_id].limit
                if limit is None:
                    continue
                for reward in per_beneficiary(outcome.rewards):
                    ref = reward_reference(outcome.rule_id, ev.record.referral_id, reward.role)
                    if reward.role == limit.per and ref not in posted:
                        start, end = period_window(limit.period, ev.day)
                        user = str(ev.record.get(f"{reward.role}.id"))
                        key = (outcome.rule_id, user, start)
                        cached = self.limit_cache.get(key)
                        if cached is not None:
                            self.limit_cache.move_to_end(key)
                            totals[key] = cached
                        else:
                            wanted.append((outcome.rule_id, user, start, end))
        for (rule_id, user, start, _), by_currency in ledger.credited_totals_many(
            self.conn, wanted
        ).items():
            totals[(rule_id, user, start)] = self.limit_cache[(rule_id, user, start)] = (
                by_currency
            )
        while len(self.limit_cache) > LIMIT_CACHE_KEYS:
            self.limit_cache.popitem(last=False)  # this chunk's totals stay in ``totals``
        return totals

    def _count_limit(
        self, rule_id: str | None, user: str, day: date | None, currency: str, amount: int
    ) -> None:
        """Keep a cached LIMIT total in step with a credit (or reversal) of this run.

        Like ``ledger.credited_totals_many``, a total counts every credit of the rule
        to the user in the period, whatever the role it was paid for.
        """
        rule = self.rules.get(rule_id) if rule_id is not None else None
        if rule is None or rule.limit is None or day is None:
            return
        start, _ = period_window(rule.limit.period, day)
        cached = self.limit_cache.get((rule.id, user, start))
        if cached is not None:
            cached[currency] = cached.get(currency, 0) + amount

    def _plan(
        self,
        ev: _Evaluated,
        rule: Rule,
        reward: Reward,
        ref: str,
        totals: dict[LimitKey, dict[str, int]],
    ) -> PlannedReward | None:
        """The credit to post for one reward, cut to what the rule's LIMIT leaves."""
        user = str(ev.record.get(f"{reward.role}.id"))
        amount = reward.amount.amount
        currency = reward.amount.currency
        capped_from = None
        limit = rule.limit
        if limit is not None and limit.per == reward.role:
            start, _ = period_window(limit.period, ev.day)
            counted = totals.setdefault((rule.id, user, start), {})
            left = limit.amount.amount - counted.get(currency, 0)
            if amount > left:
                capped_from, amount = amount, max(left, 0)
                self.summary.capped += 1
                note = (f"{ref}: {format_money(Money(capped_from, currency))} cut to "
                        f"{format_money(Money(amount, currency))} by LIMIT "
                        f"{format_money(limit.amount)} PER {limit.per} PER {limit.period.upper()}")
                if len(self.summary.capped_notes) < MAX_CAPPED_NOTES:
                    self.summary.capped_notes.append(note)
                self._note(ev, ref, "capped", note, amount=amount, requested=capped_from)
                if amount == 0:
                    return None
            if (rule.id, user, start) not in self.limit_cache:  # evicted: count it here
                counted[currency] = counted.get(currency, 0) + amount
        self._count_limit(rule.id, user, ev.day, currency, amount)
        hold_until = ev.day + timedelta(days=rule.hold_days) if rule.hold_days else None
        request = ledger.CreditRequest(
            user_id=user,
            amount=amount,
            currency=currency,
            reference_id=ref,
            status="pending" if rule.hold_days else "confirmed",
            rule_id=rule.id,
            rule_hash=self.hashes[rule.id],
            referral_id=ev.record.referral_id,
            role=reward.role,
            event_date=ev.day,
            hold_until=hold_until,
        )
        why = f"held until {hold_until}" if hold_until else "confirmed (no HOLD)"
        self._note(ev, ref, "posted", why, amount=amount, currency=currency, user_id=user)
        return PlannedReward(request, capped_from)

    def _post(self, planned: list[PlannedReward]) -> None:
        if not planned:
            return
        # Every planned reference was found absent under the ledger lock (taken when the
        # run began), so posting need not look again: known={}.
        result = ledger.post_credits(
            self.conn, [p.request for p in planned], actor=self.actor,
            run_id=self.summary.run_id, known={},
        )
        self.summary.posted += len(result.created)
        # Only a concurrent writer could have posted these between lookup and insert.
        self.summary.already_posted += len(result.existing)
        for entry in result.created:
            self.summary.amount_posted[entry.currency] = (
                self.summary.amount_posted.get(entry.currency, 0) + entry.amount
            )
        if self.on_plan is not None:
            for p in planned:
                self.on_plan(p)

    def _confirm_due(self) -> None:
        self.summary.confirmed += ledger.confirm_due(
            self.conn, self.as_of, actor=self.actor, run_id=self.summary.run_id,
            reason=f"hold ended on or before {self.as_of}",
        )


def _chunks(items: Iterable[Record | BadRecord], size: int) -> Iterator[list[Record | BadRecord]]:
    """Chunks in which each referral_id appears at most once.

    A later record for the same referral (a refund, say) must see what the
    earlier one posted, so it starts a new chunk.
    """
    chunk: list[Record | BadRecord] = []
    seen: set[str] = set()
    for item in items:
        rid = item.referral_id if isinstance(item, Record) else None
        if len(chunk) >= size or (rid is not None and rid in seen):
            yield chunk
            chunk, seen = [], set()
        chunk.append(item)
        if rid is not None:
            seen.add(rid)
    if chunk:
        yield chunk


def settle(
    conn: sa.Connection,
    program: Program,
    records: Iterable[Record | BadRecord],
    *,
    as_of: date,
    input_name: str,
    dry_run: bool = False,
    strict: bool = False,
    wait: bool = True,
    explain: IO[str] | None = None,
    on_plan: Callable[[PlannedReward], None] | None = None,
    run_id: str | None = None,
) -> RunSummary:
    """Settle ``records`` against ``program`` in ONE transaction on ``conn``.

    A dry run does all the work, reports it, and rolls the transaction back.
    """
    default_currency = program.default_currency()
    run_id = run_id or uuid.uuid4().hex
    started = datetime.now(UTC)
    if conn.in_transaction():
        raise SettlementError("settle owns its transaction: pass a connection outside one")
    with settlement_transaction(conn, wait=wait) as tx:
        require_schema(conn)
        lock_settlement_run(conn, wait=wait)
        # The ledger writer lock for the whole run: each chunk's lookups are then
        # made under it, so posting needs no second lookup (see post_credits(known=)).
        lock_ledger(conn)
        run = Settlement(
            conn, program, as_of=as_of, run_id=run_id, strict=strict,
            default_currency=default_currency, explain=explain, on_plan=on_plan,
            dry_run=dry_run,
        )
        run.run(records)
        summary = run.summary
        head = ledger.head(conn)
        conn.execute(
            settlement_runs.insert(),
            {
                "ledger_head_id": head[0] if head else None,
                "ledger_head_hash": head[1] if head else None,
                "run_id": run_id,
                "as_of": as_of,
                "started_at": started,
                "finished_at": datetime.now(UTC),
                "rules_digest": program_digest(program),
                "input_digest": run.input_hash.hexdigest(),
                "input_name": input_name,
                "amount_posted": json.dumps(summary.as_json()["amount_posted"]),
                **{k: getattr(summary, k) for k in (
                    "records", "rewarded", "posted", "already_posted", "capped",
                    "reversed", "confirmed", "quarantined")},
            },
        )
    if dry_run:
        tx.rollback()
    else:
        tx.commit()
    return summary
