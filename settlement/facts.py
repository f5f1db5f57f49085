"""Facts, versioned: the newest snapshot of each referral that settlement has kept.

A record may carry ``version`` (an integer) or ``updated_at`` (an ISO 8601
timestamp, with or without offset; normalised to UTC).  A snapshot is *stale*
when the kept one of the same referral has a version (or timestamp) at least
as new: it is ignored and counted, and the kept snapshot is what the referral
is reconciled against.  Without comparable versions, read order decides: a
later line, or a later run, wins, where a snapshot's place in that order is
where settlement first saw it: one kept before and superseded since is old
wherever it is read again, so rereading a file changes nothing.  (Facts that
can return to an earlier state need ``version`` or ``updated_at``.)  Within a
run the same holds line by line, so the newest snapshot wins wherever it
stands in the file.

Kept snapshots are rows of ``settlement_facts`` (append-only; the newest row
of a referral is its kept snapshot), the record as canonical JSON.  A snapshot
with the same content as the kept one is not stored again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.errors import EvaluationError
from dsl.timeutil import parse_instant, to_utc
from settlement.dialect import backend
from settlement.records import DECODER, Record
from settlement.tables import settlement_facts

_F = settlement_facts


@dataclass(frozen=True)
class Version:
    """How new a snapshot says it is (both None: it does not say)."""

    version: int | None = None
    updated_at: datetime | None = None

    def newer_than(self, kept: Version) -> bool:
        """False when ``kept`` is at least as new; True when not comparable (read order)."""
        if self.version is not None and kept.version is not None:
            return self.version > kept.version
        if self.updated_at is not None and kept.updated_at is not None:
            return self.updated_at > kept.updated_at
        return True


@dataclass(frozen=True)
class Kept:
    """A referral's kept snapshot (version, digest, its JSON) and every digest kept before."""

    id: int
    version: Version
    digest: str
    earlier: frozenset[str] = frozenset()
    run_id: str | None = None  # the run that kept it

    def supersedes(self, version: Version, digest_: str) -> bool:
        """Whether this kept snapshot is at least as new as an incoming one.

        By version or timestamp when both say; otherwise by when settlement first saw
        it: a snapshot kept before and superseded since is older, wherever it is read.
        """
        if not version.newer_than(self.version):
            return True
        comparable = (version.version is not None and self.version.version is not None) or (
            version.updated_at is not None and self.version.updated_at is not None)
        return not comparable and digest_ in self.earlier and digest_ != self.digest


def record_version(record: Record, tz: tzinfo = UTC) -> Version:
    """The snapshot's ``version`` / ``updated_at`` (EvaluationError when malformed); a
    timestamp without an offset is in the program's time zone ``tz``."""
    version = record.data.get("version")
    updated = record.data.get("updated_at")
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise EvaluationError(f"version must be an integer, got {json.dumps(version, default=str)}")
    at = None
    if updated is not None:
        try:
            at = to_utc(parse_instant(updated, tz), updated)
        except EvaluationError as e:
            raise EvaluationError(f"updated_at: {e.message}") from None
    return Version(version, at)


def snapshot_text(record: Record) -> str:
    """What a kept snapshot stores: the JSON line itself, or a CSV row as canonical JSON."""
    return record.raw if record.fmt == "jsonl" else canonical_json(record.data)


def canonical_json(value: Any) -> str:
    """Record data as JSON text with sorted keys and exact decimals (``4.50`` stays 4.50)."""
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(
            json.dumps(k, ensure_ascii=False) + ":" + canonical_json(v) for k, v in items
        ) + "}"
    if isinstance(value, list):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)  # finite: JSON numbers are never NaN or infinite
    return json.dumps(value, ensure_ascii=False)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


_ROWS = sa.select(_F.c.id, _F.c.referral_id, _F.c.version, _F.c.updated_at,
                  _F.c.digest, _F.c.run_id).order_by(_F.c.id)
_DATA = sa.select(_F.c.id, _F.c.data, _F.c.file, _F.c.line)


def kept_snapshots(conn: Connection, referral_ids: Iterable[str]) -> dict[str, Kept]:
    """The kept snapshot of each referral that has one (one query for the whole chunk)."""
    ids = list(dict.fromkeys(referral_ids))
    if not ids:
        return {}
    rows: dict[str, list[Any]] = {}
    for row in backend(conn).select_in(conn, _ROWS, _F.c.referral_id, ids):
        rows.setdefault(row.referral_id, []).append(row)
    found: dict[str, Kept] = {}
    for rid, history in rows.items():
        row = history[-1]  # in id order: the newest
        found[rid] = Kept(row.id, Version(row.version, _utc(row.updated_at)), row.digest,
                          frozenset(r.digest for r in history), row.run_id)
    return found


def kept_records(conn: Connection, kept: Iterable[Kept]) -> dict[int, Record]:
    """The records of kept snapshots, by snapshot id (only stale arrivals need them)."""
    ids = [k.id for k in kept]
    if not ids:
        return {}
    return {row.id: Record(row.file, row.line, row.data, DECODER.decode(row.data))
            for row in backend(conn).select_in(conn, _DATA, _F.c.id, ids)}


def _utc(at: datetime | None) -> datetime | None:
    if at is None:
        return None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def fact_row(record: Record, version: Version, text: str, digest_: str,
             run_id: str) -> dict[str, Any]:
    return {"referral_id": record.referral_id, "version": version.version,
            "updated_at": version.updated_at, "digest": digest_, "data": text,
            "file": record.file, "line": record.line, "run_id": run_id}
