from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from dsl.errors import RuleSyntaxError, SourcePos
from dsl.model import (
    And,
    Compare,
    Definition,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Within,
)
from dsl.money import Money
from dsl.parser import parse_text

ISSUE_EXAMPLE = (Path(__file__).parent.parent / "rules" / "paid_referrer.rule").read_text()


def cond(text: str):
    """The condition of ``RULE r IF <text> THEN ISSUE ₹1 REWARD``."""
    return parse_text(f"RULE r IF {text} THEN ISSUE ₹1 REWARD").rules[0].condition


def syntax_error(text: str) -> tuple[str, SourcePos]:
    with pytest.raises(RuleSyntaxError) as info:
        parse_text(text, "f.rule")
    d = info.value.diagnostics[0]
    assert d.pos is not None
    return d.message, d.pos


def test_parse_issue_example_full_model():
    program = parse_text(ISSUE_EXAMPLE, "paid.rule")
    rule = program.rule("paid_referrer_bonus")
    assert rule.description == "Paid referrers earn when their referee subscribes"
    assert rule.priority == 10
    assert rule.condition == And((
        PhraseRef("referrer is a paid user"),
        PhraseRef("referred user subscribes"),
        Or((
            Compare("referee.country", "IN", ("IN", "US")),
            Compare("referee.first_payment", ">=", Money(100000, "INR")),
        )),
        Not(Compare("referee.id", "=", FieldRef("referrer.id"))),
        Within("referee.subscribed_at", 30, "referral.created_at"),
    ))
    assert rule.actions == (
        FixedReward(Money(50000, "INR"), "referrer"),
        PercentReward(Decimal(10), "referee.first_payment", "referee", Money(20000, "INR")),
    )
    assert rule.limit == Limit(Money(500000, "INR"), "referrer", "month")
    assert rule.hold_days == 14
    assert rule.reverse_if == Compare("referee.refunded", "=", True)
    assert rule.source == SourcePos("paid.rule", 3, 1)
    assert rule.comments == ("# The rule from the product brief: paid referrers earn when their "
                             "referee subscribes.", "")
    ex = program.examples[0]
    assert ex.name == "paid referrer, subscribed referee"
    assert ex.given[5] == ("referee.first_payment", Money(150000, "INR"))
    assert ex.given[6] == ("referral.created_at", date(2026, 1, 1))
    assert ex.expect == (ExpectedReward("referrer", Money(50000, "INR")),
                         ExpectedReward("referee", Money(15000, "INR")))


def test_parse_seed_sentence_bare_rule():
    text = "IF referrer is a paid user AND referred user subscribes THEN issue ₹500 reward"
    rule = parse_text(text, "rules/seed.rule").rules[0]
    assert rule.id == "seed_1"
    assert rule.description is None
    assert rule.condition == And((PhraseRef("referrer is a paid user"),
                                  PhraseRef("referred user subscribes")))
    assert rule.actions == (FixedReward(Money(50000, "INR"), "referrer"),)
    assert rule.condition.items[1].pos == SourcePos("rules/seed.rule", 1, 32)


def test_parse_seed_sentence_over_lines():
    text = "IF referrer is a paid user\nAND referred user subscribes\nTHEN issue ₹500 reward\n"
    rule = parse_text(text).rules[0]
    assert rule.condition == And((PhraseRef("referrer is a paid user"),
                                  PhraseRef("referred user subscribes")))


def test_parse_bare_rules_numbered_by_position():
    text = "IF a b THEN ISSUE ₹1\nRULE named IF c THEN ISSUE ₹1\nIF d THEN ISSUE ₹1"
    assert [r.id for r in parse_text(text, "x/My Rules.rule").rules] == [
        "my_rules_1", "named", "my_rules_2"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("user is not in india", PhraseRef("user is not in india")),
        ("user in india and not banned",
         And((PhraseRef("user in india"), Not(PhraseRef("banned"))))),
        ("NOT referee is the referrer", Not(PhraseRef("referee is the referrer"))),
        ('"referrer is a paid user"', PhraseRef("referrer is a paid user")),
        ('"a AND b"', PhraseRef("a AND b")),
        ("Referrer   Is  Paid", PhraseRef("Referrer Is Paid")),
        ("is is is OR in", Or((PhraseRef("is is is"), PhraseRef("in")))),
        ("user's sign-up done", PhraseRef("user's sign-up done")),
        ("(paid user or vip) and subscribed",
         And((Or((PhraseRef("paid user"), PhraseRef("vip"))), PhraseRef("subscribed")))),
        ("paid user AND referee.plan = \"x\"",
         And((PhraseRef("paid user"), Compare("referee.plan", "=", "x")))),
    ],
)
def test_parse_phrases(text, expected):
    assert cond(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('a.b = "x"', Compare("a.b", "=", "x")),
        ("a.b == 1", Compare("a.b", "=", 1)),
        ("a.b != 1", Compare("a.b", "!=", 1)),
        ("a.b <> 1", Compare("a.b", "!=", 1)),
        ("a.b > 1", Compare("a.b", ">", 1)),
        ("a.b >= -1", Compare("a.b", ">=", -1)),
        ("a.b < 1.50", Compare("a.b", "<", Decimal("1.50"))),
        ("a.b <= 2026-03-01", Compare("a.b", "<=", date(2026, 3, 1))),
        ("a.b IS NULL", Compare("a.b", "IS", None)),
        ("a.b is not null", Compare("a.b", "IS NOT", None)),
        ("a.b IS TRUE", Compare("a.b", "IS", True)),
        ("a.b IS NOT false", Compare("a.b", "IS NOT", False)),
        ('a.b IN ["IN", "US",]', Compare("a.b", "IN", ("IN", "US"))),
        ("a.b NOT IN [1, 2]", Compare("a.b", "NOT IN", (1, 2))),
        ("a.b IN []", Compare("a.b", "IN", ())),
        ("a.b NOT IN c.d", Compare("a.b", "NOT IN", FieldRef("c.d"))),
        ('a.b CONTAINS "vip"', Compare("a.b", "CONTAINS", "vip")),
        ("a.b WITHIN 7 DAYS OF c.d", Within("a.b", 7, "c.d")),
        ("a.b within 1 day of c.d", Within("a.b", 1, "c.d")),
        ("a.b = c.d", Compare("a.b", "=", FieldRef("c.d"))),
        ("a.b", Compare("a.b", "=", True)),
        ("a.b.c = [[1], null]", Compare("a.b.c", "=", ((1,), None))),
        ('a.b = "say \\"hi\\""', Compare("a.b", "=", 'say "hi"')),
    ],
)
def test_parse_every_operator(text, expected):
    assert cond(text) == expected


@pytest.mark.parametrize(
    ("text", "money"),
    [
        ("₹500", Money(50000, "INR")),
        ("₹1,000.50", Money(100050, "INR")),
        ("INR 500", Money(50000, "INR")),
        ("inr 500", Money(50000, "INR")),
        ("500 INR", Money(50000, "INR")),
        ("$5", Money(500, "USD")),
        ("USD 5.00", Money(500, "USD")),
        ("€10", Money(1000, "EUR")),
        ("£10", Money(1000, "GBP")),
        ("¥1,000", Money(1000, "JPY")),
        ("JPY 5", Money(5, "JPY")),
        ("₹1,000,000", Money(100000000, "INR")),
    ],
)
def test_parse_every_money_form(text, money):
    assert cond(f"a.b >= {text}") == Compare("a.b", ">=", money)
    rule = parse_text(f"RULE r IF a.b THEN ISSUE {text} REWARD").rules[0]
    assert rule.actions == (FixedReward(money, "referrer"),)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a OR b AND c", Or((PhraseRef("a"), And((PhraseRef("b"), PhraseRef("c")))))),
        ("a AND b OR c", Or((And((PhraseRef("a"), PhraseRef("b"))), PhraseRef("c")))),
        ("NOT a AND b", And((Not(PhraseRef("a")), PhraseRef("b")))),
        ("NOT (a AND b)", Not(And((PhraseRef("a"), PhraseRef("b"))))),
        ("NOT NOT a", Not(Not(PhraseRef("a")))),
        ("a AND b AND c", And((PhraseRef("a"), PhraseRef("b"), PhraseRef("c")))),
        ("a AND (b AND c)", And((PhraseRef("a"), And((PhraseRef("b"), PhraseRef("c")))))),
        ("(a OR b) AND c", And((Or((PhraseRef("a"), PhraseRef("b"))), PhraseRef("c")))),
        ("x.y = 1 OR NOT x.z = 2 AND w",
         Or((Compare("x.y", "=", 1), And((Not(Compare("x.z", "=", 2)), PhraseRef("w")))))),
    ],
)
def test_parse_precedence(text, expected):
    assert cond(text) == expected


def test_parse_actions_and_clauses_any_order():
    rule = parse_text(
        "rule r exclusive priority -2 if a.b then issue 12.5% of c.d up to $3 to referee "
        "and issue $1 to referee hold 3 days limit USD 10 per referee per ever reverse if e.f"
    ).rules[0]
    assert rule.exclusive and rule.priority == -2 and rule.hold_days == 3
    assert rule.actions == (
        PercentReward(Decimal("12.5"), "c.d", "referee", Money(300, "USD")),
        FixedReward(Money(100, "USD"), "referee"),
    )
    assert rule.limit == Limit(Money(1000, "USD"), "referee", "ever")
    assert rule.reverse_if == Compare("e.f", "=", True)


def test_parse_definition_and_expect_nothing():
    program = parse_text('DEFINE "Paid  User" AS a.b = 1\n'
                         'EXAMPLE "e" GIVEN a.b = 1 AND c.d = [1, 2] EXPECT NOTHING')
    assert program.definitions == (Definition("Paid User", Compare("a.b", "=", 1)),)
    assert program.examples[0].given == (("a.b", 1), ("c.d", (1, 2)))
    assert program.examples[0].expect == ()


def test_parse_keeps_comments():
    text = ("# leading\n# two\nRULE r  # on the header\n  IF a.b # inside\n"
            "  THEN ISSUE ₹1\n# between\nDEFINE \"p\" AS a.b\n# trailing\n")
    program = parse_text(text)
    assert program.rules[0].comments == ("# leading", "# two", "# on the header", "# inside")
    assert program.definitions[0].comments == ("# between", "# trailing")


def test_parse_keeps_blank_line_after_a_comment_block():
    text = "# file header\n\n# about r\nRULE r\n  IF a.b\n  THEN ISSUE ₹1\n"
    assert parse_text(text).rules[0].comments == ("# file header", "", "# about r")


def test_parse_is_deterministic_and_ignores_positions_in_equality():
    a = parse_text(ISSUE_EXAMPLE, "one.rule")
    b = parse_text("\n\n" + ISSUE_EXAMPLE.replace("  ", "    "), "two.rule")
    assert a == b
    assert a.rules[0].source != b.rules[0].source
    assert repr(parse_text(ISSUE_EXAMPLE, "one.rule")) == repr(a)


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        ("RULE a IF x.y = 1 ISSUE ₹5", "unexpected 'ISSUE', expected one of: AND, OR, THEN",
         1, 19),
        ("RULE a\n  IF x.y > 1\n  THEN", "unexpected end of input, expected ISSUE", 3, 7),
        ("RULE a IF x.y > 1 THEN ISSUE 5 TO referrer",
         "unexpected '5', expected one of: a money amount, a percentage", 1, 30),
        ("RULE a IF x.y = ₹1.005 THEN ISSUE ₹5",
         "1.005 INR has more decimals than INR allows (2)", 1, 17),
        ("RULE a IF x.y > 1 THEN\n  ISSUE ¥1.5", "1.5 JPY has more decimals than JPY allows (0)",
         2, 9),
        ("RULE a IF x.y = 5 XYZ THEN ISSUE ₹5", "unknown currency 'XYZ'", 1, 17),
        ("RULE a IF x.y > 1 THEN ISSUE ₹5 TO bob",
         "unknown beneficiary 'bob' (expected referrer or referee)", 1, 36),
        ('RULE a IF x.y = "abc\n', "unterminated string", 1, 17),
        ("RULE a IF x.y = 2026-02-30 THEN ISSUE ₹5", "not a valid date: 2026-02-30", 1, 17),
        ("RULE a IF x.y THEN ISSUE ₹5 HOLD 1 DAYS HOLD 2 DAYS", "HOLD given twice in rule a",
         1, 41),
        ("RULE a IF x.y THEN ISSUE ₹5 UP TO ₹3", "UP TO applies only to percentage rewards",
         1, 35),
        ("x", "unexpected 'x', expected one of: CURRENCY, DEFINE, EXAMPLE, EXCLUSIVE, IF, "
              "PRIORITY, RULE, TIMEZONE, end of input", 1, 1),
        ("RULE a IF NOT THEN", "unexpected 'THEN', expected one of: \"(\", NOT, a field path "
                               "(like referee.country), a phrase, a quoted string", 1, 15),
    ],
)
def test_parse_error_positions(text, message, line, col):
    got, pos = syntax_error(text)
    assert got.startswith(message)
    assert (pos.file, pos.line, pos.column) == ("f.rule", line, col)


def test_parse_error_has_caret_context():
    with pytest.raises(RuleSyntaxError) as info:
        parse_text("RULE a\n  IF x.y = 1 ISSUE ₹5", "f.rule")
    assert str(info.value) == (
        "f.rule:2:14: error: unexpected 'ISSUE', expected one of: AND, OR, THEN\n"
        "      IF x.y = 1 ISSUE ₹5\n"
        "                 ^"
    )


def test_parse_reports_every_broken_statement():
    text = ("RULE a IF x.y = THEN ISSUE ₹1\n"
            "RULE ok IF x.y THEN ISSUE ₹1\n"
            "DEFINE \"p\" AS\n"
            "EXAMPLE \"e\" GIVEN a.b = 1 EXPECT ISSUE 5 TO referrer\n")
    with pytest.raises(RuleSyntaxError) as info:
        parse_text(text, "f.rule")
    got = [(d.pos.line, d.pos.column) for d in info.value.diagnostics]
    assert got == [(1, 17), (4, 1), (4, 40)]


def test_parse_reports_every_bad_literal():
    with pytest.raises(RuleSyntaxError) as info:
        parse_text("RULE a IF x.y = ₹1.001 AND y.z = 1 ABC THEN ISSUE $0.001", "f.rule")
    assert [d.pos.column for d in info.value.diagnostics] == [17, 34, 51]
