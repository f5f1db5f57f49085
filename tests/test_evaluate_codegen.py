"""The generated fast path of ``CompiledProgram.evaluate`` against the closure walk.

``evaluate`` (no trace) runs Python source generated for the program; the
closures stay the traced path.  For random programs and contexts built from the
fields those programs read (right types, wrong types, nulls, missing fields),
both must give the same evaluation or fail with the same error.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dsl.errors import EvaluationError
from dsl.evaluate import compile_program, nest_context
from dsl.model import And, Compare, FieldRef, Not, Or, PercentReward, Program, Within
from tests.strategies import programs

values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=10**7),
    st.integers(min_value=2**63 - 2, max_value=2**64),  # around the ledger's BIGINT
    st.decimals(min_value=Decimal("-10"), max_value=Decimal("100000"), places=2,
                allow_nan=False),
    st.sampled_from(["IN", "US", "paid", "free", "", "x"]),
    st.dates().map(lambda d: d.isoformat()),
    st.sampled_from(["2026-01-31", "2026-02-29", "not a date", "2026-01-31T10:00:00",
                     "2026-01-31T23:30:00-05:00", "2026-02-01T02:00:00+05:30",
                     "2026-01-31T20:00:00Z", "2026-W05-6", "20260131", "2026-01-31 10:00"]),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
    st.floats(allow_nan=False, allow_infinity=False),
    st.fixed_dictionaries({"amount": st.integers(0, 10**6),
                           "currency": st.sampled_from(["INR", "USD", "inr", "XXX"])}),
    st.lists(st.one_of(st.sampled_from(["IN", "US"]), st.integers(0, 100), st.none()),
             max_size=3),
)


def fields(program: Program) -> list[str]:
    found: list[str] = []

    def visit(cond: Any) -> None:
        if isinstance(cond, Compare):
            found.append(cond.path)
            if isinstance(cond.value, FieldRef):
                found.append(cond.value.path)
        elif isinstance(cond, Within):
            found.extend([cond.path, cond.other])
        elif isinstance(cond, (And, Or)):
            for item in cond.items:
                visit(item)
        elif isinstance(cond, Not):
            visit(cond.item)

    for rule in program.rules:
        visit(rule.condition)
        if rule.reverse_if is not None:
            visit(rule.reverse_if)
        found += [a.of for a in rule.actions if isinstance(a, PercentReward)]
    return sorted(set(found))


def outcome(fn: Any, ctx: dict[str, Any]) -> Any:
    try:
        return fn(ctx).to_json()
    except EvaluationError as e:
        return ("error", e.message)


@settings(max_examples=300)
@given(programs(), st.data())
def test_generated_path_matches_the_closures(program: Program, data: st.DataObject) -> None:
    currencies = sorted(program.currencies())
    default = data.draw(st.sampled_from([None, *currencies]))
    compiled = compile_program(program, default_currency=default)
    paths = fields(program)
    for _ in range(5):
        pairs = [(p, data.draw(values)) for p in paths if data.draw(st.booleans())]
        try:
            ctx = nest_context(pairs)
        except EvaluationError:
            assume(False)
        fast = outcome(compiled.evaluate, ctx)
        slow = outcome(lambda c: compiled.evaluate_closures(c), ctx)
        assert fast == slow, compiled.source
