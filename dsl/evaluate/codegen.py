"""The generated fast path: a whole program as one Python function, compiled once.

Evaluating without a trace is what settlement does for every record, so the
program's rules become straight-line Python: each field read once, the common
comparisons inline, everything else a call of the interpreter's closure for
that sub-condition (``Fallbacks``), so that coercions, null handling and errors
stay the closures' own.  The function returns an ``Evaluation`` holding one
``SparseOutcome`` (or None) per rule; ``CompiledProgram.source`` is its text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from typing import Any, Protocol

from dsl.evaluate.context import MISSING, ActionFn, CondFn, Context, TestFn, getter
from dsl.evaluate.results import Evaluation, Reward, SparseOutcome
from dsl.model import (
    And,
    Compare,
    Condition,
    FieldRef,
    FixedReward,
    Not,
    Or,
    PercentReward,
    Rule,
    Within,
)
from dsl.money import MAX_MINOR_UNITS, Money


class Fallbacks(Protocol):
    """The closure compiler of one rule (``interpreter._Compiler``).

    Described here rather than imported: the interpreter imports this module to
    build its fast path, and this module must not import it back.
    """

    @property
    def default_currency(self) -> str | None: ...

    @property
    def date_paths(self) -> frozenset[str]: ...

    def condition(self, cond: Condition) -> CondFn: ...

    def field_test(self, cond: Compare) -> TestFn: ...

    def literal_test(self, cond: Compare) -> TestFn: ...


class CompiledRuleLike(Protocol):
    """One rule with its closures (``interpreter.CompiledRule``)."""

    @property
    def rule(self) -> Rule: ...

    @property
    def actions(self) -> Sequence[ActionFn]: ...

    @property
    def compiler(self) -> Fallbacks: ...


# Operators written as the same Python operator on two values of one exact type.
_INLINE_OPS = frozenset({"=", "!=", ">", ">=", "<", "<="})

_FAST_TYPES: dict[type, str] = {str: "str", bool: "bool", int: "int"}

# Groups nested deeper than this are the closure's: Python's parser refuses deeply
# nested expressions (200 parentheses; "too complex" well before that for and/or).
# dsl.bounds.MAX_NESTING bounds the closures' recursion.
INLINE_DEPTH = 24

# WITHIN n DAYS OF|AFTER|BEFORE: path's date - other's date lies in n * [low, high].
_WINDOW: dict[str, tuple[int, int]] = {"of": (-1, 1), "after": (0, 1), "before": (-1, 0)}


class _Codegen:
    """Python source for one program's evaluation, compiled once.

    Each comparison becomes an inline expression for the common case (the
    value has exactly the literal's type: a str for a string, an int for a
    number or, with the default currency, for money) and falls back to the
    comparison's closure for everything else, so coercions, null handling and
    errors (with the rule and the path) are the closures' own.  Fields are read
    once per context, each dotted prefix once.
    """

    def __init__(self) -> None:
        self.ns: dict[str, Any] = {
            "_M": MISSING, "_dict": dict, "_within": _within, "_Reward": Reward,
            "_Evaluation": Evaluation, "_Sparse": SparseOutcome, "_new": tuple.__new__,
        }
        self.vars: dict[str, str] = {}
        self.children: dict[str, list[str]] = {}
        self.type_uses: dict[tuple[str, str], int] = {}

    def is_type(self, var: str, kind: str) -> str:
        """A placeholder for ``type(var) is kind``, resolved by ``resolve_types``."""
        self.type_uses[(var, kind)] = self.type_uses.get((var, kind), 0) + 1
        return f"@{var}:{kind}@"

    def resolve_types(self, code: str) -> tuple[str, list[str]]:
        """Type tests made twice or more are computed once per context, after the loads."""
        flags = {key: f"t_{key[0]}_{key[1]}" for key, n in self.type_uses.items() if n >= 2}

        def sub(m: re.Match[str]) -> str:
            key = (m.group(1), m.group(2))
            return flags.get(key) or f"type({key[0]}) is {key[1]}"

        lines = [f"    {flag} = type({var}) is {kind}" for (var, kind), flag in flags.items()]
        return re.sub(r"@(\w+):(\w+)@", sub, code), lines

    def const(self, value: Any, prefix: str = "_k") -> str:
        name = f"{prefix}{len(self.ns)}"
        self.ns[name] = value
        return name

    def var(self, path: str) -> str:
        """A local holding the value at ``path`` (or _M), loaded at the top."""
        if path in self.vars:
            return self.vars[path]
        keys = path.split(".")
        parent = "" if len(keys) == 1 else ".".join(keys[:-1])
        if parent:
            self.var(parent)
        name = f"v{len(self.vars)}"
        self.vars[path] = name
        self.children.setdefault(parent, []).append(path)
        return name

    def load_lines(self, parent: str = "", indent: str = "    ") -> list[str]:
        """Read each field once: dicts by ``.get``, anything else by the closure getter."""
        lines: list[str] = []
        pvar = self.vars.get(parent, "ctx")
        for path in self.children.get(parent, []):
            key = path.rsplit(".", 1)[-1]
            lines.append(f"{indent}{self.vars[path]} = {pvar}.get({key!r}, _M)")
        fast = lines
        slow = [f"{indent}    {self.vars[p]} = {self.const(getter(p), '_get')}(ctx)"
                for p in self._descendants(parent)]
        nested: list[str] = []
        for path in self.children.get(parent, []):
            if path in self.children:
                nested += self.load_lines(path, indent + "    ")
        return ([f"{indent}if type({pvar}) is _dict:"]
                + ["    " + line for line in fast] + nested
                + [f"{indent}else:"] + slow)

    def _descendants(self, parent: str) -> list[str]:
        out: list[str] = []
        for path in self.children.get(parent, []):
            out.append(path)
            out += self._descendants(path)
        return out

    def cond(self, c: Fallbacks, cond: Condition, depth: int = 0) -> str:
        if isinstance(cond, (And, Or, Not)) and depth >= INLINE_DEPTH:
            return f"{self.const(c.condition(cond), '_cond')}(ctx, None, 0)"
        if isinstance(cond, (And, Or)):
            joiner = " and " if isinstance(cond, And) else " or "
            return "(" + joiner.join(self.cond(c, item, depth + 1) for item in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(not {self.cond(c, cond.item, depth + 1)})"
        if isinstance(cond, Compare):
            fast = self.compare(c, cond)
            if fast is not None:
                return fast
        if isinstance(cond, Within):
            a, b = self.var(cond.path), self.var(cond.other)
            slow = self.const(c.condition(cond), "_cond")
            low, high = (cond.days * k for k in _WINDOW[cond.direction])
            return f"_within({a}, {b}, {low}, {high}, {slow}, ctx)"
        # Anything else: the closure itself (exact semantics, no trace).
        return f"{self.const(c.condition(cond), '_cond')}(ctx, None, 0)"

    def compare(self, c: Fallbacks, cond: Compare) -> str | None:
        op, value = cond.op, cond.value
        if op not in _INLINE_OPS and op not in ("IN", "NOT IN"):
            return None
        pyop = "==" if op == "=" else op
        v = self.var(cond.path)
        if isinstance(value, FieldRef):
            # Orderings and fields read as dates compare as dates: the closure's job.
            if op not in ("=", "!=") or {cond.path, value.path} & c.date_paths:
                return None
            w = self.var(value.path)
            test = self.const(c.field_test(cond), "_test")
            fast = f"{self.is_type(v, 'str')} and {self.is_type(w, 'str')}"
            return (f"({v} {pyop} {w} if {fast} else "
                    f"(False if {v} is _M or {v} is None else {test}({v}, ctx)[0]))")
        if value is None:
            return None
        test = self.const(c.literal_test(cond), "_test")
        if op in ("IN", "NOT IN"):
            if not isinstance(value, tuple):
                return None
            strings = [m for m in value if type(m) is str]
            if not strings or len(strings) != len(value):
                return None
            members = "{" + ", ".join(repr(m) for m in sorted(set(strings))) + "}"
            neg = "" if op == "IN" else "not "
            return (f"({neg}({v} in {members}) if {self.is_type(v, 'str')} else "
                    f"(False if {v} is _M or {v} is None else {test}({v}, ctx)[0]))")
        key: str | int | bool
        if isinstance(value, Money):
            if c.default_currency != value.currency:
                return None
            kind, key = "int", value.amount
        elif isinstance(value, (str, int, bool)) and type(value) in _FAST_TYPES:
            kind, key = _FAST_TYPES[type(value)], value
        else:
            return None
        k = repr(key)
        return (f"({v} {pyop} {k} if {self.is_type(v, kind)} else "
                f"(False if {v} is _M or {v} is None else {test}({v}, ctx)[0]))")


def _within(a: Any, b: Any, low: int, high: int, slow: CondFn, ctx: Context) -> bool:
    """WITHIN for two ISO dates (``YYYY-MM-DD``, which no time zone moves): ``a - b`` in
    days within [low, high]; anything else (a timestamp, missing, null, a bad date)
    takes the closure."""
    if (type(a) is str and type(b) is str and len(a) == 10 and len(b) == 10
            and a[4] == a[7] == b[4] == b[7] == "-"):
        try:
            return low <= (date.fromisoformat(a) - date.fromisoformat(b)).days <= high
        except ValueError:
            pass
    return slow(ctx, None, 0)


def _percent_fast(
    rule_id: str, action: PercentReward, currency: str, slow: ActionFn
) -> Callable[[Any, Context], Reward | str]:
    """A percentage of a non-negative int amount in the default currency, in integers.

    ``p`` percent of ``x`` minor units rounded down is ``x * n // d`` for
    ``p / 100 = n / d`` exactly, which is what the closure's Decimal arithmetic
    gives; other values, and results of nothing, go to the closure.
    """
    n, d = (action.percent / Decimal(100)).as_integer_ratio()
    cap = action.cap.amount if action.cap is not None else None
    to = action.to

    def run(x: Any, ctx: Context) -> Reward | str:
        if type(x) is not int or x < 0 or x > MAX_MINOR_UNITS:
            return slow(ctx)
        amount: int = x * n // d
        capped = False
        if cap is not None and amount > cap:
            amount, capped = cap, True
        if amount <= 0:
            return slow(ctx)
        return Reward(rule_id, to, Money(amount, currency), capped)

    return run


def generate(rules: Sequence[CompiledRuleLike]) -> tuple[str, Callable[[Context], Evaluation]]:
    """The rules (in evaluation order) as one function ``ctx -> Evaluation``, and its source.

    Each rule's ``Recorded`` is as cheap as it can be, since this runs for every
    record settled: a rule that pays only fixed amounts and that no EXCLUSIVE
    rule can suppress shares a ``SparseOutcome`` built here, once; another rule
    that matched records its list of rewards when nothing else happened, and
    otherwise builds a ``SparseOutcome`` with ``tuple.__new__`` (about half the
    cost of calling the NamedTuple class, which runs a Python-level ``__new__``).
    """
    g = _Codegen()
    body: list[str] = []
    any_exclusive = any(cr.rule.exclusive for cr in rules)
    claimed_at: list[int] = []  # priorities of the EXCLUSIVE rules evaluated so far
    for i, cr in enumerate(rules):
        c = cr.compiler
        rule = cr.rule
        prio = rule.priority
        # Only an EXCLUSIVE rule of strictly higher priority (evaluated earlier) suppresses.
        suppressible = any(p > prio for p in claimed_at)
        matched = g.cond(c, rule.condition)
        rid = g.const(rule.id)
        body += [f"    # rule {rule.id}", f"    m = {matched}"]
        if rule.reverse_if is not None:
            body.append(f"    r = {g.cond(c, rule.reverse_if)}")
        body.append("    if m:")
        fixed = [a for a in rule.actions if isinstance(a, FixedReward)]
        if len(fixed) == len(rule.actions) and not suppressible:
            rewards = tuple(Reward(rule.id, a.to, a.amount, False) for a in fixed)
            kept = g.const(rewards, "_rws")
            body.append(f"        paid += {kept}")
            record = g.const(SparseOutcome(True, rewards, False, (), None), "_o")
            if rule.reverse_if is not None:
                reversed_ = g.const(SparseOutcome(True, rewards, True, (), None), "_o")
                record = f"{reversed_} if r else {record}"
        else:
            kept = "kept"
            body += ["        kept = []"]
            if suppressible:
                body += ["        supp = ()", "        by = None"]  # suppression is rare
            for j, action in enumerate(rule.actions):
                if isinstance(action, FixedReward):
                    reward = Reward(rule.id, action.to, action.amount, False)
                    body.append(f"        x = {g.const(reward, '_rw')}")
                    pad = "        "
                else:
                    if c.default_currency is not None and (
                        action.cap is None or action.cap.currency == c.default_currency
                    ):
                        fast = _percent_fast(rule.id, action, c.default_currency, cr.actions[j])
                        call = f"{g.const(fast, '_pct')}({g.var(action.of)}, ctx)"
                    else:
                        call = f"{g.const(cr.actions[j], '_act')}(ctx)"
                    body += [f"        x = {call}", "        if x.__class__ is _Reward:"]
                    pad = "            "
                if suppressible:
                    body += [
                        f"{pad}claim = claims.get({action.to!r})",
                        f"{pad}if claim is not None and claim[0] > {prio}:",
                        f"{pad}    supp += (x,)",
                        f"{pad}    by = claim[1]",
                        f"{pad}else:",
                        f"{pad}    kept.append(x)",
                    ]
                else:
                    body.append(f"{pad}kept.append(x)")
            body.append("        paid += kept")
            # The rewards list alone when nothing was suppressed and REVERSE IF does not hold.
            plain = (["not r"] if rule.reverse_if is not None else []) + (
                ["by is None"] if suppressible else [])
            record = "kept"
            if plain:
                r = "r" if rule.reverse_if is not None else "False"
                supp, by = ("supp", "by") if suppressible else ("()", "None")
                full = f"_new(_Sparse, (True, kept, {r}, {supp}, {by}))"
                record = f"kept if {' and '.join(plain)} else {full}"
        if rule.exclusive:
            claimed_at.append(prio)
            body += [f"        for x in {kept}:",
                     f"            claims.setdefault(x.role, ({prio}, {rid}))"]
        body.append(f"        o{i} = {record}")
        if rule.reverse_if is not None:
            only_reverse = g.const(SparseOutcome(False, (), True, (), None), "_o")
            body += ["    elif r:", f"        o{i} = {only_reverse}"]
        body += ["    else:", f"        o{i} = None"]
    ids = g.const(tuple(cr.rule.id for cr in rules))
    outs = "".join(f"o{i}, " for i in range(len(rules)))
    lines = ["def _evaluate(ctx):"]
    if g.vars:
        lines += g.load_lines()
    code, type_lines = g.resolve_types("\n".join(body))
    lines += type_lines
    lines += ["    paid = []"] + (["    claims = {}"] if any_exclusive else [])
    lines += [code, f"    return _Evaluation(paid, None, ({outs}), {ids})"]
    source = "\n".join(lines) + "\n"
    exec(compile(source, "<referral rules>", "exec"), g.ns)  # noqa: S102 - our own source
    return source, g.ns["_evaluate"]


__all__ = ["CompiledRuleLike", "Fallbacks", "generate"]
