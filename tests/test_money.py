from __future__ import annotations

from decimal import Decimal

import pytest

from dsl.errors import MoneyError
from dsl.money import Money, format_money, parse_money


@pytest.mark.parametrize(
    ("text", "amount", "currency"),
    [
        ("₹500", 50000, "INR"),
        ("₹1,000.50", 100050, "INR"),
        ("INR 500", 50000, "INR"),
        ("500 INR", 50000, "INR"),
        ("inr 500", 50000, "INR"),
        ("$5", 500, "USD"),
        ("USD 5.00", 500, "USD"),
        ("€10", 1000, "EUR"),
        ("£10", 1000, "GBP"),
        ("¥1,000", 1000, "JPY"),
        ("JPY 1000", 1000, "JPY"),
        ("BHD 1.234", 1234, "BHD"),
        ("₹0.5", 50, "INR"),
    ],
)
def test_parse_money_forms(text: str, amount: int, currency: str) -> None:
    assert parse_money(text) == Money(amount, currency)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("₹1.005", "more decimals than INR allows (2)"),
        ("JPY 10.5", "more decimals than JPY allows (0)"),
        ("XYZ 5", "unknown currency 'XYZ'"),
        ("₹", "not a money amount"),
        ("500", "not a money amount"),
        ("₹1,00", "not a money amount"),
    ],
)
def test_parse_money_refuses(text: str, message: str) -> None:
    with pytest.raises(MoneyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_money(text)


@pytest.mark.parametrize(
    ("money", "text"),
    [
        (Money(50000, "INR"), "₹500"),
        (Money(100050, "INR"), "₹1,000.50"),
        (Money(5, "INR"), "₹0.05"),
        (Money(-2500, "USD"), "-$25"),
        (Money(1000, "JPY"), "¥1,000"),
        (Money(123, "CHF"), "CHF 1.23"),
    ],
)
def test_format_money_round_trips(money: Money, text: str) -> None:
    assert format_money(money) == text
    if money.amount >= 0:
        assert parse_money(text) == money


def test_money_refuses_non_integer_amounts() -> None:
    with pytest.raises(MoneyError):
        Money(Decimal("1.5"), "INR")  # type: ignore[arg-type]
    with pytest.raises(MoneyError):
        Money(True, "INR")  # type: ignore[arg-type]


def test_money_arithmetic_refuses_mixed_currencies() -> None:
    assert Money(100, "INR") + Money(50, "INR") == Money(150, "INR")
    with pytest.raises(MoneyError, match="cannot combine"):
        Money(100, "INR") + Money(50, "USD")


@pytest.mark.parametrize("text", ["₹1٥0", "₹𝟓𝟎𝟎", "INR ١٥٠", "５00 INR"])
def test_parse_money_refuses_digits_other_than_ascii(text: str) -> None:
    with pytest.raises(MoneyError, match="not a money amount"):
        parse_money(text)
