"""Settlement's own invariants, checked over the whole ledger (``ledger verify`` runs them).

Per key (rule, referral, role), with renames followed:

- what stands (credits minus their reversals) is never negative, and never more
  than one grant of the rule could pay that role (the most any stored version
  of the rule pays it: its fixed amounts, its percentage rewards' UP TO caps;
  a percentage without a cap has no bound);
- every later grant names the grant it adjusts (``adjusts``): an earlier
  credit of the same key;
- a key whose REVERSE IF has held (``settlement_terminations``) has nothing standing.

Entries are streamed in key order, so memory stays flat.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.codec import program_from_json
from dsl.model import SCHEMA_VERSION, FixedReward, PercentReward
from settlement import anchors, ledger
from settlement.anchors import Anchor
from settlement.tables import (
    entries_with_status,
    ledger_entries,
    settlement_rule_renames,
    settlement_rule_versions,
    settlement_terminations,
)

_E = ledger_entries
STREAM_ROWS = 1000
MAX_PROBLEMS = 100


def _bounds(conn: Connection) -> dict[tuple[str, str], dict[str, int | None]]:
    """(rule id, rule hash) -> role -> the most one grant pays (None: no bound)."""
    out: dict[tuple[str, str], dict[str, int | None]] = {}
    for row in conn.execute(sa.select(settlement_rule_versions)):
        if row.model is None:
            continue
        data = {"schema_version": SCHEMA_VERSION, "definitions": [], "examples": [],
                "rules": [json.loads(row.model)]}
        rule = program_from_json(data).rules[0]
        roles: dict[str, int | None] = {}
        for action in rule.actions:
            if isinstance(action, FixedReward):
                add: int | None = action.amount.amount
            else:
                assert isinstance(action, PercentReward)
                add = action.cap.amount if action.cap is not None else None
            before = roles.get(action.to, 0)
            roles[action.to] = None if before is None or add is None else before + add
        out[(row.rule_id, row.rule_hash)] = roles
    return out


def _aliases(conn: Connection) -> dict[str, str]:
    return {old: new for old, new in conn.execute(
        sa.select(settlement_rule_renames.c.old_id, settlement_rule_renames.c.new_id)
        .order_by(settlement_rule_renames.c.id))}


def verify(conn: Connection, anchor: Anchor | None = None, anchor_name: str = "anchor"
           ) -> ledger.VerifyReport:
    """Everything ``ledger verify`` checks: the ledger's own invariants (chain, shape,
    transitions, postings, zero sum, the heads settlement runs anchored, the sealed
    operations) and settlement's; with ``anchor`` (a file outside the database,
    ``settlement.anchors``), first that nothing before it was changed, deleted or emptied."""
    report = ledger.verify(conn, anchors=ledger.ledger_anchors(conn))
    outside = anchors.check(conn, anchor, anchor_name) if anchor is not None else []
    problems = outside + report.problems + verify_settlement(conn)
    return ledger.VerifyReport(ok=not problems, problems=problems, checked=report.checked)


@dataclass(frozen=True)
class RewardHistory:
    """An entry, its transitions, and every entry of the reward it belongs to (its grants,
    their reversals) in ledger order; ``key`` is (rule, referral, role) or None."""

    entry: ledger.Entry
    transitions: list[ledger.Transition]
    key: tuple[str, str, str] | None
    entries: list[ledger.Entry]


def reward_history(conn: Connection, ref: str) -> RewardHistory:
    """For ``ledger show``: an adjusted reward's whole history, renames followed."""
    entry, transitions = ledger.describe_entry(conn, ref)
    if entry.rule_id is None or entry.referral_id is None or entry.role is None:
        return RewardHistory(entry, transitions, None, [])
    aliases = _aliases(conn)
    names = {entry.rule_id}
    grew = True
    while grew:  # every id the reward was posted under: old names and new ones
        more = {n for o, n in aliases.items() if o in names} | {
            o for o, n in aliases.items() if n in names}
        grew = not more <= names
        names |= more
    rows = conn.execute(entries_with_status.where(
        _E.c.referral_id == entry.referral_id, _E.c.role == entry.role,
        _E.c.rule_id.in_(sorted(names))).order_by(_E.c.id))
    current = entry.rule_id
    while current in aliases:
        current = aliases[current]
    return RewardHistory(entry, transitions, (current, entry.referral_id, entry.role),
                         [ledger.Entry(**row._mapping) for row in rows])


def verify_settlement(conn: Connection) -> list[str]:
    """Problems with what settlement posted (empty when there are none)."""
    aliases = _aliases(conn)

    def current(rule_id: str) -> str:
        seen = set()
        while rule_id in aliases and rule_id not in seen:
            seen.add(rule_id)
            rule_id = aliases[rule_id]
        return rule_id

    bounds = _bounds(conn)
    terminated = {(current(r), rid) for r, rid in conn.execute(
        sa.select(settlement_terminations.c.rule_id, settlement_terminations.c.referral_id))}
    rows = conn.execute(
        sa.select(_E.c.id, _E.c.reference_id, _E.c.entry_type, _E.c.amount, _E.c.currency,
                  _E.c.rule_id, _E.c.rule_hash, _E.c.referral_id, _E.c.role, _E.c.adjusts)
        .where(_E.c.rule_id.is_not(None), _E.c.referral_id.is_not(None), _E.c.role.is_not(None))
        .order_by(_E.c.referral_id, _E.c.role, _E.c.id)
        .execution_options(yield_per=STREAM_ROWS)
    )
    problems: list[str] = []
    for (referral_id, role), group in itertools.groupby(rows, key=lambda r: (r.referral_id,
                                                                             r.role)):
        by_rule: dict[str, list[Any]] = {}
        for row in group:
            by_rule.setdefault(current(row.rule_id), []).append(row)
        for rule_id, entries in by_rule.items():
            problems.extend(_key_problems(rule_id, referral_id, role, entries, bounds,
                                          (rule_id, referral_id) in terminated))
            if len(problems) >= MAX_PROBLEMS:
                return problems[:MAX_PROBLEMS]
    return problems


def _key_problems(rule_id: str, referral_id: str, role: str, entries: list[Any],
                  bounds: dict[tuple[str, str], dict[str, int | None]],
                  terminated: bool) -> Iterator[str]:
    name = f"reward {rule_id}:{referral_id}:{role}"
    standing = sum(e.amount for e in entries)
    if standing < 0:
        yield f"{name}: stands at {standing} minor units, below zero"
    if terminated and standing:
        yield f"{name}: its REVERSE IF has held, yet {standing} minor units still stand"
    credits = [e for e in entries if e.entry_type == "credit"]
    limits = [bounds.get((e.rule_id, e.rule_hash), {}).get(role, 0) for e in credits
              if (e.rule_id, e.rule_hash) in bounds]
    if limits and None not in limits and standing > max(x or 0 for x in limits):
        yield (f"{name}: stands at {standing} minor units, more than one grant of the rule"
               f" pays ({max(x or 0 for x in limits)})")
    earlier: set[str] = set()
    for credit in credits:
        if credit.adjusts is not None and credit.adjusts not in earlier:
            yield (f"{name}: {credit.reference_id} adjusts {credit.adjusts!r}, which is not an"
                   " earlier grant of the same reward")
        if credit.adjusts is None and earlier:
            yield f"{name}: {credit.reference_id} is a later grant that adjusts nothing"
        earlier.add(credit.reference_id)
