"""Canonical rule text, node by node (the round trip through the parser is in test_roundtrip)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from compiler.errors import FormatError
from compiler.text import (
    format_action,
    format_condition,
    format_node,
    format_program,
    is_plain_phrase,
)
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
from tests.test_json_model import SEED_RULE

A = Compare("a.x", "=", 1)
B = Compare("b.x", "=", 2)
C = Compare("c.x", "=", 3)

ISSUE_EXAMPLE = '''\
DEFINE "referrer is a paid user" AS referrer.plan = "paid"
DEFINE "referred user subscribes" AS referee.subscribed = true

RULE paid_referrer_bonus "Paid referrers earn when their referee subscribes"
  PRIORITY 10
  IF referrer is a paid user
  AND referred user subscribes
  AND (referee.country IN ["IN", "US"] OR referee.first_payment >= ₹1,000)
  AND NOT referee.id = referrer.id
  AND referee.subscribed_at WITHIN 30 DAYS OF referral.created_at
  THEN ISSUE ₹500 REWARD TO referrer
  AND ISSUE 10% OF referee.first_payment REWARD TO referee UP TO ₹200
  LIMIT ₹5,000 PER referrer PER MONTH
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true

EXAMPLE "paid referrer, subscribed referee"
  GIVEN referrer.id = "u1", referrer.plan = "paid", referee.id = "u2", referee.subscribed = true,
        referee.country = "IN", referee.first_payment = ₹1,500, referral.created_at = 2026-01-01,
        referee.subscribed_at = 2026-01-10
  EXPECT ISSUE ₹500 TO referrer AND ISSUE ₹150 TO referee
'''

INR = "INR"
ISSUE_PROGRAM = Program(
    definitions=(
        Definition("referrer is a paid user", Compare("referrer.plan", "=", "paid")),
        Definition("referred user subscribes", Compare("referee.subscribed", "=", True)),
    ),
    rules=(
        Rule(**{
            **SEED_RULE.__dict__,
            "condition": And((
                PhraseRef("referrer is a paid user"),
                PhraseRef("referred user subscribes"),
                *SEED_RULE.condition.items[1:],
            )),
        }),
    ),
    examples=(
        Example(
            "paid referrer, subscribed referee",
            (
                ("referrer.id", "u1"), ("referrer.plan", "paid"), ("referee.id", "u2"),
                ("referee.subscribed", True), ("referee.country", "IN"),
                ("referee.first_payment", Money(150000, INR)),
                ("referral.created_at", date(2026, 1, 1)),
                ("referee.subscribed_at", date(2026, 1, 10)),
            ),
            (ExpectedReward("referrer", Money(50000, INR)),
             ExpectedReward("referee", Money(15000, INR))),
        ),
    ),
)


def test_format_program_issue_example():
    assert format_program(ISSUE_PROGRAM) == ISSUE_EXAMPLE


def test_format_program_empty():
    assert format_program(Program()) == ""


@pytest.mark.parametrize(
    ("cond", "text"),
    [
        (And((A, B, C)), "a.x = 1 AND b.x = 2 AND c.x = 3"),
        (Or((A, And((B, C)))), "a.x = 1 OR b.x = 2 AND c.x = 3"),
        (And((A, Or((B, C)))), "a.x = 1 AND (b.x = 2 OR c.x = 3)"),
        (And((Or((A, B)), C)), "(a.x = 1 OR b.x = 2) AND c.x = 3"),
        (Not(And((A, B))), "NOT (a.x = 1 AND b.x = 2)"),
        (Not(Or((A, B))), "NOT (a.x = 1 OR b.x = 2)"),
        (And((Not(A), B)), "NOT a.x = 1 AND b.x = 2"),
        (Or((Not(A), B)), "NOT a.x = 1 OR b.x = 2"),
        (Not(Not(A)), "NOT (NOT a.x = 1)"),
        # Nested groups of the same operator keep their parentheses (and so their tree).
        (And((A, And((B, C)))), "a.x = 1 AND (b.x = 2 AND c.x = 3)"),
        (Or((Or((A, B)), C)), "(a.x = 1 OR b.x = 2) OR c.x = 3"),
    ],
)
def test_format_condition_minimal_parentheses(cond, text):
    assert format_condition(cond) == text


@pytest.mark.parametrize(
    ("cond", "text"),
    [
        (Compare("referee.plan", "!=", "free"), 'referee.plan != "free"'),
        (Compare("referee.age", ">", 17), "referee.age > 17"),
        (Compare("referee.score", "<=", Decimal("2.50")), "referee.score <= 2.50"),
        (Compare("referee.score", "<", Decimal("3")), "referee.score < 3.0"),
        (Compare("referee.paid", ">=", Money(100050, INR)), "referee.paid >= ₹1,000.50"),
        (Compare("referee.paid", ">=", Money(500, "JPY")), "referee.paid >= ¥500"),
        (Compare("referee.paid", ">=", Money(1000, "CHF")), "referee.paid >= CHF 10"),
        (Compare("referee.paid", ">=", Money(1005, "KWD")), "referee.paid >= KWD 1.005"),
        (Compare("referee.email", "IS", None), "referee.email IS null"),
        (Compare("referee.email", "IS NOT", None), "referee.email IS NOT null"),
        (Compare("referee.vip", "IS", False), "referee.vip IS false"),
        (Compare("referee.tags", "CONTAINS", "beta"), 'referee.tags CONTAINS "beta"'),
        (Compare("referee.country", "NOT IN", ("IN", 5, Decimal("1.5"))),
         'referee.country NOT IN ["IN", 5, 1.5]'),
        (Compare("referee.joined", ">", date(2026, 3, 1)), "referee.joined > 2026-03-01"),
        (Compare("referee.id", "=", FieldRef("referrer.id")), "referee.id = referrer.id"),
        (Compare("referee.note", "=", 'say "hi" \\ bye'), r'referee.note = "say \"hi\" \\ bye"'),
        (Within("a.b", 7, "c.d"), "a.b WITHIN 7 DAYS OF c.d"),
        (PhraseRef("referrer is a paid user"), "referrer is a paid user"),
        (PhraseRef("signed up and paid"), '"signed up and paid"'),
        (PhraseRef("paid"), "paid"),
        (PhraseRef("not paid"), '"not paid"'),
        (PhraseRef("has 2 referrals"), '"has 2 referrals"'),
        (PhraseRef("uses referee.plan"), '"uses referee.plan"'),
    ],
)
def test_format_condition_leaves(cond, text):
    assert format_condition(cond) == text


@pytest.mark.parametrize(
    ("phrase", "plain"),
    [
        ("referrer is a paid user", True),
        ("referred user subscribes", True),
        ("user's first-time purchase", True),
        ("paid", True),
        ("not a bot", False),
        ("paid or trial", False),
        ("paid then", False),
        ("if paid", False),
        ("two  spaces", False),
        (" lead", False),
        ("", False),
        ("9 lives", False),
    ],
)
def test_is_plain_phrase(phrase, plain):
    assert is_plain_phrase(phrase) is plain


@pytest.mark.parametrize(
    ("action", "text"),
    [
        (FixedReward(Money(50000, INR)), "ISSUE ₹500 REWARD TO referrer"),
        (FixedReward(Money(500, "USD"), "referee"), "ISSUE $5 REWARD TO referee"),
        (PercentReward(Decimal("12.5"), "referee.first_payment", "referee"),
         "ISSUE 12.5% OF referee.first_payment REWARD TO referee"),
        (PercentReward(Decimal("10"), "referee.first_payment", "referrer", Money(20000, INR)),
         "ISSUE 10% OF referee.first_payment REWARD TO referrer UP TO ₹200"),
    ],
)
def test_format_action(action, text):
    assert format_action(action) == text


@pytest.mark.parametrize(
    ("limit", "text"),
    [
        (Limit(Money(500000, INR), "referrer", "month"), "LIMIT ₹5,000 PER referrer PER MONTH"),
        (Limit(Money(100, "EUR"), "referee", "ever"), "LIMIT €1 PER referee PER EVER"),
    ],
)
def test_format_node_limit(limit, text):
    assert format_node(limit) == text


def test_format_program_rule_defaults_omitted():
    rule = Rule("plain", None, A, (FixedReward(Money(100, INR)),))
    assert format_program(Program(rules=(rule,))) == (
        "RULE plain\n  IF a.x = 1\n  THEN ISSUE ₹1 REWARD TO referrer\n"
    )


def test_format_program_exclusive_and_top_level_or():
    rule = Rule("x", "d", Or((A, B)), (FixedReward(Money(100, INR)),), priority=3,
                exclusive=True)
    assert format_program(Program(rules=(rule,))) == (
        'RULE x "d"\n  PRIORITY 3\n  EXCLUSIVE\n  IF a.x = 1\n  OR b.x = 2\n'
        "  THEN ISSUE ₹1 REWARD TO referrer\n"
    )


def test_format_program_expect_nothing_and_comments():
    example = Example("none", (("a.x", 1),), (), comments=("# no reward", "why"))
    rule = Rule("r", None, A, (FixedReward(Money(1, INR)),), comments=("# first",))
    assert format_program(Program(rules=(rule,), examples=(example,))) == (
        "# first\nRULE r\n  IF a.x = 1\n  THEN ISSUE ₹0.01 REWARD TO referrer\n\n"
        '# no reward\n# why\nEXAMPLE "none"\n  GIVEN a.x = 1\n  EXPECT NOTHING\n'
    )


def test_format_program_defines_grouped_until_a_comment():
    program = Program(definitions=(
        Definition("one two", A), Definition("three four", B),
        Definition("five six", C, comments=("# later",)),
    ))
    assert format_program(program) == (
        'DEFINE "one two" AS a.x = 1\nDEFINE "three four" AS b.x = 2\n\n'
        '# later\nDEFINE "five six" AS c.x = 3\n'
    )


def test_format_program_order_defines_rules_examples():
    example = Example("e", (("a.x", 1),), ())
    rule = Rule("r", None, PhraseRef("is paid"), (FixedReward(Money(100, INR)),))
    definition = Definition("is paid", A)
    text = format_program(Program(rules=(rule,), definitions=(definition,), examples=(example,)))
    assert [line.split()[0] for line in text.splitlines() if line and line[0] != " "] == [
        "DEFINE", "RULE", "EXAMPLE",
    ]


@pytest.mark.parametrize(
    "node", [object(), Compare("a.b", "=", object()), Rule("r", None, "a.b", ())]
)
def test_format_unsupported_node_raises(node):
    with pytest.raises(FormatError, match="cannot format"):
        format_program(Program(rules=(node,))) if isinstance(node, Rule) else format_node(node)
