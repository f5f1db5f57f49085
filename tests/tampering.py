"""Going behind the ledger's back, as an attacker with database access would."""

from __future__ import annotations

import sqlalchemy as sa

LEDGER_TABLES = ("ledger_postings", "ledger_transitions", "ledger_entries")


def disable_append_only(
    conn: sa.Connection, verb: str, tables: tuple[str, ...] = LEDGER_TABLES
) -> None:
    """Let ``verb`` (UPDATE or DELETE) through the append-only triggers of ``tables``."""
    for table in tables:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text(f"DROP TRIGGER {table}_no_{verb.lower()}"))
