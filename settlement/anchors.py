"""Anchors: the chains' heads and the tables' row counts, written to a file outside the
database, so that a rewrite by someone who owns the database still shows.

``take`` reads the head of the entries chain and of the operations log (id and hash)
and how many rows each sealed table holds; ``dumps`` writes them as JSON, signed with
HMAC-SHA256 when a key is given (``REFERRAL_ANCHOR_KEY`` in the CLI).  ``check`` proves
that nothing before the anchor was changed, deleted or emptied: both heads are still
there with the same hashes (each hash covers everything before it: ``ledger verify``
checks the chains lead up to it) and no table holds fewer rows than then.  Tables only
grow, so more rows is what later commands did.

What an anchor cannot prove: anything written after it.  Keep anchors where the database's
owner cannot write (another machine, object storage with retention), one per night.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.errors import AnchorError
from settlement.ledger.reads import head
from settlement.operations import operations_head
from settlement.tables import OPERATION_TABLES, ledger_entries, ledger_operations

FORMAT = "referral-ledger-anchor/1"
ALGORITHM = "HMAC-SHA256"
COUNTED = (*OPERATION_TABLES, "ledger_operations")


@dataclass(frozen=True)
class Anchor:
    """What an anchor file holds (its signature already checked)."""

    entries_head: tuple[int, str] | None
    operations_head: tuple[int, str] | None
    counts: dict[str, int]
    taken_at: str
    signed: bool


def _payload_text(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")


def _signature(payload: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _payload_text(payload), hashlib.sha256).hexdigest()


def take(conn: Connection) -> dict[str, Any]:
    """The anchor of the ledger as ``conn`` sees it (one transaction: one consistent view)."""
    entries = head(conn)
    ops = operations_head(conn)
    counts = {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
              for t in COUNTED}
    return {
        "format": FORMAT,
        "taken_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "entries": {"head_id": entries[0], "head_hash": entries[1]} if entries else None,
        "operations": ({"head_id": ops[0], "head_hash": ops[1], "op_id": ops[2]}
                       if ops else None),
        "counts": counts,
    }


def dumps(payload: dict[str, Any], key: bytes | None) -> str:
    """The anchor file's text: the payload, and its HMAC-SHA256 when ``key`` is given."""
    doc: dict[str, Any] = {"anchor": payload}
    if key:
        doc["signature"] = {"algorithm": ALGORITHM, "value": _signature(payload, key)}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def loads(text: str, key: bytes | None, name: str) -> Anchor:
    """An anchor file read back; AnchorError when it is not one, its signature does not
    hold, or a key is set and the file is unsigned (stripping it would allow any edit)."""
    try:
        doc = json.loads(text)
        payload = doc["anchor"]
        if payload.get("format") != FORMAT:
            raise AnchorError(f"{name}: not a ledger anchor (format {payload.get('format')!r})")
        signature = doc.get("signature")
        if signature is not None and not key:
            raise AnchorError(f"{name}: the anchor is signed; set REFERRAL_ANCHOR_KEY to check it")
        if signature is None and key:
            raise AnchorError(f"{name}: the anchor is not signed, but REFERRAL_ANCHOR_KEY is set"
                              " (an unsigned anchor could have been rewritten)")
        if signature is not None and key and not hmac.compare_digest(
                str(signature.get("value")), _signature(payload, key)):
            raise AnchorError(f"{name}: bad signature (the file was changed, or signed with"
                              " another key)")
        entries, ops = payload["entries"], payload["operations"]
        return Anchor(
            entries_head=(int(entries["head_id"]), str(entries["head_hash"])) if entries
            else None,
            operations_head=(int(ops["head_id"]), str(ops["head_hash"])) if ops else None,
            counts={str(t): int(n) for t, n in payload["counts"].items()},
            taken_at=str(payload["taken_at"]),
            signed=signature is not None,
        )
    except AnchorError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AnchorError(f"{name}: not a ledger anchor ({type(e).__name__}: {e})") from None


def _head_problem(conn: Connection, table: sa.Table, what: str, anchored: tuple[int, str],
                  by: str) -> str | None:
    got = conn.execute(sa.select(table.c.hash).where(table.c.id == anchored[0])).scalar()
    if got is None:
        return (f"{what} id={anchored[0]} is missing: {by} recorded it as the head"
                " (rows were deleted or the tables emptied)")
    if got != anchored[1]:
        return (f"{what} id={anchored[0]}: hash differs from the one {by} recorded"
                " (the chain was rewritten)")
    return None


def check(conn: Connection, anchor: Anchor, name: str) -> list[str]:
    """What changed before the anchor: heads gone or rewritten, tables with fewer rows."""
    by = f"anchor {name} ({anchor.taken_at})"
    problems = [
        p for p in (
            anchor.entries_head and _head_problem(conn, ledger_entries, "entry",
                                                  anchor.entries_head, by),
            anchor.operations_head and _head_problem(conn, ledger_operations, "operation",
                                                     anchor.operations_head, by),
        ) if p
    ]
    return problems + _count_problems(conn, anchor, by)


def _count_problems(conn: Connection, anchor: Anchor, by: str) -> list[str]:
    problems = []
    for table, then in sorted(anchor.counts.items()):
        if table not in COUNTED:
            continue
        now = int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
        if now < then:
            problems.append(f"{table} holds {now} rows, {by} recorded {then}"
                            " (rows were deleted)")
    return problems
