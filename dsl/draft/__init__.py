"""English -> rule model: the deterministic converter behind ``referral rules draft``.

``draft_rule`` reads a product manager's sentence with a controlled-English
grammar (``english.lark``), maps its condition words onto the program's
vocabulary and the fields of the program and its records (``Lexicon``), and
returns a ``Draft``: the rule only when every content word was understood,
else the words that were not, with the closest candidates.  It never guesses
and never touches money; ``compiler.draft`` turns the rule into checked text.
"""

from __future__ import annotations

import re

from dsl.draft.build import Builder
from dsl.draft.grammar import NoParse, normalize_text, readings
from dsl.draft.lexicon import FieldInfo, Lexicon, Phrase, build_lexicon
from dsl.draft.match import Matcher
from dsl.draft.result import Draft, DraftError, Mapped, Source, Unmapped
from dsl.draft.words import slug
from dsl.money import CURRENCY_SYMBOL

# One rule's worth of English; longer text is several rules (and slow to read every way).
MAX_CHARS = 2000


def rule_id_for(sentence: str, taken: frozenset[str] = frozenset()) -> str:
    """An id made from the sentence's first content words, unique in the program."""
    base = slug(sentence)
    rule_id, n = base, 2
    while rule_id in taken:
        rule_id, n = f"{base}_{n}", n + 1
    return rule_id


def draft_rule(sentence: str, lexicon: Lexicon, rule_id: str | None = None) -> Draft:
    """The rule a sentence says, or why there is none (see ``Draft``)."""
    text = normalize_text(sentence)
    if not text:
        return Draft(None, problems=("no sentence to draft",))
    if len(text) > MAX_CHARS:
        return Draft(None, problems=(
            f"the text is longer than {MAX_CHARS} characters: draft one rule at a time",))
    found = readings(text)
    if isinstance(found, NoParse):
        return _not_parsed(text, found, lexicon)
    if not found:
        return Draft(None, problems=(
            "the sentence reads in too many ways; split it into shorter sentences",))
    rid = rule_id or rule_id_for(text, lexicon.rule_ids)
    matcher = Matcher(lexicon)
    drafts = [Builder(text, r, lexicon, matcher).build(rid) for r in found]
    good = [d for d in drafts if d.rule is not None]
    rules = list(dict.fromkeys(d.rule for d in good if d.rule is not None))
    if len(rules) == 1:
        return good[0]
    if rules:
        return Draft(None, problems=(
            f"the sentence reads {len(rules)} ways that give different rules; "
            "add a comma or split it into sentences",), alternatives=tuple(rules))
    return min(drafts, key=lambda d: len(d.unmapped) + len(d.problems))


# The words from where the grammar stopped to where the next part of the sentence starts.
_UNTIL_NEXT_PART = (
    r"[^,.;]*?(?=\s+(?:when|whenever|if|once|after|and|or|unless|then|held|reversed|"
    r"clawed|up\s+to|at\s+most|capped|no\s+more)\b|\s*[,.;]|\s*$)"
)


def _last_part(text: str) -> str:
    """The words after the last comma or condition keyword: where an unfinished part starts."""
    tail = re.split(r"[,.;](?!\d)", text.rstrip(".;! "))[-1]
    keywords = list(re.finditer(r"\b(when|whenever|if|once|after|as soon as|unless|held|"
                                r"reversed|within)\b", tail, re.I))
    return (tail[keywords[-1].end():] if keywords else tail).strip() or text.strip()


def _not_parsed(text: str, stop: NoParse, lexicon: Lexicon) -> Draft:
    if stop.position >= len(text):
        words = _last_part(text)
        return Draft(None, unmapped=(Unmapped(words, stop.expected, "the sentence stops here, "
                                              "before this part is complete"),))
    number = re.search(r"(?<!\S)\d[\d,.]*\s+$", text[:stop.position])
    start = number.start() if number else stop.position  # "30 days", not "days"
    rest = text[start:]
    m = re.match(_UNTIL_NEXT_PART, rest, re.I)
    words = (m.group() if m else rest).strip()
    candidates: tuple[str, ...] = stop.expected
    number = re.match(r"(\d[\d,]*(?:\.\d+)?)(?!\s*(?:days?|weeks?|months?|years?|times|%))",
                      rest, re.I)
    if number and len(lexicon.currencies) == 1:
        (code,) = lexicon.currencies
        candidates = (f"{CURRENCY_SYMBOL.get(code, code + ' ')}{number.group(1)}", *candidates)
    reason = "not understood here" + ("; expected one of the candidates" if candidates else "")
    return Draft(None, unmapped=(Unmapped(words, candidates, reason),))


__all__ = [
    "Draft",
    "DraftError",
    "FieldInfo",
    "Lexicon",
    "Mapped",
    "Phrase",
    "Source",
    "Unmapped",
    "build_lexicon",
    "draft_rule",
    "rule_id_for",
]
