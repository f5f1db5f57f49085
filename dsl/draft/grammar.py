"""English sentence -> its parts (rewards, triggers, caps, holds...), every reading.

The grammar (``english.lark``) is loaded once at import.  It is parsed with
Earley and explicit ambiguity, because English is ambiguous where the rule
language is not: "when their first payment is at most ₹200" is a comparison,
"when they subscribe, at most ₹200" a cap.  ``readings`` returns every parse;
``dsl.draft.build`` maps each one and keeps a draft only when the readings
that map agree.  Conditions stay word spans here: what the words mean depends
on the program, which this module does not know.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.visitors import CollapseAmbiguities

from dsl.draft.words import NUMBER_WORDS
from dsl.errors import MoneyError
from dsl.model import CompareOp, Period, Role
from dsl.money import Money, parse_money

_PARSER = Lark.open(
    "english.lark",
    rel_to=__file__,
    parser="earley",
    lexer="dynamic",
    ambiguity="explicit",
    propagate_positions=True,
)

# More readings than this and the sentence is refused as too ambiguous to review.
MAX_READINGS = 64


@dataclass(frozen=True)
class Span:
    """Words of the sentence: ``text`` is ``sentence[start:end]``."""

    text: str
    start: int
    end: int


@dataclass(frozen=True)
class Atom:
    """A condition's words, and the comparison or date window written with them."""

    kind: Literal["plain", "quoted", "compare", "within"]
    whole: Span
    words: Span | None = None
    op: CompareOp | None = None
    value: str | int | Decimal | bool | date | Money | None = None
    value_span: Span | None = None
    days: int = 0
    anchor: Span | None = None
    window: Span | None = None  # "within 30 days of signing up"
    tail: Span | None = None  # words after the value: "completes at least 5 trips"


@dataclass(frozen=True)
class AllOf:
    items: tuple[Cond, ...]


@dataclass(frozen=True)
class AnyOf:
    items: tuple[Cond, ...]
    grouped: bool = False  # written "either ... or ...": its alternatives are clear


Cond = Atom | AllOf | AnyOf


@dataclass(frozen=True)
class Recipient:
    roles: tuple[Role, ...]  # () for "them": the person named before
    span: Span
    person: int  # 2 for "you" (the referrer, addressed), 3 otherwise


@dataclass(frozen=True)
class Amount:
    span: Span
    money: Money | None = None
    percent: Decimal | None = None
    of: Span | None = None


@dataclass(frozen=True)
class Grant:
    """One reward: ``verb`` is None for "the referrer gets ..."."""

    span: Span
    verb: Span | None
    recipients: tuple[Recipient, ...]  # () is the language's default, the referrer
    amount: Amount
    implied_you: bool = False  # "get ₹100": the reader of a referral page, the referrer


@dataclass(frozen=True)
class Clause:
    """A condition part: "when ..." (IF), "unless ..." (AND NOT), "reversed if ..."."""

    kind: Literal["when", "unless", "reverse"]
    keyword: Span
    cond: Cond
    subject: Recipient | None = None  # "for every friend who ..."


@dataclass(frozen=True)
class Cap:
    """"at most ₹200" (a cap), or with a period or a person, a LIMIT."""

    span: Span
    amount: Money
    per: Recipient | None = None
    period: Period | None = None
    period_span: Span | None = None
    subject: bool = False  # "each referrer can earn at most ..."


@dataclass(frozen=True)
class Setting:
    """HOLD n DAYS, PRIORITY n or EXCLUSIVE, and the words that said it."""

    kind: Literal["hold", "priority", "exclusive"]
    span: Span
    value: int = 0


Part = Grant | Clause | Cap | Setting


@dataclass(frozen=True)
class Reading:
    """One parse of the sentence: its parts in text order, and literal errors."""

    parts: tuple[Part, ...]
    errors: tuple[tuple[Span, str], ...] = ()


@dataclass(frozen=True)
class NoParse:
    """Where the grammar stopped, and what it would have accepted there."""

    position: int
    expected: tuple[str, ...] = field(default=())


_EXPECTED_NAMES = {
    "MONEY": "an amount (₹500)", "PERCENT": "a percentage (10%)", "VERB": "give/pay/issue",
    "REFERRER": "the referrer", "REFEREE": "the friend", "TRIGGER": "when/if",
    "NUMBER": "a number", "DAYS": "days", "PERIOD": "a month/a year/ever",
    "CAP_KW": "up to/at most", "STRING": "a quoted value",
}

_PERIODS: tuple[tuple[str, Period], ...] = (
    ("day", "day"), ("daily", "day"), ("month", "month"), ("year", "year"),
    ("annum", "year"), ("annually", "year"),
)

_CMP: dict[str, CompareOp] = {
    "CMP_GE": ">=", "CMP_GT": ">", "CMP_LE": "<=", "CMP_LT": "<", "CMP_EQ": "=", "CMP_NE": "!=",
}


@functools.cache
def terminal_regex(name: str) -> re.Pattern[str]:
    """A terminal of the grammar as a regex (its flags included), for scanning text."""
    return re.compile(_PARSER.get_terminal(name).pattern.to_regexp())


def parse_amount(text: str) -> Money:
    """Every money form of the rule language, and "Rs 500" / "500 rupees"."""
    t = " ".join(text.split())
    t = re.sub(r"^rs\.?\s*", "INR ", t, flags=re.I)
    for word, code in (("rupee", "INR"), ("dollar", "USD"), ("euro", "EUR"), ("pound", "GBP")):
        t = re.sub(rf"\s*{word}s?$", f" {code}", t, flags=re.I)
    t = re.sub(r"^([A-Za-z]{3})(\d)", r"\1 \2", t)
    t = re.sub(r"(\d)([A-Za-z]{3})$", r"\1 \2", t)
    return parse_money(t)


class _ToParts(Transformer):
    """One unambiguous parse tree -> a Reading's parts."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.errors: list[tuple[Span, str]] = []

    def _span(self, node: Any) -> Span:
        if isinstance(node, Token):
            start, end = node.start_pos, node.end_pos
        elif isinstance(node, Span):
            return node
        else:
            start, end = node
        assert start is not None and end is not None
        return Span(self.text[start:end], start, end)

    def _around(self, *nodes: Any) -> Span:
        spans = [self._span(n) for n in nodes if n is not None]
        start, end = min(s.start for s in spans), max(s.end for s in spans)
        return Span(self.text[start:end], start, end)

    def _money(self, tok: Token) -> Money:
        try:
            return parse_amount(str(tok))
        except MoneyError as e:
            self.errors.append((self._span(tok), e.message))
            return Money(0, "INR")

    # ---- words and values
    @v_args(meta=True)
    def span(self, meta: Any, items: list[Token]) -> Span:
        return self._span((meta.start_pos, meta.end_pos))

    of_span = span

    def _value(self, tok: Token) -> Any:
        kind, text = tok.type, str(tok)
        if kind == "MONEY":
            return self._money(tok)
        if kind == "NUMBER":
            return int(text)
        if kind == "DECIMAL":
            return Decimal(text)
        if kind == "STRING":
            return text[1:-1]
        if kind == "DATE":
            try:
                return date.fromisoformat(text)
            except ValueError:
                self.errors.append((self._span(tok), f"not a valid date: {text}"))
                return None
        return kind == "TRUE"

    # ---- rewards
    def recipient(self, items: list[Token]) -> Recipient:
        tok = items[0]
        span = self._span(tok)
        if tok.type == "REFERRER":
            return Recipient(("referrer",), span, 3)
        if tok.type == "REFEREE":
            return Recipient(("referee",), span, 3)
        if tok.type == "YOU":
            return Recipient(("referrer",), span, 2)
        if tok.type == "THEM":
            return Recipient((), span, 3)  # the person named before
        return Recipient(("referrer", "referee"), span, 3)

    def recipients(self, items: list[Recipient]) -> tuple[Recipient, ...]:
        return tuple(items)

    @v_args(meta=True)
    def fixed(self, meta: Any, items: list[Token]) -> Amount:
        return Amount(self._span(items[0]), money=self._money(items[0]))

    @v_args(meta=True)
    def percent(self, meta: Any, items: list[Any]) -> Amount:
        tok, of = items[0], items[-1]
        number = re.match(r"\d+(?:\.\d+)?", str(tok))
        assert number is not None
        return Amount(self._span(tok), percent=Decimal(number.group()), of=of)

    def reward(self, items: list[Any]) -> Amount:
        return next(i for i in items if isinstance(i, Amount))

    @v_args(meta=True)
    def grant(self, meta: Any, items: list[Any]) -> tuple[Span, tuple[Recipient, ...], Amount]:
        recipients = next((i for i in items if isinstance(i, tuple)), ())
        amount = next(i for i in items if isinstance(i, Amount))
        return self._span((meta.start_pos, meta.end_pos)), recipients, amount

    def give(self, items: list[Any]) -> list[Grant]:
        verb = self._span(items[0])
        return [Grant(span, verb, recipients, amount) for span, recipients, amount in items[1:]]

    @v_args(meta=True)
    def get(self, meta: Any, items: list[Any]) -> list[Grant]:
        recipients, amount = items[0], items[-1]
        return [Grant(self._span((meta.start_pos, meta.end_pos)), None, recipients, amount)]

    @v_args(meta=True)
    def get_who(self, meta: Any, items: list[Any]) -> list[Part]:
        """"Friends who subscribe get ₹100": a reward with its trigger."""
        recipient, cond, amount = items[0], items[1], items[-1]
        span = self._span((meta.start_pos, meta.end_pos))
        return [Clause("when", recipient.span, cond, recipient),
                Grant(span, None, (recipient,), amount)]

    @v_args(meta=True)
    def give_each(self, meta: Any, items: list[Any]) -> list[Part]:
        """"Give ₹100 to each friend who subscribes"."""
        verb, amount, every, recipient, cond = items
        span = self._span((meta.start_pos, meta.end_pos))
        return [Grant(span, self._span(verb), (recipient,), amount),
                Clause("when", self._span(every), cond, recipient)]

    @v_args(meta=True)
    def get_you(self, meta: Any, items: list[Any]) -> list[Grant]:
        get, amount = items
        you = Recipient(("referrer",), self._span(get), 2)
        span = self._span((meta.start_pos, meta.end_pos))
        return [Grant(span, None, (you,), amount, implied_you=True)]

    @v_args(meta=True)
    def passive(self, meta: Any, items: list[Any]) -> list[Grant]:
        amount, _, recipients = items
        return [Grant(self._span((meta.start_pos, meta.end_pos)), None, recipients, amount)]

    # ---- conditions
    @v_args(meta=True)
    def plain(self, meta: Any, items: list[Span]) -> Atom:
        return Atom("plain", items[0], words=items[0])

    def quoted(self, items: list[Token]) -> Atom:
        span = self._span(items[0])
        return Atom("quoted", span, value=str(items[0])[1:-1])

    def comparator(self, items: list[Token]) -> CompareOp:
        return _CMP[items[0].type]

    @v_args(meta=True)
    def compare(self, meta: Any, items: list[Any]) -> Atom:
        words = items.pop(0) if isinstance(items[0], Span) else None
        op, value = items[0], items[1]
        tail = items[2] if len(items) > 2 else None
        return Atom("compare", self._span((meta.start_pos, meta.end_pos)), words, op,
                    self._value(value), self._span(value), tail=tail)

    @v_args(meta=True)
    def or_more(self, meta: Any, items: list[Any]) -> Atom:
        words, value, _ = items
        return Atom("compare", self._span((meta.start_pos, meta.end_pos)), words, ">=",
                    self._value(value), self._around(value, items[2]))

    @v_args(meta=True)
    def or_less(self, meta: Any, items: list[Any]) -> Atom:
        words, value, _ = items
        return Atom("compare", self._span((meta.start_pos, meta.end_pos)), words, "<=",
                    self._value(value), self._around(value, items[2]))

    @v_args(meta=True)
    def equals(self, meta: Any, items: list[Any]) -> Atom:
        words, value = items
        return Atom("compare", self._span((meta.start_pos, meta.end_pos)), words, "=",
                    self._value(value), self._span(value))

    @v_args(meta=True)
    def within(self, meta: Any, items: list[Any]) -> Atom:
        words, kw, (days, _) = items[0], items[1], items[2]
        anchor = items[3] if len(items) > 3 else None
        window = self._around(kw, items[2][1], anchor)
        return Atom("within", self._span((meta.start_pos, meta.end_pos)), words,
                    days=days, anchor=anchor, window=window)

    def all_of(self, items: list[Cond]) -> Cond:
        return _flat(AllOf, items)

    def any_of(self, items: list[Cond]) -> Cond:
        return _flat(AnyOf, items)

    def either(self, items: list[Cond]) -> Cond:
        group = _flat(AnyOf, items)
        return AnyOf(group.items, grouped=True) if isinstance(group, AnyOf) else group

    # ---- clauses
    def trigger(self, items: list[Any]) -> list[Clause]:
        return [Clause("when", self._span(items[0]), items[1])]

    def each_trigger(self, items: list[Any]) -> list[Clause]:
        kw, subject, cond = items
        return [Clause("when", self._span(kw), cond, subject)]

    def unless(self, items: list[Any]) -> list[Clause]:
        return [Clause("unless", self._span(items[0]), items[1])]

    def reverse(self, items: list[Any]) -> list[Clause]:
        return [Clause("reverse", self._around(items[-3], items[-2]), items[-1])]

    def per_role(self, items: list[Any]) -> Recipient:
        recipient: Recipient = items[1]
        return Recipient(recipient.roles, self._around(items[0], recipient.span), 3)

    def _cap(self, meta: Any, items: list[Any], subject: Recipient | None) -> list[Cap]:
        money = next(i for i in items if isinstance(i, Token) and i.type == "MONEY")
        per = subject
        period: Period | None = None
        period_span = None
        for item in items:
            if isinstance(item, Recipient) and item is not subject:
                per = item
            elif isinstance(item, Token) and item.type == "PERIOD":
                period, period_span = self._period(str(item)), self._span(item)
        span = self._span((meta.start_pos, meta.end_pos))
        return [Cap(span, self._money(money), per, period, period_span, subject is not None)]

    @v_args(meta=True)
    def cap(self, meta: Any, items: list[Any]) -> list[Cap]:
        return self._cap(meta, items, None)

    @v_args(meta=True)
    def subject_cap(self, meta: Any, items: list[Any]) -> list[Cap]:
        subject = next(i for i in items if isinstance(i, Recipient))
        return self._cap(meta, items, subject)

    def _period(self, text: str) -> Period:
        low = text.lower()
        for word, period in _PERIODS:
            if word in low:
                return period
        return "ever"

    def duration(self, items: list[Token]) -> tuple[int, Span]:
        span = self._around(*items)
        if items[0].type == "A_WEEK":
            return 7, span
        n = str(items[0]).lower()
        count = NUMBER_WORDS[n] if n in NUMBER_WORDS else int(n)
        return (count * 7 if items[1].type == "WEEKS" else count), span

    @v_args(meta=True)
    def hold(self, meta: Any, items: list[Any]) -> list[Setting]:
        span = self._span((meta.start_pos, meta.end_pos))
        for item in items:
            if isinstance(item, tuple):
                return [Setting("hold", span, item[0])]
        adj = next(i for i in items if isinstance(i, Token) and i.type == "DAY_ADJ")
        number = re.match(r"\d+", str(adj))
        assert number is not None
        return [Setting("hold", span, int(number.group()))]

    @v_args(meta=True)
    def priority(self, meta: Any, items: list[Token]) -> list[Setting]:
        return [Setting("priority", self._span((meta.start_pos, meta.end_pos)), int(items[1]))]

    def exclusive(self, items: list[Token]) -> list[Setting]:
        return [Setting("exclusive", self._span(items[0]))]

    def start(self, items: list[list[Part]]) -> tuple[Part, ...]:
        return tuple(p for group in items for p in group)


def _flat(kind: type[AllOf] | type[AnyOf], items: list[Cond]) -> Cond:
    """One item is itself; nested groups of the same kind are one group ("either")."""
    flat: list[Cond] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return flat[0] if len(flat) == 1 else kind(tuple(flat))


def _count(tree: Any) -> int:
    """How many readings a tree with _ambig nodes holds (without expanding them)."""
    if not isinstance(tree, Tree):
        return 1
    if tree.data == "_ambig":
        return sum(_count(c) for c in tree.children)
    n = 1
    for child in tree.children:
        n *= _count(child)
        if n > MAX_READINGS:
            return n
    return n


def normalize_text(text: str) -> str:
    """One line, straight quotes, "you'll" as "you will": what the grammar reads."""
    text = text.replace("“", '"').replace("”", '"').replace("’", "'").replace("‘", "'")
    text = re.sub(r"\b(you|they|we|it)'ll\b", r"\1 will", text, flags=re.I)
    return " ".join(text.split())


def readings(text: str) -> list[Reading] | NoParse:
    """Every reading of ``text`` (already ``normalize_text``-ed), or where it stopped."""
    try:
        tree = _PARSER.parse(text)
    except UnexpectedInput as e:
        return _no_parse(e, text)
    if _count(tree) > MAX_READINGS:
        return []
    trees = CollapseAmbiguities().transform(tree) if _has_ambiguity(tree) else [tree]
    out: list[Reading] = []
    for t in trees:
        transformer = _ToParts(text)
        parts = transformer.transform(t)
        reading = Reading(parts, tuple(transformer.errors))
        if reading not in out:
            out.append(reading)
    return out


def _has_ambiguity(tree: Tree) -> bool:
    return any(t.data == "_ambig" for t in tree.iter_subtrees())


def _no_parse(e: UnexpectedInput, text: str) -> NoParse:
    if isinstance(e, UnexpectedEOF):
        return NoParse(len(text), _names(e.expected))
    if isinstance(e, UnexpectedCharacters):
        return NoParse(_word_start(text, e.pos_in_stream or 0), _names(e.allowed or ()))
    if isinstance(e, UnexpectedToken):
        return NoParse(_word_start(text, e.token.start_pos or 0), _names(e.expected))
    return NoParse(0)


def _word_start(text: str, position: int) -> int:
    """The Earley lexer can stop inside a word: report the whole word."""
    while 0 < position <= len(text) and not text[position - 1].isspace():
        position -= 1
    return position


def _names(terminals: Any) -> tuple[str, ...]:
    names = {_EXPECTED_NAMES[t] for t in terminals if t in _EXPECTED_NAMES}
    return tuple(sorted(names))


__all__ = [
    "Amount", "Atom", "AllOf", "AnyOf", "Cap", "Clause", "Cond", "Grant", "NoParse", "Part",
    "Reading", "Recipient", "Setting", "Span",
    "normalize_text", "parse_amount", "readings", "terminal_regex",
]
