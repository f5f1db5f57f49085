from __future__ import annotations

from pathlib import Path

import pytest

from dsl.errors import EvaluationError
from dsl.examples import context_from_given, describe_rewards, run_examples
from dsl.model import ExpectedReward
from dsl.money import Money
from dsl.parser import parse_text
from dsl.program import load_program, resolve_program

RULES_DIR = Path(__file__).parent.parent / "rules"

PROGRAM = """
RULE bonus IF referee.subscribed AND referee.first_payment >= ₹1,000
  THEN ISSUE ₹500 REWARD TO referrer AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹200
RULE again PRIORITY -1 IF referee.subscribed THEN ISSUE ₹500 REWARD TO referrer
"""


def results(examples: str):
    resolved, errors = resolve_program(parse_text(PROGRAM + examples, "p.rule"))
    assert errors == []
    return run_examples(resolved)


@pytest.mark.parametrize(
    ("example", "passed"),
    [
        ('EXAMPLE "ok" GIVEN referee.subscribed = true, referee.first_payment = ₹1,500 '
         "EXPECT ISSUE ₹500 TO referrer AND ISSUE ₹150 TO referee AND ISSUE ₹500 TO referrer",
         True),
        # Order does not matter, multiplicity does.
        ('EXAMPLE "order" GIVEN referee.subscribed = true, referee.first_payment = ₹1,500 '
         "EXPECT ISSUE ₹150 TO referee AND ISSUE ₹500 TO referrer AND ISSUE ₹500 TO referrer",
         True),
        ('EXAMPLE "missing one" GIVEN referee.subscribed = true, referee.first_payment = ₹1,500 '
         "EXPECT ISSUE ₹500 TO referrer AND ISSUE ₹150 TO referee", False),
        ('EXAMPLE "nothing" GIVEN referee.subscribed = false EXPECT NOTHING', True),
        ('EXAMPLE "not nothing" GIVEN referee.subscribed = true EXPECT NOTHING', False),
        # A bare integer is minor units of the program's only currency.
        ('EXAMPLE "bare" GIVEN referee.subscribed = true, referee.first_payment = 100000 '
         "EXPECT ISSUE ₹500 TO referrer AND ISSUE ₹100 TO referee AND ISSUE ₹500 TO referrer",
         True),
    ],
)
def test_run_examples_pass_fail(example, passed):
    (result,) = results(example)
    assert result.passed is passed
    assert result.error is None


def test_run_examples_reports_expected_and_actual():
    (result,) = results('EXAMPLE "e" GIVEN referee.subscribed = true EXPECT ISSUE ₹5 TO referee')
    assert result.name == "e" and result.source.line == 5
    assert result.expected == (ExpectedReward("referee", Money(500, "INR")),)
    assert result.actual == (ExpectedReward("referrer", Money(50000, "INR")),)
    assert describe_rewards(result.actual) == "ISSUE ₹500 TO referrer"
    assert describe_rewards(()) == "NOTHING"


def test_run_examples_type_error_is_a_failure():
    (result,) = results('EXAMPLE "bad" GIVEN referee.subscribed = true, '
                        'referee.first_payment = "lots" EXPECT NOTHING')
    assert not result.passed
    assert "referee.first_payment: expected" in result.error


def test_context_from_given_nests_paths():
    assert context_from_given((("a.b.c", 1), ("a.d", (1, 2)), ("e", True))) == {
        "a": {"b": {"c": 1}, "d": [1, 2]}, "e": True}


def test_default_currency_only_when_unambiguous():
    assert parse_text(PROGRAM).default_currency() == "INR"
    assert parse_text("RULE a IF x.y THEN ISSUE ₹1 AND ISSUE $1").default_currency() is None


def test_shipped_rules_examples_all_pass():
    loaded = load_program([RULES_DIR])
    got = run_examples(loaded.program)
    assert len(got) >= 10
    assert [r.name for r in got if not r.passed] == []
    assert any(r.expected == () for r in got)
    assert any("self" in r.name for r in got)


def test_context_from_given_refuses_a_value_with_fields_under_it():
    with pytest.raises(EvaluationError, match="GIVEN a.b conflicts with a, which has a value"):
        context_from_given((("a", 1), ("a.b", 2)))
