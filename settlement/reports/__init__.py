"""Finance reports: liabilities as of a date, activity per period, the HTML page.

The figures come from the ledger's dated history (``settlement.ledger.liabilities``,
``activity``); ``people`` formats money for readers; ``html`` draws the static page.
The library returns data; the CLI (``referral report``) prints it.
"""

from __future__ import annotations

from settlement.ledger.liabilities import FIGURES, GROUPINGS, Liabilities, Standing, liabilities
from settlement.reports.activity import PERIODS, ActivityRow, activity
from settlement.reports.people import format_amount, resolve_locale

__all__ = [
    "FIGURES", "GROUPINGS", "PERIODS", "ActivityRow", "Liabilities", "Standing", "activity",
    "format_amount", "liabilities", "resolve_locale",
]
