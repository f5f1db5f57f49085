"""What a sentence may refer to: the program's phrases and the fields it can see.

Fields come from the program (every path a rule, definition or example uses,
typed by what it is compared with) and from a sample of the records feed (each
path's JSON values: booleans, integers, ISO dates, strings).  An integer field is
money when the program uses it as money or its name says so (``first_payment``,
``deposit_amount``): records hold money as integer minor units.  A string field
keeps its values when there are few of them, so that "a paid user" can find
``referrer.plan = "paid"``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from dsl.draft.words import ROLE_MARKERS, Word, field_words, is_ignorable, normalize
from dsl.model import (
    And,
    Compare,
    Condition,
    FieldRef,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Value,
    Within,
    value_kind,
)

FieldType = Literal["boolean", "money", "number", "date", "string", "list"]

# A string field with more distinct values than this is an id or free text.
MAX_VALUES = 20
# The last word of an integer field's name that makes it money ("card_payments" is a count).
_MONEY_WORDS = frozenset(
    "payment amount spend spent deposit price cost value total revenue fee balance purchase "
    "earnings salary income fare transfer topup gmv".split()
)
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$")
_ID_WORDS = frozenset("id email name phone code token".split())


@dataclass(frozen=True)
class FieldInfo:
    """A field path, what its values are, and the words that name it."""

    path: str
    type: FieldType
    values: tuple[str, ...] = ()
    source: Literal["program", "records"] = "records"

    @property
    def role(self) -> str | None:
        return field_words(self.path)[0]

    @property
    def words(self) -> tuple[str, ...]:
        return field_words(self.path)[1]

    def describe(self) -> str:
        extra = f": {', '.join(self.values)}" if self.values else ""
        unit = " (integer minor units)" if self.type == "money" else ""
        return f"{self.path} ({self.type}{unit}{extra})"


@dataclass(frozen=True)
class Phrase:
    """A DEFINE phrase, its meaning (the resolved condition) and its words."""

    phrase: str
    meaning: Condition

    @property
    def words(self) -> list[Word]:
        return normalize(self.phrase)


@dataclass(frozen=True)
class Lexicon:
    """Everything a sentence can be mapped onto."""

    phrases: tuple[Phrase, ...] = ()
    fields: Mapping[str, FieldInfo] = field(default_factory=dict)
    rule_ids: frozenset[str] = frozenset()
    currencies: frozenset[str] = frozenset()

    def of_type(self, *types: FieldType) -> list[FieldInfo]:
        return [f for f in self.fields.values() if f.type in types]

    def value_words(self) -> set[str]:
        return {v.lower() for f in self.fields.values() for v in f.values}

    @property
    def referral_date(self) -> FieldInfo | None:
        """The referral's own date (``referral.created_at``): "within 30 days" counts from it."""
        found = [f for f in self.of_type("date") if f.role == "@referral" and not f.words]
        return found[0] if len(found) == 1 else None


def build_lexicon(
    program: Program | None = None, records: Iterable[Mapping[str, Any]] = ()
) -> Lexicon:
    """The lexicon of a resolved program and a sample of its records."""
    seen: dict[str, dict[str, Any]] = {}
    for record in records:
        for path, value in _flatten(record):
            _observe(seen, path, value)
    fields: dict[str, FieldInfo] = {}
    for path, info in seen.items():
        kind = _record_type(path, info)
        if kind is not None:
            values = tuple(sorted(info["values"])) if kind == "string" and not info["many"] else ()
            fields[path] = FieldInfo(path, kind, values, "records")
    phrases: tuple[Phrase, ...] = ()
    rule_ids: frozenset[str] = frozenset()
    currencies: frozenset[str] = frozenset()
    if program is not None:
        for path, kind, value in _program_uses(program):
            old = fields.get(path)
            if old is not None and old.source == "program" and old.type != kind:
                continue  # the program's first typed use decides
            known = set(old.values) if old is not None and old.type == kind else set()
            if kind == "string" and isinstance(value, str) and not _is_id(path):
                known.add(value)
            fields[path] = FieldInfo(path, kind, tuple(sorted(known))[:MAX_VALUES], "program")
        phrases = tuple(Phrase(d.phrase, d.condition) for d in program.definitions)
        rule_ids = frozenset(r.id for r in program.rules)
        currencies = frozenset(program.currencies())
    return Lexicon(phrases, dict(sorted(fields.items())), rule_ids, currencies)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, path + ".")
        elif "." in path:
            yield path, value


def _observe(seen: dict[str, dict[str, Any]], path: str, value: Any) -> None:
    info = seen.setdefault(path, {"types": set(), "values": set(), "many": False})
    if value is None:
        return
    if isinstance(value, bool):
        info["types"].add("boolean")
    elif isinstance(value, int):
        info["types"].add("int")
    elif isinstance(value, (float, Decimal)):
        info["types"].add("number")
    elif isinstance(value, list):
        info["types"].add("list")
    elif isinstance(value, str):
        info["types"].add("date" if _ISO_DATE.match(value) else "string")
        if not info["many"]:
            info["values"].add(value)
            if len(info["values"]) > MAX_VALUES or _is_id(path):
                info["many"], info["values"] = True, set()


def _is_id(path: str) -> bool:
    return path.rsplit(".", 1)[-1].split("_")[-1] in _ID_WORDS


def _record_type(path: str, info: dict[str, Any]) -> FieldType | None:
    types: set[str] = info["types"]
    if len(types) != 1:
        return None  # mixed or only nulls: nothing a sentence should be matched against
    (kind,) = types
    if kind == "int":
        last = path.rsplit(".", 1)[-1].split("_")[-1]
        return "money" if last in _MONEY_WORDS else "number"
    return kind  # type: ignore[return-value]


def value_type(value: Value) -> FieldType | None:
    """The field type a literal compares with (None for null, a mixed list or a field)."""
    kind = value_kind(value)
    if kind == "list":
        assert isinstance(value, tuple)
        kinds = {value_type(v) for v in value}
        return kinds.pop() if len(kinds) == 1 else None
    return None if kind in ("null", "field") else kind  # type: ignore[return-value]


def _program_uses(program: Program) -> Iterator[tuple[str, FieldType, Any]]:
    """(path, type, value) for every typed use of a field in the program."""

    def conditions(cond: Condition | None) -> Iterator[tuple[str, FieldType, Any]]:
        if isinstance(cond, Compare):
            if isinstance(cond.value, FieldRef):
                return
            kind = value_type(cond.value)
            if cond.op == "CONTAINS":
                kind = "list"
            if kind is not None:
                values = cond.value if isinstance(cond.value, tuple) else (cond.value,)
                for v in values:
                    yield cond.path, kind, v
        elif isinstance(cond, Within):
            yield cond.path, "date", None
            yield cond.other, "date", None
        elif isinstance(cond, (And, Or)):
            for item in cond.items:
                yield from conditions(item)
        elif isinstance(cond, Not):
            yield from conditions(cond.item)
        elif isinstance(cond, PhraseRef):
            return

    for rule in program.rules:
        yield from conditions(rule.condition)
        yield from conditions(rule.reverse_if)
        for action in rule.actions:
            if isinstance(action, PercentReward):
                yield action.of, "money", None
    for definition in program.definitions:
        yield from conditions(definition.condition)
    for example in program.examples:
        for path, value in example.given:
            kind = value_type(value)
            if kind is not None and not isinstance(value, tuple):
                yield path, kind, value


def content(words: Iterable[Word], keep: set[str] | None = None) -> list[Word]:
    """The words that must be matched: no roles, negations, stopwords or filler nouns.

    A stopword written in capitals that is a known value ("IN", "US") is kept.
    """
    from dsl.draft.words import FILLER_NOUNS, NOT

    keep = keep or set()
    out = []
    for w in words:
        if w.norm in ROLE_MARKERS or w.norm == NOT or w.norm.startswith("@"):
            continue
        if w.raw.isupper() and len(w.raw) > 1 and w.raw.lower() in keep:
            out.append(w)
            continue
        if is_ignorable(w) or w.raw.lower() in FILLER_NOUNS:
            continue
        out.append(w)
    return out


__all__ = [
    "FieldInfo", "FieldType", "Lexicon", "Phrase", "build_lexicon", "content", "value_type",
]
