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
from dsl.money import Money, exponent

SCHEMA_VERSION = 1

Role = Literal["referrer", "referee"]
ROLES: tuple[Role, ...] = ("referrer", "referee")
# LIMIT ... PER <who>: a role (what the person earned in it), or the person in any role.
LimitPer = Literal["referrer", "referee", "person"]
LIMIT_PERS: tuple[LimitPer, ...] = ("referrer", "referee", "person")

# The roots of a referral context, and the fields every record has (settlement refuses
# a record without them).
CONTEXT_ROOTS = ("referrer", "referee", "referral")
REQUIRED_FIELDS = ("referral_id", "referrer.id", "referee.id")

# The ledger reference budget.  A reference is at most MAX_REFERENCE_CHARS long; the
# longest settlement builds is "reversal:reward:<rule id>:<referral id>:<role>#<sequence>",
# so a rule id may take what the other parts leave.
MAX_REFERENCE_CHARS = 255
MAX_REFERRAL_ID_CHARS = 128
MAX_ROLE_CHARS = max(len(r) for r in ROLES)
MAX_SEQUENCE_DIGITS = 6
MAX_RULE_ID_CHARS = (
    MAX_REFERENCE_CHARS
    - len("reversal:" "reward:" ":" ":" "#")
    - MAX_REFERRAL_ID_CHARS
    - MAX_ROLE_CHARS
    - MAX_SEQUENCE_DIGITS
)

# WITHIN n DAYS OF (either side) | AFTER | BEFORE <other>.
Direction = Literal["of", "after", "before"]
DIRECTIONS: tuple[Direction, ...] = ("of", "after", "before")

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
    """``<path> WITHIN <days> DAYS OF|AFTER|BEFORE <other>``: two dates at most ``days``
    calendar days apart (``after``: ``path`` on or after ``other``; ``before``: on or
    before it)."""

    path: str
    days: int
    other: str
    pos: SourcePos | None = field(default=None, compare=False)
    direction: Direction = "of"
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


ValueKind = Literal["boolean", "null", "number", "money", "date", "string", "list", "field"]


def value_kind(value: Value) -> ValueKind:
    """What kind of value a literal is (bool before int: bool is a subclass of int)."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, Decimal)):
        return "number"
    if isinstance(value, Money):
        return "money"
    if isinstance(value, date):
        return "date"
    if isinstance(value, str):
        return "string"
    if isinstance(value, tuple):
        return "list"
    return "field"


def flatten(value: Value) -> Iterator[Value]:
    """The scalars of a value: a list's members (recursively), else the value itself."""
    if isinstance(value, tuple):
        for v in value:
            yield from flatten(v)
    else:
        yield value


def _money_in(value: Value, pos: SourcePos | None) -> Iterator[tuple[Money, SourcePos | None]]:
    return ((v, pos) for v in flatten(value) if isinstance(v, Money))


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
    """``LIMIT ₹5,000 PER referrer PER MONTH``: caps what one person earns from the rule
    in a role (``PER referrer``, ``PER referee``) or in any role (``PER person``)."""

    amount: Money
    per: LimitPer
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
    # HOLD n DAYS FROM <path>: the date field the hold counts from (None: settlement's default).
    hold_from: str | None = None
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


SettingName = Literal["currency", "timezone"]


@dataclass(frozen=True)
class Setting:
    """``CURRENCY INR`` or ``TIMEZONE "Asia/Kolkata"``: a program-wide statement, where it
    was written (a program states each once, in any of its files)."""

    name: SettingName
    value: str
    source: SourcePos | None = field(default=None, compare=False)
    comments: tuple[str, ...] = field(default=(), compare=False)


@dataclass(frozen=True)
class Program:
    """A whole rule program: every ``.rule`` file of a directory or a file list.

    ``currency`` and ``timezone`` are what its CURRENCY and TIMEZONE statements say
    (None when it has none); ``settings`` are those statements as written, for
    positions and comments.
    """

    rules: tuple[Rule, ...] = ()
    definitions: tuple[Definition, ...] = ()
    examples: tuple[Example, ...] = ()
    schema_version: int = SCHEMA_VERSION
    currency: str | None = None
    timezone: str | None = None
    settings: tuple[Setting, ...] = field(default=(), compare=False)
    # Money written with $ or ¥ (as written, where): read as the program's currency when
    # it is a dollar or yen, which check warns about when the program does not say.
    symbol_literals: tuple[tuple[str, SourcePos], ...] = field(default=(), compare=False)

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
        return (m for m, _pos in self.money_places())

    def money_places(self) -> Iterator[tuple[Money, SourcePos | None]]:
        """``money`` with where each literal was written (as near as the model knows)."""
        for r in self.rules:
            for cond in walk(*r.conditions()):
                if isinstance(cond, Compare):
                    yield from _money_in(cond.value, cond.pos or r.source)
        for d in self.definitions:
            for cond in walk(d.condition):
                if isinstance(cond, Compare):
                    yield from _money_in(cond.value, cond.pos or d.source)
        for ex in self.examples:
            for _path, v in ex.given:
                yield from _money_in(v, ex.source)
        for r in self.rules:
            for action in r.actions:
                if isinstance(action, FixedReward):
                    yield action.amount, action.pos or r.source
                elif action.cap is not None:
                    yield action.cap, action.pos or r.source
            if r.limit is not None:
                yield r.limit.amount, r.limit.pos or r.source
        for ex in self.examples:
            yield from ((e.amount, ex.source) for e in ex.expect)

    def currencies(self) -> set[str]:
        """Every currency named by a money literal of the program (``money``)."""
        return {m.currency for m in self.money()}

    def default_currency(self, override: str | None = None) -> str | None:
        """The program's currency, that of bare integer amounts: ``override`` (an explicit
        ``--currency``), else the CURRENCY statement, else the only currency of the
        program's money literals, else None.

        The one rule for every caller (check, examples, ``rules eval``, ``rules diff``,
        settlement), so a program passes ``rules test`` exactly when settling it reads
        amounts alike.
        """
        if override:
            code = override.upper()
            exponent(code)  # an unknown code is refused here, not by the first record
            return code
        if self.currency is not None:
            return self.currency
        found = self.currencies()
        return next(iter(found)) if len(found) == 1 else None

    def date_paths(self) -> frozenset[str]:
        """The fields the program reads as dates: compared with a date literal, either
        side of a WITHIN, and HOLD ... FROM.  Comparing one of them with another field
        compares dates, whatever the other holds."""
        trees = [c for r in self.rules for c in r.conditions()]
        trees += [d.condition for d in self.definitions]
        found = {r.hold_from for r in self.rules if r.hold_from is not None}
        for c in walk(*trees):
            if isinstance(c, Within):
                found.update((c.path, c.other))
            elif isinstance(c, Compare) and any(
                isinstance(v, date) for v in flatten(c.value)
            ):
                found.add(c.path)
        return frozenset(found)
