"""Money for people: the locale's symbol and grouping, through Babel.

``₹14,30,374.45`` in ``en_IN`` (lakh and crore grouping), ``$1,430,374.45`` in
``en_US``.  The locale comes from ``--locale``, else ``REFERRAL_LOCALE``, else
``en_IN`` (the example program pays rupees).  Only what people read is
formatted so: JSON and CSV keep integer minor units, with the formatted string
beside them; rule text keeps its own canonical money form (``dsl.money``).
"""

from __future__ import annotations

import os
from decimal import Decimal

from babel import Locale, UnknownLocaleError
from babel.numbers import format_currency

from dsl.money import exponent
from settlement.errors import ReportError

DEFAULT_LOCALE = "en_IN"
LOCALE_ENV = "REFERRAL_LOCALE"


def resolve_locale(name: str | None = None) -> str:
    """The locale to format with (checked: an unknown one is a ReportError)."""
    chosen = name or os.environ.get(LOCALE_ENV) or DEFAULT_LOCALE
    try:
        Locale.parse(chosen.replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        raise ReportError(f"unknown locale {chosen!r} (for example en_IN, en_US, de_DE)") from None
    return chosen.replace("-", "_")


def format_amount(minor: int, currency: str, locale: str) -> str:
    """Integer minor units as the locale writes money: ``format_amount(143037445, "INR",
    "en_IN") == "₹14,30,374.45"``."""
    value = Decimal(minor).scaleb(-exponent(currency))
    return format_currency(value, currency, locale=locale)
