"""Rules that cannot crash: what ``rules check`` accepts evaluates, and what it refuses
is a positioned error (issue 18 items 7 and 8, and ASCII digits in literals)."""

from __future__ import annotations

import pytest

from dsl.errors import MoneyError, RuleError
from dsl.money import parse_money
from dsl.parser import parse_text


def first_error(text: str) -> tuple[str, int, int]:
    with pytest.raises(RuleError) as info:
        parse_text(text, "f.rule")
    d = info.value.diagnostics[0]
    assert d.pos is not None
    return d.message, d.pos.line, d.pos.column


# ---------------------------------------------------------------- ASCII digits only

@pytest.mark.parametrize(
    ("literal", "digit", "col"),
    [
        ("₹1٥0", "U+0665 ARABIC-INDIC DIGIT FIVE", 19),
        ("₹𝟓𝟎𝟎", "U+1D7D3 MATHEMATICAL BOLD DIGIT FIVE", 18),
        ("INR ١٠٠", "U+0661 ARABIC-INDIC DIGIT ONE", 21),
        ("१२", "U+0967 DEVANAGARI DIGIT ONE", 17),
        ("1.٥", "U+0665 ARABIC-INDIC DIGIT FIVE", 19),
        ("２０２６-01-01", "U+FF12 FULLWIDTH DIGIT TWO", 17),
    ],
)
def test_literal_non_ascii_digit_refused_at_the_digit(literal, digit, col):
    message, line, column = first_error(f"RULE a IF x.y = {literal} THEN ISSUE ₹5")
    assert message == (f"{digit} is not an ASCII digit: numbers, amounts and dates are "
                       "written with 0-9")
    assert (line, column) == (1, col)


@pytest.mark.parametrize(
    "text",
    [
        "RULE a IF x.y = 1 THEN ISSUE ₹٥",
        "RULE a IF x.y = 1 THEN ISSUE ٥% OF x.z",
        "RULE a IF x.y = 1 THEN ISSUE ₹5 HOLD ٣ DAYS",
        "RULE a PRIORITY ٣ IF x.y = 1 THEN ISSUE ₹5",
        "RULE a IF x.y WITHIN ٣ DAYS OF x.z THEN ISSUE ₹5",
    ],
)
def test_every_number_position_refuses_non_ascii_digits(text):
    message, _line, _col = first_error(text)
    assert "is not an ASCII digit" in message


def test_ascii_digits_and_unicode_strings_still_parse():
    program = parse_text('RULE a IF x.y = ₹150 AND x.n = "١٥٠" THEN ISSUE ₹5', "f.rule")
    assert program.rules[0].actions[0].amount.amount == 500


@pytest.mark.parametrize("text", ["₹1٥0", "₹𝟓𝟎𝟎", "INR ١٠٠", "१२ INR"])
def test_parse_money_refuses_non_ascii_digits(text):
    with pytest.raises(MoneyError):
        parse_money(text)
