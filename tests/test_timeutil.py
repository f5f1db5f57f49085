"""The one date reader (``dsl.timeutil``): records, examples and conditions alike."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dsl.errors import DateError, DateRangeError
from dsl.timeutil import event_date, parse_instant, temporal, zone

KOLKATA = ZoneInfo("Asia/Kolkata")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.mark.parametrize(("value", "tz", "day"), [
    ("2026-11-15", UTC, date(2026, 11, 15)),
    ("2026-11-15", KOLKATA, date(2026, 11, 15)),  # a date is a date in every zone
    ("2026-11-16T02:30:00Z", UTC, date(2026, 11, 16)),
    ("2026-11-16T02:30:00Z", NEW_YORK, date(2026, 11, 15)),
    ("2026-11-15T21:30:00-05:00", KOLKATA, date(2026, 11, 16)),
    ("2026-11-15T21:30:00", KOLKATA, date(2026, 11, 15)),  # no offset: wall clock there
    ("2026-11-15 21:30", UTC, date(2026, 11, 15)),
    ("2026-11-15T21:30:00.123456+0530", UTC, date(2026, 11, 15)),
    (date(2026, 1, 2), NEW_YORK, date(2026, 1, 2)),
    (datetime(2026, 1, 2, 1, 0, tzinfo=UTC), NEW_YORK, date(2026, 1, 1)),
])
def test_event_date_of_dates_and_timestamps(value, tz, day) -> None:
    assert event_date(value, tz) == day


@pytest.mark.parametrize("value", [
    "soon", "2026-13-01", "2026-02-30", "20261115", "2026-W46-7", "2026-11-15T25:00",
    "2026-11-15garbage", " 2026-11-15", 20261115, None, 1.5,
])
def test_not_a_date_is_a_date_error(value) -> None:
    assert temporal(value) is None
    with pytest.raises(DateError, match="expected an ISO 8601 date or timestamp"):
        event_date(value)


def test_parse_instant_of_a_date_is_its_first_moment_in_the_zone() -> None:
    assert parse_instant("2026-11-15", KOLKATA) == datetime(2026, 11, 14, 18, 30, tzinfo=UTC)
    assert parse_instant("2026-11-15T10:00:00+05:30") == datetime(2026, 11, 15, 4, 30,
                                                                  tzinfo=UTC)


def test_zone_names() -> None:
    assert zone(None) is UTC and zone("utc") is UTC
    assert zone("Asia/Kolkata") == KOLKATA
    with pytest.raises(DateError, match="unknown time zone 'Nowhere/City'"):
        zone("Nowhere/City")


instants = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1),
                        timezones=st.just(UTC))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m)))
zones = st.sampled_from([UTC, KOLKATA, NEW_YORK, ZoneInfo("Australia/Lord_Howe"),
                         ZoneInfo("Pacific/Kiritimati"), ZoneInfo("America/St_Johns")])


@given(instants, offsets, offsets, zones)
def test_event_date_depends_only_on_the_instant_and_the_zone(instant, a, b, tz) -> None:
    """However an instant is written (any offset, Z, or wall clock in the program's
    zone), it falls on one date and is one instant."""
    expected = instant.astimezone(tz).date()
    written = [instant.astimezone(a).isoformat(), instant.astimezone(b).isoformat(),
               instant.isoformat().replace("+00:00", "Z"),
               instant.astimezone(tz).replace(tzinfo=None).isoformat()]
    for text in written:
        assert event_date(text, tz) == expected, text
    for text in written[:3]:
        assert parse_instant(text, tz) == instant, text


@pytest.mark.parametrize("value", ["9999-12-31T23:00:00-05:00", "0001-01-01T01:00:00+05:30"])
def test_temporal_instant_outside_the_calendar_is_a_date_range_error(value) -> None:
    with pytest.raises(DateRangeError, match=r"is out of range: it falls outside the years 1"):
        temporal(value, UTC)
