"""Running the EXAMPLE blocks of a program: executable documentation.

Each example evaluates the *whole* program on its GIVEN context and compares
the rewards paid (as a multiset of beneficiary and amount) with its EXPECT.
It runs twice where the types allow: as written with literals (``₹1,500``,
``2026-01-01``), and as a record holds the same values (``150000`` minor units of
the program's currency, ``"2026-01-01"``), so that an example exercises what
settlement reads; both must pass.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from dsl.errors import EvaluationError, SourcePos
from dsl.evaluate import CompiledProgram, compile_program, nest_context
from dsl.model import Compare, Example, ExpectedReward, PercentReward, Program, walk
from dsl.money import Money, format_money
from dsl.timeutil import temporal

# The forms an example runs in: as written with literals, and as a record holds it.
LITERAL, RECORD = "literal", "record"


@dataclass(frozen=True)
class ExampleResult:
    name: str
    source: SourcePos | None
    passed: bool
    expected: tuple[ExpectedReward, ...]
    actual: tuple[ExpectedReward, ...]
    error: str | None = None
    form: str | None = None  # the form that failed, when only one of two did


def describe_rewards(rewards: tuple[ExpectedReward, ...]) -> str:
    if not rewards:
        return "NOTHING"
    return " AND ".join(f"ISSUE {format_money(r.amount)} TO {r.to}" for r in rewards)


def context_from_given(given: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """``a.b = 1, a.c = 2`` -> ``{"a": {"b": 1, "c": 2}}``."""
    try:
        return nest_context((p, list(v) if isinstance(v, tuple) else v) for p, v in given)
    except EvaluationError as e:
        raise EvaluationError(f"GIVEN {e.message}") from None


def _run_forms(compiled: CompiledProgram, example: Example, forms: _Forms) -> ExampleResult:
    """The example in both forms; the first failure, naming its form, else a pass."""
    written = forms.literal(example.given)
    record = forms.record(example.given)
    if written == record:
        return _run(compiled, example)
    results = [replace(_run(compiled, replace(example, given=given)), form=form)
               for form, given in ((LITERAL, written), (RECORD, record))]
    failed = [r for r in results if not r.passed]
    return failed[0] if failed else replace(results[0], form=None)


Given = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class _Forms:
    """Turns GIVEN values into literals or into what records hold, by the field's type."""

    currency: str | None
    money_paths: frozenset[str]
    date_paths: frozenset[str]

    def literal(self, given: Given) -> Given:
        return tuple((p, self._literal(p, v)) for p, v in given)

    def record(self, given: Given) -> Given:
        return tuple((p, _record(v, self.currency)) for p, v in given)

    def _literal(self, path: str, value: Any) -> Any:
        if (path in self.money_paths and self.currency is not None and type(value) is int):
            return Money(value, self.currency)
        if path in self.date_paths and isinstance(value, str):
            found = temporal(value)
            return found if type(found) is date else value
        return value


def _record(value: Any, currency: str | None) -> Any:
    """A literal as a JSON record holds it: money in the program's currency as bare
    minor units (in another, ``{"amount", "currency"}``), a date as ISO text."""
    if isinstance(value, Money):
        if value.currency == currency:
            return value.amount
        return {"amount": value.amount, "currency": value.currency}
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, tuple):
        return tuple(_record(v, currency) for v in value)
    return value


def _money_paths(program: Program) -> frozenset[str]:
    """Fields compared with money or taken a percentage of: money in every record."""
    trees = [c for r in program.rules for c in r.conditions()]
    found = {c.path for c in walk(*trees) if isinstance(c, Compare)
             and isinstance(c.value, Money)}
    found |= {a.of for r in program.rules for a in r.actions if isinstance(a, PercentReward)}
    return frozenset(found)


def _run(compiled: CompiledProgram, example: Example) -> ExampleResult:
    expected = tuple(sorted(example.expect, key=_order))
    try:
        evaluation = compiled.evaluate(context_from_given(example.given))
    except EvaluationError as e:
        return ExampleResult(example.name, example.source, False, expected, (), str(e))
    actual = tuple(sorted((ExpectedReward(r.role, r.amount) for r in evaluation.rewards),
                          key=_order))
    passed = Counter(actual) == Counter(expected)
    return ExampleResult(example.name, example.source, passed, expected, actual)


def _order(r: ExpectedReward) -> tuple[str, str, int]:
    return (r.to, r.amount.currency, r.amount.amount)


def run_examples(program: Program, *, currency: str | None = None) -> list[ExampleResult]:
    """Evaluate every example of the (resolved) program, in source order, in both forms.

    Bare integer amounts are minor units of ``currency``, by default the
    program's own (``Program.default_currency``, as settlement reads them).
    """
    default = program.default_currency(currency)
    compiled = compile_program(program, default_currency=default)
    forms = _Forms(default, _money_paths(program), program.date_paths())
    return [_run_forms(compiled, ex, forms) for ex in program.examples]


__all__ = ["ExampleResult", "run_examples", "context_from_given", "describe_rewards"]
