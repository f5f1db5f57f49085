"""Evaluating a resolved program on one referral context.

``compile_program`` turns each rule's condition tree into nested closures once;
evaluating a record is then plain function calls, no walk over the model.

Semantics that settlement relies on:
- a condition on a missing field (or on ``null``, except ``IS [NOT] NULL``) is
  false, and the trace says why;
- a value of the wrong type (a string where money is compared, a float, an
  unparsable date) raises ``EvaluationError`` naming the rule, the path, what was
  expected and what was found: the record is bad, and must not silently earn
  nothing;
- percentage rewards are exact: Decimal arithmetic, rounded down to whole minor
  units, then cut to the ``UP TO`` cap;
- an EXCLUSIVE rule that pays a beneficiary suppresses the rewards of strictly
  lower-priority rules to that beneficiary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any

from dsl.errors import EvaluationError, MoneyError
from dsl.model import (
    And,
    Compare,
    Condition,
    FieldRef,
    FixedReward,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Role,
    Rule,
    Within,
)
from dsl.money import MAX_MINOR_UNITS, Money, format_money

_MISSING = object()
Trace = list[dict[str, Any]] | None
CondFn = Callable[[Mapping[str, Any], Trace, int], bool]


def nest_context(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """Dotted paths and values -> the nested context rules read (``a.b`` is ``ctx["a"]["b"]``).

    A path that has a value and also fields under it is an EvaluationError.
    """
    ctx: dict[str, Any] = {}
    for path, value in pairs:
        *parents, leaf = path.split(".")
        node = ctx
        for i, key in enumerate(parents):
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                parent = ".".join(parents[: i + 1])
                raise EvaluationError(f"{path} conflicts with {parent}, which has a value")
        if isinstance(node.get(leaf), dict):
            raise EvaluationError(f"{path} has a value and also fields under it")
        node[leaf] = value
    return ctx


def iso_date(value: Any) -> date | None:
    """A date from a date, a datetime or an ISO text (date or date-time); else None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            try:
                return datetime.fromisoformat(value).date()
            except ValueError:
                return None
    return None


@dataclass(frozen=True)
class Reward:
    rule_id: str
    role: Role
    amount: Money
    capped: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "role": self.role,
            "amount": self.amount.amount,
            "currency": self.amount.currency,
            "capped": self.capped,
        }


@dataclass
class RuleOutcome:
    rule_id: str
    matched: bool
    rewards: list[Reward] = field(default_factory=list)
    reverse: bool = False
    suppressed: list[Reward] = field(default_factory=list)
    suppressed_by: str | None = None
    trace: list[dict[str, Any]] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "matched": self.matched,
            "rewards": [r.to_json() for r in self.rewards],
            "reverse": self.reverse,
            "suppressed": [r.to_json() for r in self.suppressed],
            "suppressed_by": self.suppressed_by,
            "trace": self.trace,
        }


class Evaluation:
    """The rewards a context earns, and one outcome per rule (in evaluation order).

    The generated fast path records only the rules that matched or whose
    REVERSE IF holds; ``outcomes`` fills in the others (not matched) when
    first read.  ``active_outcomes`` skips them: all that settlement needs.
    """

    __slots__ = ("rewards", "_outcomes", "_sparse", "_rule_ids")

    def __init__(
        self,
        rewards: list[Reward],
        outcomes: list[RuleOutcome] | None = None,
        sparse: Sequence[RuleOutcome | tuple[Any, ...] | None] | None = None,
        rule_ids: Sequence[str] = (),
    ) -> None:
        self.rewards = rewards
        self._outcomes = outcomes
        self._sparse = sparse
        self._rule_ids = rule_ids

    def _made(self) -> list[RuleOutcome | None]:
        """The sparse outcomes as RuleOutcome objects (the generated code leaves tuples)."""
        sparse = self._sparse or ()
        if sparse and not isinstance(sparse, list):
            sparse = self._sparse = [
                None if o is None else o if isinstance(o, RuleOutcome)
                else RuleOutcome(rule_id, o[0], o[1], o[2], o[3] or [], o[4])
                for rule_id, o in zip(self._rule_ids, sparse, strict=True)
            ]
        return sparse  # type: ignore[return-value]

    @property
    def outcomes(self) -> list[RuleOutcome]:
        if self._outcomes is None:
            self._outcomes = [
                o if o is not None else RuleOutcome(rule_id, False)
                for rule_id, o in zip(self._rule_ids, self._made(), strict=True)
            ]
        return self._outcomes

    @property
    def active_outcomes(self) -> list[RuleOutcome]:
        """Outcomes of rules that matched or whose REVERSE IF holds, in evaluation order."""
        if self._outcomes is None:
            return [o for o in self._made() if o is not None]
        return [o for o in self._outcomes if o.matched or o.reverse]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Evaluation):
            return NotImplemented
        return (self.rewards, self.outcomes) == (other.rewards, other.outcomes)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Evaluation(rewards={self.rewards!r}, outcomes={self.outcomes!r})"

    def to_json(self) -> dict[str, Any]:
        return {
            "rewards": [r.to_json() for r in self.rewards],
            "outcomes": [o.to_json() for o in self.outcomes],
        }


def jsonable(value: Any) -> Any:
    """A value as it is shown in traces (JSON-serialisable, money as text)."""
    if isinstance(value, Money):
        return format_money(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, FieldRef):
        return {"field": value.path}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is _MISSING:
        return None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, float):
        return f"the float {value!r} (floats are not allowed; use an integer or a decimal)"
    if isinstance(value, Decimal):
        return f"the decimal {value}"
    if isinstance(value, Mapping):
        return f"an object {jsonable(value)!r}"
    return f"{type(value).__name__} {jsonable(value)!r}"


class _Compiler:
    """Builds the closures of one rule.  Errors name the rule."""

    def __init__(self, rule_id: str, default_currency: str | None) -> None:
        self.rule_id = rule_id
        self.default_currency = default_currency

    def fail(self, path: str, expected: str, actual: Any) -> EvaluationError:
        return EvaluationError(
            f"rule {self.rule_id}: {path}: expected {expected}, found {_describe(actual)}"
        )

    # ---- reading the context
    @staticmethod
    def getter(path: str) -> Callable[[Mapping[str, Any]], Any]:
        keys = tuple(path.split("."))

        def get(ctx: Mapping[str, Any]) -> Any:
            cur: Any = ctx
            for k in keys:
                if not isinstance(cur, Mapping) or k not in cur:
                    return _MISSING
                cur = cur[k]
            return cur

        return get

    # ---- coercions: context value -> the kind of the literal
    def to_money(self, path: str, v: Any, currency: str | None) -> Money:
        if isinstance(v, Money):
            m = v
        elif isinstance(v, Mapping) and set(v) == {"amount", "currency"}:
            amount, cur = v["amount"], v["currency"]
            if isinstance(amount, bool) or not isinstance(amount, int) or not isinstance(cur, str):
                raise self.fail(path, "money as {amount: int minor units, currency}", v)
            try:
                m = Money(amount, cur.upper())
            except MoneyError as e:
                raise self.fail(path, f"money ({e.message})", v) from None
        elif isinstance(v, int) and not isinstance(v, bool):
            if self.default_currency is None:
                raise self.fail(path, "money (a bare integer needs a default currency)", v)
            m = Money(v, self.default_currency)
        else:
            raise self.fail(path, "a money amount", v)
        if currency is not None and m.currency != currency:
            raise self.fail(path, f"an amount in {currency}", v)
        return m

    def to_number(self, path: str, v: Any) -> int | Decimal:
        if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
            return v
        raise self.fail(path, "a number", v)

    def to_date(self, path: str, v: Any) -> date:
        day = iso_date(v)
        if day is None:
            raise self.fail(path, "a date (ISO, like 2026-01-31)", v)
        return day

    def coercer(self, path: str, literal: Any) -> Callable[[Any], Any]:
        """A function bringing a context value to the literal's kind (or raising)."""
        if isinstance(literal, bool):
            def as_bool(v: Any) -> Any:
                if isinstance(v, bool):
                    return v
                raise self.fail(path, "a boolean", v)
            return as_bool
        if isinstance(literal, Money):
            return lambda v: self.to_money(path, v, literal.currency)
        if isinstance(literal, date):
            return lambda v: self.to_date(path, v)
        if isinstance(literal, (int, Decimal)):
            return lambda v: self.to_number(path, v)
        if isinstance(literal, str):
            def as_str(v: Any) -> Any:
                if isinstance(v, str):
                    return v
                raise self.fail(path, "a string", v)
            return as_str
        if isinstance(literal, tuple):
            def as_list(v: Any) -> Any:
                if isinstance(v, (list, tuple)):
                    return tuple(v)
                raise self.fail(path, "a list", v)
            return as_list
        return lambda v: v

    def field_pair(self, path: str, a: Any, other: str, b: Any) -> tuple[Any, Any]:
        """Two context values compared with each other: same kind, or both dates/money."""
        if isinstance(a, bool) or isinstance(b, bool):
            if isinstance(a, bool) and isinstance(b, bool):
                return a, b
        elif isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)):
            return a, b
        elif isinstance(a, str) and isinstance(b, str):
            return a, b
        elif isinstance(a, (Money, Mapping)) or isinstance(b, (Money, Mapping)):
            ma = self.to_money(path, a, None)
            return ma.amount, self.to_money(other, b, ma.currency).amount
        elif isinstance(a, date) or isinstance(b, date):
            return self.to_date(path, a), self.to_date(other, b)
        if isinstance(a, float):
            raise self.fail(path, "a value comparable with " + other, a)
        raise self.fail(other, f"a value comparable with {path} ({_describe(a)})", b)

    # ---- conditions
    def condition(self, cond: Condition) -> CondFn:
        if isinstance(cond, Compare):
            return self.compare(cond)
        if isinstance(cond, Within):
            return self.within(cond)
        if isinstance(cond, (And, Or)):
            return self.connective(cond)
        if isinstance(cond, Not):
            return self.negation(cond)
        if isinstance(cond, PhraseRef):
            raise EvaluationError(
                f"rule {self.rule_id}: phrase {cond.phrase!r} was not resolved "
                "(load the program with dsl.program.load_program)"
            )
        raise TypeError(f"unknown condition {cond!r}")

    def connective(self, cond: And | Or) -> CondFn:
        parts = [self.condition(c) for c in cond.items]
        kind = "and" if isinstance(cond, And) else "or"
        stop_on = kind == "or"  # OR stops at the first true, AND at the first false
        skipped = [_static(c) for c in cond.items]

        def run(ctx: Mapping[str, Any], trace: Trace, depth: int) -> bool:
            if trace is None:
                for p in parts:
                    if p(ctx, None, 0) is stop_on:
                        return stop_on
                return not stop_on
            entry: dict[str, Any] = {"kind": kind, "depth": depth, "result": None}
            trace.append(entry)
            result = not stop_on
            for i, p in enumerate(parts):
                if p(ctx, trace, depth + 1) is stop_on:
                    result = stop_on
                    for rest in skipped[i + 1:]:
                        trace.append({**rest, "depth": depth + 1, "result": None,
                                      "reason": "not evaluated"})
                    break
            entry["result"] = result
            return result

        return run

    def negation(self, cond: Not) -> CondFn:
        inner = self.condition(cond.item)

        def run(ctx: Mapping[str, Any], trace: Trace, depth: int) -> bool:
            if trace is None:
                return not inner(ctx, None, 0)
            entry: dict[str, Any] = {"kind": "not", "depth": depth, "result": None}
            trace.append(entry)
            entry["result"] = result = not inner(ctx, trace, depth + 1)
            return result

        return run

    def within(self, cond: Within) -> CondFn:
        get_a, get_b = self.getter(cond.path), self.getter(cond.other)
        days, path, other = cond.days, cond.path, cond.other

        def run(ctx: Mapping[str, Any], trace: Trace, depth: int) -> bool:
            a, b = get_a(ctx), get_b(ctx)
            reason = _absent(path, a) or _absent(other, b)
            if reason:
                result = False
            else:
                result = abs((self.to_date(path, a) - self.to_date(other, b)).days) <= days
            if trace is not None:
                trace.append(_entry("within", depth, path, f"WITHIN {days} DAYS OF", other,
                                    a, result, reason, other_actual=b))
            return result

        return run

    def compare(self, cond: Compare) -> CondFn:
        path, op, value = cond.path, cond.op, cond.value
        get = self.getter(path)
        test = self.field_test(cond) if isinstance(value, FieldRef) else self.literal_test(cond)
        null_ok = op in {"IS", "IS NOT"}
        get_other = self.getter(value.path) if isinstance(value, FieldRef) else None

        def run(ctx: Mapping[str, Any], trace: Trace, depth: int) -> bool:
            actual = get(ctx)
            if actual is _MISSING:
                result, reason = False, f"{path} is missing"
            elif actual is None and not null_ok:
                result, reason = False, f"{path} is null"
            else:
                result, reason = test(actual, ctx)
            if trace is not None:
                extra = {} if get_other is None else {"other_actual": get_other(ctx)}
                trace.append(_entry("compare", depth, path, op, value, actual, result, reason,
                                    **extra))
            return result

        return run

    def field_test(self, cond: Compare) -> Callable[[Any, Mapping[str, Any]], tuple[bool, str]]:
        assert isinstance(cond.value, FieldRef)
        other = cond.value.path
        get_other = self.getter(other)
        op, path = cond.op, cond.path
        compare = _ORDER_OPS.get(op)

        def test(actual: Any, ctx: Mapping[str, Any]) -> tuple[bool, str]:
            b = get_other(ctx)
            if b is _MISSING or b is None:
                return False, f"{other} is {'missing' if b is _MISSING else 'null'}"
            if op in {"IN", "NOT IN"}:
                if not isinstance(b, (list, tuple)):
                    raise self.fail(other, "a list", b)
                found = actual in b
                return (found if op == "IN" else not found), ""
            if op == "CONTAINS":
                return self.contains(path, actual, b), ""
            if op in {"IS", "IS NOT"}:
                same = actual == b
                return (same if op == "IS" else not same), ""
            x, y = self.field_pair(path, actual, other, b)
            if compare is None:
                raise EvaluationError(f"rule {self.rule_id}: unknown operator {op}")
            return compare(x, y), ""

        return test

    def contains(self, path: str, actual: Any, needle: Any) -> bool:
        if isinstance(actual, str):
            if not isinstance(needle, str):
                raise self.fail(path, "a list (a string CONTAINS only strings)", actual)
            return needle in actual
        if isinstance(actual, (list, tuple)):
            coerce = self.coercer(path, needle)
            for item in actual:
                if item is not None and coerce(item) == needle:
                    return True
            return False
        raise self.fail(path, "a list or a string", actual)

    def literal_test(self, cond: Compare) -> Callable[[Any, Mapping[str, Any]], tuple[bool, str]]:
        op, path, value = cond.op, cond.path, cond.value
        if op in {"IS", "IS NOT"}:
            positive = op == "IS"
            if value is None:
                return lambda a, _c: ((a is None) == positive, "")
            coerce_is = self.coercer(path, value)

            def test_is(a: Any, _c: Mapping[str, Any]) -> tuple[bool, str]:
                if a is None:
                    return (not positive), ""
                return (coerce_is(a) == value) == positive, ""

            return test_is
        if op in {"IN", "NOT IN"}:
            assert isinstance(value, tuple)
            positive = op == "IN"
            sample = next((v for v in value if v is not None), None)
            coerce_in = self.coercer(path, sample)
            members = tuple(_key(v) for v in value)
            return lambda a, _c: ((_key(coerce_in(a)) in members) == positive, "")
        if op == "CONTAINS":
            return lambda a, _c: (self.contains(path, a, value), "")
        if isinstance(value, Money):
            key = value.amount

            def coerce_m(a: Any) -> int:
                return self.to_money(path, a, value.currency).amount
            coerce: Callable[[Any], Any] = coerce_m
        else:
            key, coerce = _key(value), self.coercer(path, value)
        compare = _ORDER_OPS[op]
        if value is None:  # "= null" / "!= null" (the present, non-null case)
            return lambda a, _c: (op == "!=", "")
        return lambda a, _c: (compare(_key(coerce(a)), key), "")

    # ---- actions
    def action(self, action: FixedReward | PercentReward) -> Callable[[Mapping[str, Any]], Any]:
        rule_id = self.rule_id
        if isinstance(action, FixedReward):
            reward = Reward(rule_id, action.to, action.amount, False)
            return lambda ctx: reward
        get = self.getter(action.of)
        share = action.percent / Decimal(100)
        cap, to, of = action.cap, action.to, action.of

        def percent(ctx: Mapping[str, Any]) -> Reward | str:
            base = get(ctx)
            if base is _MISSING or base is None:
                return f"{of} is {'missing' if base is _MISSING else 'null'}: no percentage reward"
            money = self.to_money(of, base, cap.currency if cap else None)
            if money.amount < 0:
                raise self.fail(of, "a non-negative amount", base)
            if money.amount > MAX_MINOR_UNITS:  # its share could not be stored
                raise self.fail(of, f"at most {MAX_MINOR_UNITS} minor units", base)
            amount = int((Decimal(money.amount) * share).to_integral_value(rounding=ROUND_DOWN))
            capped = cap is not None and amount > cap.amount
            if capped:
                amount = cap.amount  # type: ignore[union-attr]
            if amount <= 0:
                return f"{action.percent}% of {format_money(money)} rounds down to nothing"
            return Reward(rule_id, to, Money(amount, money.currency), capped)

        return percent


def _key(v: Any) -> Any:
    if isinstance(v, Money):
        return v.amount
    return v


_ORDER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _absent(path: str, v: Any) -> str:
    if v is _MISSING:
        return f"{path} is missing"
    if v is None:
        return f"{path} is null"
    return ""


def _entry(kind: str, depth: int, path: str, op: str, expected: Any, actual: Any,
           result: bool, reason: str, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "kind": kind,
        "depth": depth,
        "path": path,
        "op": op,
        "expected": jsonable(expected),
        "actual": jsonable(actual),
        "result": result,
    }
    if actual is _MISSING:
        entry["missing"] = True
    for k, v in extra.items():
        entry[k] = jsonable(v)
    if reason:
        entry["reason"] = reason
    return entry


def _static(cond: Condition) -> dict[str, Any]:
    """What the trace shows for a condition that was not evaluated."""
    if isinstance(cond, Compare):
        return {"kind": "compare", "path": cond.path, "op": cond.op,
                "expected": jsonable(cond.value)}
    if isinstance(cond, Within):
        return {"kind": "within", "path": cond.path, "op": f"WITHIN {cond.days} DAYS OF",
                "expected": cond.other}
    if isinstance(cond, And):
        return {"kind": "and"}
    if isinstance(cond, Or):
        return {"kind": "or"}
    return {"kind": "not"}


@dataclass
class CompiledRule:
    rule: Rule
    condition: CondFn
    reverse_if: CondFn | None
    actions: list[Callable[[Mapping[str, Any]], Any]]
    compiler: _Compiler | None = None


class CompiledProgram:
    """A program ready to evaluate many contexts.

    ``evaluate`` without a trace runs one Python function generated for the
    whole program (see ``_generate``); with a trace it walks the closures,
    which record every step.  Both give the same results and errors.
    """

    def __init__(self, program: Program, rules: Sequence[CompiledRule]) -> None:
        self.program = program
        self.rules = list(rules)
        self.source, self._fast = _generate(self.rules)

    def evaluate(self, context: Mapping[str, Any], *, trace: bool = False) -> Evaluation:
        if not trace:
            return self._fast(context)
        return self.evaluate_closures(context, trace=trace)

    def evaluate_closures(self, context: Mapping[str, Any], *, trace: bool = False) -> Evaluation:
        """The closure walk (the traced path; kept callable to check the generated one)."""
        outcomes: list[RuleOutcome] = []
        paid: list[Reward] = []
        claims: dict[str, tuple[int, str]] = {}  # role -> (priority, exclusive rule id)
        for cr in self.rules:
            rule = cr.rule
            steps: list[dict[str, Any]] | None = [] if trace else None
            matched = cr.condition(context, steps, 0)
            reverse = False
            if cr.reverse_if is not None:
                rev_steps: list[dict[str, Any]] | None = [] if trace else None
                reverse = cr.reverse_if(context, rev_steps, 0)
                if steps is not None and rev_steps is not None:
                    steps.append({"kind": "reverse_if", "depth": 0, "result": reverse})
                    steps.extend({**s, "depth": s["depth"] + 1} for s in rev_steps)
            outcome = RuleOutcome(rule.id, matched, reverse=reverse, trace=steps)
            if matched:
                for act in cr.actions:
                    got = act(context)
                    if isinstance(got, Reward):
                        outcome.rewards.append(got)
                    elif steps is not None:
                        steps.append({"kind": "action", "depth": 0, "result": None,
                                      "reason": got})
                kept = []
                for r in outcome.rewards:
                    claim = claims.get(r.role)
                    if claim is not None and claim[0] > rule.priority:
                        outcome.suppressed.append(r)
                        outcome.suppressed_by = claim[1]
                    else:
                        kept.append(r)
                outcome.rewards = kept
                if rule.exclusive:
                    for r in kept:
                        claims.setdefault(r.role, (rule.priority, rule.id))
                paid.extend(kept)
            outcomes.append(outcome)
        return Evaluation(paid, outcomes)


def compile_rule(rule: Rule, *, default_currency: str | None = None) -> CompiledRule:
    c = _Compiler(rule.id, default_currency)
    return CompiledRule(
        rule=rule,
        condition=c.condition(rule.condition),
        reverse_if=c.condition(rule.reverse_if) if rule.reverse_if is not None else None,
        actions=[c.action(a) for a in rule.actions],
        compiler=c,
    )


# ---- code generation: the untraced fast path ---------------------------------

_FAST_TYPES: dict[type, str] = {str: "str", bool: "bool", int: "int"}


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
        self.ns: dict[str, Any] = {"_M": _MISSING, "_dict": dict, "RuleOutcome": RuleOutcome,
                                   "_within": _within}
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
        slow = [f"{indent}    {self.vars[p]} = {self.const(_Compiler.getter(p), '_get')}(ctx)"
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

    def cond(self, c: _Compiler, cond: Condition) -> str:
        if isinstance(cond, (And, Or)):
            joiner = " and " if isinstance(cond, And) else " or "
            return "(" + joiner.join(self.cond(c, item) for item in cond.items) + ")"
        if isinstance(cond, Not):
            return f"(not {self.cond(c, cond.item)})"
        if isinstance(cond, Compare):
            fast = self.compare(c, cond)
            if fast is not None:
                return fast
        if isinstance(cond, Within):
            a, b = self.var(cond.path), self.var(cond.other)
            slow = self.const(c.condition(cond), "_cond")
            return f"_within({a}, {b}, {cond.days}, {slow}, ctx)"
        # Anything else: the closure itself (exact semantics, no trace).
        return f"{self.const(c.condition(cond), '_cond')}(ctx, None, 0)"

    def compare(self, c: _Compiler, cond: Compare) -> str | None:
        op, value = cond.op, cond.value
        if op not in _ORDER_OPS and op not in ("IN", "NOT IN"):
            return None
        pyop = "==" if op == "=" else op
        v = self.var(cond.path)
        if isinstance(value, FieldRef):
            if op not in _ORDER_OPS:
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
            if not isinstance(value, tuple) or not value or not all(
                type(m) is str for m in value
            ):
                return None
            members = "{" + ", ".join(repr(m) for m in sorted(set(value))) + "}"
            neg = "" if op == "IN" else "not "
            return (f"({neg}({v} in {members}) if {self.is_type(v, 'str')} else "
                    f"(False if {v} is _M or {v} is None else {test}({v}, ctx)[0]))")
        if isinstance(value, Money):
            if c.default_currency != value.currency:
                return None
            kind, key = "int", value.amount
        elif type(value) in _FAST_TYPES:
            kind, key = _FAST_TYPES[type(value)], value
        else:
            return None
        k = repr(key) if type(key) in _FAST_TYPES else self.const(key)
        return (f"({v} {pyop} {k} if {self.is_type(v, kind)} else "
                f"(False if {v} is _M or {v} is None else {test}({v}, ctx)[0]))")


def _within(a: Any, b: Any, days: int, slow: CondFn, ctx: Mapping[str, Any]) -> bool:
    """WITHIN for two ISO date strings; anything else (missing, null, a bad date) takes
    the closure."""
    if type(a) is str and type(b) is str:
        try:
            return abs((date.fromisoformat(a) - date.fromisoformat(b)).days) <= days
        except ValueError:
            pass
    return slow(ctx, None, 0)


def _percent_fast(
    rule_id: str, action: PercentReward, currency: str, slow: Callable[[Mapping[str, Any]], Any]
) -> Callable[[Any, Mapping[str, Any]], Any]:
    """A percentage of a non-negative int amount in the default currency, in integers.

    ``p`` percent of ``x`` minor units rounded down is ``x * n // d`` for
    ``p / 100 = n / d`` exactly, which is what the closure's Decimal arithmetic
    gives; other values, and results of nothing, go to the closure.
    """
    n, d = (action.percent / Decimal(100)).as_integer_ratio()
    cap = action.cap.amount if action.cap is not None else None
    to = action.to

    def run(x: Any, ctx: Mapping[str, Any]) -> Any:
        if type(x) is not int or x < 0 or x > MAX_MINOR_UNITS:
            return slow(ctx)
        amount = x * n // d
        capped = cap is not None and amount > cap
        if capped:
            amount = cap
        if amount <= 0:
            return slow(ctx)
        return Reward(rule_id, to, Money(amount, currency), capped)

    return run


def _generate(
    rules: Sequence[CompiledRule],
) -> tuple[str, Callable[[Mapping[str, Any]], Evaluation]]:
    """The program as one Python function: ctx -> Evaluation (sparse outcomes)."""
    g = _Codegen()
    body: list[str] = []
    any_exclusive = any(cr.rule.exclusive for cr in rules)
    claimed_at: list[int] = []  # priorities of the EXCLUSIVE rules evaluated so far
    for i, cr in enumerate(rules):
        c = cr.compiler or _Compiler(cr.rule.id, None)
        rule = cr.rule
        prio = rule.priority
        # Only an EXCLUSIVE rule of strictly higher priority (evaluated earlier) suppresses.
        suppressible = any(p > prio for p in claimed_at)
        matched = g.cond(c, rule.condition)
        reverse = g.cond(c, rule.reverse_if) if rule.reverse_if is not None else "False"
        rid = g.const(rule.id)
        body += [f"    # rule {rule.id}", f"    m = {matched}"]
        if rule.reverse_if is not None:
            body.append(f"    r = {reverse}")
        r = "r" if rule.reverse_if is not None else "False"
        body.append("    if m:")
        fixed = all(isinstance(a, FixedReward) for a in rule.actions)
        if fixed and not suppressible:
            consts = [g.const(Reward(rule.id, a.to, a.amount, False), "_rw")
                      for a in rule.actions]
            body += [f"        kept = [{', '.join(consts)}]"]
        else:
            body += ["        kept = []"]
            if suppressible:
                body += ["        supp = []", "        by = None"]
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
                        f"{pad}claim = claims.get(x.role)",
                        f"{pad}if claim is not None and claim[0] > {prio}:",
                        f"{pad}    supp.append(x)",
                        f"{pad}    by = claim[1]",
                        f"{pad}else:",
                        f"{pad}    kept.append(x)",
                    ]
                else:
                    body.append(f"{pad}kept.append(x)")
        body.append("        paid += kept")
        if rule.exclusive:
            claimed_at.append(prio)
            body += ["        for x in kept:",
                     f"            claims.setdefault(x.role, ({prio}, {rid}))"]
        if not suppressible:
            body.append(f"        o{i} = (True, kept, {r}, None, None)")
        else:
            body.append(f"        o{i} = (True, kept, {r}, supp, by)")
        if rule.reverse_if is not None:
            body += ["    elif r:", f"        o{i} = (False, [], True, None, None)"]
        body += ["    else:", f"        o{i} = None"]
    g.ns["_Reward"] = Reward
    g.ns["_Outcome"], g.ns["_Evaluation"] = RuleOutcome, Evaluation
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


def compile_program(program: Program, *, default_currency: str | None = None) -> CompiledProgram:
    """Compile every rule once, in evaluation (priority) order."""
    return CompiledProgram(
        program,
        [compile_rule(r, default_currency=default_currency) for r in program.by_priority()],
    )


def evaluate(program: Program, context: Mapping[str, Any], *, trace: bool = False,
             default_currency: str | None = None) -> Evaluation:
    """One-off convenience: compile and evaluate (batch callers keep the compiled program)."""
    return compile_program(program, default_currency=default_currency).evaluate(
        context, trace=trace
    )


__all__ = [
    "Reward",
    "RuleOutcome",
    "Evaluation",
    "CompiledProgram",
    "CompiledRule",
    "compile_program",
    "compile_rule",
    "evaluate",
    "iso_date",
    "jsonable",
    "nest_context",
]
