"""The JSON rule model: typed literals, sources, deterministic hashes."""

from __future__ import annotations

import json
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given, settings

from dsl.codec import (
    ModelEncodeError,
    condition_to_json,
    dumps,
    program_from_json,
    program_to_json,
    rule_hash,
    rule_to_json,
    value_to_json,
)
from dsl.errors import SourcePos
from dsl.model import (
    And,
    Compare,
    Definition,
    Example,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Within,
)
from dsl.money import Money
from dsl.schema import validate_model_json
from tests.strategies import programs

INR = "INR"

SEED_RULE = Rule(
    id="paid_referrer_bonus",
    description="Paid referrers earn when their referee subscribes",
    condition=And((
        Compare("referrer.plan", "=", "paid"),
        Or((Compare("referee.country", "IN", ("IN", "US")),
            Compare("referee.first_payment", ">=", Money(100000, INR)))),
        Not(Compare("referee.id", "=", FieldRef("referrer.id"))),
        Within("referee.subscribed_at", 30, "referral.created_at"),
    )),
    actions=(
        FixedReward(Money(50000, INR), "referrer"),
        PercentReward(Decimal("10"), "referee.first_payment", "referee", Money(20000, INR)),
    ),
    priority=10,
    limit=Limit(Money(500000, INR), "referrer", "month"),
    hold_days=14,
    reverse_if=Compare("referee.refunded", "=", True),
    source=SourcePos("rules/seed.rule", 4, 1),
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("paid", {"string": "paid"}),
        (5, {"int": 5}),
        (Decimal("1.5"), {"decimal": "1.5"}),
        (Decimal("1E+2"), {"decimal": "100"}),
        (True, {"bool": True}),
        (False, {"bool": False}),
        (date(2026, 1, 1), {"date": "2026-01-01"}),
        (Money(50000, INR), {"money": {"amount": 50000, "currency": "INR"}}),
        (("IN", 2), {"list": [{"string": "IN"}, {"int": 2}]}),
        (FieldRef("referrer.id"), {"field": "referrer.id"}),
        (None, {"null": None}),
    ],
)
def test_value_to_json_typed(value, expected):
    assert value_to_json(value) == expected


def test_value_to_json_unknown_type_raises():
    with pytest.raises(ModelEncodeError, match="no JSON form for value"):
        value_to_json(object())


def test_condition_to_json_unknown_node_raises():
    with pytest.raises(ModelEncodeError, match="no JSON form for condition"):
        condition_to_json("referrer.plan")


def test_condition_to_json_shapes():
    cond = And((Not(PhraseRef("a phrase")), Within("a.b", 3, "c.d")))
    assert condition_to_json(cond) == {
        "and": [
            {"not": {"phrase": "a phrase"}},
            {"within": {"path": "a.b", "days": 3, "of": "c.d"}},
        ]
    }


def test_rule_to_json_seed_rule():
    data = rule_to_json(SEED_RULE)
    assert data["source"] == {"file": "rules/seed.rule", "line": 4, "column": 1}
    assert data["actions"] == [
        {"kind": "fixed", "amount": {"amount": 50000, "currency": "INR"}, "to": "referrer"},
        {"kind": "percent", "percent": "10", "of": "referee.first_payment", "to": "referee",
         "cap": {"amount": 20000, "currency": "INR"}},
    ]
    assert data["limit"] == {"amount": {"amount": 500000, "currency": "INR"}, "per": "referrer",
                             "period": "month"}
    assert data["hold_days"] == 14
    assert data["reverse_if"] == {"compare": {"path": "referee.refunded", "op": "=",
                                              "value": {"bool": True}}}


def test_rule_to_json_without_source_omits_it():
    assert "source" not in rule_to_json(SEED_RULE, with_source=False)


def test_rule_to_json_unknown_source_omitted():
    rule = Rule("r", None, Compare("a.b", "=", 1), (FixedReward(Money(1, INR)),))
    assert "source" not in rule_to_json(rule)


def test_rule_hash_ignores_source_and_comments():
    moved = Rule(**{**SEED_RULE.__dict__, "source": SourcePos("other.rule", 9, 3),
                    "comments": ("hello",)})
    assert rule_hash(moved) == rule_hash(SEED_RULE)
    assert len(rule_hash(SEED_RULE)) == 64


def test_rule_hash_changes_with_meaning():
    changed = Rule(**{**SEED_RULE.__dict__, "hold_days": 15})
    assert rule_hash(changed) != rule_hash(SEED_RULE)


def test_rule_hash_is_stable_value():
    # A content hash persisted by settlement: changing the encoding must be a conscious act.
    rule = Rule("r", None, Compare("referrer.plan", "=", "paid"), (FixedReward(Money(50000, INR)),))
    expected = (
        '{"actions": [{"amount": {"amount": 50000, "currency": "INR"}, "kind": "fixed", '
        '"to": "referrer"}], "condition": {"compare": {"op": "=", "path": "referrer.plan", '
        '"value": {"string": "paid"}}}, "description": null, "exclusive": false, '
        '"hold_days": 0, "id": "r", "limit": null, "priority": 0, "reverse_if": null}'
    )
    assert json.dumps(rule_to_json(rule, with_source=False), sort_keys=True) == expected
    import hashlib

    assert rule_hash(rule) == hashlib.sha256(expected.encode()).hexdigest()


def test_program_to_json_layout():
    program = Program(
        rules=(SEED_RULE,),
        definitions=(Definition("referrer is a paid user", Compare("referrer.plan", "=", "paid"),
                                SourcePos("v.rule", 1, 1)),),
        examples=(Example("ex", (("referrer.plan", "paid"),),
                          (ExpectedReward("referrer", Money(50000, INR)),),
                          SourcePos("v.rule", 20, 1)),),
    )
    data = program_to_json(program)
    assert list(data) == ["schema_version", "definitions", "rules", "examples"]
    assert data["schema_version"] == 1
    assert data["definitions"][0]["source"] == {"file": "v.rule", "line": 1, "column": 1}
    assert data["examples"][0] == {
        "name": "ex",
        "given": [{"path": "referrer.plan", "value": {"string": "paid"}}],
        "expect": [{"to": "referrer", "amount": {"amount": 50000, "currency": "INR"}}],
        "source": {"file": "v.rule", "line": 20, "column": 1},
    }
    validate_model_json(data)
    assert json.loads(dumps(program)) == data


def test_program_to_json_exact_types_survive():
    program = Program(rules=(SEED_RULE,))
    back = program_from_json(json.loads(dumps(program)))
    assert back == program
    assert back.rules[0].source == SEED_RULE.source
    # Equality alone would accept True for 1; the types must be the same too.
    assert type(back.rules[0].reverse_if.value) is bool
    assert type(back.rules[0].actions[1].percent) is Decimal


@settings(max_examples=150, deadline=None)
@given(programs(phrase_refs=True))
def test_program_to_json_round_trips(program):
    data = json.loads(json.dumps(program_to_json(program)))
    validate_model_json(data)
    assert program_from_json(data) == program
    assert program_to_json(program_from_json(data)) == data


def test_program_to_json_example_program_validates():
    from pathlib import Path

    from dsl.program import load_program

    rules_dir = Path(__file__).parent.parent / "rules"
    if not any(rules_dir.glob("*.rule")):
        pytest.skip("no example program in rules/")
    program = load_program([rules_dir]).program
    data = json.loads(dumps(program))
    validate_model_json(data, "rules.json")
    assert program_from_json(data) == program
    assert all("source" in r for r in data["rules"])
