"""Which rules a run answers to: the live program, the versions that granted before, renames.

Settlement stores every rule version that granted a reward
(``settlement_rule_versions``, content-addressed by ``rule_hash``).  A rule no
longer in the program is *retired*: it grants nothing new, but the rewards it
granted keep their hold and their REVERSE IF, evaluated with the stored
version.  A rule whose id disappeared while a rule with the same content (the
same model but for id and description) appeared under a new id is a rename,
and a rename would pay every referral again: settle refuses it unless told
``--renamed OLD=NEW``, which carries the standing rewards over
(``settlement_rule_renames``).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.codec import program_from_json, rule_hash, rule_to_json
from dsl.evaluate import CompiledProgram, compile_program
from dsl.model import SCHEMA_VERSION, Program, Rule
from settlement.errors import SettlementError
from settlement.tables import settlement_rule_renames, settlement_rule_versions

_V, _R = settlement_rule_versions, settlement_rule_renames


def meaning(model: dict[str, Any]) -> str:
    """What a rule does, whatever it is called: its JSON model without id and description
    (``rule_hash`` covers both, so a renamed rule has a new rule_hash)."""
    data = {k: v for k, v in model.items() if k not in ("id", "description")}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass
class RuleBook:
    """The live rules by id, their hashes, and what is known of every other rule id."""

    program: Program
    default_currency: str | None
    live: dict[str, Rule] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    # Stored versions: (rule id, rule hash) -> model JSON text (None: backfilled, no model).
    versions: dict[tuple[str, str], str | None] = field(default_factory=dict)
    # Old rule id -> the id it was renamed to (in rename order, so chains resolve).
    aliases: dict[str, str] = field(default_factory=dict)
    _retired: dict[str, CompiledProgram | None] = field(default_factory=dict)

    @classmethod
    def load(cls, conn: Connection, program: Program, default_currency: str | None) -> RuleBook:
        book = cls(program, default_currency)
        book.live = {r.id: r for r in program.rules}
        book.hashes = {r.id: rule_hash(r) for r in program.rules}
        for row in conn.execute(sa.select(_V.c.rule_id, _V.c.rule_hash, _V.c.model)):
            book.versions[(row.rule_id, row.rule_hash)] = row.model
        for old_id, new_id in conn.execute(sa.select(_R.c.old_id, _R.c.new_id).order_by(_R.c.id)):
            book.aliases[old_id] = new_id
        return book

    def current_id(self, stored_id: str) -> str:
        """The id a rule's credits answer to now (renames followed)."""
        seen = {stored_id}
        while stored_id in self.aliases:
            stored_id = self.aliases[stored_id]
            if stored_id in seen:
                break
            seen.add(stored_id)
        return stored_id

    def stored_ids(self) -> dict[str, tuple[str, ...]]:
        """Current id -> every id its credits were posted under (itself first)."""
        out: dict[str, list[str]] = defaultdict(list)
        for rule_id, _ in self.versions:
            current = self.current_id(rule_id)
            if rule_id != current and rule_id not in out[current]:
                out[current].append(rule_id)
        return {current: (current, *olds) for current, olds in out.items()}

    def granted_ids(self) -> set[str]:
        """Current ids of every rule that ever granted."""
        return {self.current_id(rule_id) for rule_id, _ in self.versions}

    def retired(self, rule_id: str, rule_hash_: str | None) -> CompiledProgram | None:
        """The stored version of a retired rule, compiled (None when no model was stored)."""
        key = f"{rule_id}\0{rule_hash_}"
        if key not in self._retired:
            model = self.versions.get((rule_id, rule_hash_ or ""))
            compiled = None
            if model is not None:
                rule = program_from_json({"schema_version": SCHEMA_VERSION, "definitions": [],
                                          "rules": [json.loads(model)], "examples": []}).rules[0]
                compiled = compile_program(Program(rules=(rule,)),
                                           default_currency=self.default_currency)
            self._retired[key] = compiled
        return self._retired[key]

    def new_versions(self, granted: set[str]) -> list[dict[str, str | None]]:
        """Rows for the live rules that granted in this run and are not stored yet."""
        rows: list[dict[str, str | None]] = []
        for rule_id in sorted(granted):
            key = (rule_id, self.hashes[rule_id])
            if key not in self.versions:
                model = json.dumps(rule_to_json(self.live[rule_id], with_source=False),
                                   sort_keys=True, ensure_ascii=False)
                self.versions[key] = model
                rows.append({"rule_id": rule_id, "rule_hash": key[1], "model": model})
        return rows


def check_program(book: RuleBook, renamed: Mapping[str, str], *,
                  allow_anonymous: bool) -> dict[str, str]:
    """Refuse a program that would pay again by accident; the renames to record.

    Raises SettlementError (nothing is written) naming the rules and the way out.
    """
    if not allow_anonymous:
        anonymous = [r for r in book.program.rules if r.auto_id]
        if anonymous:
            first = anonymous[0]
            raise SettlementError(
                f"{first.source}: rule {first.id} has no RULE header: its id comes from the file"
                " name, so renaming the file would pay every referral again; write"
                f" `RULE {first.id}` before IF, or pass --allow-anonymous-rules"
                + (f" ({len(anonymous)} rules)" if len(anonymous) > 1 else "")
            )
    granted = book.granted_ids()
    records: dict[str, str] = {}
    for old, new in renamed.items():
        if old not in granted:
            raise SettlementError(f"--renamed {old}={new}: rule {old} has no rewards to carry over")
        if old in book.live:
            raise SettlementError(f"--renamed {old}={new}: rule {old} is still in the program")
        if new not in book.live:
            raise SettlementError(f"--renamed {old}={new}: rule {new} is not in the program")
        if new in granted:
            raise SettlementError(
                f"--renamed {old}={new}: rule {new} already has rewards of its own"
            )
        records[old] = new
    meanings: dict[str, set[str]] = defaultdict(set)
    for (rule_id, _), model in book.versions.items():
        if model is not None:
            meanings[book.current_id(rule_id)].add(meaning(json.loads(model)))
    for gone in sorted(granted - set(book.live) - set(records)):
        twins = [r.id for r in book.program.rules
                 if meaning(rule_to_json(r, with_source=False)) in meanings[gone]
                 and r.id not in granted and r.id not in records.values()]
        if twins:
            raise SettlementError(
                f"rule {gone} has rewards in the ledger and is no longer in the program, while"
                f" rule {twins[0]} with the same content appeared: a rename would pay every"
                f" referral again. Restore the id {gone}, or pass --renamed {gone}={twins[0]}"
                " to carry its standing rewards over without paying anything again"
            )
    return records


def rename_rows(renames: Mapping[str, str], run_id: str) -> list[dict[str, str]]:
    return [{"old_id": old, "new_id": new, "run_id": run_id} for old, new in renames.items()]
