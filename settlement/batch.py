"""The nightly settlement run: the ledger reconciled with what each referral is owed now.

A run reads referral records, keeps the newest snapshot of each referral
(``settlement.facts``), evaluates it with the program, and for every (rule,
referral, role) posts the difference between what the ledger holds and what
the program grants (``settlement.reconcile``), under deterministic references
(``settlement.references``).  Rules no longer in the program keep what they
granted (``settlement.rulebook``).  LIMIT is consumed first come, first served
(``settlement.limits``).

Why one transaction: a crash, a kill or a bad record under ``--strict`` must
leave the ledger exactly as it was, and a rerun must then produce what an
uninterrupted run would have: the same input against the same ledger plans
nothing, so a rerun posts nothing, and the ledger lock serialises runs.

Work is set-based: records are taken in chunks, each referral at most once per
chunk; a chunk costs one lookup of kept snapshots, one of the standing of its
referrals, one of LIMIT totals, and bulk inserts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import IO, Any

import sqlalchemy as sa

from dsl import timeutil
from dsl.errors import DateRangeError, EvaluationError
from dsl.evaluate import Evaluation, compile_program
from dsl.model import Program, Rule
from dsl.money import MAX_MINOR_UNITS
from settlement import facts, faultpoints, guards, ledger, operations
from settlement.db import require_schema
from settlement.dialect import backend
from settlement.errors import OutcomeUnknown, SettlementError
from settlement.ledger.reads import entry as entry_of
from settlement.limits import LimitBook, applies, period_window
from settlement.locks import (
    DEFAULT_LOCK_TIMEOUT,
    lock_ledger,
    lock_settlement_run,
    settlement_transaction,
)
from settlement.observe import RunObserver
from settlement.reconcile import (
    Changes,
    Counts,
    Evaluated,
    PlannedGrant,
    Reconciler,
    candidate_rewards,
    retired_compiled,
    standing_of,
)
from settlement.records import BadRecord, Record
from settlement.references import Key, fits, reward_reference
from settlement.rulebook import RuleBook, check_program, rename_rows
from settlement.tables import (
    entries_with_status,
    ledger_entries,
    settlement_facts,
    settlement_quarantine,
    settlement_rule_renames,
    settlement_rule_versions,
    settlement_runs,
    settlement_terminations,
)

log = logging.getLogger(__name__)

CHUNK = 1000
MAX_NOTES = 100  # samples of capped, conflicting and quarantined records kept for -v
# conn.info key naming the run a connection is settling (its logs and tests find it there).
RUN_INFO_KEY = "settlement.run_id"
_E, _TERM = ledger_entries, settlement_terminations
_CREDITS = entries_with_status.where(_E.c.entry_type == "credit", _E.c.rule_id.is_not(None),
                                     _E.c.role.is_not(None)).order_by(_E.c.id)
_TERMINATED = sa.select(_TERM.c.rule_id, _TERM.c.referral_id)

__all__ = ["RunSummary", "PlannedReward", "settle", "period_window", "event_date",
           "reward_reference", "program_digest"]


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
    adjusted: int = 0
    moved: int = 0
    superseded: int = 0
    stale: int = 0
    retired: int = 0
    conflicts: int = 0
    confirmed: int = 0
    quarantined: int = 0
    amount_posted: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    # SHA-256 of the records as read (each line and a newline), as settlement_runs keeps it.
    input_digest: str = ""
    capped_notes: list[str] = field(default_factory=list)
    conflict_notes: list[str] = field(default_factory=list)
    quarantine_notes: list[str] = field(default_factory=list)

    COUNTERS = ("records", "rewarded", "posted", "already_posted", "capped", "reversed",
                "adjusted", "moved", "superseded", "stale", "retired", "conflicts", "confirmed",
                "quarantined")

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "dry_run": self.dry_run, "as_of": self.as_of.isoformat(),
                "duration_s": self.duration_s, **{k: getattr(self, k) for k in self.COUNTERS},
                "amount_posted": dict(sorted(self.amount_posted.items()))}


@dataclass(frozen=True)
class PlannedReward:
    """One credit this run posts (or would post, in a dry run)."""

    request: ledger.CreditRequest
    capped_from: int | None = None
    kind: str = "new"


def program_digest(program: Program) -> str:
    from dsl.codec import rule_hash

    hashes = sorted(f"{r.id}:{rule_hash(r)}" for r in program.rules)
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()


def event_date(record: Record, as_of: date, tz: tzinfo = UTC) -> date:
    """The record's own date (``referral.created_at``, on the program's calendar: a
    timestamp's instant in its time zone); LIMIT periods count from it."""
    value = record.get("referral.created_at")
    if value is None:
        return as_of
    try:
        return timeutil.event_date(value, tz)
    except DateRangeError as e:
        raise EvaluationError(f"referral.created_at: {e.message}") from None
    except EvaluationError as e:
        raise EvaluationError(f"referral.created_at must be an ISO date or timestamp: {e.message}"
                              ) from None


def check_calendar(rules: Iterable[Rule], day: date, hold_from: Mapping[str, date],
                   as_of: date, day_field: str = "referral.created_at") -> None:
    """Refuse (DateRangeError, naming the field) a record whose LIMIT period or HOLD would
    end after 9999-12-31: the date arithmetic settlement does later cannot fail then."""
    for rule in rules:
        if rule.limit is not None and day.year == date.max.year:
            try:
                period_window(rule.limit.period, day)
            except (OverflowError, ValueError):
                raise DateRangeError(
                    f"{day_field} {day}: out of range: rule {rule.id}'s LIMIT period"
                    f" ({rule.limit.period.upper()}) would end after {date.max}") from None
        if rule.hold_days:
            start = hold_from.get(rule.id) or max(day, as_of)
            field = (rule.hold_from if rule.id in hold_from
                     else day_field if day > as_of else "--as-of")
            try:
                start + timedelta(days=rule.hold_days)
            except OverflowError:
                raise DateRangeError(
                    f"{field} {start}: out of range: rule {rule.id}'s HOLD {rule.hold_days}"
                    f" DAYS would end after {date.max}") from None


class Settlement:
    """One run over one connection; see ``settle`` for the entry point."""

    def __init__(
        self,
        conn: sa.Connection,
        book: RuleBook,
        *,
        as_of: date,
        run_id: str,
        strict: bool,
        explain: IO[str] | None,
        on_plan: Callable[[PlannedReward], None] | None,
        dry_run: bool,
        observer: RunObserver | None = None,
        explain_only_decisions: bool = False,
    ) -> None:
        self.conn = conn
        self.observer = observer or RunObserver()
        self.book = book
        program = book.program
        self.compiled = compile_program(program, default_currency=book.default_currency)
        # Rules with two rewards to one role: their sum is checked (each alone already is).
        self.summing_rules = {
            r.id for r in program.rules if len({a.to for a in r.actions}) < len(r.actions)
        }
        self.as_of = as_of
        self.tz = timeutil.zone(program.timezone)
        self.strict = strict
        self.explain = explain
        self.explain_all = not explain_only_decisions
        self.on_plan = on_plan
        self.summary = RunSummary(run_id=run_id, as_of=as_of, dry_run=dry_run)
        self.counts = Counts()
        self.limits = LimitBook(conn, book.stored_ids())
        self.reconciler = Reconciler(book, self.limits, as_of, self.counts)
        self.actor = f"settle:{run_id}"
        self.input_hash = hashlib.sha256()
        self.quarantine_rows: list[dict[str, Any]] = []
        self.first_reasons: list[str] = []  # for a run refused as a whole (settlement.guards)
        self.explain_lines: list[dict[str, Any]] = []
        self.granted_rules: set[str] = set()
        # Referral id -> records of this input after the first with its kept snapshot.
        self.copies: dict[str, int] = {}
        self.holds_from = {r.id for r in program.rules if r.hold_days and r.hold_from}
        self.longest_rule_id = max((r.id for r in program.rules), key=len, default="")
        self.limit_rules = [r for r in program.rules if r.limit is not None]
        # Dates before this one cannot carry a LIMIT period or HOLD past 9999-12-31.
        longest_hold = max((r.hold_days or 0 for r in program.rules), default=0)
        self.calendar_edge = date(date.max.year, 1, 1) if longest_hold < 365 else (
            date.max - timedelta(days=longest_hold) if longest_hold < (date.max - date.min).days
            else date.min)

    # -- the run ---------------------------------------------------------------

    def counts_so_far(self) -> dict[str, Any]:
        """What progress lines and phase rows report while the run is under way."""
        return {"records": self.summary.records, "quarantined": self.summary.quarantined,
                "stale": self.summary.stale, "posted": self.counts.posted,
                "conflicts": self.summary.conflicts}

    def run(self, items: Iterable[Record | BadRecord]) -> None:
        self.observer.phase("reading", self.counts_so_far())
        for i, chunk in enumerate(_chunks(items, CHUNK)):
            self._settle_chunk(chunk)
            if i == 0:
                faultpoints.reached("mid-write")
            self.observer.progress(self.counts_so_far())
            self.observer.phase("reading", self.counts_so_far())
        faultpoints.reached("after-read")
        changes = Changes()
        actions = self.reconciler.top_up(changes)
        self.observer.phase("posting", self.counts_so_far())
        self._write(changes, [])
        self.limits.release()
        if self.explain is not None and actions:
            self.explain.write(json.dumps({"after_last_record": "LIMIT room freed by this run",
                                           "actions": actions}, sort_keys=True) + "\n")
        self.observer.phase("confirming", self.counts_so_far())
        self._confirm_due()
        versions = self.book.new_versions(self.granted_rules)
        if versions:
            self.conn.execute(settlement_rule_versions.insert(),
                              [{**v, "run_id": self.summary.run_id, "op_id": self.summary.run_id}
                               for v in versions])
        self._fold_counts()

    def _fold_counts(self) -> None:
        self.reconciler.finish()
        c = self.counts
        for name in ("rewarded", "posted", "already_posted", "capped", "reversed", "superseded",
                     "adjusted", "moved", "retired"):
            setattr(self.summary, name, getattr(self.summary, name) + getattr(c, name))
        self.summary.capped_notes = c.capped_notes

    def _quarantine(self, bad: BadRecord, slot: dict[str, Any] | None = None) -> None:
        if self.strict:
            raise SettlementError(f"{bad.file}:{bad.line}: error: {bad.reason} (--strict)")
        self.summary.quarantined += 1
        if len(self.summary.quarantine_notes) < MAX_NOTES:
            self.summary.quarantine_notes.append(f"{bad.file}:{bad.line}: {bad.reason}")
        if len(self.first_reasons) < guards.SHOWN_REASONS:
            self.first_reasons.append(f"{bad.file}:{bad.line}: {bad.reason}")
        self.quarantine_rows.append(
            {"run_id": self.summary.run_id, "file": bad.file, "line": bad.line,
             "raw": bad.raw, "reason": bad.reason, "op_id": self.summary.run_id}
        )
        if self.explain is not None:
            line = {"file": bad.file, "line": bad.line, "quarantined": bad.reason}
            if slot is None:
                self.explain_lines.append(line)
            else:
                slot.clear()
                slot.update(line)

    def _settle_chunk(self, chunk: list[Record | BadRecord]) -> None:
        self.observer.phase("evaluating", self.counts_so_far())
        records: list[tuple[Record, facts.Version, dict[str, Any] | None]] = []
        for item in chunk:
            self.input_hash.update(item.raw.encode("utf-8", "surrogateescape") + b"\n")
            self.summary.records += 1
            if isinstance(item, BadRecord):
                self._quarantine(item)
                continue
            try:
                if not fits(self.longest_rule_id, item.referral_id):
                    raise EvaluationError(
                        f"referral_id is {len(item.referral_id)} characters: its ledger"
                        " references would not fit (see settlement.references)"
                    )
                version = facts.record_version(item, self.tz)
            except EvaluationError as e:
                self._quarantine(BadRecord(item.file, item.line, item.raw, e.message))
                continue
            slot: dict[str, Any] | None = None
            if self.explain is not None:  # filled in below: explanations keep input order
                slot = {}
                self.explain_lines.append(slot)
            records.append((item, version, slot))
        ids = [r.referral_id for r, _, _ in records]
        kept = facts.kept_snapshots(self.conn, ids)
        credits = backend(self.conn).select_in(self.conn, _CREDITS, _E.c.referral_id, ids)
        standing = standing_of([entry_of(row) for row in credits], self.book)
        terminated: dict[str, set[str]] = {}
        for row in backend(self.conn).select_in(self.conn, _TERMINATED, _TERM.c.referral_id, ids):
            terminated.setdefault(row.referral_id, set()).add(self.book.current_id(row.rule_id))
        by_referral: dict[str, dict[Key, Any]] = {}
        for key, held in standing.items():
            by_referral.setdefault(key.referral_id, {})[key] = held

        fact_rows: list[dict[str, Any]] = []
        decided = []
        for record, version, slot in records:
            previous = kept.get(record.referral_id)
            digest = facts.digest(record.raw)
            stale = previous is not None and previous.supersedes(version, digest)
            decided.append((record, version, slot, previous, digest, stale))
        stale_records = facts.kept_records(
            self.conn, [p for _, _, _, p, _, stale in decided if stale and p is not None])
        evaluated: list[Evaluated] = []
        for record, version, slot, previous, digest, stale in decided:
            rid = record.referral_id
            newest = stale_records[previous.id] if stale and previous is not None else record
            ev = self._evaluate(record, newest, by_referral.get(rid, {}), stale, slot)
            if ev is None:
                continue
            evaluated.append(ev)
            older = stale and previous is not None and previous.digest != digest
            ev.current = not older
            self._count_snapshot(rid, previous, digest, older, by_referral.get(rid, {}))
            if stale:
                continue
            if previous is None or previous.digest != digest:
                fact_rows.append(facts.fact_row(record, version, facts.snapshot_text(record),
                                                digest, self.summary.run_id))

        self.limits.prefetch(self._limit_keys(evaluated, by_referral))
        self.observer.phase("posting", self.counts_so_far())
        changes = Changes()
        for ev in evaluated:
            rid = ev.record.referral_id
            self.reconciler.referral(ev, by_referral.get(rid, {}),
                                     terminated.setdefault(rid, set()), changes)
        self._write(changes, fact_rows)
        self.limits.release()
        if self.explain is not None:
            for line in self.explain_lines:  # input order, decisions included
                if self.explain_all or _explains_something(line):
                    self.explain.write(json.dumps(line, sort_keys=True, default=str) + "\n")
            self.explain_lines = []

    def _count_snapshot(self, rid: str, previous: facts.Kept | None, digest: str,
                        older: bool, standing: Mapping[Key, Any]) -> None:
        """``stale`` counts records that are not their referral's newest snapshot after the
        run: older than the kept one when read, or superseded by a later record of this
        input (which takes back what they counted in ``rewarded``).  A rerun of the same
        input counts the same records, and no memory grows with the input but for
        referrals that appear more than once with the same facts."""
        if older:
            self.summary.stale += 1
            return
        if previous is None or previous.run_id != self.summary.run_id:
            return
        if previous.digest == digest:  # the same snapshot as an earlier record of this input
            self.copies[rid] = self.copies.get(rid, 0) + 1
            return
        superseded = 1 + self.copies.pop(rid, 0)
        self.summary.stale += superseded
        if any(held.total > 0 for held in standing.values()):
            self.counts.rewarded -= superseded

    def _evaluate(self, record: Record, newest: Record, standing: Mapping[Key, Any],
                  stale: bool, slot: dict[str, Any] | None) -> Evaluated | None:
        """The newest facts evaluated, or None (quarantined: the record is bad for a rule)."""
        try:
            day = event_date(newest, self.as_of, self.tz)
            evaluation = self.compiled.evaluate(newest.data, trace=self.explain is not None)
            if self.summing_rules:
                self._check_sums(evaluation)
            hold_from = self._hold_from(newest, evaluation)
            if day >= self.calendar_edge or any(d >= self.calendar_edge
                                                for d in hold_from.values()):
                check_calendar(self._dated_rules(evaluation), day, hold_from, self.as_of)
            retired: dict[str, bool | None] = {}
            for rule_id, stored in retired_compiled(self.book, standing).items():
                retired[rule_id] = None if stored is None else any(
                    o.reverse for o in stored.evaluate(newest.data).active_outcomes
                )
        except EvaluationError as e:
            self._quarantine(BadRecord(record.file, record.line, record.raw, e.message), slot)
            return None
        explain: dict[str, Any] | None = None
        if slot is not None:
            rules: list[dict[str, Any]] = []
            explain = slot
            explain.update({"file": record.file, "line": record.line,
                            "referral_id": record.referral_id, "rules": rules, "actions": []})
            if stale:
                explain["stale"] = (f"not newer than the kept snapshot ({newest.file}:"
                                    f"{newest.line}), which is settled instead")
            for outcome in evaluation.outcomes:
                if self.explain_all:
                    rules.append({
                        "rule_id": outcome.rule_id, "matched": outcome.matched,
                        "reverse": outcome.reverse, "trace": outcome.trace,
                        "suppressed_by": outcome.suppressed_by,
                    })
                elif outcome.matched or outcome.reverse or outcome.suppressed_by:
                    # What decided, without the trace (a rule that did not apply decided
                    # nothing; --explain-all keeps both).
                    rules.append({"rule_id": outcome.rule_id, "matched": outcome.matched,
                                  **({"reverse": True} if outcome.reverse else {}),
                                  **({"suppressed_by": outcome.suppressed_by}
                                     if outcome.suppressed_by else {})})
        return Evaluated(newest, evaluation, day, hold_from, retired, stale, explain)

    def _dated_rules(self, evaluation: Evaluation) -> Iterator[Rule]:
        """Rules whose LIMIT or HOLD a record's dates feed: the matched ones, and on the
        calendar's last year every rule with a LIMIT (reconciling asks for its period)."""
        for outcome in evaluation.active_outcomes:
            rule = self.book.live[outcome.rule_id]
            if outcome.matched and (rule.hold_days or rule.limit is not None):
                yield rule
        yield from self.limit_rules

    def _check_sums(self, evaluation: Evaluation) -> None:
        """A rule paying one role twice pays the sum, which must fit the ledger's BIGINT."""
        for outcome in evaluation.active_outcomes:
            if outcome.rule_id not in self.summing_rules:
                continue
            for role, reward in candidate_rewards(outcome).items():
                if reward.amount.amount > MAX_MINOR_UNITS:
                    raise EvaluationError(
                        f"rule {outcome.rule_id}: the rewards to {role} sum to "
                        f"{reward.amount.amount} minor units; at most {MAX_MINOR_UNITS}"
                    )

    def _hold_from(self, record: Record, evaluation: Evaluation) -> dict[str, date]:
        """For matched rules with ``HOLD n DAYS FROM <field>``: the field's date."""
        out: dict[str, date] = {}
        if not self.holds_from:
            return out
        for outcome in evaluation.active_outcomes:
            if outcome.rule_id not in self.holds_from:
                continue
            rule = self.book.live[outcome.rule_id]
            path = rule.hold_from
            if not outcome.matched or not rule.hold_days or path is None:
                continue
            value = record.get(path)
            if value is None:
                continue  # absent: the hold counts as if FROM were not given
            try:
                out[rule.id] = timeutil.event_date(value, self.tz)
            except EvaluationError as e:
                raise EvaluationError(f"rule {rule.id}: HOLD FROM {path}: {e.message}") from None
        return out

    def _limit_keys(self, evaluated: list[Evaluated], standing: Mapping[str, Mapping[Key, Any]]
                    ) -> Iterator[tuple[Any, str, date]]:
        """The LIMIT totals a chunk may need: rewards that may grow (a rerun needs none)."""
        for ev in evaluated:
            held_here = standing.get(ev.record.referral_id, {})
            for outcome in ev.evaluation.active_outcomes:
                rule = self.book.live[outcome.rule_id]
                if rule.limit is None:
                    continue
                for role, reward in candidate_rewards(outcome).items():
                    if not applies(rule.limit, role):
                        continue
                    user = str(ev.record.get(f"{role}.id"))
                    held = held_here.get(Key(rule.id, ev.record.referral_id, role))
                    # Grants in another period are moved into the referral's: that takes room.
                    start = period_window(rule.limit.period, ev.day)[0]
                    if held is not None and held.grants and all(
                        g.user_id == user and g.currency == reward.amount.currency
                        and g.event_date is not None
                        and period_window(rule.limit.period, g.event_date)[0] == start
                        for g in held.grants
                    ) and held.total >= reward.amount.amount:
                        continue
                    yield rule, user, ev.day

    # -- writing ---------------------------------------------------------------

    def _write(self, changes: Changes, fact_rows: list[dict[str, Any]]) -> None:
        run_id = self.summary.run_id
        for why, grants in changes.reversals.items():
            ledger.reverse_many(self.conn, [g.reference_id for g in grants], why,
                                actor=self.actor, run_id=run_id,
                                known={g.reference_id: g for g in grants},
                                business_date=self.as_of)
        planned = self._without_conflicts(changes.grants)
        if planned:
            # Every planned reference was found absent under the ledger lock (taken when the
            # run began), so posting need not look again: known={}.
            result = ledger.post_credits(
                self.conn, [p.request for p in planned], actor=self.actor, run_id=run_id,
                known={}, reserved=True, business_date=self.as_of,
            )
            for entry in result.created:
                self.summary.amount_posted[entry.currency] = (
                    self.summary.amount_posted.get(entry.currency, 0) + entry.amount
                )
            self.counts.posted += len(result.created)
            self.granted_rules |= {p.request.rule_id for p in planned if p.request.rule_id}
            if self.on_plan is not None:
                for p in planned:
                    self.on_plan(PlannedReward(p.request, p.capped_from, p.kind))
        db = backend(self.conn)
        db.append_rows(self.conn, settlement_terminations, [
            {"rule_id": rule_id, "referral_id": rid, "run_id": run_id, "op_id": run_id}
            for rule_id, rid in changes.terminations
        ])
        db.append_rows(self.conn, settlement_facts, [{**r, "op_id": run_id} for r in fact_rows])
        db.append_rows(self.conn, settlement_quarantine, self.quarantine_rows)
        self.quarantine_rows = []

    def _without_conflicts(self, grants: list[PlannedGrant]) -> list[PlannedGrant]:
        """Grants whose reference no entry already holds.

        The standing was read by referral, so an entry under one of these references
        is one settlement did not post (a hand credit, an edit): an idempotency
        conflict, counted and left alone; the run fails unless conflicts are allowed.
        """
        refs = [p.request.reference_id for p in grants]
        taken = ledger.existing_references(self.conn, refs)
        if not taken:
            return grants
        found = ledger.find_entries(self.conn, taken)
        kept = []
        for p in grants:
            entry = found.get(p.request.reference_id)
            if entry is None:
                kept.append(p)
                continue
            self.summary.conflicts += 1
            self.limits.add(self.book.live.get(p.request.rule_id or ""), p.request.user_id,
                            p.request.role or "", p.request.event_date, p.request.currency,
                            -p.request.amount)
            if len(self.summary.conflict_notes) < MAX_NOTES:
                self.summary.conflict_notes.append(
                    f"{entry.reference_id}: the ledger holds user {entry.user_id},"
                    f" {entry.amount} {entry.currency} {entry.entry_type} (not posted by"
                    f" settlement); settlement would post user {p.request.user_id},"
                    f" {p.request.amount} {p.request.currency}"
                )
        return kept

    def _confirm_due(self) -> None:
        self.summary.confirmed += ledger.confirm_due(
            self.conn, self.as_of, actor=self.actor, run_id=self.summary.run_id,
            reason=f"hold ended on or before {self.as_of}",
        )


def _explains_something(line: Mapping[str, Any]) -> bool:
    """Whether an explain line says why something was decided: a rule that matched, was
    suppressed or reversed, an action on the ledger (posted, capped, reversed...), a
    quarantine, a stale snapshot.  A record no rule applied to, with nothing standing,
    decided nothing (``--explain-all`` writes it anyway)."""
    return bool(line.get("rules") or line.get("actions") or "quarantined" in line
                or "stale" in line)


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
    as_of: date | None = None,
    input_name: str,
    dry_run: bool = False,
    strict: bool = False,
    wait: bool = True,
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    explain: IO[str] | None = None,
    explain_only_decisions: bool = False,
    on_plan: Callable[[PlannedReward], None] | None = None,
    run_id: str | None = None,
    renamed: Mapping[str, str] | None = None,
    allow_anonymous: bool = False,
    allow_conflicts: bool = False,
    allow_future_as_of: bool = False,
    currency: str | None = None,
    observer: RunObserver | None = None,
    input_guards: guards.InputGuards | None = None,
    backfill: bool = False,
) -> RunSummary:
    """Settle ``records`` against ``program`` in ONE transaction on ``conn``.

    A dry run does all the work, reports it, and rolls the transaction back.
    ``as_of`` defaults to today in the program's time zone; a date later than
    tomorrow there would confirm holds that have not ended, so it is refused
    unless ``allow_future_as_of``.
    Refused before anything is written (SettlementError): rules without a RULE
    header (unless ``allow_anonymous``), an unannounced rename (``renamed``
    announces one: old id -> new id), and, at the end, a run that met
    idempotency conflicts (unless ``allow_conflicts``), an ``as_of`` before the newest
    run's (unless ``backfill``).  Refused after reading, with nothing written
    (InputRejected, ``settlement.guards``), as ``input_guards`` say: an empty input,
    more quarantine than allowed.  The CLI always passes them; None (a library
    caller, a test of one case) checks neither.
    Lock waits end after ``lock_timeout`` seconds (LockBusy).  ``explain`` gets a JSON
    line per record with every rule's trace, or with ``explain_only_decisions`` only
    the records and rules that decided something (``settle --explain``), no traces.
    ``observer`` is told each phase (``settlement.observe``).  A connection lost
    during COMMIT itself raises OutcomeUnknown: the run may have committed.
    """
    run_id = run_id or uuid.uuid4().hex
    started = datetime.now(UTC)
    as_of = run_as_of(program, as_of, allow_future_as_of=allow_future_as_of, now=started)
    try:
        check_calendar(program.rules, as_of, {}, as_of, day_field="--as-of")
    except DateRangeError as e:
        raise SettlementError(f"{e.message}; nothing was written") from None
    observer = observer or RunObserver()
    if conn.in_transaction():
        raise SettlementError("settle owns its transaction: pass a connection outside one")
    conn.info[RUN_INFO_KEY] = run_id
    try:
        summary = _settle_locked(
            conn, program, records, as_of=as_of, started=started, input_name=input_name,
            dry_run=dry_run, strict=strict, wait=wait, lock_timeout=lock_timeout,
            explain=explain, explain_only_decisions=explain_only_decisions, on_plan=on_plan,
            run_id=run_id, renamed=renamed, allow_anonymous=allow_anonymous,
            allow_conflicts=allow_conflicts, currency=currency, observer=observer,
            input_guards=input_guards, backfill=backfill,
        )
    finally:
        conn.info.pop(RUN_INFO_KEY, None)
    summary.duration_s = round((datetime.now(UTC) - started).total_seconds(), 3)
    observer.phase("done", summary.as_json())
    return summary


def run_as_of(program: Program, as_of: date | None, *, allow_future_as_of: bool,
              now: datetime) -> date:
    """The run's as-of date: today in the program's time zone unless given; a date later
    than tomorrow there would confirm holds that have not ended, so it is refused unless
    ``allow_future_as_of``."""
    today = timeutil.today(timeutil.zone(program.timezone), now)
    if as_of is None:
        as_of = today
    if as_of > today + timedelta(days=1) and not allow_future_as_of:
        raise SettlementError(
            f"--as-of {as_of} is in the future (today is {today} in the program's time zone"
            f" {program.timezone or 'UTC'}): it would confirm holds that have not ended;"
            " pass --allow-future-as-of if that is meant"
        )
    return as_of


def _settle_locked(
    conn: sa.Connection,
    program: Program,
    records: Iterable[Record | BadRecord],
    *,
    as_of: date,
    started: datetime,
    input_name: str,
    dry_run: bool,
    strict: bool,
    wait: bool,
    lock_timeout: float,
    explain: IO[str] | None,
    explain_only_decisions: bool,
    on_plan: Callable[[PlannedReward], None] | None,
    run_id: str,
    renamed: Mapping[str, str] | None,
    allow_anonymous: bool,
    allow_conflicts: bool,
    currency: str | None,
    observer: RunObserver,
    input_guards: guards.InputGuards | None,
    backfill: bool,
) -> RunSummary:
    """``settle``'s one transaction: locks, the run, the run log, COMMIT."""
    observer.phase("locking", {})
    with settlement_transaction(conn, wait=wait, lock_timeout=lock_timeout) as tx:
        require_schema(conn)
        lock_settlement_run(conn, wait=wait)
        # The ledger writer lock for the whole run: each chunk's lookups are then
        # made under it, so posting needs no second lookup (see post_credits(known=)).
        lock_ledger(conn)
        operations.begin(conn, "settle", f"settle:{run_id}", op_id=run_id)
        book = RuleBook.load(conn, program, program.default_currency(currency))
        renames = check_program(book, renamed or {}, allow_anonymous=allow_anonymous)
        if renames:
            book.aliases.update(renames)
        run = Settlement(
            conn, book, as_of=as_of, run_id=run_id, strict=strict, explain=explain,
            on_plan=on_plan, dry_run=dry_run, observer=observer,
            explain_only_decisions=explain_only_decisions,
        )
        run.run(records)
        summary = run.summary
        summary.input_digest = run.input_hash.hexdigest()
        if input_guards is not None:
            guards.check_input(summary.records, summary.quarantined, run.first_reasons,
                               input_name=input_name, guards=input_guards)
        observer.phase("checking", run.counts_so_far())
        if summary.conflicts and not allow_conflicts:
            raise SettlementError(
                f"{summary.conflicts} idempotency conflict(s): "
                + "; ".join(summary.conflict_notes[:3])
                + "; nothing was written (--allow-conflicts settles the rest)"
            )
        # Read under the run lock, next to the write it guards (the run log is the run's
        # last write: the fault suite's kill gate locks it, so nothing earlier reads it).
        guards.check_as_of(conn, as_of, backfill=backfill)
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
                "input_digest": summary.input_digest,
                "input_name": input_name,
                "amount_posted": json.dumps(summary.as_json()["amount_posted"]),
                **{k: getattr(summary, k) for k in RunSummary.COUNTERS},
                "op_id": run_id,
            },
        )
        if renames:
            conn.execute(settlement_rule_renames.insert(),
                         [{**r, "op_id": run_id} for r in rename_rows(renames, run_id)])
        operations.seal(conn)
        observer.phase("committing", summary.as_json())
        if not dry_run:
            observer.before_commit(conn, summary)
        faultpoints.reached("before-commit")
    if dry_run:
        tx.rollback()
        return summary
    try:
        tx.commit()
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as e:
        # The server may have received COMMIT before the connection went: nobody knows.
        orig = e.orig if e.orig is not None else e
        reason = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        raise OutcomeUnknown(run_id, reason) from e
    faultpoints.reached("after-commit")
    return summary
