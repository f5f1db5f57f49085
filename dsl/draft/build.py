"""A reading of a sentence -> the rule model, and how each part was understood.

Parts are mapped in text order.  Pronouns ("they", "their") stand for the
person named last before them; "you" is the referrer, the reader of a
referral page.  A reward names its beneficiaries or pays the referrer (the
language's default).  A cap attaches to the percentage reward before it; a cap
with a period or a person is the rule's LIMIT.  Everything that does not map
is collected, so one refusal names every unmapped word at once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from dsl.draft.grammar import (
    AllOf,
    AnyOf,
    Atom,
    Cap,
    Clause,
    Cond,
    Grant,
    Part,
    Reading,
    Recipient,
    Span,
)
from dsl.draft.lexicon import FieldInfo, Lexicon
from dsl.draft.match import Atom as Words
from dsl.draft.match import Found, Matcher
from dsl.draft.result import Draft, Mapped, Source, Unmapped
from dsl.draft.words import REFEREE, REFERRER, THEY, YOU, Word, normalize
from dsl.model import (
    Action,
    And,
    Compare,
    Condition,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    Role,
    Rule,
    Within,
)

_ROLE_MARKER: dict[str, Role] = {REFERRER: "referrer", REFEREE: "referee"}
# A condition starting with one of these has left its subject out: "and is a student".
_CONTINUES = frozenset(
    "is are was were has have had does did not also isn't hasn't doesn't didn't never".split()
)
_MARKER: dict[Role, str] = {"referrer": REFERRER, "referee": REFEREE}


class Builder:
    """Maps one reading onto the lexicon."""

    def __init__(self, text: str, reading: Reading, lexicon: Lexicon, matcher: Matcher) -> None:
        self.text = text
        self.reading = reading
        self.lexicon = lexicon
        self.matcher = matcher
        self.mapping: list[Mapped] = []
        self.unmapped: list[Unmapped] = [Unmapped(s.text, (), why) for s, why in reading.errors]
        self.problems: list[str] = []
        # Who a pronoun stands for: the person named (or stood for) last, in text order.
        self.mentions: list[Role] = []
        self.last_field: FieldInfo | None = None

    def _map(self, words: Span | Word, became: object, source: Source) -> None:
        text = words.text if isinstance(words, Span) else words.raw
        self.mapping.append(Mapped(text, became, source, words.start))  # type: ignore[arg-type]

    # ---- people
    def _mention(self, role: Role) -> None:
        self.mentions.append(role)

    def _resolve(self, span: Span, subject: Role | None = None) -> list[Word] | None:
        """The span's words with pronouns replaced by the person they stand for.

        ``subject`` is the person of "for every friend who ...": words that name no
        one are about them.  Words that start with a verb ("... and is not the
        referrer") continue the person before them.
        """
        out: list[Word] = []
        ok = True
        recent = self.mentions[-1] if self.mentions else None
        for w in normalize(span.text, span.start):
            if w.norm == THEY:
                if recent is None:
                    self.unmapped.append(Unmapped(
                        w.raw, ("referrer", "referee"), "no one named before it"))
                    ok = False
                    continue
                self._map(w, recent, "keyword")
                w = Word(_MARKER[recent], w.raw, w.start, w.end)
            elif w.norm == YOU:
                w = Word(REFERRER, w.raw, w.start, w.end)
            elif w.norm in _ROLE_MARKER:
                recent = _ROLE_MARKER[w.norm]
            out.append(w)
        if not ok:
            return None
        first = span.text.split(" ", 1)[0].lower()
        people = [w for w in out if w.norm in _ROLE_MARKER]
        carried = subject if not people else None
        if first in _CONTINUES and self.mentions:
            carried = self.mentions[-1]
        if carried is not None:
            out.insert(0, Word(_MARKER[carried], "", span.start, span.start))
            people.insert(0, out[0])
        if people:
            self._mention(_ROLE_MARKER[people[0].norm])
        return out

    def _words(self, span: Span, subject: Role | None = None, tail: Span | None = None
               ) -> Words | None:
        words = self._resolve(span, subject)
        if words is None:
            return None
        text = span.text
        if tail is not None:
            more = self._resolve(tail)
            if more is None:
                return None
            words, text = words + more, f"{span.text} {tail.text}"
        return self.matcher.atom(text, words)

    # ---- conditions
    def condition(self, cond: Cond, subject: Role | None = None) -> Condition | None:
        if isinstance(cond, Atom):
            return self._atom(cond, subject)
        if isinstance(cond, AnyOf):
            return self._any(cond, subject)
        items = [self.condition(c, subject) for c in cond.items]
        if any(c is None for c in items):
            return None
        return _join(And, items)  # type: ignore[arg-type]

    def _any(self, cond: AnyOf, subject: Role | None) -> Condition | None:
        """OR, refusing "A and B or C" (which is meant?) unless "either" groups it.

        A bare value after OR continues the comparison before it: "subscribes and their
        country is IN or US" is one condition on the country.
        """
        out: list[Condition] = []
        conjunctions: list[bool] = []
        failed = False
        for item in cond.items:
            last = out[-1] if out else None
            value = self._listed_value(item) if isinstance(last, And) else None
            if isinstance(last, And) and value is not None:
                assert isinstance(item, Atom)
                self._map(item.whole, value, "field")
                out[-1] = And((*last.items[:-1], _join(Or, [last.items[-1], value])))
                continue
            c = self.condition(item, subject)
            if c is None:
                failed = True
                continue
            out.append(c)
            conjunctions.append(isinstance(item, AllOf))
        if failed:
            return None
        mixed = any(conjunctions) and len(out) > 1
        if mixed and (not cond.grouped or conjunctions[-1]):
            self.problems.append(
                "'and' and 'or' in one condition can be read two ways: write the 'or' part "
                "last as 'either ... or ...' (A and either B or C), or split the rule")
            return None
        return _join(Or, out)

    def _listed_value(self, item: Cond) -> Condition | None:
        """``Compare(field, "=", value)`` when the item is only a value of the last field."""
        if not isinstance(item, Atom) or item.kind != "plain" or item.words is None:
            return None
        words = self.matcher.atom(item.words.text, normalize(item.words.text))
        return self._value_ellipsis(words)

    def _found(self, found: Found | Unmapped, words: Span) -> Condition | None:
        if isinstance(found, Unmapped):
            self.unmapped.append(found)
            return None
        self._map(words, found.condition, found.source)
        return found.condition

    def _atom(self, atom: Atom, subject: Role | None) -> Condition | None:
        if atom.kind == "quoted":
            return self._found(self.matcher.quoted(str(atom.value), atom.whole.text), atom.whole)
        if atom.kind == "compare":
            return self._compare(atom, subject)
        assert atom.words is not None
        words = self._words(atom.words, subject)
        if words is None:
            return None
        if atom.kind == "within":
            return self._within(atom, words)
        ellipsis = self._value_ellipsis(words)
        if ellipsis is not None:
            self._map(atom.whole, ellipsis, "field")
            return ellipsis
        found = self.matcher.plain(words)
        if isinstance(found, Found) and isinstance(found.condition, Compare):
            known = self.lexicon.fields.get(found.condition.path)
            self.last_field = known if known is not None and known.type == "string" else None
        return self._found(found, atom.whole)

    def _value_ellipsis(self, words: Words) -> Condition | None:
        """"their country is IN or US": a bare value continues the field before it."""
        f = self.last_field
        if f is None or words.roles or not words.content:
            return None
        values = {v.lower(): v for v in f.values}
        raw = [w.raw.lower() for w in words.content]
        if len(raw) == 1 and raw[0] in values:
            return Compare(f.path, "=", values[raw[0]])
        return None

    def _compare(self, atom: Atom, subject: Role | None) -> Condition | None:
        value_text = atom.value_span.text if atom.value_span else atom.whole.text
        op = atom.op
        assert op is not None
        if atom.words is None and atom.tail is not None:
            atom = replace(atom, words=atom.tail, tail=None)
        if atom.words is None:
            if self.last_field is None:
                self.unmapped.append(Unmapped(atom.whole.text, (), "compared with what?"))
                return None
            found = self.matcher.compare(self.last_field, op, atom.value, value_text)
        else:
            words = self._words(atom.words, subject, atom.tail)
            if words is None:
                return None
            found = self.matcher.compare(words, op, atom.value, value_text)
        if isinstance(found, Found):
            self.last_field = found.field
        return self._found(found, atom.whole)

    def _within(self, atom: Atom, words: Words) -> Condition | None:
        base = self.matcher.plain(words)
        event = self.matcher.field(words, "date", what="date field")
        if isinstance(event, Unmapped):
            self.unmapped.append(Unmapped(
                atom.whole.text, event.candidates, "no date field for when this happens"))
            return None
        if atom.anchor is not None:
            anchor_words = self._words(atom.anchor, None)
            if anchor_words is None:
                return None
            anchor = self.matcher.field(anchor_words, "date", what="date field")
        else:
            anchor = self.lexicon.referral_date or Unmapped(
                atom.whole.text, (), "within N days of what? (no referral date field is known)")
        if isinstance(anchor, Unmapped):
            self.unmapped.append(anchor)
            return None
        window = Within(event.path, atom.days, anchor.path)
        assert atom.window is not None and atom.words is not None
        if isinstance(base, Found):
            self._map(atom.words, base.condition, base.source)
            self._map(atom.window, window, "field")
            return _join(And, [base.condition, window])
        self._map(atom.whole, window, "field")
        return window

    # ---- rewards
    def grant(self, g: Grant) -> list[Action] | None:
        recipients = [self._them(rec) for rec in g.recipients]
        if any(rec is None for rec in recipients):
            return None
        g = replace(g, recipients=tuple(r for r in recipients if r is not None))
        roles = list(dict.fromkeys(r for rec in g.recipients for r in rec.roles))
        if g.verb is not None:
            default = "" if roles else " ... TO referrer (none named: the default)"
            self._map(g.verb, "ISSUE" + default, "keyword")
        for rec in g.recipients:
            implied = " (\"you\": the referrer)" if rec.person == 2 else ""
            shown = " AND ".join(f"TO {r}" for r in rec.roles)
            self._map(rec.span, shown + implied, "keyword")
            if rec.person == 3 and len(rec.roles) == 1:
                self._mention(rec.roles[0])
        roles = roles or ["referrer"]
        amount = g.amount
        if amount.money is not None:
            self._map(amount.span, amount.money, "amount")
            return [FixedReward(amount.money, r) for r in roles]
        assert amount.percent is not None and amount.of is not None
        self._map(amount.span, f"{amount.percent}%", "amount")
        words = self._words(amount.of)
        if words is None:
            return None
        f = self.matcher.field(words, "money", what="money field")
        if isinstance(f, Unmapped):
            self.unmapped.append(f)
            return None
        self._map(amount.of, f"OF {f.path}", "field")
        return [PercentReward(amount.percent, f.path, r) for r in roles]

    def _them(self, rec: Recipient) -> Recipient | None:
        """"give them ₹300": the person named before."""
        if rec.roles:
            return rec
        if not self.mentions:
            self.unmapped.append(Unmapped(rec.span.text, ("referrer", "referee"),
                                          "no one named before it"))
            return None
        return replace(rec, roles=(self.mentions[-1],))

    def _cap(self, cap: Cap, grants: list[tuple[Grant, list[Action]]]) -> None:
        percent = [(g, acts) for g, acts in grants if acts and isinstance(acts[0], PercentReward)]
        before = [x for x in percent if x[0].span.start < cap.span.start]
        target = before[-1] if before else (percent[0] if percent else None)
        if target is None:
            self.unmapped.append(Unmapped(
                cap.span.text, (), "a cap (UP TO) applies to a percentage reward; add a period "
                "(a month, ever) for a LIMIT on the rule"))
            return
        g, acts = target
        if any(isinstance(a, PercentReward) and a.cap is not None for a in acts):
            self.unmapped.append(Unmapped(cap.span.text, (), "that reward already has a cap"))
            return
        acts[:] = [replace(a, cap=cap.amount) if isinstance(a, PercentReward) else a for a in acts]
        self._map(cap.span, f"UP TO {cap.amount}", "amount")

    def _limit(self, cap: Cap, actions: list[Action]) -> Limit | None:
        roles = list(dict.fromkeys(a.to for a in actions))
        per: Role | None = None
        if cap.per is not None and len(cap.per.roles) == 1:
            per = cap.per.roles[0]
        elif cap.per is None and len(roles) == 1:
            per = roles[0]
        if per is None:
            self.unmapped.append(Unmapped(
                cap.span.text, ("referrer", "referee"), "a LIMIT is per one person: say per "
                "referrer or per friend"))
            return None
        if cap.period is None:
            self.unmapped.append(Unmapped(
                cap.span.text, ("a day", "a month", "a year", "ever"), "a LIMIT needs a period"))
            return None
        limit = Limit(cap.amount, per, cap.period)
        self._map(cap.span, limit, "amount")
        return limit

    # ---- the whole sentence
    def build(self, rule_id: str) -> Draft:
        parts = self.reading.parts
        granted: list[tuple[Grant, list[Action]]] = []
        caps: list[Cap] = []
        conditions: list[Condition] = []
        reverse: list[Condition] = []
        settings: dict[str, int] = {}
        for part in parts:
            if isinstance(part, Grant):
                paid = self.grant(part)
                if paid is not None:
                    granted.append((part, paid))
            elif isinstance(part, Clause):
                self._clause(part, conditions, reverse)
            elif isinstance(part, Cap):
                caps.append(part)
                if part.subject and part.per is not None and len(part.per.roles) == 1:
                    self._mention(part.per.roles[0])  # "referrers can earn ...; give them"
            elif part.kind in settings:
                self.unmapped.append(Unmapped(part.span.text, (), f"a second {part.kind}"))
            else:
                settings[part.kind] = part.value
                shown = {"hold": f"HOLD {part.value} DAYS", "priority": f"PRIORITY {part.value}",
                         "exclusive": "EXCLUSIVE"}[part.kind]
                self._map(part.span, shown, "keyword")
        limit = self._caps(caps, granted)
        actions = tuple(a for _, acts in granted for a in acts)
        if not any(isinstance(p, Grant) for p in parts):
            self.problems.append("no reward: say what is paid (give the referrer ₹500)")
        if not any(isinstance(p, Clause) and p.kind != "reverse" for p in parts):
            self.problems.append("no condition: say when it is paid (when the friend subscribes)")
        if _conditions_between_rewards(parts):
            self.problems.append(
                "a condition stands between two rewards, so it may be meant for one of them: "
                "say the condition once for all rewards (when ..., give ... and ...), or draft "
                "one rule per reward")
        if self.unmapped or self.problems or not actions or not conditions:
            return self._draft(None)
        rule = Rule(
            id=rule_id,
            description=None,
            condition=_join(And, conditions),
            actions=actions,
            priority=settings.get("priority", 0),
            exclusive="exclusive" in settings,
            limit=limit,
            hold_days=settings.get("hold", 0),
            reverse_if=_join(Or, reverse) if reverse else None,
        )
        return self._draft(rule)

    def _clause(self, part: Clause, conditions: list[Condition], reverse: list[Condition]) -> None:
        if part.kind == "reverse":
            self._map(part.keyword, "REVERSE IF", "keyword")
            cond = self.condition(part.cond)
            if cond is not None:
                reverse.append(cond)
            return
        subject = part.subject.roles[0] if part.subject and part.subject.roles else None
        if part.subject is not None and subject is not None:
            self._map(part.subject.span, f"{subject} (the subject)", "keyword")
            self._mention(subject)
        if part.kind == "unless":
            self._map(part.keyword, "AND NOT" if conditions else "IF NOT", "keyword")
        else:
            self._map(part.keyword, "AND" if conditions else "IF", "keyword")
        cond = self.condition(part.cond, subject)
        if cond is not None:
            conditions.append(Not(cond) if part.kind == "unless" else cond)

    def _caps(self, caps: list[Cap], granted: list[tuple[Grant, list[Action]]]) -> Limit | None:
        """Caps go to their percentage rewards; one with a period or a person is the LIMIT."""
        limit: Limit | None = None
        for cap in caps:
            if cap.per is None and cap.period is None and not cap.subject:
                self._cap(cap, granted)
            elif limit is not None:
                self.unmapped.append(Unmapped(cap.span.text, (), "a second LIMIT"))
            else:
                limit = self._limit(cap, [a for _, acts in granted for a in acts])
        return limit

    def _draft(self, rule: Rule | None) -> Draft:
        mapping = sorted(self.mapping, key=lambda m: m.start)
        return Draft(rule, tuple(mapping), tuple(self.unmapped), tuple(self.problems))


def _conditions_between_rewards(parts: tuple[Part, ...]) -> bool:
    """True for "give A ₹500 when X and give B ₹100": X may be A's alone."""
    kinds = [
        "grant" if isinstance(p, Grant) else "cond"
        for p in parts if isinstance(p, Grant) or (isinstance(p, Clause) and p.kind != "reverse")
    ]
    grants = [i for i, k in enumerate(kinds) if k == "grant"]
    return bool(grants) and any(
        k == "cond" and grants[0] < i < grants[-1] for i, k in enumerate(kinds)
    )


def _join(kind: type[And] | type[Or], items: list[Condition]) -> Condition:
    """Nested groups of one kind flattened, repeats dropped; ORs of one field's values
    become IN (``country = "IN" OR country = "US"`` is ``country IN ["IN", "US"]``)."""
    flat: list[Condition] = []
    for item in items:
        for c in item.items if isinstance(item, kind) else (item,):
            if c not in flat:
                flat.append(c)
    if len(flat) == 1:
        return flat[0]
    if kind is Or:
        flat = _values_in(flat)
        if len(flat) == 1:
            return flat[0]
    return kind(tuple(flat))


def _listed(c: Condition) -> tuple[str, list[str | int]] | None:
    """(path, values) of ``path = value`` or ``path IN [values]`` (strings, whole numbers)."""
    if not isinstance(c, Compare) or c.op not in ("=", "IN"):
        return None
    raw = c.value if isinstance(c.value, tuple) and c.op == "IN" else (c.value,)
    values = [v for v in raw if isinstance(v, (str, int)) and not isinstance(v, bool)]
    return (c.path, values) if values and len(values) == len(raw) else None


def _values_in(items: list[Condition]) -> list[Condition]:
    """Equalities of one field with several values, in an OR, become one IN."""
    listed = [(_listed(c), c) for c in items]
    counts = Counter(found[0] for found, _ in listed if found is not None)
    merged: dict[str, list[str | int]] = {}
    out: list[Condition | str] = []
    for found, c in listed:
        if found is None or counts[found[0]] == 1:
            out.append(c)
            continue
        if found[0] not in merged:
            merged[found[0]] = []
            out.append(found[0])  # where the IN goes
        merged[found[0]].extend(found[1])
    return [
        Compare(x, "IN", tuple(dict.fromkeys(merged[x]))) if isinstance(x, str) else x
        for x in out
    ]
