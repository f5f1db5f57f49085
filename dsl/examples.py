"""Running the EXAMPLE blocks of a program: executable documentation.

Each example evaluates the *whole* program on its GIVEN context and compares
the rewards paid (as a multiset of beneficiary and amount) with its EXPECT.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from dsl.errors import EvaluationError, SourcePos
from dsl.evaluate import CompiledProgram, compile_program, nest_context
from dsl.model import Example, ExpectedReward, Program
from dsl.money import format_money


@dataclass(frozen=True)
class ExampleResult:
    name: str
    source: SourcePos | None
    passed: bool
    expected: tuple[ExpectedReward, ...]
    actual: tuple[ExpectedReward, ...]
    error: str | None = None


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
    """Evaluate every example of the (resolved) program, in source order.

    Bare integer amounts are minor units of ``currency``, by default the
    program's own (``Program.default_currency``, as settlement reads them).
    """
    compiled = compile_program(program, default_currency=currency or program.default_currency())
    return [_run(compiled, ex) for ex in program.examples]


__all__ = ["ExampleResult", "run_examples", "context_from_given", "describe_rewards"]
