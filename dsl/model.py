"""The typed rule model: what a rule program *means*, independent of its text.

Text is parsed into these dataclasses (``dsl.parser``); ``dsl.codec`` turns them
into JSON and back (``schema_version`` 1, described by ``dsl/rule-model.schema.json``),
``compiler`` into diagrams and canonical text, and ``dsl.evaluate`` into callables.
Source positions are kept on every rule, definition and example but are excluded
from equality, so that a program re-parsed from its formatted text compares
equal to the original.

``walk`` is the one traversal of a condition tree (pre-order, like lark's
``Tree.iter_subtrees_topdown`` and sqlglot's ``Expression.walk``); code that only
visits conditions uses it rather than recursing by hand.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from dsl.errors import SourcePos
from dsl.money import Money

SCHEMA_VERSION = 1

Role = Literal["referrer", "referee"]
ROLES: tuple[Role, ...] = ("referrer", "referee")

Period = Literal["day", "month", "year", "ever"]
PERIODS: tuple[Period, ...] = ("day", "month", "year", "ever")

# Comparison operators as written in the language (upper-case keywords).
CompareOp = Literal["=", "!=", ">", ">=", "<", "<=", "IS", "IS NOT", "IN", "NOT IN", "CONTAINS"]
COMPARE_OPS: tuple[CompareOp, ...] = (
    "=", "!=", ">", ">=", "<", "<=", "IS", "IS NOT", "IN", "NOT IN", "CONTAINS",
)


@dataclass(frozen=True)
class FieldRef:
    """A dotted path into the referral context used as a value (``referrer.id``)."""

    path: str


# A literal value.  Lists are tuples so that the model stays hashable.
# bool is checked before int everywhere, since bool is a subclass of int.
Scalar = str | int | Decimal | bool | date | Money | None
Value = Scalar | tuple["Value", ...] | FieldRef


@dataclass(frozen=True)
class PhraseOrigin:
    """The DEFINEd phrase a resolved condition was expanded from, kept for display only
    (the catalog draws the author's phrase, with the fields on hover): like a source
    position it is not part of the meaning, so equality, JSON and ``rule_hash`` ignore it.

    ``part`` 0 marks the phrase's whole condition; ``part`` i of ``parts`` marks the i-th
    condition of a phrase whose AND (or OR) was spliced into the AND (or OR) using it.
    """

    phrase: str
    part: int = 0
    parts: int = 1


@dataclass(frozen=True)
class Compare:
    """``<path> <op> <value>``, e.g. ``referrer.plan = "paid"``."""

    path: str
    op: CompareOp
    value: Value
    # Where the path was written (for diagnostics and traces); not part of the meaning.
    pos: SourcePos | None = field(default=None, compare=False)
    origin: PhraseOrigin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Within:
    """``<path> WITHIN <days> DAYS OF <other>``: both dates, at most ``days`` apart."""

    path: str
    days: int
    other: str
    pos: SourcePos | None = field(default=None, compare=False)
    origin: PhraseOrigin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]
    origin: PhraseOrigin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]
    origin: PhraseOrigin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Not:
    item: Condition
    origin: PhraseOrigin | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PhraseRef:
    """A vocabulary phrase used as a condition (``IF referrer is a paid user``).

    Only the per-file, unresolved program holds these (what ``fmt`` rewrites);
    resolving a program against its DEFINEs replaces each by the defined
    condition, so compiled models never contain one.
    """

    phrase: str
    pos: SourcePos | None = field(default=None, compare=False)
    origin: PhraseOrigin | None = field(default=None, compare=False)


Condition = Compare | Within | And | Or | Not | PhraseRef


def phrase_key(phrase: str) -> str:
    """Phrases match case-insensitively and regardless of spacing."""
    return " ".join(phrase.casefold().split())


def children(cond: Condition) -> tuple[Condition, ...]:
    """The conditions directly inside ``cond`` (none for a comparison or a phrase)."""
    if isinstance(cond, (And, Or)):
        return cond.items
    if isinstance(cond, Not):
        return (cond.item,)
    return ()


def walk(
    *roots: Condition | None, prune: Callable[[Condition], bool] | None = None
) -> Iterator[Condition]:
    """Every node of each tree in pre-order: a node, then its children in order.

    This is the order in which the evaluator traces and the diagram generator
    draws.  ``None`` roots (a rule without REVERSE IF) are skipped; when
    ``prune(node)`` is true the walk does not enter that node's children.
    """
    stack = [r for r in reversed(roots) if r is not None]
    while stack:
        node = stack.pop()
        yield node
        if prune is None or not prune(node):
            stack.extend(reversed(children(node)))


def flatten(value: Value) -> Iterator[Value]:
    """The scalars of a value: a list's members (recursively), else the value itself."""
    if isinstance(value, tuple):
        for v in value:
            yield from flatten(v)
    else:
        yield value


@dataclass(frozen=True)
class FixedReward:
    """``ISSUE ₹500 REWARD TO referrer``."""

    amount: Money
    to: Role = "referrer"
    pos: SourcePos | None = field(default=None, compare=False)  # of the amount


@dataclass(frozen=True)
class PercentReward:
    """``ISSUE 10% OF referee.first_payment REWARD TO referee UP TO ₹200``.

    The share is rounded down to whole minor units: a fraction of a paisa is
    never paid out.
    """

    percent: Decimal
    of: str
    to: Role = "referrer"
    cap: Money | None = None
    pos: SourcePos | None = field(default=None, compare=False)  # of the percentage


Action = FixedReward | PercentReward


@dataclass(frozen=True)
class Limit:
    """``LIMIT ₹5,000 PER referrer PER MONTH``: caps the rule's total per beneficiary."""

    amount: Money
    per: Role
    period: Period
    pos: SourcePos | None = field(default=None, compare=False)  # of the amount


@dataclass(frozen=True)
class Rule:
    id: str
    description: str | None
    condition: Condition
    actions: tuple[Action, ...]
    priority: int = 0
    exclusive: bool = False
    limit: Limit | None = None
    hold_days: int = 0
    reverse_if: Condition | None = None
    source: SourcePos | None = field(default=None, compare=False)
    # A bare "IF ... THEN ..." sentence: the id was made from the file name and position.
    auto_id: bool = field(default=False, compare=False)
    # Comment lines written before the rule (and inside it), kept so fmt never drops them.
    comments: tuple[str, ...] = field(default=(), compare=False)

    def conditions(self) -> tuple[Condition, ...]:
        """The rule's condition trees: its IF, then its REVERSE IF when it has one."""
        if self.reverse_if is None:
            return (self.condition,)
        return (self.condition, self.reverse_if)


@dataclass(frozen=True)
class Definition:
    """``DEFINE "<phrase>" AS <condition>``: vocabulary usable as a condition.

    Phrases are expanded where they are used, so a rule written with phrases
    and one written with the explicit fields have the same model.
    """

    phrase: str
    condition: Condition
    source: SourcePos | None = field(default=None, compare=False)
    comments: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class ExpectedReward:
    to: Role
    amount: Money


@dataclass(frozen=True)
class Example:
    """``EXAMPLE "name" GIVEN path = value, ... EXPECT ... | EXPECT NOTHING``."""

    name: str
    given: tuple[tuple[str, Value], ...]
    expect: tuple[ExpectedReward, ...]
    source: SourcePos | None = field(default=None, compare=False)
    comments: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Program:
    """A whole rule program: every ``.rule`` file of a directory or a file list."""

    rules: tuple[Rule, ...] = ()
    definitions: tuple[Definition, ...] = ()
    examples: tuple[Example, ...] = ()
    schema_version: int = SCHEMA_VERSION

    def rule(self, rule_id: str) -> Rule:
        for r in self.rules:
            if r.id == rule_id:
                return r
        raise KeyError(rule_id)

    def by_priority(self) -> tuple[Rule, ...]:
        """Rules in evaluation order: highest PRIORITY first, then source order."""
        return tuple(sorted(self.rules, key=lambda r: -r.priority))

    def money(self) -> Iterator[Money]:
        """Every money literal: in conditions (rules and DEFINEs), rewards, caps and
        limits, and the examples' GIVEN values and EXPECT amounts."""
        trees = [c for r in self.rules for c in r.conditions()]
        trees += [d.condition for d in self.definitions]
        values = [c.value for c in walk(*trees) if isinstance(c, Compare)]
        values += [v for ex in self.examples for _path, v in ex.given]
        for value in values:
            yield from (v for v in flatten(value) if isinstance(v, Money))
        for r in self.rules:
            for action in r.actions:
                if isinstance(action, FixedReward):
                    yield action.amount
                elif action.cap is not None:
                    yield action.cap
            if r.limit is not None:
                yield r.limit.amount
        for ex in self.examples:
            yield from (e.amount for e in ex.expect)

    def currencies(self) -> set[str]:
        """Every currency named by a money literal of the program (``money``)."""
        return {m.currency for m in self.money()}

    def default_currency(self) -> str | None:
        """The currency of bare integer amounts: the program's only currency, else None.

        The one rule for every caller (examples, ``rules eval``, settlement), so a
        program passes ``rules test`` exactly when settling it reads amounts alike.
        """
        found = self.currencies()
        return next(iter(found)) if len(found) == 1 else None
