"""The typed rule model: what a rule program *means*, independent of its text.

Text is parsed into these dataclasses (``dsl.parser``); the compiler turns them
into JSON (``schema_version`` 1, described by ``dsl/rule-model.schema.json``),
Graphviz diagrams and canonical text; ``dsl.evaluate`` compiles them into
callables.  Source positions are kept on every rule, definition and example but
are excluded from equality, so that a program re-parsed from its formatted text
compares equal to the original.
"""

from __future__ import annotations

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
class Compare:
    """``<path> <op> <value>``, e.g. ``referrer.plan = "paid"``."""

    path: str
    op: CompareOp
    value: Value
    # Where the path was written (for diagnostics and traces); not part of the meaning.
    pos: SourcePos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Within:
    """``<path> WITHIN <days> DAYS OF <other>``: both dates, at most ``days`` apart."""

    path: str
    days: int
    other: str
    pos: SourcePos | None = field(default=None, compare=False)


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


@dataclass(frozen=True)
class PhraseRef:
    """A vocabulary phrase used as a condition (``IF referrer is a paid user``).

    Only the per-file, unresolved program holds these (what ``fmt`` rewrites);
    resolving a program against its DEFINEs replaces each by the defined
    condition, so compiled models never contain one.
    """

    phrase: str
    pos: SourcePos | None = field(default=None, compare=False)


Condition = Compare | Within | And | Or | Not | PhraseRef


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

    def currencies(self) -> set[str]:
        """Every currency named by a money literal of the program."""
        found: set[str] = set()

        def visit(v: object) -> None:
            if isinstance(v, Money):
                found.add(v.currency)
            elif isinstance(v, tuple):
                for x in v:
                    visit(x)
            elif isinstance(v, (Compare,)):
                visit(v.value)
            elif isinstance(v, (And, Or)):
                visit(v.items)
            elif isinstance(v, Not):
                visit(v.item)

        for r in self.rules:
            visit(r.condition)
            visit(r.reverse_if)
            for a in r.actions:
                visit(a.amount if isinstance(a, FixedReward) else a.cap)
            if r.limit:
                visit(r.limit.amount)
        return found
