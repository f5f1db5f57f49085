"""Is every fact of a rule written in the sentence it was drafted from?

A language model may write any rule that parses; this check refuses one that
says more than the sentence.  Sound by construction, not by trust: it reads
the sentence with the same terminals as the controlled-English grammar and
requires that

- every amount, percentage, cap and limit of the rule is written in the
  sentence, and used no more often than it is written ("both" or "each" lets
  one written amount pay two people);
- every beneficiary (and the LIMIT's person) is named in the sentence; the
  referrer, the language's default, only when the rule has one reward;
- every day count, priority and number compared with is written; every date
  literal is written; every string literal is a word of the sentence;
- every field exists in the program or the records sample;
- HOLD, REVERSE IF and EXCLUSIVE appear only when the sentence says hold,
  reverse/claw back, exclusive.

It does not judge whether the model understood the conditions correctly:
that is what the reviewer, the mapping and ``rules test`` are for.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from dsl.draft.grammar import parse_amount, terminal_regex
from dsl.draft.lexicon import Lexicon
from dsl.draft.words import NUMBER_WORDS, REFEREE, REFERRER, YOU, normalize
from dsl.errors import MoneyError
from dsl.model import (
    And,
    Compare,
    Condition,
    FieldRef,
    FixedReward,
    Not,
    Or,
    PercentReward,
    Role,
    Rule,
    Within,
)
from dsl.money import Money


@dataclass(frozen=True)
class Facts:
    """What a sentence states, read without understanding its structure."""

    amounts: Counter[Money] = field(default_factory=Counter)
    percents: Counter[Decimal] = field(default_factory=Counter)
    numbers: frozenset[int] = frozenset()
    dates: frozenset[date] = frozenset()
    roles: frozenset[Role] = frozenset()
    shared: bool = False  # "both", "each": one amount may pay two people
    words: frozenset[str] = frozenset()
    holds: bool = False
    reverses: bool = False
    exclusive: bool = False
    mentions: tuple[tuple[str, object], ...] = ()  # (words, what they are) for the mapping


def facts(sentence: str) -> Facts:
    text = sentence
    amounts: Counter[Money] = Counter()
    percents: Counter[Decimal] = Counter()
    mentions: list[tuple[str, object]] = []
    for m in terminal_regex("MONEY").finditer(text):
        try:
            money = parse_amount(m.group())
        except MoneyError:
            continue
        amounts[money] += 1
        mentions.append((m.group(), money))
    text = terminal_regex("MONEY").sub(" ", text)
    for m in terminal_regex("PERCENT").finditer(text):
        number = re.match(r"\d+(?:\.\d+)?", m.group())
        assert number is not None
        percents[Decimal(number.group())] += 1
        mentions.append((m.group(), Decimal(number.group())))
    text = terminal_regex("PERCENT").sub(" ", text)
    dates = frozenset(
        date.fromisoformat(d) for d in re.findall(r"\d{4}-\d{2}-\d{2}", text) if _is_date(d)
    )
    numbers: set[int] = set()
    for m in re.finditer(r"(\d+)[- ]?(?:(weeks?)|\b)|\b([a-z-]+)\s+(weeks?)\b", text, re.I):
        if m.group(1):
            n = int(m.group(1))
            numbers.update({n, n * 7} if m.group(2) else {n})
        elif m.group(3) and m.group(3).lower() in NUMBER_WORDS:
            numbers.add(NUMBER_WORDS[m.group(3).lower()] * 7)
    for word, n in NUMBER_WORDS.items():
        if re.search(rf"\b{word}\b", text, re.I):
            numbers.add(n)
    if re.search(r"\b(a|one)\s+week\b", text, re.I):
        numbers.add(7)
    words = normalize(sentence)
    roles: set[Role] = set()
    for w in words:
        if w.norm == REFERRER or w.norm == YOU:
            roles.add("referrer")
        elif w.norm == REFEREE:
            roles.add("referee")
    # "Give your friend ₹100 and get ₹100": an imperative "get" addresses the referrer.
    if re.search(r"(^|\band\b|,|;|\bthen\b)\s*(get|earn|receive)\b", sentence, re.I):
        roles.add("referrer")
    shared = bool(terminal_regex("BOTH").search(sentence) or re.search(r"\beach\b", sentence, re.I))
    if terminal_regex("BOTH").search(sentence):
        roles.update(("referrer", "referee"))
    return Facts(
        amounts=amounts,
        percents=percents,
        numbers=frozenset(numbers),
        dates=dates,
        roles=frozenset(roles),
        shared=shared,
        words=frozenset(w.lower() for w in re.findall(r"[^\W_]+", sentence)),
        holds=bool(terminal_regex("HOLD_KW").search(sentence)
                   or terminal_regex("HOLD_NOUN").search(sentence)),
        reverses=bool(terminal_regex("REVERSE_KW").search(sentence)),
        exclusive=bool(terminal_regex("EXCLUSIVE").search(sentence)),
        mentions=tuple(mentions),
    )


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _compares(cond: Condition | None) -> Iterator[Compare | Within]:
    if isinstance(cond, (Compare, Within)):
        yield cond
    elif isinstance(cond, (And, Or)):
        for c in cond.items:
            yield from _compares(c)
    elif isinstance(cond, Not):
        yield from _compares(cond.item)


def ungrounded(written: Rule, resolved: Rule, sentence: str, lexicon: Lexicon) -> list[str]:
    """Every fact of the rule that the sentence does not state (empty: grounded).

    ``written`` is the rule as its text says it (phrases unexpanded): literals
    inside the program's vocabulary are the program's, not the answer's.
    """
    f = facts(sentence)
    problems: list[str] = []
    money_uses: Counter[Money] = Counter()
    percent_uses: Counter[Decimal] = Counter()
    for action in written.actions:
        if isinstance(action, FixedReward):
            money_uses[action.amount] += 1
        else:
            percent_uses[action.percent] += 1
            if action.cap is not None:
                money_uses[action.cap] += 1
    if written.limit is not None:
        money_uses[written.limit.amount] += 1
    numbers: list[int] = []
    for c in (*_compares(written.condition), *_compares(written.reverse_if)):
        if isinstance(c, Within):
            numbers.append(c.days)
            continue
        values = c.value if isinstance(c.value, tuple) else (c.value,)
        for v in values:
            if isinstance(v, Money):
                money_uses[v] += 1
            elif isinstance(v, bool) or v is None or isinstance(v, FieldRef):
                continue
            elif isinstance(v, int):
                numbers.append(v)
            elif isinstance(v, date) and v not in f.dates:
                problems.append(f"the date {v.isoformat()} is not in the sentence")
            elif isinstance(v, str) and not _said(v, f):
                problems.append(f'the value "{v}" is not a word of the sentence')
    factor = 2 if f.shared else 1
    for money, n in money_uses.items():
        if n > f.amounts[money] * factor:
            said = f"written {f.amounts[money]} times" if f.amounts[money] else "not written"
            problems.append(f"the amount {money} is used {n} times but {said} in the sentence")
    for pct, n in percent_uses.items():
        if n > f.percents[pct] * factor:
            problems.append(f"the percentage {pct}% is used {n} times but written "
                            f"{f.percents[pct]} times in the sentence")
    if written.hold_days:
        numbers.append(written.hold_days)
        if not f.holds:
            problems.append("HOLD: the sentence does not say the reward is held")
    if written.priority:
        numbers.append(written.priority)
    for n in numbers:
        if n not in f.numbers:
            problems.append(f"the number {n} is not in the sentence")
    paid = [a.to for a in written.actions]
    for role in dict.fromkeys(paid):
        if role not in f.roles and not (role == "referrer" and len(paid) == 1):
            problems.append(f"a reward to the {role}, whom the sentence does not name")
    if written.limit is not None and written.limit.per not in f.roles | set(paid):
        problems.append(f"a LIMIT per {written.limit.per}, whom the sentence does not name")
    if written.reverse_if is not None and not f.reverses:
        problems.append("REVERSE IF: the sentence does not say the reward is reversed")
    if written.exclusive and not f.exclusive:
        problems.append("EXCLUSIVE: the sentence does not say exclusive")
    for path in _paths(resolved):
        if path not in lexicon.fields:
            problems.append(f"the field {path} is in neither the program nor the records")
    return problems


def _said(value: str, f: Facts) -> bool:
    words = [w for w in re.findall(r"[^\W_]+", value.lower())]
    return bool(words) and all(w in f.words for w in words)


def _paths(rule: Rule) -> list[str]:
    out: list[str] = []
    for c in (*_compares(rule.condition), *_compares(rule.reverse_if)):
        out.append(c.path)
        if isinstance(c, Within):
            out.append(c.other)
        elif isinstance(c, Compare) and isinstance(c.value, FieldRef):
            out.append(c.value.path)
    out.extend(a.of for a in rule.actions if isinstance(a, PercentReward))
    return list(dict.fromkeys(out))


__all__ = ["Facts", "facts", "ungrounded"]
