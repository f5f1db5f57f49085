"""Checks on a whole program that the grammar cannot express.

Errors: duplicate rule ids, phrases defined twice, amounts that cannot be paid
(negative, zero, a percentage outside (0, 100]), caps and limits in another
currency than the reward, operators given a value they cannot compare.
Warnings: a field path used once that is one or two edits from another (a
likely typo), two rules of equal priority that could both pay the same
beneficiary (collect-all double rewards should be a decision, not an accident),
and EXCLUSIVE tiers over one field whose ranges overlap or leave a gap.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from dsl.errors import DateError, Diagnostic, SourcePos
from dsl.model import (
    CONTEXT_ROOTS,
    MAX_RULE_ID_CHARS,
    REQUIRED_FIELDS,
    And,
    Compare,
    Condition,
    FieldRef,
    FixedReward,
    Not,
    PercentReward,
    Program,
    Rule,
    Value,
    Within,
    phrase_key,
    walk,
)
from dsl.model import value_kind as _kind
from dsl.money import MAX_MINOR_UNITS, SYMBOLS, Money, format_money
from dsl.timeutil import zone

_ORDERING = {">", ">=", "<", "<="}


def _diag(severity: str, message: str, pos: SourcePos | None) -> Diagnostic:
    return Diagnostic(severity, message, pos)


def validate(
    merged: Program, resolved: Program, *, skip_combination: bool = False
) -> list[Diagnostic]:
    """All diagnostics of a program: ``merged`` as written, ``resolved`` expanded.

    They carry positions but not source lines: ``load_program`` adds those.
    """
    out: list[Diagnostic] = []
    out += _duplicates(merged)
    for rule in merged.rules:
        out += _rule_values(rule)
        if rule.auto_id:
            out.append(_diag(
                "warning",
                f"rule without a RULE header gets the id {rule.id} from its file name and "
                "position; settlement references use rule ids, so renaming or reordering "
                f"would pay again: write RULE {rule.id} (or another id) before IF",
                rule.source,
            ))
    for d in merged.definitions:
        out += _condition_values(d.condition, d.source)
    out += _example_checks(merged)
    out += _setting_checks(merged)
    out += _currency_checks(merged)
    out += _reference_budget(merged)
    out += _typo_warnings(merged)
    if not skip_combination:
        out += _equal_priority_warnings(resolved)
        out += _tier_warnings(resolved)
    return out


def _duplicates(program: Program) -> list[Diagnostic]:
    out = []
    seen_rules: dict[str, SourcePos | None] = {}
    for r in program.rules:
        if r.id in seen_rules:
            out.append(_diag("error", f'duplicate rule id "{r.id}" (first defined at '
                                      f"{seen_rules[r.id]})", r.source))
        else:
            seen_rules[r.id] = r.source
    seen_phrases: dict[str, SourcePos | None] = {}
    for d in program.definitions:
        key = phrase_key(d.phrase)
        if key in seen_phrases:
            out.append(_diag("error", f'phrase "{d.phrase}" is already defined at '
                                      f"{seen_phrases[key]}", d.source))
        else:
            seen_phrases[key] = d.source
    return out


def _conditions(cond: Condition) -> Iterator[Compare | Within]:
    return (c for c in walk(cond) if isinstance(c, (Compare, Within)))


def _condition_values(cond: Condition, fallback: SourcePos | None) -> list[Diagnostic]:
    out = []
    for c in _conditions(cond):
        if not isinstance(c, Compare):
            continue
        pos = c.pos or fallback
        kind = _kind(c.value)
        if c.op in _ORDERING and kind not in {"number", "money", "date", "field"}:
            out.append(_diag("error", f"{c.path} {c.op} needs a number, money or date, "
                                      f"not a {kind}", pos))
        elif c.op in {"IS", "IS NOT"} and kind not in {"boolean", "null"}:
            out.append(_diag("error", f"{c.op} compares with TRUE, FALSE or NULL; use = or != "
                                      f"for a {kind}", pos))
        elif c.op in {"IN", "NOT IN"} and isinstance(c.value, tuple):
            kinds = {_kind(v) for v in c.value if v is not None}
            if kinds - {"number"} and len(kinds) > 1:
                out.append(_diag("error", f"the list after {c.op} mixes "
                                          f"{' and '.join(sorted(kinds))} values", pos))
        elif c.op in {"=", "!="} and kind == "null":
            out.append(_diag("error", f"{c.path} {c.op} null is never true; use IS "
                                      f"{'NOT ' if c.op == '!=' else ''}NULL", pos))
        elif c.op == "CONTAINS" and kind in {"list", "null"}:
            out.append(_diag("error", f"CONTAINS needs a single value, not a {kind}", pos))
    return out


def _rule_values(rule: Rule) -> list[Diagnostic]:
    out = [d for cond in rule.conditions() for d in _condition_values(cond, rule.source)]

    def err(message: str, at: SourcePos | None = None) -> None:
        out.append(_diag("error", f"rule {rule.id}: {message}", at or rule.source))

    currencies: set[str] = set()
    for a in rule.actions:
        if isinstance(a, FixedReward):
            if currencies and a.amount.currency not in currencies:
                err(f"rewards and caps mix currencies ({a.amount.currency} after "
                    f"{', '.join(sorted(currencies))})", a.pos)
            currencies.add(a.amount.currency)
            if a.amount.amount <= 0:
                err(f"a reward must be positive, got {a.amount}", a.pos)
            if a.amount.amount > MAX_MINOR_UNITS:
                err(f"a reward must be at most {MAX_MINOR_UNITS} minor units, got {a.amount}",
                    a.pos)
        elif isinstance(a, PercentReward):
            if not Decimal(0) < a.percent <= Decimal(100):
                err(f"a percentage must be in (0, 100], got {a.percent}%", a.pos)
            if a.cap is not None:
                if a.cap.amount <= 0:
                    err(f"UP TO must be positive, got {a.cap}", a.pos)
                if currencies and a.cap.currency not in currencies:
                    err(f"rewards and caps mix currencies ({a.cap.currency} after "
                        f"{', '.join(sorted(currencies))})", a.pos)
                currencies.add(a.cap.currency)
    if rule.limit is not None:
        at = rule.limit.pos
        if rule.limit.amount.amount <= 0:
            err(f"LIMIT must be positive, got {rule.limit.amount}", at)
        if rule.limit.amount.amount > MAX_MINOR_UNITS:  # a BIGINT sum is compared with it
            err(f"LIMIT must be at most {MAX_MINOR_UNITS} minor units, got {rule.limit.amount}",
                at)
        if currencies and rule.limit.amount.currency not in currencies:
            err(f"LIMIT is in {rule.limit.amount.currency} but the rule pays in "
                f"{', '.join(sorted(currencies))}", at)
    return out


def _example_checks(program: Program) -> list[Diagnostic]:
    out = []
    for ex in program.examples:
        paths = [p for p, _ in ex.given]
        for path, n in Counter(paths).items():
            if n > 1:
                out.append(_diag("error", f'example "{ex.name}" gives {path} twice', ex.source))
        # Every proper prefix of a given path (referee of referee.id): linear, not pairwise.
        inside = {p.rsplit(".", k)[0] for p in paths for k in range(1, p.count(".") + 1)}
        for path in paths:
            if path in inside:
                out.append(_diag("error", f'example "{ex.name}" gives {path} a value and '
                                          "also fields inside it", ex.source))
        for e in ex.expect:
            if e.amount.amount <= 0:
                out.append(_diag("error", f'example "{ex.name}": an expected reward must be '
                                          f"positive, got {e.amount}", ex.source))
    return out


# ---------------------------------------------------------------- program settings

def _setting_checks(program: Program) -> list[Diagnostic]:
    """CURRENCY and TIMEZONE once per program, whichever files state them."""
    out = []
    first: dict[str, SourcePos | None] = {}
    for setting in program.settings:
        keyword = setting.name.upper()
        if setting.name in first:
            out.append(_diag("error", f"{keyword} is stated twice: here and at "
                                      f"{first[setting.name]} (a program has one {keyword})",
                             setting.source))
        else:
            first[setting.name] = setting.source
    if program.timezone is not None and not program.settings:  # a JSON model's
        try:
            zone(program.timezone)
        except DateError as e:
            out.append(_diag("error", e.message, None))
    return out


_OTHER_SYMBOL_CURRENCIES = {"$": "other dollars (CAD, AUD, SGD...)", "¥": "the yuan (CNY)"}


def _currency_checks(program: Program) -> list[Diagnostic]:
    """One currency for bare integer amounts, and rewards a LIMIT can count.

    Without CURRENCY the program's currency is that of its money literals, so
    literals in several currencies leave it undecided (an error), none with a
    percentage reward leave records unreadable (a warning), and ``$`` or ``¥`` is
    a guess (a warning).  A percentage without UP TO pays in the program's currency.
    """
    out = []
    found = program.currencies()
    currency = program.default_currency()
    if program.currency is None and len(found) > 1:
        places = list(program.money_places())
        second = next(pos for m, pos in places if m.currency != places[0][0].currency)
        out.append(_diag("error", f"the program's money literals are in "
                                  f"{' and '.join(sorted(found))}: write CURRENCY <code> "
                                  "(the currency of bare integer amounts in records)", second))
    shares = [r for r in program.rules
              if any(isinstance(a, PercentReward) and a.cap is None for a in r.actions)]
    if currency is None and not found and shares:
        out.append(_diag("warning", "the program names no currency, so a record's bare "
                                    "integer amounts cannot be read: write CURRENCY <code>",
                         shares[0].source))
    if program.currency is None:
        for text, pos in program.symbol_literals:
            written = text.lstrip("-")
            sym, code = written[0], SYMBOLS[written[0]]
            out.append(_diag("warning", f"{text} is read as {code}, but {sym} also names "
                                        f"{_OTHER_SYMBOL_CURRENCIES[sym]}: write CURRENCY "
                                        f"{code}, or {code} {written[1:].strip()}", pos))
    if currency is None:
        return out
    for rule in shares:
        paid = {a.amount.currency for a in rule.actions if isinstance(a, FixedReward)}
        paid |= {a.cap.currency for a in rule.actions
                 if isinstance(a, PercentReward) and a.cap is not None}
        why = "a percentage without UP TO pays in the program's currency"
        if paid - {currency}:
            out.append(_diag("error", f"rule {rule.id}: rewards mix currencies "
                                      f"({currency} and {', '.join(sorted(paid - {currency}))}:"
                                      f" {why})", rule.source))
        if rule.limit is not None and rule.limit.amount.currency != currency:
            out.append(_diag("error", f"rule {rule.id}: LIMIT is in "
                                      f"{rule.limit.amount.currency} but the rule pays in "
                                      f"{currency} ({why})", rule.limit.pos or rule.source))
    return out


def _reference_budget(program: Program) -> list[Diagnostic]:
    """Rule ids short enough for the longest ledger reference settlement builds."""
    return [
        _diag("error", f"rule id {r.id} is {len(r.id)} characters; ledger references allow "
                       f"at most {MAX_RULE_ID_CHARS} (reversal:reward:<rule id>:<referral id>:"
                       "<role>#<n> must fit in 255 characters)", r.source)
        for r in program.rules if len(r.id) > MAX_RULE_ID_CHARS
    ]


# ---------------------------------------------------------------- typos

def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and
    adjacent transpositions each cost one."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def _path_uses(program: Program) -> list[tuple[str, SourcePos | None]]:
    uses: list[tuple[str, SourcePos | None]] = []

    def cond_uses(cond: Condition, fallback: SourcePos | None) -> None:
        for c in _conditions(cond):
            uses.append((c.path, c.pos or fallback))
            if isinstance(c, Within):
                uses.append((c.other, c.pos or fallback))
            elif isinstance(c.value, FieldRef):
                uses.append((c.value.path, c.pos or fallback))

    for r in program.rules:
        for cond in r.conditions():
            cond_uses(cond, r.source)
        for a in r.actions:
            if isinstance(a, PercentReward):
                uses.append((a.of, r.source))
        if r.hold_from is not None:
            uses.append((r.hold_from, r.source))
    for d in program.definitions:
        cond_uses(d.condition, d.source)
    for ex in program.examples:
        for path, _value in ex.given:
            uses.append((path, ex.source))
    return uses


def _typo_warnings(program: Program) -> list[Diagnostic]:
    uses = _path_uses(program)
    counts = Counter(p for p, _ in uses)
    # A segment written in more than one path is a real word (referee vs referrer).
    segment_paths: dict[tuple[int, str], set[str]] = defaultdict(set)
    for path in counts:
        for i, seg in enumerate(path.split(".")):
            segment_paths[(i, seg)].add(path)
    neighbours = _Neighbours(counts)
    out = []
    for path, pos in uses:
        if counts[path] != 1:
            continue
        segs = path.split(".")
        best: tuple[int, str] | None = None
        for i, seg in enumerate(segs):
            # Short names (x.a, x.b) are deliberately different, not typos.
            if len(seg) < 4 or len(segment_paths[(i, seg)]) > 1:
                continue
            for dist, other in neighbours.closest(segs, i):  # nearest first
                if _distinct_on_purpose(segs, other.split("."), i):
                    continue
                if best is None or (dist, other) < best:
                    best = (dist, other)
                break
        if best is not None:
            out.append(_diag("warning", f'field {path} is used only here; did you mean '
                                        f'{best[1]}?', pos))
    return out


class _Neighbours:
    """The paths one or two edits from a path, differing from it in one segment only.

    Paths are bucketed by their other segments (``referee.*``); in a big bucket the
    segments are indexed by their one- and two-character deletions (two strings at
    most two edits apart share a string reached by at most two deletions from each,
    adjacent transpositions included), so a program with thousands of fields is
    checked in time linear in its fields, not quadratic.
    """

    SCAN = 32  # buckets up to this size are scanned, not indexed

    def __init__(self, paths: Iterable[str]) -> None:
        self.buckets: dict[tuple[int, int, tuple[str, ...]], dict[str, str]] = defaultdict(dict)
        for path in paths:
            segs = path.split(".")
            for i, seg in enumerate(segs):
                self.buckets[(len(segs), i, (*segs[:i], *segs[i + 1:]))][seg] = path
        self.indexes: dict[tuple[tuple[int, int, tuple[str, ...]], int],
                           dict[str, list[str]]] = {}

    def closest(self, segs: list[str], i: int) -> Iterator[tuple[int, str]]:
        """(distance, path) of the paths at most two edits away that differ only in
        segment ``i``, nearest first, then by path (lazily: the first usable one ends
        the search)."""
        key = (len(segs), i, (*segs[:i], *segs[i + 1:]))
        bucket = self.buckets[key]
        seg = segs[i]
        if len(bucket) <= self.SCAN:
            yield from sorted(self._measure(seg, bucket, bucket, 2))
            return
        # A neighbour one edit away shares a one-deletion variant; in path order, so
        # that the first found is the one a full sort would give.
        near = {o for v in _deletions(seg, 1) for o in self._index(key, 1).get(v, ())}
        for path in sorted(bucket[o] for o in near if o != seg):
            if _one_edit(seg, path.split(".")[i]):
                yield 1, path
        far = {o for v in _deletions(seg, 2) for o in self._index(key, 2).get(v, ())}
        yield from sorted((d, p) for d, p in self._measure(seg, far, bucket, 2) if d == 2)

    @staticmethod
    def _measure(seg: str, others: Iterable[str], bucket: dict[str, str],
                 limit: int) -> list[tuple[int, str]]:
        found = []
        for other in others:
            if other != seg and abs(len(other) - len(seg)) <= limit and (
                    dist := edit_distance(seg, other)) <= limit:
                found.append((dist, bucket[other]))
        return found

    def _index(self, key: tuple[int, int, tuple[str, ...]], most: int) -> dict[str, list[str]]:
        """A big bucket's segments by their variants of up to ``most`` deletions (built
        when first asked: the two-deletion one only for a path with no near neighbour)."""
        if (key, most) not in self.indexes:
            index: dict[str, list[str]] = defaultdict(list)
            for seg in self.buckets[key]:
                for v in _deletions(seg, most):
                    index[v].append(seg)
            self.indexes[(key, most)] = index
        return self.indexes[(key, most)]


def _one_edit(a: str, b: str) -> bool:
    """``edit_distance(a, b) == 1`` for two different strings, in one pass."""
    if len(a) > len(b):
        a, b = b, a
    k = next((n for n, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), len(a))
    if len(a) != len(b):
        return len(b) - len(a) == 1 and a[k:] == b[k + 1:]
    return a[k + 1:] == b[k + 1:] or (
        a[k + 1:k + 2] == b[k:k + 1] and a[k:k + 1] == b[k + 1:k + 2] and a[k + 2:] == b[k + 2:])


def _deletions(word: str, most: int) -> set[str]:
    """``word`` with up to ``most`` characters deleted (itself included)."""
    found = {word}
    frontier = {word}
    for _ in range(most):
        frontier = {w[:k] + w[k + 1:] for w in frontier for k in range(len(w))}
        found |= frontier
    return found


def _distinct_on_purpose(path: list[str], other: list[str], index: int) -> bool:
    """Two paths that differ only where the context says who: referrer.id and referee.id
    (or referral.x), and the fields every record must have."""
    if index == 0 and path[0] in CONTEXT_ROOTS and other[0] in CONTEXT_ROOTS:
        return True
    return ".".join(path) in REQUIRED_FIELDS and ".".join(other) in REQUIRED_FIELDS


# ---------------------------------------------------------------- combination

def _conjuncts(cond: Condition) -> list[Condition]:
    """The conditions an AND chain requires (nested ANDs flattened)."""
    inside_and = walk(cond, prune=lambda c: not isinstance(c, And))
    return [c for c in inside_and if not isinstance(c, And)]


def _order_key(value: Value) -> int | Decimal | None:
    """A number that orders the value as comparisons do (money by minor units, dates by
    day), or None for a value without an order."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return value
    if isinstance(value, Money):
        return value.amount
    if isinstance(value, date):
        return value.toordinal()
    return None


def _same_kind(a: object, b: object) -> bool:
    if isinstance(a, Money) or isinstance(b, Money):
        return isinstance(a, Money) and isinstance(b, Money) and a.currency == b.currency
    if isinstance(a, date) or isinstance(b, date):
        return isinstance(a, date) and isinstance(b, date)
    return True


def _contradict(a: Condition, b: Condition) -> bool:
    """True when two conjuncts cannot both hold (a deliberately small, sound check)."""
    if isinstance(a, Not):
        return a.item == b
    if isinstance(b, Not):
        return b.item == a
    if not (isinstance(a, Compare) and isinstance(b, Compare) and a.path == b.path):
        return False
    if isinstance(a.value, FieldRef) or isinstance(b.value, FieldRef):
        return False
    ops = {a.op, b.op}
    if ops == {"="} or ops == {"IS"}:
        return a.value != b.value
    if ops == {"=", "!="} or ops == {"IS", "IS NOT"}:
        return a.value == b.value
    if ops in ({"=", "IN"}, {"=", "NOT IN"}):
        eq, lst = (a, b) if a.op == "=" else (b, a)
        if not isinstance(lst.value, tuple):
            return False
        inside = eq.value in lst.value
        return inside if lst.op == "NOT IN" else not inside
    if ops == {"IN"}:
        if not (isinstance(a.value, tuple) and isinstance(b.value, tuple)):
            return False
        return not set(a.value) & set(b.value)
    if a.op in _ORDERING | {"="} and b.op in _ORDERING | {"="}:
        ka, kb = _order_key(a.value), _order_key(b.value)
        if ka is None or kb is None or not _same_kind(a.value, b.value):
            return False
        return _interval_empty(((a.op, ka), (b.op, kb)))
    return False


def _interval_empty(bounds: tuple[tuple[str, int | Decimal], ...]) -> bool:
    """True when no number satisfies every ``(op, value)`` (ops ``> >= = < <=``)."""
    lo: int | Decimal | None = None
    hi: int | Decimal | None = None
    lo_incl = hi_incl = True
    for op, v in bounds:
        if op in {">", ">=", "="} and (lo is None or v > lo or (v == lo and op == ">")):
            lo, lo_incl = v, op != ">"
        if op in {"<", "<=", "="} and (hi is None or v < hi or (v == hi and op == "<")):
            hi, hi_incl = v, op != "<"
    if lo is None or hi is None:
        return False
    return lo > hi or (lo == hi and not (lo_incl and hi_incl))


def could_both_hold(a: Condition, b: Condition) -> bool:
    ca, cb = _conjuncts(a), _conjuncts(b)
    return not any(_contradict(x, y) for x in ca for y in cb)


def double_pays(program: Program) -> Iterator[tuple[Rule, Rule, list[str]]]:
    """Pairs of non-EXCLUSIVE rules of equal priority that can both match and pay one
    beneficiary: (earlier, later, the beneficiaries both pay).

    Only rules that ``rules check`` names can be in a pair, so only those are paired.
    """
    named = {id(r) for group in _paying_twice(program).values() for r, _ in group}
    rules = [r for r in program.rules if id(r) in named]
    for i, later in enumerate(rules):
        for earlier in rules[:i]:
            if earlier.priority != later.priority or earlier.exclusive or later.exclusive:
                continue
            shared = {a.to for a in earlier.actions} & {a.to for a in later.actions}
            if not shared or not could_both_hold(earlier.condition, later.condition):
                continue
            yield earlier, later, sorted(shared)


def _equal_priority_warnings(program: Program) -> list[Diagnostic]:
    """One warning per priority, listing the rules that can pay one beneficiary twice."""
    out = []
    for priority, group in _paying_twice(program).items():
        rules = [r for r, _ in group]
        who = " and ".join(sorted({role for _, roles in group for role in roles}))
        if len(rules) == 2:
            earlier, later = rules
            message = (f"rules {earlier.id} and {later.id} have equal priority {priority} and "
                       f"can both pay the {who}; mark one EXCLUSIVE or give them different "
                       f"priorities ({earlier.id} is at {earlier.source})")
        else:
            shown = ", ".join(r.id for r in rules[:_LISTED])
            more = f" and {len(rules) - _LISTED:,} more" if len(rules) > _LISTED else ""
            message = (f"{len(rules):,} rules of equal priority {priority} can pay the {who} "
                       f"twice for one referral: {shown}{more}; mark them EXCLUSIVE or give "
                       f"them different priorities (rules catalog lists each pair)")
        out.append(_diag("warning", message, rules[1].source))
    return out


_LISTED = 10  # rule ids named in one equal-priority warning
# Candidate partners tried per rule before the check gives up proving the rule
# disjoint from the others and warns (a warning, never a missed double payment).
_PAIR_BUDGET = 256
# A path constrained by "=" in this many rules gets the list of the rules it leaves free.
_HEAVY = 64


def _paying_twice(program: Program) -> dict[int, list[tuple[Rule, set[str]]]]:
    """Per priority, the non-EXCLUSIVE rules (in source order) that can match together
    with another rule of that priority and pay a beneficiary both pay, with those roles.

    Linear in the rules in practice: each rule looks for one partner, first among the
    rules that may match with it (an "=" on a path excludes every rule with another
    value there), and stops at the first it cannot prove disjoint.
    """
    groups: dict[int, list[Rule]] = defaultdict(list)
    for r in program.rules:
        if not r.exclusive and r.actions:
            groups[r.priority].append(r)
    found: dict[int, list[tuple[Rule, set[str]]]] = {}
    for priority, rules in groups.items():
        if len(rules) < 2:
            continue
        pairing = _Pairing(rules)
        flagged = [(r, roles) for i, r in enumerate(rules) if (roles := pairing.twice(i))]
        if flagged:
            found[priority] = flagged
    return found


class _Pairing:
    """The rules of one priority, indexed for finding a rule's partner quickly."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self.conjuncts = [_conjuncts(r.condition) for r in rules]
        self.roles = [{a.to for a in r.actions} for r in rules]
        self.members: dict[str, list[int]] = defaultdict(list)
        for i, roles in enumerate(self.roles):
            for role in roles:
                self.members[role].append(i)
        # role -> path -> value -> the rules saying path = value
        self.equal: dict[str, dict[str, dict[Value, set[int]]]] = defaultdict(
            lambda: defaultdict(lambda: defaultdict(set)))
        self.eqs: list[dict[str, Value]] = []
        for i, conj in enumerate(self.conjuncts):
            eqs: dict[str, Value] = {}
            for c in conj:
                if isinstance(c, Compare) and c.op == "=" and not isinstance(c.value, FieldRef):
                    eqs.setdefault(c.path, c.value)
            self.eqs.append(eqs)
            for role in self.roles[i]:
                for path, value in eqs.items():
                    self.equal[role][path][value].add(i)
        self.free: dict[tuple[str, str], list[int]] = {}
        self.counts = {(role, path): sum(len(s) for s in by_value.values())
                       for role, paths in self.equal.items() for path, by_value in paths.items()}

    def _constrained(self, role: str, path: str) -> int:
        return self.counts.get((role, path), 0)

    def _candidates(self, i: int, role: str) -> Iterator[int]:
        """The rules paying ``role`` that may match with rule ``i``, likeliest first."""
        eqs = self.eqs[i]
        if not eqs:
            yield from self.members[role]
            return
        # Pivot on the "=" that excludes the most rules.
        path = max(eqs, key=lambda p: self._constrained(role, p)
                   - len(self.equal[role][p][eqs[p]]))
        same = self.equal[role][path][eqs[path]]
        yield from same
        constrained = self._constrained(role, path)
        if constrained == len(self.members[role]):
            return
        if constrained >= _HEAVY:
            if (role, path) not in self.free:
                bound = set().union(*self.equal[role][path].values())
                self.free[(role, path)] = [j for j in self.members[role] if j not in bound]
            yield from self.free[(role, path)]
            return
        bound_here = set().union(*self.equal[role][path].values())
        yield from (j for j in self.members[role] if j not in bound_here)

    def twice(self, i: int) -> set[str]:
        """The roles rule ``i`` can pay together with another rule of its priority."""
        out: set[str] = set()
        for role in sorted(self.roles[i]):
            tried = 0
            for j in self._candidates(i, role):
                if j == i:
                    continue
                tried += 1
                if tried > _PAIR_BUDGET or not any(
                        _contradict(x, y) for x in self.conjuncts[i] for y in self.conjuncts[j]):
                    out.add(role)
                    break
        return out


# ---------------------------------------------------------------- tiers: overlaps and gaps
#
# Tiers are EXCLUSIVE rules that differ only in a range on one field (the silver and gold
# first_payment tiers of rules/): their other conditions are the same.  Like the overlap
# and gap checks of decision tables (Drools, IBM ODM), the ranges are swept in order:
# two ranges that intersect pay twice when the tiers have the same priority (EXCLUSIVE
# only suppresses strictly lower priorities), and a hole between two ranges pays no
# tier.  Rules are grouped by field and other conditions first, so the check is linear
# in the number of rules (plus a sort per group), never a comparison of all pairs.


@dataclass(frozen=True)
class Bound:
    """One end of a tier's range: the value as ordered (``_order_key``), whether the
    range includes it, and the literal as written."""

    key: int | Decimal
    inclusive: bool
    literal: Value


@dataclass(frozen=True)
class Tier:
    rule: Rule
    low: Bound | None  # None: unbounded
    high: Bound | None

    def range_text(self) -> str:
        """``[₹5,000, ₹10,000)``, ``[₹10,000, ∞)``."""
        low = "(-∞" if self.low is None else (
            f"{'[' if self.low.inclusive else '('}{_bound_text(self.low.literal)}")
        high = "∞)" if self.high is None else (
            f"{_bound_text(self.high.literal)}{']' if self.high.inclusive else ')'}")
        return f"{low}, {high}"


@dataclass(frozen=True)
class TierFinding:
    """A gap or an overlap between two tiers of a family (``lower`` starts first)."""

    kind: str  # "gap" | "overlap"
    lower: Tier
    upper: Tier
    start: Bound
    end: Bound | None  # None: unbounded
    pays_twice: bool = False  # an overlap of equal priorities paying a shared beneficiary

    def range_text(self) -> str:
        """``[₹5,000, ₹10,000)``: the values that fall into the gap or the overlap."""
        if self.kind == "gap":  # between the lower tier's end and the upper one's start
            left = "(" if self.start.inclusive else "["
            right = "" if self.end is None else (")" if self.end.inclusive else "]")
        else:
            left = "[" if self.start.inclusive else "("
            right = "" if self.end is None else ("]" if self.end.inclusive else ")")
        end = "∞)" if self.end is None else f"{_bound_text(self.end.literal)}{right}"
        return f"{left}{_bound_text(self.start.literal)}, {end}"


@dataclass(frozen=True)
class TierFamily:
    path: str
    tiers: tuple[Tier, ...]  # by the start of their range
    findings: tuple[TierFinding, ...]


def _bound_text(value: Value) -> str:
    if isinstance(value, Money):
        return format_money(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _unit(value: Value) -> str | None:
    """What a range is measured in: values of different units never form one family."""
    if isinstance(value, Money):
        return f"money:{value.currency}"
    if isinstance(value, date):
        return "date"
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return "number"
    return None


def _is_range(c: Condition) -> bool:
    return (isinstance(c, Compare) and c.op in _ORDERING | {"="}
            and _unit(c.value) is not None and _order_key(c.value) is not None)


def _range(conds: list[Compare]) -> tuple[Bound | None, Bound | None]:
    """The tightest range the comparisons of one field and unit allow."""
    low: Bound | None = None
    high: Bound | None = None
    for c in conds:
        key = _order_key(c.value)
        assert key is not None
        if c.op in {">", ">=", "="}:
            b = Bound(key, c.op != ">", c.value)
            if low is None or (b.key, not b.inclusive) > (low.key, not low.inclusive):
                low = b
        if c.op in {"<", "<=", "="}:
            b = Bound(key, c.op != "<", c.value)
            if high is None or (b.key, b.inclusive) < (high.key, high.inclusive):
                high = b
    return low, high


def _discrete(unit: str) -> bool:
    """Money is whole minor units and dates whole days: ``< 10,000`` meets ``>= 10,000``,
    and so does ``<= 9,999`` in a unit of one."""
    return unit != "number"


def _compare_ends(high: Bound, low: Bound, discrete: bool) -> int:
    """-1: a gap between a range ending at ``high`` and one starting at ``low``; 0: they
    meet; 1: they overlap."""
    hi_key = high.key if high.inclusive or not discrete else high.key - 1
    lo_key = low.key if low.inclusive or not discrete else low.key + 1
    if discrete:
        return -1 if hi_key + 1 < lo_key else (1 if hi_key >= lo_key else 0)
    if hi_key < lo_key:
        return -1
    if hi_key > lo_key:
        return 1
    return 1 if high.inclusive and low.inclusive else (0 if high.inclusive or low.inclusive
                                                       else -1)


def _start_key(t: Tier) -> tuple[int, int | Decimal, int]:
    if t.low is None:
        return (0, 0, 0)
    return (1, t.low.key, 0 if t.low.inclusive else 1)


def _end_after(a: Bound | None, b: Bound | None) -> bool:
    """True when a range ending at ``a`` reaches further than one ending at ``b``."""
    if a is None or b is None:
        return a is None and b is not None
    return (a.key, a.inclusive) > (b.key, b.inclusive)


def _sweep(path: str, unit: str, tiers: list[Tier]) -> TierFamily:
    tiers.sort(key=_start_key)
    findings: list[TierFinding] = []
    reach = tiers[0]  # the tier whose range reaches furthest so far
    for t in tiers[1:]:
        if t.low is None or reach.high is None:
            order = 1
        else:
            order = _compare_ends(reach.high, t.low, _discrete(unit))
        if order < 0:
            assert reach.high is not None and t.low is not None
            findings.append(TierFinding("gap", reach, t, reach.high, t.low))
        elif order > 0:
            start = t.low if t.low is not None else reach.low
            end = reach.high if _end_after(t.high, reach.high) else t.high
            shared = {a.to for a in reach.rule.actions} & {a.to for a in t.rule.actions}
            twice = reach.rule.priority == t.rule.priority and bool(shared)
            if start is not None:
                findings.append(TierFinding("overlap", reach, t, start, end, twice))
        if _end_after(t.high, reach.high):
            reach = t
    return TierFamily(path, tuple(tiers), tuple(findings))


def tier_families(program: Program) -> list[TierFamily]:
    """EXCLUSIVE rules grouped into tier families, each with its gaps and overlaps."""
    groups: dict[tuple[str, str, frozenset[Condition]], list[Tier]] = defaultdict(list)
    for rule in program.rules:
        if not rule.exclusive:
            continue
        conjuncts = _conjuncts(rule.condition)
        by_field: dict[tuple[str, str], list[Compare]] = defaultdict(list)
        for c in conjuncts:
            if _is_range(c):
                assert isinstance(c, Compare)
                unit = _unit(c.value)
                assert unit is not None
                by_field[(c.path, unit)].append(c)
        for (path, unit), conds in by_field.items():
            rest = frozenset(c for c in conjuncts
                             if not (_is_range(c) and isinstance(c, Compare) and c.path == path))
            low, high = _range(conds)
            groups[(path, unit, rest)].append(Tier(rule, low, high))
    return [_sweep(path, unit, tiers)
            for (path, unit, _rest), tiers in groups.items() if len(tiers) > 1]


def _tier_warnings(program: Program) -> list[Diagnostic]:
    out = []
    for family in tier_families(program):
        for f in family.findings:
            a, b = f.lower.rule, f.upper.rule
            if f.kind == "gap":
                out.append(_diag(
                    "warning",
                    f"EXCLUSIVE tiers {a.id} and {b.id} leave a gap in {family.path}: "
                    f"{f.range_text()} pays neither (make {a.id}'s range end where "
                    f"{b.id}'s starts: < and >= on the same value)", b.source))
            elif f.pays_twice:
                who = " and ".join(sorted({x.to for x in a.actions} & {x.to for x in b.actions}))
                out.append(_diag(
                    "warning",
                    f"EXCLUSIVE tiers {a.id} and {b.id} overlap in {family.path}: "
                    f"{f.range_text()} matches both, and with equal priority {b.priority} "
                    f"both pay the {who} (make the ranges meet: < and >= on the same value, "
                    "or give them different priorities)", b.source))
    return out


__all__ = [
    "Bound",
    "Tier",
    "TierFamily",
    "TierFinding",
    "could_both_hold",
    "double_pays",
    "edit_distance",
    "tier_families",
    "validate",
]
