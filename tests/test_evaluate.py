from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal

import pytest

from dsl.errors import EvaluationError
from dsl.evaluate import Reward, compile_program
from dsl.money import Money
from dsl.parser import parse_text
from dsl.program import resolve_program


def program(text: str):
    resolved, errors = resolve_program(parse_text(text))
    assert errors == []
    return resolved


def holds(condition: str, ctx: dict, *, currency: str | None = "INR") -> bool:
    compiled = compile_program(program(f"RULE r IF {condition} THEN ISSUE ₹1"),
                               default_currency=currency)
    return compiled.evaluate(ctx).outcomes[0].matched


@pytest.mark.parametrize(
    ("condition", "ctx", "expected"),
    [
        ('a.s = "x"', {"a": {"s": "x"}}, True),
        ('a.s = "x"', {"a": {"s": "X"}}, False),
        ('a.s != "x"', {"a": {"s": "y"}}, True),
        ("a.n > 5", {"a": {"n": 6}}, True),
        ("a.n > 5", {"a": {"n": 5}}, False),
        ("a.n >= 5", {"a": {"n": 5}}, True),
        ("a.n < 5", {"a": {"n": Decimal("4.99")}}, True),
        ("a.n <= 4.5", {"a": {"n": 5}}, False),
        ("a.n = 5", {"a": {"n": Decimal("5.0")}}, True),
        ("a.b = true", {"a": {"b": True}}, True),
        ("a.b", {"a": {"b": False}}, False),
        ("a.b IS TRUE", {"a": {"b": True}}, True),
        ("a.b IS NOT TRUE", {"a": {"b": False}}, True),
        ("a.b IS NULL", {"a": {"b": None}}, True),
        ("a.b IS NULL", {"a": {"b": 1}}, False),
        ("a.b IS NOT NULL", {"a": {"b": 1}}, True),
        ("a.b IS NOT NULL", {"a": {"b": None}}, False),
        ('a.s IN ["IN", "US"]', {"a": {"s": "US"}}, True),
        ('a.s IN ["IN", "US"]', {"a": {"s": "DE"}}, False),
        ('a.s NOT IN ["IN", "US"]', {"a": {"s": "DE"}}, True),
        ("a.n IN [1, 2.5]", {"a": {"n": Decimal("2.5")}}, True),
        ('a.l CONTAINS "vip"', {"a": {"l": ["x", "vip"]}}, True),
        ('a.l CONTAINS "vip"', {"a": {"l": []}}, False),
        ('a.s CONTAINS "ip"', {"a": {"s": "vip"}}, True),
        ("a.m >= ₹1,000", {"a": {"m": 100000}}, True),
        ("a.m >= ₹1,000", {"a": {"m": 99999}}, False),
        ("a.m >= ₹1,000", {"a": {"m": {"amount": 100000, "currency": "INR"}}}, True),
        ("a.m >= ₹1,000", {"a": {"m": Money(100000, "INR")}}, True),
        ("a.m = ₹10", {"a": {"m": {"amount": 1000, "currency": "inr"}}}, True),
        ("a.d > 2026-01-01", {"a": {"d": "2026-01-02"}}, True),
        ("a.d > 2026-01-01", {"a": {"d": "2026-01-01T23:59:59"}}, False),
        ("a.d = 2026-01-01", {"a": {"d": date(2026, 1, 1)}}, True),
        ("a.d = 2026-01-01", {"a": {"d": datetime(2026, 1, 1, 8)}}, True),
        ("a.d WITHIN 30 DAYS OF b.d", {"a": {"d": "2026-01-31"}, "b": {"d": "2026-01-01"}}, True),
        ("a.d WITHIN 30 DAYS OF b.d", {"a": {"d": "2026-02-01"}, "b": {"d": "2026-01-01"}}, False),
        ("a.d WITHIN 3 DAYS OF b.d", {"a": {"d": "2026-01-01"}, "b": {"d": "2026-01-04"}}, True),
        ("a.x = b.x", {"a": {"x": "u1"}, "b": {"x": "u1"}}, True),
        ("a.x = b.x", {"a": {"x": "u1"}, "b": {"x": "u2"}}, False),
        ("a.x < b.x", {"a": {"x": 1}, "b": {"x": Decimal("1.5")}}, True),
        ("a.x < b.x", {"a": {"x": 100}, "b": {"x": {"amount": 200, "currency": "INR"}}}, True),
        ("a.x <= b.x", {"a": {"x": "2026-01-01"}, "b": {"x": date(2026, 1, 1)}}, True),
        ("a.x IN b.l", {"a": {"x": 1}, "b": {"l": [1, 2]}}, True),
        # Missing fields and nulls make a condition false; NOT of it is true.
        ('a.s = "x"', {}, False),
        ('a.s != "x"', {"a": {}}, False),
        ('a.s != "x"', {"a": {"s": None}}, False),
        ('NOT a.s = "x"', {}, True),
        ("a.s IS NULL", {}, False),
        ('a.s NOT IN ["x"]', {}, False),
        ("a.d WITHIN 3 DAYS OF b.d", {"a": {"d": "2026-01-01"}}, False),
        ("a.x = b.x", {"a": {"x": 1}}, False),
        ("a.s.t = 1", {"a": {"s": "not a mapping"}}, False),
        # Precedence through evaluation: NOT > AND > OR.
        ("a.t OR a.f AND a.f", {"a": {"t": True, "f": False}}, True),
        ("(a.t OR a.f) AND a.f", {"a": {"t": True, "f": False}}, False),
        ("NOT a.f AND a.t", {"a": {"t": True, "f": False}}, True),
    ],
)
def test_evaluate_operators(condition, ctx, expected):
    assert holds(condition, ctx) is expected


@pytest.mark.parametrize(
    ("condition", "ctx", "message"),
    [
        ("a.m >= ₹1,000", {"a": {"m": "abc"}},
         "rule r: a.m: expected a money amount, found the string 'abc'"),
        ("a.m >= ₹1,000", {"a": {"m": {"amount": 5, "currency": "USD"}}},
         "rule r: a.m: expected money in INR, found money in USD ($0.05)"),
        ("a.n > 5", {"a": {"n": 5.5}}, "rule r: a.n: expected a number, found the float 5.5"),
        ("a.n > 5", {"a": {"n": "6"}}, "rule r: a.n: expected a number, found the string '6'"),
        ("a.n > 5", {"a": {"n": True}}, "rule r: a.n: expected a number, found the boolean true"),
        ("a.b = true", {"a": {"b": "yes"}}, "rule r: a.b: expected a boolean, found the string"),
        ('a.s = "x"', {"a": {"s": 1}}, "rule r: a.s: expected a string, found int 1"),
        ("a.d > 2026-01-01", {"a": {"d": "tomorrow"}},
         "rule r: a.d: expected a date (ISO 8601, like 2026-01-31 or 2026-01-31T10:00:00+05:30),"
         " found the string 'tomorrow'"),
        ("a.d WITHIN 3 DAYS OF b.d", {"a": {"d": "2026-01-01"}, "b": {"d": 5}},
         "rule r: b.d: expected a date"),
        ('a.l CONTAINS "x"', {"a": {"l": 5}}, "rule r: a.l: expected a list or a string"),
        ("a.x = b.x", {"a": {"x": "1"}, "b": {"x": 1}}, "rule r: b.x: expected a value comparable"),
    ],
)
def test_evaluate_type_errors_raise(condition, ctx, message):
    with pytest.raises(EvaluationError) as info:
        holds(condition, ctx)
    assert str(info.value).startswith(message)


def test_evaluate_bare_int_money_needs_default_currency():
    with pytest.raises(EvaluationError, match="a bare integer needs a default currency"):
        holds("a.m >= ₹1", {"a": {"m": 500}}, currency=None)
    assert holds("a.m >= ₹1", {"a": {"m": {"amount": 500, "currency": "INR"}}}, currency=None)


@pytest.mark.parametrize(
    ("action", "payment", "amount", "capped"),
    [
        ("ISSUE 10% OF a.p REWARD", 150000, 15000, False),
        ("ISSUE 10% OF a.p REWARD UP TO ₹200", 400000, 20000, True),
        ("ISSUE 10% OF a.p REWARD UP TO ₹200", 200000, 20000, False),
        ("ISSUE 5% OF a.p REWARD", 1000030, 50001, False),  # 50001.5 rounds down
        ("ISSUE 33.33% OF a.p REWARD", 100, 33, False),
        ("ISSUE 100% OF a.p REWARD", 7, 7, False),
    ],
)
def test_evaluate_percent_rounds_down_then_caps(action, payment, amount, capped):
    compiled = compile_program(program(f"RULE r IF a.p > ₹0 THEN {action}"),
                               default_currency="INR")
    assert compiled.evaluate({"a": {"p": payment}}).rewards == [
        Reward("r", "referrer", Money(amount, "INR"), capped)]


def test_evaluate_percent_of_nothing_pays_nothing():
    compiled = compile_program(program("RULE r IF a.x THEN ISSUE 1% OF a.p AND ISSUE ₹1"),
                               default_currency="INR")
    for ctx in ({"a": {"x": True}}, {"a": {"x": True, "p": 50}}):
        ev = compiled.evaluate(ctx, trace=True)
        assert ev.rewards == [Reward("r", "referrer", Money(100, "INR"))]
        assert ev.outcomes[0].trace[-1]["kind"] == "action"


def test_evaluate_percent_cap_currency_mismatch_raises():
    compiled = compile_program(program("RULE r IF a.x THEN ISSUE 1% OF a.p UP TO ₹5"))
    with pytest.raises(EvaluationError,
                       match=r"a.p: expected money in INR, found money in USD \(\$1\)"):
        compiled.evaluate({"a": {"x": True, "p": {"amount": 100, "currency": "USD"}}})


def test_evaluate_negative_base_raises():
    compiled = compile_program(program("RULE r IF a.x THEN ISSUE 1% OF a.p"),
                               default_currency="INR")
    with pytest.raises(EvaluationError, match="a non-negative amount"):
        compiled.evaluate({"a": {"x": True, "p": -100}})


EXCLUSIVE = """
RULE top PRIORITY 20 EXCLUSIVE IF a.top THEN ISSUE ₹10 TO referrer
RULE peer PRIORITY 20 IF a.peer THEN ISSUE ₹7 TO referrer
RULE low PRIORITY 10 IF a.low THEN ISSUE ₹5 TO referrer AND ISSUE ₹3 TO referee
RULE lowest IF a.low THEN ISSUE ₹1 TO referrer
"""


def test_evaluate_exclusive_suppresses_lower_priority_same_beneficiary():
    compiled = compile_program(program(EXCLUSIVE))
    ev = compiled.evaluate({"a": {"top": True, "peer": True, "low": True}})
    assert [(r.rule_id, r.role, r.amount.amount) for r in ev.rewards] == [
        ("top", "referrer", 1000), ("peer", "referrer", 700), ("low", "referee", 300)]
    outcomes = {o.rule_id: o for o in ev.outcomes}
    assert [o.rule_id for o in ev.outcomes] == ["top", "peer", "low", "lowest"]
    assert outcomes["low"].suppressed == [Reward("low", "referrer", Money(500, "INR"))]
    assert outcomes["low"].suppressed_by == "top"
    assert outcomes["lowest"].suppressed_by == "top" and outcomes["lowest"].rewards == []
    assert outcomes["peer"].suppressed == []


def test_evaluate_exclusive_not_matching_suppresses_nothing():
    ev = compile_program(program(EXCLUSIVE)).evaluate({"a": {"top": False, "low": True}})
    assert [r.rule_id for r in ev.rewards] == ["low", "low", "lowest"]


def test_evaluate_reverse_if_reported_without_changing_rewards():
    compiled = compile_program(program(
        "RULE r IF a.x THEN ISSUE ₹5 REVERSE IF a.refunded = true"))
    ev = compiled.evaluate({"a": {"x": True, "refunded": True}})
    assert ev.outcomes[0].matched and ev.outcomes[0].reverse
    assert ev.rewards == [Reward("r", "referrer", Money(500, "INR"))]
    ev = compiled.evaluate({"a": {"x": False, "refunded": True}})
    assert not ev.outcomes[0].matched and ev.outcomes[0].reverse and ev.rewards == []


def test_evaluate_trace_explains_missing_and_is_json():
    compiled = compile_program(program(
        'RULE r IF a.s = "x" AND (a.n > ₹1 OR a.t) THEN ISSUE ₹5'), default_currency="INR")
    ev = compiled.evaluate({"a": {"n": 500}}, trace=True)
    trace = ev.outcomes[0].trace
    json.dumps(ev.to_json())
    assert trace[0] == {"kind": "and", "depth": 0, "result": False}
    assert trace[1] == {"kind": "compare", "depth": 1, "path": "a.s", "op": "=",
                        "expected": "x", "actual": None, "missing": True, "result": False,
                        "reason": "a.s is missing"}
    assert trace[2] == {"kind": "or", "depth": 1, "result": None, "reason": "not evaluated"}
    ev = compiled.evaluate({"a": {"s": "x", "n": 500}}, trace=True)
    assert ev.outcomes[0].trace[2] == {"kind": "or", "depth": 1, "result": True}
    assert ev.outcomes[0].trace[3]["expected"] == "₹1"
    assert compiled.evaluate({"a": {"s": "x", "n": 500}}).outcomes[0].trace is None


def test_evaluate_unresolved_phrase_is_an_error():
    with pytest.raises(EvaluationError, match="was not resolved"):
        compile_program(parse_text("RULE r IF some phrase THEN ISSUE ₹1"))


def test_evaluate_compiles_conditions_once():
    compiled = compile_program(program('RULE r IF a.s = "x" THEN ISSUE ₹1'))
    fn = compiled.rules[0].condition
    for _ in range(3):
        compiled.evaluate({"a": {"s": "x"}})
    assert compiled.rules[0].condition is fn
