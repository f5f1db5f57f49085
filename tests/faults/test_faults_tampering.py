"""Going behind the ledger's back after a real settlement run: the database refuses UPDATE
and DELETE from the application's connection, a row changed with the triggers disabled
is named by `ledger verify`, and every attack of tests/tampering.py, each on its own copy
of a ledger with settles, a payout batch and hand credits, is detected (by the database
alone, or with the anchor written outside it)."""

from __future__ import annotations

import dataclasses
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa

from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.tables import OPERATION_TABLES
from tests.conftest import PG_ADMIN_URL
from tests.faults.helpers import RULES_DIR, cli, ledger_state, settle_args, verify_ok
from tests.tampering import ATTACKS, KEY, Ledger, build_ledger, carry_out, disable_append_only
from tests.tampering import verify as verify_book

pytestmark = pytest.mark.faults

# Every table a command writes, and the operations log that seals them.
TABLES = (*OPERATION_TABLES, "ledger_operations")
CHANGES = {t: f"UPDATE {t} SET op_id = 'forged'" for t in TABLES}
CHANGES.update({
    "ledger_entries": "UPDATE ledger_entries SET amount = amount * 10",
    "ledger_transitions": "UPDATE ledger_transitions SET to_status = 'paid'",
    "ledger_postings": "UPDATE ledger_postings SET amount = 0",
    "settlement_runs": "UPDATE settlement_runs SET posted = 0",
    "settlement_quarantine": "UPDATE settlement_quarantine SET reason = 'fine'",
})


def test_changes_refused_and_hand_edits_found(db_url, figure, tmp_path: Path) -> None:
    upgrade(db_url)
    records = tmp_path / "records.jsonl"
    with records.open("w") as fh:
        write_records(fh, 600, seed=9)
    assert cli(*settle_args(RULES_DIR, records, db_url, "2026-11-25")).exit_code == 0
    before = ledger_state(db_url)
    assert before["entries"] and before["quarantine"]

    engine = open_engine(db_url)  # the application's own connection and user
    with engine.connect() as conn:  # row triggers fire on rows: the tables the run filled
        filled = [t for t in TABLES
                  if conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()]
    assert {"ledger_entries", "ledger_operations", "settlement_quarantine"} <= set(filled)
    attempts = [CHANGES[t] for t in filled] + [f"DELETE FROM {t}" for t in reversed(filled)]
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
        "hash mismatch (the row was changed after it was written)"  # the hash check's own
    ), result.stderr
    backend = sa.make_url(db_url).get_backend_name()
    figure(
        f"tampering ({backend}): {refused}/{len(attempts)} refused by the database (UPDATE and "
        f"DELETE on the {len(filled)} ledger and settlement tables the run filled"
        f"{', and TRUNCATE' if backend == 'postgresql' else ''}); "
        f"a hand-edited amount (triggers disabled) named by `ledger verify`: exit 1, "
        f"entry id={entry_id}"
    )


@contextmanager
def _copy(book: Ledger, tmp_path: Path) -> Iterator[Ledger]:
    """A copy of the attacked ledger's database (SQLite: the file; PostgreSQL: a database
    made from it as a template), dropped afterwards."""
    url = sa.make_url(book.url)
    name = f"tamper_{uuid.uuid4().hex[:10]}"
    if url.get_backend_name() == "sqlite":
        copy = tmp_path / f"{name}.db"
        shutil.copy(str(url.database), copy)
        yield dataclasses.replace(book, url=f"sqlite:///{copy}")
        return
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"'))
        yield dataclasses.replace(book, url=url.set(database=name).render_as_string(False))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_every_attack_detected(db_url, figure, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REFERRAL_ANCHOR_KEY", KEY)
    book = build_ledger(db_url, tmp_path)
    alone = anchored = 0
    missed: list[str] = []
    for attack in ATTACKS:
        with _copy(book, tmp_path) as copy:
            carry_out(copy, attack)
            if verify_book(copy, anchored=False):
                alone += 1
            elif verify_book(copy, anchored=True):
                anchored += 1
            else:
                missed.append(attack.name)
    assert missed == []
    assert anchored == sum(a.needs_anchor for a in ATTACKS)
    backend = sa.make_url(db_url).get_backend_name()
    figure(
        f"tampering attacks ({backend}): {alone + anchored}/{len(ATTACKS)} detected by "
        f"`ledger verify` ({alone} by the database alone, {anchored} only with the anchor "
        f"kept outside it); missed: {len(missed)}"
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
