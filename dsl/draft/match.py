"""Words of a condition -> a condition of the program, or the reason there is none.

A candidate (a DEFINE phrase, a boolean field, a string field with one of its
values, "the friend is the referrer") matches when the roles agree and the
words cover each other both ways: every content word of the sentence is a word
of the candidate, and every word the candidate needs is in the sentence.
Exactly one meaning must remain; two candidates with different meanings are
ambiguous and the words stay unmapped, listed with both.  Vocabulary wins over
a field with the same meaning, since it is the program's own English.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Literal

from dsl.draft.lexicon import FieldInfo, FieldType, Lexicon, content, value_type
from dsl.draft.result import Unmapped
from dsl.draft.words import NOT, REFEREE, REFERRER, ROLE_MARKERS, Word, normalize, stem
from dsl.model import Compare, CompareOp, Condition, FieldRef, Not, PhraseRef
from dsl.money import Money

_PATH = re.compile(r"\s*([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)+)\s*", re.I)
LiteralValue = str | int | Decimal | bool | date | Money | None


@dataclass(frozen=True)
class Candidate:
    condition: Condition  # what the words become (a PhraseRef for vocabulary)
    meaning: Condition  # what it means, to tell candidates apart
    source: Literal["vocabulary", "field"]
    roles: frozenset[str]
    required: tuple[str, ...]
    optional: frozenset[str] = frozenset()
    negated: bool = False
    text: str = ""


@dataclass(frozen=True)
class Found:
    condition: Condition
    source: Literal["vocabulary", "field"]
    field: FieldInfo | None = None


@dataclass
class Atom:
    """The normalised words of one condition (pronouns already resolved)."""

    text: str
    words: list[Word]
    keep: set[str] = field(default_factory=set)

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(w.norm for w in self.words if w.norm in ROLE_MARKERS)

    @property
    def negated(self) -> bool:
        return sum(w.norm == NOT for w in self.words) % 2 == 1

    @property
    def dangling_not(self) -> Word | None:
        """A "not" that nothing after it in the words can be negating."""
        meaning = {id(w) for w in self.content} | {
            id(w) for w in self.words if w.norm in ROLE_MARKERS}
        for i, w in enumerate(self.words):
            if w.norm == NOT and not any(id(x) in meaning for x in self.words[i + 1:]):
                return w
        return None

    @property
    def content(self) -> list[Word]:
        return content(self.words, self.keep)


def _value_words(value: str) -> tuple[str, ...]:
    return tuple(stem(w) for w in re.split(r"[\s_-]+", value.lower()) if w)


def _covers(atom: Atom, c: Candidate) -> bool:
    # A role word that is part of a field's name ("successful referrals") is a word of it.
    named = {r for r in atom.roles if r in c.required}
    roles = atom.roles - named
    if roles and roles != c.roles:
        return False
    allowed = set(c.required) | c.optional
    words = atom.content + [w for w in atom.words if w.norm in named]
    for w in words:
        if w.norm not in allowed and w.raw.lower() not in allowed:
            return False
    have = {w.norm for w in words} | {w.raw.lower() for w in words}
    return all(r in have for r in c.required)


def _score(atom: Atom, c: Candidate) -> float:
    """How close a candidate is, to rank the ones shown for unmapped words."""
    mine = {w.norm for w in atom.content}
    theirs = set(c.required) | c.optional
    alike = {m for m in mine for t in theirs if len(m) >= 3 and t.startswith(m)}
    overlap = (len(mine & theirs) + 0.5 * len(alike - theirs)) / max(
        1, len(mine | set(c.required)))
    roles = atom.roles
    return overlap + (0.5 if roles and roles == c.roles else 0.0) if overlap else 0.0


class Matcher:
    """Maps condition words onto one lexicon."""

    def __init__(self, lexicon: Lexicon) -> None:
        self.lexicon = lexicon
        self.keep = lexicon.value_words()
        self.candidates = self._plain_candidates()

    def atom(self, text: str, words: list[Word]) -> Atom:
        return Atom(text, words, self.keep)

    def _plain_candidates(self) -> list[Candidate]:
        out: list[Candidate] = []
        for p in self.lexicon.phrases:
            words = normalize(p.phrase)
            roles = frozenset(w.norm for w in words if w.norm in ROLE_MARKERS)
            required = tuple(w.norm for w in content(words, self.keep))
            negated = sum(w.norm == NOT for w in words) % 2 == 1
            out.append(Candidate(PhraseRef(p.phrase), p.meaning, "vocabulary", roles,
                                 required, negated=negated, text=p.phrase))
        for f in self.lexicon.fields.values():
            roles = frozenset({f.role}) if f.role else frozenset()
            if f.type == "boolean":
                cond = Compare(f.path, "=", True)
                out.append(Candidate(cond, cond, "field", roles, f.words))
            elif f.type == "string":
                for value in f.values:
                    cond = Compare(f.path, "=", value)
                    out.append(Candidate(cond, cond, "field", roles, _value_words(value),
                                         frozenset(f.words)))
        if "referee.id" in self.lexicon.fields and "referrer.id" in self.lexicon.fields:
            cond = Compare("referee.id", "=", FieldRef("referrer.id"))
            out.append(Candidate(cond, cond, "field", frozenset({REFEREE, REFERRER}), ()))
        return out

    # ---- a condition on its own: a phrase, a boolean field, a value of a string field
    def plain(self, atom: Atom) -> Found | Unmapped:
        path = _PATH.fullmatch(atom.text)
        if path:
            return Found(Compare(path.group(1), "=", True), "field")
        exact = self._exact_phrase(atom.text)
        if exact is not None:
            return Found(exact, "vocabulary")
        if not atom.content and not atom.roles:
            return Unmapped(atom.text, reason="no condition in these words")
        dangling = atom.dangling_not
        if dangling is not None:
            return Unmapped(dangling.raw, reason="it negates nothing written after it")
        matches = [c for c in self.candidates if _covers(atom, c)]
        meanings: dict[Condition, list[Candidate]] = {}
        for c in matches:
            meaning = c.meaning if c.negated == atom.negated else Not(c.meaning)
            meanings.setdefault(meaning, []).append(c)
        if len(meanings) == 1:
            (group,) = meanings.values()
            best = self._prefer(atom, group)
            cond = best.condition if best.negated == atom.negated else Not(best.condition)
            return Found(cond, best.source)
        if meanings:
            options = tuple(self._prefer(atom, g).condition for g in meanings.values())
            return Unmapped(atom.text, options, "these words match more than one condition")
        valued = self.field(atom, "money", "number", "date", what="field")
        if isinstance(valued, FieldInfo):
            say = ("say within how many days of what" if valued.type == "date"
                   else "say what it must be (at least ..., more than ...)")
            return Unmapped(atom.text, (valued.path,), f"{valued.path} is a {valued.type}: {say}")
        return self._unmapped(atom, self.candidates)

    def _exact_phrase(self, text: str) -> PhraseRef | None:
        key = " ".join(text.casefold().split())
        for p in self.lexicon.phrases:
            if " ".join(p.phrase.casefold().split()) == key:
                return PhraseRef(p.phrase)
        return None

    def quoted(self, text: str, span_text: str) -> Found | Unmapped:
        exact = self._exact_phrase(text)
        if exact is not None:
            return Found(exact, "vocabulary")
        close = difflib.get_close_matches(text, [p.phrase for p in self.lexicon.phrases], n=3)
        return Unmapped(span_text, tuple(PhraseRef(c) for c in close),
                        "a quoted phrase must be one the program defines")

    def _prefer(self, atom: Atom, group: list[Candidate]) -> Candidate:
        vocabulary = [c for c in group if c.source == "vocabulary"]
        pool = vocabulary or group

        def similarity(c: Candidate) -> float:
            return difflib.SequenceMatcher(None, atom.text.lower(), c.text.lower()).ratio()

        return max(pool, key=similarity)

    def _unmapped(self, atom: Atom, pool: list[Candidate], reason: str | None = None) -> Unmapped:
        ranked = sorted(
            ((s, i, c) for i, c in enumerate(pool) if (s := _score(atom, c)) > 0),
            key=lambda t: (-t[0], t[1]),
        )
        candidates = tuple(dict.fromkeys(c.condition for _, _, c in ranked[:3]))
        best = ranked[0][2] if ranked else None
        allowed = (set(best.required) | best.optional) if best else set()
        missing = [w.raw for w in atom.content if w.norm not in allowed]
        words = " ".join(dict.fromkeys(missing)) if missing else atom.text
        if reason is None and best is None:
            reason = "no phrase or field of the program has these words"
        elif reason is None:
            reason = ("close, but the words do not say all of it" if not missing
                      else "not words of the closest phrases and fields")
        return Unmapped(words, candidates, reason)

    # ---- fields by their words
    def field(self, atom: Atom, *types: FieldType, what: str) -> FieldInfo | Unmapped:
        """The one field of ``types`` that the words name."""
        path = _PATH.fullmatch(atom.text)
        if path:
            known = self.lexicon.fields.get(path.group(1))
            if known is None or known.type in types:
                return known or FieldInfo(path.group(1), types[0], source="program")
        pool = [
            Candidate(Compare(f.path, "=", True), Compare(f.path, "=", True), "field",
                      frozenset({f.role}) if f.role else frozenset(), f.words, text=f.path)
            for f in self.lexicon.of_type(*types)
        ]
        matches = [c for c in pool if _covers(atom, c)]
        paths = list(dict.fromkeys(c.text for c in matches))
        if len(paths) == 1:
            return self.lexicon.fields[paths[0]]
        if paths:
            return Unmapped(atom.text, tuple(paths), f"these words name more than one {what}")
        found = self._unmapped(atom, pool, None if pool else f"no {what} is known")
        names = tuple(c.path if isinstance(c, Compare) else c for c in found.candidates)
        return Unmapped(found.words, names, found.reason or f"no {what} has these words")

    def compare(
        self, atom: Atom | FieldInfo, op: CompareOp, value: LiteralValue, value_text: str
    ) -> Found | Unmapped:
        kind = value_type(value)
        if kind is None:
            return Unmapped(value_text, reason="not a value a rule can compare with")
        if isinstance(atom, FieldInfo):
            f: FieldInfo | Unmapped = atom
        else:
            f = self.field(atom, kind, what=f"{kind} field")
        if isinstance(f, Unmapped):
            if kind == "number" and isinstance(atom, Atom) and not isinstance(
                self.field(atom, "money", what="money field"), Unmapped
            ):
                return Unmapped(value_text, reason="an amount needs a currency (₹1,000)")
            return f
        if f.type != kind:
            return Unmapped(value_text, reason=f"{f.path} holds {f.type}, not {kind}")
        if kind == "boolean" and op not in ("=", "!="):
            return Unmapped(value_text, reason="true/false cannot be ordered")
        cond: Condition = Compare(f.path, op, value)
        negated = isinstance(atom, Atom) and atom.negated
        return Found(Not(cond) if negated else cond, "field", f)


__all__ = ["Atom", "Found", "Matcher"]
