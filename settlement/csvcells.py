"""CSV cells that a spreadsheet opens as text, never as a formula.

A cell beginning with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return,
which some spreadsheets skip before looking) is a formula to Excel, LibreOffice
and Google Sheets: an id ``=HYPERLINK("http://evil", "click")`` in a payout file
becomes a live link on the finance team's screen (OWASP "CSV injection").  Every
CSV the program writes passes its cells through ``safe_cell``, which prefixes such
a cell with ``'``.  A cell that is a number or an amount (``-500``, ``-₹1,430.50``,
``-CHF 1.23``) is left alone: it can only be read as a number.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_AMOUNT = re.compile(
    r"[-+]?(?:[A-Z]{3} |\$|[^\x00-\x7f]{1,3})?[0-9][0-9,.]*"
    r"(?:[ \u00a0\u202f]?(?:[A-Z]{3}|[^\x00-\x7f]{1,3}))?"
)


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> Any:
    """``value`` as a spreadsheet takes it literally (non-text values are left as they are)."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _AMOUNT.fullmatch(
            value):
        return "'" + value
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    return [safe_cell(v) for v in row]


class SafeWriter:
    """``csv.writer`` whose every cell goes through ``safe_cell``."""

    def __init__(self, out: _Writable, **fmt: Any) -> None:
        self._writer = csv.writer(out, lineterminator="\n", **fmt)

    def writerow(self, row: Iterable[Any]) -> None:
        self._writer.writerow(safe_row(row))


class SafeDictWriter:
    """``csv.DictWriter`` whose every cell goes through ``safe_cell``."""

    def __init__(self, out: _Writable, fieldnames: Sequence[str]) -> None:
        self._writer = csv.DictWriter(out, fieldnames=fieldnames, lineterminator="\n")

    def writeheader(self) -> None:
        self._writer.writeheader()

    def writerow(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({k: safe_cell(v) for k, v in row.items()})
