"""Going behind the ledger's back, as an attacker with the table owner's rights would:
triggers out of the way, rows changed, and the hashes an attacker can recompute (entries,
operation seals, the operations chain) recomputed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from settlement import operations
from settlement.ledger.hashing import GENESIS_HASH, entry_hash
from settlement.tables import OPERATION_TABLES, ledger_entries, ledger_operations

LEDGER_TABLES = ("ledger_postings", "ledger_transitions", "ledger_entries")
ALL_TABLES = (*reversed(tuple(OPERATION_TABLES)), "ledger_operations")


def disable_append_only(
    conn: sa.Connection, verb: str, tables: tuple[str, ...] = LEDGER_TABLES
) -> None:
    """Let ``verb`` (UPDATE or DELETE) through the append-only triggers of ``tables``."""
    for table in tables:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_{verb.lower()}"))


def unguard(conn: sa.Connection) -> None:
    """Every append-only trigger out of the way (what the tables' owner may do)."""
    for verb in ("UPDATE", "DELETE"):
        disable_append_only(conn, verb, ALL_TABLES)


def sql(conn: sa.Connection, text: str, **params: Any) -> None:
    conn.execute(sa.text(text), params)


def delete_entries(conn: sa.Connection, ids: Iterable[int]) -> None:
    """Delete entries and every row that refers to them (payout rows, moves, postings)."""
    for entry_id in ids:
        sql(conn, "DELETE FROM payout_covers WHERE item_entry_id = :i OR entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM payout_items WHERE entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_postings WHERE entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_postings WHERE transition_id IN (SELECT id FROM"
                  " ledger_transitions WHERE item_id = :i)", i=entry_id)
        sql(conn, "DELETE FROM ledger_transitions WHERE entry_id = :i OR item_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_entries WHERE id = :i", i=entry_id)


def rechain(conn: sa.Connection, *, heads: bool) -> None:
    """Recompute every entry's prev_hash and hash; with ``heads``, the heads the run log
    and payout batches recorded too (a rewritten chain that the database alone accepts)."""
    e = ledger_entries
    prev = GENESIS_HASH
    rows = [dict(r) for r in conn.execute(sa.select(e).order_by(e.c.id)).mappings()]
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = entry_hash(row)
        conn.execute(e.update().where(e.c.id == row["id"]).values(
            prev_hash=row["prev_hash"], hash=row["hash"]))
    if heads:
        for table in ("settlement_runs", "payout_batches"):
            sql(conn, f"UPDATE {table} SET ledger_head_hash = (SELECT hash FROM ledger_entries"
                      f" WHERE ledger_entries.id = {table}.ledger_head_id)")


def reseal(conn: sa.Connection) -> None:
    """Recompute every operation's seal and the operations chain from the tables as they
    are now: what an attacker who read settlement/operations.py can do."""
    o = ledger_operations
    prev = operations.GENESIS_HASH
    for row in [dict(r) for r in conn.execute(sa.select(o).order_by(o.c.id)).mappings()]:
        seal = operations.compute_seal(conn, row["op_id"])
        row.update(counts=operations._dumps(seal.as_json()), digest=seal.digest(),
                   prev_hash=prev)
        row["hash"] = prev = operations.operation_hash(row)
        conn.execute(o.update().where(o.c.id == row["id"]).values(
            counts=row["counts"], digest=row["digest"], prev_hash=row["prev_hash"],
            hash=row["hash"]))
