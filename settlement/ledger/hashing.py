"""The hash chain: each entry's sha256 covers its columns and the previous entry's hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import UTC, date, datetime
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


def entry_hash(row: Mapping[str, Any] | RowMapping) -> str:
    """sha256 over the row's canonical JSON (every column but ``hash``, prev_hash included;
    a later column only when set)."""
    content = {
        name: canonical(row[name]) for name in HASHED_COLUMNS
        if name not in HASHED_WHEN_SET or row[name] is not None
    }
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
