"""The hash chain: each entry's sha256 covers its columns and the previous entry's hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from settlement.tables import ledger_entries

if TYPE_CHECKING:
    from sqlalchemy.engine import RowMapping

GENESIS_HASH = "0" * 64
HASHED_COLUMNS = tuple(c.name for c in ledger_entries.c if c.name != "hash")
# Columns added after the chain began enter the hash only when set: rows written before
# the column existed (NULL there) keep the hash they were written with.
HASHED_WHEN_SET = frozenset({"adjusts", "business_date", "op_id"})


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(value: Any) -> Any:
    """A column value as the hash sees it: datetimes and dates as fixed ISO text."""
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    return value


_SORTED_COLUMNS = tuple(sorted(HASHED_COLUMNS))
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_PLAIN = (str, int)
# The entries of one write share their timestamp and a few dates: each is formatted once.
_canonical_cached = lru_cache(maxsize=1024, typed=True)(canonical)


def entry_hash(row: Mapping[str, Any] | RowMapping) -> str:
    """sha256 over the row's canonical JSON (every column but ``hash``, prev_hash included;
    a later column only when set).  The keys go in sorted, so one shared encoder writes
    what ``json.dumps(..., sort_keys=True)`` would (tests/test_ledger.py holds them equal)."""
    content = {}
    for name in _SORTED_COLUMNS:
        value = row[name]
        if value is None:
            if name in HASHED_WHEN_SET:
                continue
        elif type(value) not in _PLAIN:
            value = _canonical_cached(value)
        content[name] = value
    return hashlib.sha256(_ENCODE(content).encode("utf-8")).hexdigest()
