"""Money: integer minor units plus an ISO 4217 code. Never a float.

The rule language, the ledger CLI and the record reader all parse amounts here,
so that ``₹1,000.50``, ``INR 1000.50`` and ``1000.50 INR`` mean the same thing
everywhere.  Which codes exist and how many decimals each has comes from
Babel's copy of the CLDR currency data (all of ISO 4217).  ``$`` and ``¥`` name
several currencies: a program's ``CURRENCY`` decides which (``symbol_table``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property

from babel.numbers import get_currency_precision, list_currencies

from dsl.errors import MoneyError

# ISO 4217 codes that are not money: "no currency" and the code reserved for testing.
_NOT_MONEY = frozenset({"XXX", "XTS"})


class _CurrencyExponents(Mapping[str, int]):
    """ISO 4217 code -> minor-unit exponent (INR 2, JPY 0, BHD 3), read from Babel once."""

    @cached_property
    def _table(self) -> dict[str, int]:
        return {code: get_currency_precision(code)
                for code in sorted(list_currencies()) if code not in _NOT_MONEY}

    def __getitem__(self, code: str) -> int:
        return self._table[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)


CURRENCY_EXPONENTS: Mapping[str, int] = _CurrencyExponents()

# The most minor units one ledger entry holds (a 64-bit BIGINT column on both databases).
MAX_MINOR_UNITS = 2**63 - 1

# What each symbol means when the program's currency does not say otherwise.
SYMBOLS: dict[str, str] = {"₹": "INR", "$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY"}
CURRENCY_SYMBOL: dict[str, str] = {code: sym for sym, code in SYMBOLS.items()}
# The currencies written with the ambiguous symbols: $ or ¥ is the program's own currency
# when it is one of these.
SYMBOL_CURRENCIES: dict[str, frozenset[str]] = {
    "$": frozenset({"USD", "CAD", "AUD", "NZD", "SGD", "HKD", "TWD", "BND", "BSD", "BBD",
                    "BMD", "BZD", "FJD", "GYD", "JMD", "KYD", "LRD", "NAD", "SBD", "SRD",
                    "TTD", "XCD"}),
    "¥": frozenset({"JPY", "CNY"}),
}
AMBIGUOUS_SYMBOLS = frozenset(SYMBOL_CURRENCIES)


def symbol_table(currency: str | None) -> dict[str, str]:
    """Symbol -> currency in a program whose currency is ``currency`` (None: undeclared)."""
    table = dict(SYMBOLS)
    for sym, family in SYMBOL_CURRENCIES.items():
        if currency in family:
            table[sym] = currency
    return table

# ASCII digits only: \d would read any script's digits (₹1٥0 as ₹150).
_NUMBER = r"[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?|[0-9]+(?:\.[0-9]+)?"
_SYMBOL = "|".join(re.escape(s) for s in SYMBOLS)
_MONEY_RE = re.compile(
    rf"^\s*(?:(?P<sym>{_SYMBOL})\s*(?P<n1>{_NUMBER})"
    rf"|(?P<code1>[A-Za-z]{{3}})\s+(?P<n2>{_NUMBER})"
    rf"|(?P<n3>{_NUMBER})\s+(?P<code2>[A-Za-z]{{3}}))\s*$"
)


def exponent(currency: str) -> int:
    try:
        return CURRENCY_EXPONENTS[currency]
    except KeyError:
        raise MoneyError(f"unknown currency {currency!r} (not an ISO 4217 code)") from None


@dataclass(frozen=True, order=True)
class Money:
    """An exact amount: ``amount`` minor units of ``currency``."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise MoneyError(f"money amount must be integer minor units, got {self.amount!r}")
        exponent(self.currency)

    def __str__(self) -> str:
        return format_money(self)

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        return Money(self.amount - other.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if not isinstance(other, Money) or other.currency != self.currency:
            raise MoneyError(f"cannot combine {self} with {other}")


def to_minor_units(value: Decimal | str | int, currency: str) -> int:
    """Convert a major-unit amount to minor units; refuses to round."""
    exp = exponent(currency)
    try:
        dec = Decimal(str(value).replace(",", "")) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise MoneyError(f"not an amount: {value!r}") from None
    if not dec.is_finite():
        raise MoneyError(f"not an amount: {value!r}")
    scaled = dec.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise MoneyError(
            f"{value} {currency} has more decimals than {currency} allows ({exp})"
        )
    return int(scaled)


def parse_money(text: str, symbols: Mapping[str, str] = SYMBOLS) -> Money:
    """Parse ``₹1,000.50``, ``INR 500``, ``500 INR``, ``$5``, ``USD 5.00``, ``€10``, ``£10``.

    ``symbols`` says what each symbol means (``symbol_table`` of the program's currency).
    """
    m = _MONEY_RE.match(text)
    if not m:
        digit = next((c for c in text if c.isdigit() and not c.isascii()), None)
        if digit is not None:
            raise MoneyError(
                f"not a money amount: {text!r} (U+{ord(digit):04X}"
                f" {unicodedata.name(digit, 'DIGIT')}: amounts are written with ASCII digits 0-9)"
            )
        raise MoneyError(
            f"not a money amount: {text!r} (expected e.g. ₹500, ₹1,000.50, INR 500 or 500 INR)"
        )
    if m["sym"]:
        currency, number = symbols[m["sym"]], m["n1"]
    elif m["code1"]:
        currency, number = m["code1"].upper(), m["n2"]
    else:
        currency, number = m["code2"].upper(), m["n3"]
    return Money(to_minor_units(number, currency), currency)


def format_money(money: Money, symbols: Mapping[str, str] = SYMBOLS) -> str:
    """Canonical text: ``₹1,000.50`` (symbol when there is one), else ``CHF 10.00``.

    Whole amounts drop the decimals (``₹500``) so that formatted rules read as
    authors write them; the output always parses back to the same Money with the
    same ``symbols`` (a CAD program writes CAD as ``$`` and USD as ``USD 5``).
    """
    exp = exponent(money.currency)
    sign = "-" if money.amount < 0 else ""
    whole, frac = divmod(abs(money.amount), 10**exp) if exp else (abs(money.amount), 0)
    number = f"{whole:,}"
    if frac:
        number += "." + str(frac).zfill(exp)
    sym = CURRENCY_SYMBOL.get(money.currency) if symbols is SYMBOLS else next(
        (s for s, code in symbols.items() if code == money.currency), None)
    return f"{sign}{sym}{number}" if sym else f"{sign}{money.currency} {number}"
