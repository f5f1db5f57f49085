"""Going behind the ledger's back after a real settlement run: the database refuses UPDATE
and DELETE from the application's connection, and a row changed with the triggers disabled
is named by `ledger verify`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.tables import APPEND_ONLY_TABLES
from tests.faults.helpers import RULES_DIR, cli, ledger_state, settle_args, verify_ok
from tests.tampering import disable_append_only

pytestmark = pytest.mark.faults

TABLES = (*APPEND_ONLY_TABLES, "settlement_runs", "settlement_quarantine")
CHANGES = {
    "ledger_entries": "UPDATE ledger_entries SET amount = amount * 10",
    "ledger_transitions": "UPDATE ledger_transitions SET to_status = 'paid'",
    "ledger_postings": "UPDATE ledger_postings SET amount = 0",
    "settlement_runs": "UPDATE settlement_runs SET posted = 0",
    "settlement_quarantine": "UPDATE settlement_quarantine SET reason = 'fine'",
}


def test_changes_refused_and_hand_edits_found(db_url, figure, tmp_path: Path) -> None:
    upgrade(db_url)
    records = tmp_path / "records.jsonl"
    with records.open("w") as fh:
        write_records(fh, 600, seed=9)
    assert cli(*settle_args(RULES_DIR, records, db_url, "2026-11-25")).exit_code == 0
    before = ledger_state(db_url)
    assert before["entries"] and before["quarantine"]

    attempts = [CHANGES[t] for t in TABLES] + [f"DELETE FROM {t}" for t in TABLES]
    engine = open_engine(db_url)  # the application's own connection and user
    if engine.dialect.name == "postgresql":
        attempts += [f"TRUNCATE {t} CASCADE" for t in TABLES]
    refused = 0
    for sql in attempts:
        verb, table = sql.split()[0], re.search(r"(?:UPDATE|FROM) (\w+)", sql)
        # CASCADE truncates the referencing tables too: any one of their triggers refuses.
        on = table[1] if table else r"\w+"
        with pytest.raises(sa.exc.DBAPIError, match=f"append-only: {verb} on {on}"):
            with engine.begin() as conn:
                conn.execute(sa.text(sql))
        refused += 1
    assert ledger_state(db_url) == before
    verify_ok(db_url)

    # With the triggers out of the way, change one entry in the middle of the chain.
    credits = [e for e in before["entries"] if e[5] == "credit"]
    victim = credits[len(credits) // 2]
    entry_id, reference = victim[0], victim[1]
    with engine.begin() as conn:
        disable_append_only(conn, "UPDATE", ("ledger_entries",))
        conn.execute(sa.text("UPDATE ledger_entries SET amount = amount + 100 WHERE id = :id"),
                     {"id": entry_id})
    engine.dispose()
    result = cli("ledger", "verify", "--db", db_url)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"error: ledger verification failed: entry id={entry_id} reference '{reference}': "
    ), result.stderr
    backend = sa.make_url(db_url).get_backend_name()
    figure(
        f"tampering ({backend}): {refused}/{len(attempts)} refused by the database (UPDATE and "
        f"DELETE on {len(TABLES)} ledger and settlement tables"
        f"{', and TRUNCATE' if backend == 'postgresql' else ''}); "
        f"a hand-edited amount (triggers disabled) named by `ledger verify`: exit 1, "
        f"entry id={entry_id}"
    )


def test_truncating_the_run_log_is_refused_on_postgresql(pg_url) -> None:
    """The run log holds the ledger heads that `ledger verify` anchors the chain to."""
    upgrade(pg_url)
    engine = open_engine(pg_url)
    try:
        with pytest.raises(sa.exc.DBAPIError, match="append-only: TRUNCATE on settlement_runs"):
            with engine.begin() as conn:
                conn.execute(sa.text("TRUNCATE settlement_runs CASCADE"))
    finally:
        engine.dispose()
