"""The closure interpreter: each rule's condition tree compiled once into closures.

``compile_program`` builds, per rule, nested closures that read the context,
coerce values and record a trace step when asked; ``CompiledProgram.evaluate``
runs them when a trace is wanted, and otherwise the Python function that
``codegen`` generates from them (which falls back on these closures for every
case it does not inline, so both give the same results and errors).

Semantics that settlement relies on:
- a condition on a missing field (or on ``null``, except ``IS [NOT] NULL``) is
  false, and the trace says why;
- a value of the wrong type (a string where money is compared, a float, an
  unparsable date, money in another currency than the rule's) raises
  ``EvaluationError`` naming the rule, the path, what was expected and what was
  found: the record is bad, and must not silently earn nothing;
- dates compare as dates (``dsl.timeutil``), never as strings: ordering two fields
  that are not numbers or money, or comparing with a field the program reads as a
  date (``Program.date_paths``), reads both sides as dates; two timestamps compare
  as instants, a date and a timestamp by the timestamp's date in the program's
  time zone;
- percentage rewards are exact: Decimal arithmetic, rounded down to whole minor
  units, then cut to the ``UP TO`` cap;
- an EXCLUSIVE rule that pays a beneficiary suppresses the rewards of strictly
  lower-priority rules to that beneficiary.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, tzinfo
from decimal import ROUND_DOWN, Decimal
from typing import Any

from dsl.errors import DateError, EvaluationError, MoneyError
from dsl.evaluate.codegen import generate
from dsl.evaluate.context import (
    MISSING,
    ActionFn,
    CondFn,
    Context,
    TestFn,
    Trace,
    getter,
    jsonable,
)
from dsl.evaluate.results import Evaluation, Reward, RuleOutcome, TraceStep
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
    Rule,
    Within,
)
from dsl.money import MAX_MINOR_UNITS, Money, format_money
from dsl.timeutil import Temporal, as_dates, day_of, temporal, zone


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
    """Builds the closures of one rule.  Errors name the rule.

    ``default_currency`` is the program's (bare integers are its minor units),
    ``tz`` its time zone, ``date_paths`` the fields it reads as dates.
    """

    def __init__(self, rule_id: str, default_currency: str | None, tz: tzinfo = UTC,
                 date_paths: frozenset[str] = frozenset()) -> None:
        self.rule_id = rule_id
        self.default_currency = default_currency
        self.tz = tz
        self.date_paths = date_paths

    def fail(self, path: str, expected: str, actual: Any) -> EvaluationError:
        return EvaluationError(
            f"rule {self.rule_id}: {path}: expected {expected}, found {_describe(actual)}"
        )

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
            raise EvaluationError(f"rule {self.rule_id}: {path}: expected money in {currency}, "
                                  f"found money in {m.currency} ({format_money(m)})")
        return m

    def to_number(self, path: str, v: Any) -> int | Decimal:
        if isinstance(v, (int, Decimal)) and not isinstance(v, bool):
            return v
        raise self.fail(path, "a number", v)

    def to_temporal(self, path: str, v: Any) -> Temporal:
        try:
            found = temporal(v, self.tz)
        except DateError as e:
            raise EvaluationError(f"rule {self.rule_id}: {path}: {e.message}") from None
        if found is None:
            raise self.fail(path, "a date (ISO 8601, like 2026-01-31 or "
                                  "2026-01-31T10:00:00+05:30)", v)
        return found

    def to_date(self, path: str, v: Any) -> date:
        """The date of ``v`` in the program's time zone."""
        return day_of(self.to_temporal(path, v))

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

    def field_pair(
        self, path: str, a: Any, other: str, b: Any, dates: bool = False
    ) -> tuple[Any, Any]:
        """Two context values compared with each other: same kind, or both dates/money.

        With ``dates`` (an ordering, or a field the program reads as a date) two
        strings are two dates, never compared as text.
        """
        if isinstance(a, bool) or isinstance(b, bool):
            if isinstance(a, bool) and isinstance(b, bool):
                return a, b
        elif isinstance(a, (int, Decimal)) and isinstance(b, (int, Decimal)):
            return a, b
        elif isinstance(a, str) and isinstance(b, str) and not dates:
            return a, b
        elif isinstance(a, (Money, Mapping)) or isinstance(b, (Money, Mapping)):
            ma = self.to_money(path, a, None)
            return ma.amount, self.to_money(other, b, ma.currency).amount
        elif dates or isinstance(a, date) or isinstance(b, date):
            return as_dates(self.to_temporal(path, a), self.to_temporal(other, b))
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

        def run(ctx: Context, trace: Trace, depth: int) -> bool:
            if trace is None:
                for p in parts:
                    if p(ctx, None, 0) is stop_on:
                        return stop_on
                return not stop_on
            entry: TraceStep = {"kind": kind, "depth": depth, "result": None}
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

        def run(ctx: Context, trace: Trace, depth: int) -> bool:
            if trace is None:
                return not inner(ctx, None, 0)
            entry: TraceStep = {"kind": "not", "depth": depth, "result": None}
            trace.append(entry)
            entry["result"] = result = not inner(ctx, trace, depth + 1)
            return result

        return run

    def within(self, cond: Within) -> CondFn:
        get_a, get_b = getter(cond.path), getter(cond.other)
        days, path, other = cond.days, cond.path, cond.other
        apart = _APART[cond.direction]
        words = f"WITHIN {days} DAYS {cond.direction.upper()}"

        def run(ctx: Context, trace: Trace, depth: int) -> bool:
            a, b = get_a(ctx), get_b(ctx)
            reason = _absent(path, a) or _absent(other, b)
            if reason:
                result = False
            else:
                result = apart((self.to_date(path, a) - self.to_date(other, b)).days, days)
            if trace is not None:
                trace.append(_entry("within", depth, path, words, other,
                                    a, result, reason, other_actual=b))
            return result

        return run

    def compare(self, cond: Compare) -> CondFn:
        path, op, value = cond.path, cond.op, cond.value
        get = getter(path)
        test = self.field_test(cond) if isinstance(value, FieldRef) else self.literal_test(cond)
        null_ok = op in {"IS", "IS NOT"}
        get_other = getter(value.path) if isinstance(value, FieldRef) else None

        def run(ctx: Context, trace: Trace, depth: int) -> bool:
            actual = get(ctx)
            if actual is MISSING:
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

    def field_test(self, cond: Compare) -> TestFn:
        assert isinstance(cond.value, FieldRef)
        other = cond.value.path
        get_other = getter(other)
        op, path = cond.op, cond.path
        compare = _ORDER_OPS.get(op)
        dates = op in _ORDERING or bool({path, other} & self.date_paths)

        def test(actual: Any, ctx: Context) -> tuple[bool, str]:
            b = get_other(ctx)
            if b is MISSING or b is None:
                return False, f"{other} is {'missing' if b is MISSING else 'null'}"
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
            x, y = self.field_pair(path, actual, other, b, dates)
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

    def literal_test(self, cond: Compare) -> TestFn:
        op, path, value = cond.op, cond.path, cond.value
        if op in {"IS", "IS NOT"}:
            positive = op == "IS"
            if value is None:
                return lambda a, _c: ((a is None) == positive, "")
            coerce_is = self.coercer(path, value)

            def test_is(a: Any, _c: Context) -> tuple[bool, str]:
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
    def action(self, action: FixedReward | PercentReward) -> ActionFn:
        rule_id = self.rule_id
        if isinstance(action, FixedReward):
            reward = Reward(rule_id, action.to, action.amount, False)
            return lambda ctx: reward
        get = getter(action.of)
        share = action.percent / Decimal(100)
        cap, to, of = action.cap, action.to, action.of

        def percent(ctx: Context) -> Reward | str:
            base = get(ctx)
            if base is MISSING or base is None:
                return f"{of} is {'missing' if base is MISSING else 'null'}: no percentage reward"
            money = self.to_money(of, base, cap.currency if cap else self.default_currency)
            if money.amount < 0:
                raise self.fail(of, "a non-negative amount", base)
            if money.amount > MAX_MINOR_UNITS:  # its share could not be stored
                raise self.fail(of, f"at most {MAX_MINOR_UNITS} minor units", base)
            amount = int((Decimal(money.amount) * share).to_integral_value(rounding=ROUND_DOWN))
            capped = False
            if cap is not None and amount > cap.amount:
                amount, capped = cap.amount, True
            if amount <= 0:
                return f"{action.percent}% of {format_money(money)} rounds down to nothing"
            return Reward(rule_id, to, Money(amount, money.currency), capped)

        return percent


def _key(v: Any) -> Any:
    if isinstance(v, Money):
        return v.amount
    return v


_ORDERING = frozenset({">", ">=", "<", "<="})

# WITHIN n DAYS OF|AFTER|BEFORE: (path's date - other's date in days, n) -> holds?
_APART: dict[str, Callable[[int, int], bool]] = {
    "of": lambda d, n: abs(d) <= n,
    "after": lambda d, n: 0 <= d <= n,
    "before": lambda d, n: 0 <= -d <= n,
}

_ORDER_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
}


def _absent(path: str, v: Any) -> str:
    if v is MISSING:
        return f"{path} is missing"
    if v is None:
        return f"{path} is null"
    return ""


def _entry(kind: str, depth: int, path: str, op: str, expected: Any, actual: Any,
           result: bool, reason: str, **extra: Any) -> TraceStep:
    entry: TraceStep = {
        "kind": kind,
        "depth": depth,
        "path": path,
        "op": op,
        "expected": jsonable(expected),
        "actual": jsonable(actual),
        "result": result,
    }
    if actual is MISSING:
        entry["missing"] = True
    for k, v in extra.items():
        entry[k] = jsonable(v)
    if reason:
        entry["reason"] = reason
    return entry


def _static(cond: Condition) -> TraceStep:
    """What the trace shows for a condition that was not evaluated."""
    if isinstance(cond, Compare):
        return {"kind": "compare", "path": cond.path, "op": cond.op,
                "expected": jsonable(cond.value)}
    if isinstance(cond, Within):
        return {"kind": "within", "path": cond.path,
                "op": f"WITHIN {cond.days} DAYS {cond.direction.upper()}",
                "expected": cond.other}
    if isinstance(cond, And):
        return {"kind": "and"}
    if isinstance(cond, Or):
        return {"kind": "or"}
    return {"kind": "not"}


@dataclass
class CompiledRule:
    """One rule's closures, and the compiler that made them (the generated code
    asks it for the closure of any sub-condition it does not inline)."""

    rule: Rule
    condition: CondFn
    reverse_if: CondFn | None
    actions: list[ActionFn]
    compiler: _Compiler


class CompiledProgram:
    """A program ready to evaluate many contexts.

    ``evaluate`` without a trace runs one Python function generated for the
    whole program (``codegen.generate``; its text is ``source``); with a trace
    it runs the closures, which record every step.  Both give the same results
    and errors.
    """

    def __init__(self, program: Program, rules: Sequence[CompiledRule]) -> None:
        self.program = program
        self.rules = list(rules)
        self.source, self._fast = generate(self.rules)

    def evaluate(self, context: Context, *, trace: bool = False) -> Evaluation:
        if not trace:
            return self._fast(context)
        return self.evaluate_closures(context, trace=trace)

    def evaluate_closures(self, context: Context, *, trace: bool = False) -> Evaluation:
        """The closure walk (the traced path; kept callable to check the generated one)."""
        outcomes: list[RuleOutcome] = []
        paid: list[Reward] = []
        claims: dict[str, tuple[int, str]] = {}  # role -> (priority, exclusive rule id)
        for cr in self.rules:
            rule = cr.rule
            steps: list[TraceStep] | None = [] if trace else None
            matched = cr.condition(context, steps, 0)
            reverse = False
            if cr.reverse_if is not None:
                rev_steps: list[TraceStep] | None = [] if trace else None
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


def compile_rule(
    rule: Rule,
    *,
    default_currency: str | None = None,
    timezone: str | None = None,
    date_paths: frozenset[str] | None = None,
) -> CompiledRule:
    """One rule's closures; ``date_paths`` default to the fields the rule reads as dates."""
    if date_paths is None:
        date_paths = Program(rules=(rule,)).date_paths()
    c = _Compiler(rule.id, default_currency, zone(timezone), date_paths)
    return CompiledRule(
        rule=rule,
        condition=c.condition(rule.condition),
        reverse_if=c.condition(rule.reverse_if) if rule.reverse_if is not None else None,
        actions=[c.action(a) for a in rule.actions],
        compiler=c,
    )


def compile_program(program: Program, *, default_currency: str | None = None) -> CompiledProgram:
    """Compile every rule once, in evaluation (priority) order, in the program's time zone."""
    dates = program.date_paths()
    return CompiledProgram(
        program,
        [compile_rule(r, default_currency=default_currency, timezone=program.timezone,
                      date_paths=dates) for r in program.by_priority()],
    )



__all__ = ["CompiledProgram", "CompiledRule", "compile_program", "compile_rule"]
