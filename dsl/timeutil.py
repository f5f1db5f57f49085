"""Dates and instants: the one reader of record, example and condition values.

A value is an ISO 8601 date (``2026-11-15``) or timestamp (``2026-11-15T21:30:00``,
with or without an offset: ``Z``, ``+05:30``), or a ``date``/``datetime`` object.
A timestamp with an offset is an instant; one without is a wall-clock time in the
program's time zone (``TIMEZONE``, default UTC).  A timestamp's *date* is the date
of its instant in the program's time zone, so the same instant written with
different offsets falls on one date, and so in one campaign and one LIMIT period.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, tzinfo
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dsl.errors import DateError, DateRangeError

# ISO 8601 extended form: a date, optionally a time (T or a space), optionally an offset.
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?(?:Z|z|[+-]\d{2}:?\d{2})?)?"
)

Temporal = date | datetime  # a date, or an aware datetime (an instant)


@cache
def zone(name: str | None) -> tzinfo:
    """The time zone called ``name`` (IANA, like ``Asia/Kolkata``); UTC for None."""
    if name is None or name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise DateError(f"unknown time zone {name!r} (expected an IANA name like "
                        '"Asia/Kolkata" or "UTC")') from None


def temporal(value: Any, tz: tzinfo = UTC) -> Temporal | None:
    """A date, or an aware datetime in ``tz``; None when ``value`` is neither.

    Naive timestamps are wall-clock times in ``tz``; aware ones are converted to it.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=tz) if value.tzinfo is None else _in_zone(value, tz, value)
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO.fullmatch(value):
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
        parsed = datetime.fromisoformat(value.replace(",", ".").replace("z", "Z"))
    except ValueError:
        return None
    return parsed.replace(tzinfo=tz) if parsed.tzinfo is None else _in_zone(parsed, tz, value)


def _in_zone(instant: datetime, tz: tzinfo, value: Any) -> datetime:
    try:
        return instant.astimezone(tz)
    except OverflowError:  # 9999-12-31T23:00-05:00 is in year 10000 in UTC
        raise out_of_range(value) from None


def out_of_range(value: Any) -> DateRangeError:
    """The error for a value whose instant, or a date computed from it, leaves the calendar."""
    return DateRangeError(f"{_describe(value)} is out of range: it falls outside the years 1"
                          " to 9999 in the program's time zone")


def to_utc(instant: datetime, value: Any = None) -> datetime:
    """``instant`` in UTC (DateRangeError when that leaves the calendar)."""
    return _in_zone(instant, UTC, instant if value is None else value)


def _describe(value: Any) -> str:
    return repr(value) if isinstance(value, str) else f"{type(value).__name__} {value!r}"


def parse_temporal(value: Any, tz: tzinfo = UTC) -> Temporal:
    """``temporal``, raising ``DateError`` for what is not a date or a timestamp."""
    found = temporal(value, tz)
    if found is None:
        raise DateError(f"expected an ISO 8601 date or timestamp, found {_describe(value)}")
    return found


def event_date(value: Any, tz: tzinfo = UTC) -> date:
    """The date ``value`` falls on in ``tz`` (a timestamp's instant there, a date itself)."""
    found = parse_temporal(value, tz)
    return found.date() if isinstance(found, datetime) else found


def parse_instant(value: Any, tz: tzinfo = UTC) -> datetime:
    """The instant ``value`` names, in ``tz``; a date is its first moment there."""
    found = parse_temporal(value, tz)
    if isinstance(found, datetime):
        return found
    return datetime.combine(found, time(), tzinfo=tz)


def as_dates(a: Temporal, b: Temporal) -> tuple[Temporal, Temporal]:
    """Two values made comparable: two instants stay instants; a date and an instant
    compare by the instant's date (both already in the program's time zone)."""
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a, b
    return day_of(a), day_of(b)


def day_of(value: Temporal) -> date:
    """The calendar date of a value already read by ``temporal``."""
    return value.date() if isinstance(value, datetime) else value


__all__ = [
    "Temporal",
    "as_dates",
    "day_of",
    "event_date",
    "out_of_range",
    "parse_instant",
    "parse_temporal",
    "temporal",
    "to_utc",
    "zone",
]


def today(tz: tzinfo = UTC, now: datetime | None = None) -> date:
    """The date it is now in ``tz`` (``now``: an aware instant, for tests)."""
    return (now or datetime.now(UTC)).astimezone(tz).date()
