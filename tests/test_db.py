"""Engines, migrations and schema checks on SQLite and PostgreSQL."""

from __future__ import annotations

import importlib
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext

from settlement.db import (
    SCHEMA_REVISION,
    current_revision,
    head_revision,
    normalise_url,
    open_engine,
    require_schema,
    upgrade,
)
from settlement.dialect import backend
from settlement.errors import DatabaseUnavailable, InvalidDatabaseURL, SchemaNotReady
from settlement.tables import APPEND_ONLY_TABLES, PAYOUT_TABLES, UTCDateTime, metadata


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:///x.db", "sqlite:///x.db"),
    ],
)
def test_normalise_url_uses_psycopg3(url, expected) -> None:
    assert normalise_url(url) == expected


def test_open_engine_unreachable_postgresql_is_one_line_without_password() -> None:
    with pytest.raises(DatabaseUnavailable) as err:
        open_engine("postgresql://alice:s3cret@127.0.0.1:1/ledgerdb")
    message = str(err.value)
    assert message.startswith("cannot connect to PostgreSQL database ledgerdb on 127.0.0.1:1: ")
    assert "\n" not in message and "s3cret" not in message


def test_open_engine_unopenable_sqlite_file(tmp_path) -> None:
    with pytest.raises(DatabaseUnavailable, match="cannot connect to SQLite database .*missing"):
        open_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")


def test_open_engine_unsupported_database_is_one_line() -> None:
    with pytest.raises(InvalidDatabaseURL) as err:
        open_engine("mysql://u:s3cret@h/db")
    assert str(err.value) == "unsupported database 'mysql' (sqlite, postgresql)"


@pytest.mark.parametrize(("url", "message"), [
    ("nonsense", "invalid database URL 'nonsense': Could not parse SQLAlchemy URL"),
    ("postgresql://u:s3cret@h:abc/db", "invalid database URL (unparsable): invalid literal"),
    ("postgresql://u:s3cret@h:99999/db",
     "invalid database URL 'postgresql://u:***@h:99999/db': port 99999 is not in"),
])
def test_open_engine_unparsable_url_is_a_usage_error(url, message) -> None:
    with pytest.raises(InvalidDatabaseURL) as err:
        open_engine(url)
    assert str(err.value).startswith(message)
    assert "s3cret" not in str(err.value)


def test_open_engine_must_exist_refuses_a_missing_sqlite_file(tmp_path) -> None:
    path = tmp_path / "nowhere.db"
    with pytest.raises(SchemaNotReady, match=f"SQLite database {path} does not exist"):
        open_engine(f"sqlite:///{path}", must_exist=True)
    assert not path.exists()


def test_backend_is_chosen_once_per_connection(db_url) -> None:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        chosen = backend(conn)
        assert chosen.name == conn.dialect.name
        assert backend(conn) is chosen
    engine.dispose()


def test_open_engine_sqlite_has_foreign_keys_and_immediate_transactions(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/x.db")
    statements: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    with engine.begin() as conn:
        assert conn.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(sa.text("PRAGMA busy_timeout")).scalar() == 30000
    assert statements[0] == "BEGIN IMMEDIATE"
    engine.dispose()


def test_upgrade_is_idempotent_from_any_cwd(db_url, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert upgrade(db_url) == head_revision()
    assert upgrade(db_url) == head_revision()
    engine = open_engine(db_url)
    with engine.connect() as conn:
        require_schema(conn)
        assert set(APPEND_ONLY_TABLES) <= set(sa.inspect(conn).get_table_names())
    engine.dispose()


def test_require_schema_missing(db_url) -> None:
    engine = open_engine(db_url)
    with engine.connect() as conn, pytest.raises(SchemaNotReady) as err:
        require_schema(conn)
    assert str(err.value) == "database schema is missing; run `referral db upgrade`"
    engine.dispose()


def test_schema_revision_is_the_migrations_head(db_url) -> None:
    """Commands check the constant, not alembic's scripts: a new migration must bump it."""
    assert SCHEMA_REVISION == head_revision()
    engine = open_engine(db_url)
    with engine.connect() as conn:
        assert current_revision(conn) is None
    upgrade(engine, "0002")
    with engine.connect() as conn:
        assert current_revision(conn) == MigrationContext.configure(conn).get_current_revision()
        assert current_revision(conn) == "0002"
    engine.dispose()


def test_require_schema_behind(db_url) -> None:
    assert head_revision() != "0001"
    engine = open_engine(db_url)
    assert upgrade(engine, "0001") == "0001"
    with engine.connect() as conn, pytest.raises(SchemaNotReady) as err:
        require_schema(conn)
    assert str(err.value) == (
        f"database schema is at revision 0001, code needs {head_revision()}; "
        "run `referral db upgrade`"
    )
    engine.dispose()


_0010 = importlib.import_module("settlement.migrations.versions.0010_references_per_statement")
_PER_STATEMENT = {(t, r.column) for t, refs in _0010.REFERENCES.items() for r in refs}


def _orphans(conn: sa.Connection) -> dict[str, tuple[sa.Table, list[dict[str, object]]]]:
    """Per reference of 0010, two rows for its table: one valid, one whose ``column``
    names a parent that does not exist (id 999999)."""
    from settlement.ledger import post_credit
    from settlement.operations import operation
    from settlement.tables import (
        ledger_postings,
        ledger_transitions,
        payees,
        payout_batches,
        payout_covers,
        payout_items,
    )

    with operation(conn, "test", "test"):
        entry = post_credit(conn, "u1", 500, "INR", "ref:1").entry
        other = post_credit(conn, "u1", 700, "INR", "ref:2").entry
    conn.execute(payees.insert(), {"user_id": "u1", "method": "upi", "details": "{}",
                                   "business_date": date(2026, 12, 1),
                                   "imported_at": datetime.now(UTC), "source": "t",
                                   "actor": "t", "op_id": "t"})
    payee = conn.execute(sa.select(sa.func.max(payees.c.id))).scalar()
    conn.execute(payout_batches.insert(), {
        "batch_id": "b1", "as_of": date(2026, 12, 1), "currency": "INR", "min_amount": 0,
        "created_at": datetime.now(UTC), "actor": "t", "items": 0, "total": 0,
        "skipped": "{}", "op_id": "t"})
    transition = conn.execute(sa.select(sa.func.max(ledger_transitions.c.id))).scalar()
    good = {
        "ledger_transitions": (ledger_transitions, {
            "entry_id": entry.id, "to_status": "pending", "at": datetime.now(UTC),
            "actor": "t", "op_id": "t", "item_id": entry.id}),
        "ledger_postings": (ledger_postings, {
            "entry_id": entry.id, "transition_id": transition, "account": "a",
            "currency": "INR", "amount": 1, "op_id": "t"}),
        "payout_items": (payout_items, {"entry_id": entry.id, "item_id": "i1",
                                        "batch_id": "b1", "payee_id": payee, "op_id": "t"}),
        "payout_covers": (payout_covers, {"item_entry_id": entry.id, "entry_id": entry.id,
                                          "op_id": "t"}),
    }
    cases = {}
    for table, column in sorted(_PER_STATEMENT):
        target, row = good[table]
        bad = {**row, column: "nobatch" if column == "batch_id" else 999999}
        if table == "payout_items":
            bad["item_id"] = "i2"
            bad["entry_id"] = other.id if column != "entry_id" else 999999
        cases[f"{table}.{column}"] = (target, [row, bad])
    return cases


def test_a_reference_to_no_row_refuses_the_whole_statement(ledger_engine) -> None:
    """The bulk tables' foreign keys hold on both databases (0010: checked per statement on
    PostgreSQL), for COPY as for INSERT: a batch with one dangling reference writes
    nothing."""
    with ledger_engine.connect() as conn:
        cases = _orphans(conn)
        conn.commit()
    assert set(cases) == {f"{t}.{c}" for t, c in _PER_STATEMENT}
    db_kind = ledger_engine.dialect.name
    def count(table: sa.Table) -> int:
        with ledger_engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar())

    for name, (table, rows) in cases.items():
        before = count(table)
        with ledger_engine.connect() as conn, pytest.raises(sa.exc.IntegrityError) as err:
            backend(conn).append_rows(conn, table, rows)
            conn.commit()  # SQLite checks a deferred key (payout_items.batch_id) here
        ledger_engine.dispose()  # SQLite keeps a transaction whose COMMIT failed open
        if db_kind == "postgresql":
            column = name.split(".")[1]
            assert err.value.orig.sqlstate == "23503", name
            assert f"insert on {table.name} refused: {column} " in str(err.value), name
        assert count(table) == before, name
        with ledger_engine.connect() as conn:  # the valid row alone is accepted
            backend(conn).append_rows(conn, table, rows[:1])
            conn.rollback()


def test_migrations_match_metadata(db_url) -> None:
    """Alembic's autogenerate finds nothing to do: every table is in the one MetaData,
    exactly as the migrations made it."""
    engine = open_engine(db_url)
    upgrade(engine)
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diffs = compare_metadata(ctx, metadata)
    # On PostgreSQL the bulk tables' foreign keys are statement-level triggers (0010).
    moved = {(d[1].table.name, d[1].column_keys[0]) for d in diffs if d[0] == "add_fk"}
    assert [d for d in diffs if d[0] != "add_fk"] == []
    assert moved == (_PER_STATEMENT if engine.dialect.name == "postgresql" else set())
    assert set(metadata.tables) == set(APPEND_ONLY_TABLES) | set(PAYOUT_TABLES) | {
        "settlement_runs", "settlement_quarantine", "settlement_facts",
        "settlement_rule_versions", "settlement_rule_renames", "settlement_terminations",
        "settlement_run_events",
        "ledger_operations", "liability_days",
    }
    engine.dispose()


def test_utc_datetime_is_stored_as_utc_wall_clock_text_on_sqlite(tmp_path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path}/x.db")
    ist = timezone(timedelta(hours=5, minutes=30))
    value = sa.bindparam("t", datetime(2026, 1, 1, 12, 0, 0, 5, tzinfo=ist), type_=UTCDateTime)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.quote(value))).scalar() == (
            "'2026-01-01 06:30:00.000005'"
        )
    engine.dispose()


def _old_entry(entry_id: int, prev: str) -> dict:
    """A credit as revision 0003 wrote it (no adjusts or business_date column)."""
    from settlement.ledger.hashing import HASHED_COLUMNS, entry_hash

    row = dict.fromkeys(HASHED_COLUMNS)
    row.update(id=entry_id, reference_id=f"old{entry_id}", user_id="u1", amount=500,
               currency="INR", entry_type="credit",
               timestamp=datetime(2026, 9, 1, 23, 30, tzinfo=UTC), actor="cli",
               prev_hash=prev)
    row["hash"] = entry_hash(row)
    del row["business_date"], row["adjusts"], row["op_id"]
    return row


def test_migrations_keep_an_existing_ledger_verifiable(db_url) -> None:
    """Upgrading a populated 0003 ledger (0004 adds columns and tables, 0005 rebuilds the
    ledger tables on SQLite) changes no row:
    old hashes still hold, triggers and foreign keys are back, old rows read their UTC date."""
    from settlement import ledger
    from settlement.ledger.hashing import GENESIS_HASH
    from settlement.tables import ledger_entries, ledger_postings, ledger_transitions

    engine = open_engine(db_url)
    upgrade(engine, "0003")
    first = _old_entry(1, GENESIS_HASH)
    second = _old_entry(2, first["hash"])
    with engine.begin() as conn:
        for row in (first, second):
            conn.execute(sa.text(
                "INSERT INTO ledger_entries (" + ", ".join(row) + ") VALUES ("
                + ", ".join(f":{k}" for k in row) + ")"
            ).bindparams(sa.bindparam("timestamp", type_=UTCDateTime)), row)
            conn.execute(sa.text(
                "INSERT INTO ledger_transitions (entry_id, to_status, at, actor)"
                " VALUES (:id, 'confirmed', :at, 'cli')"
            ).bindparams(sa.bindparam("at", type_=UTCDateTime)),
                {"id": row["id"], "at": row["timestamp"]})
            for account, amount in (("program:funding", -500), ("user:u1", 500)):
                conn.execute(sa.insert(ledger_postings).values(
                    entry_id=row["id"], account=account, currency="INR", amount=amount))
    upgrade(engine)
    with engine.connect() as conn:
        report = ledger.verify(conn)
        assert report.ok and report.checked == 2, report.problems
        count = sa.select(sa.func.count()).select_from(ledger_transitions)
        assert conn.execute(count).scalar() == 2
        day = backend(conn).utc_date(ledger_entries.c.timestamp)
        assert conn.execute(sa.select(day).limit(1)).scalar() in ("2026-09-01", date(2026, 9, 1))
    for table in APPEND_ONLY_TABLES:  # rebuilt on SQLite: its triggers were put back
        with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    with engine.connect() as conn, pytest.raises(sa.exc.IntegrityError):
        conn.execute(sa.insert(ledger_postings).values(
            entry_id=99, account="user:u1", currency="INR", amount=1))
    engine.dispose()


def test_rows_from_before_operation_ids_are_sealed_by_the_migration(db_url) -> None:
    """0007 seals the rows it finds (op id NULL) as one operation: a row added later without
    an op id is then an addition to that operation, named by verify.  0009 folds them into
    the liabilities report's daily aggregate, from which the report then reads them."""
    from settlement import ledger, operations
    from settlement.ledger.hashing import GENESIS_HASH
    from settlement.ledger.liabilities import liabilities
    from settlement.tables import ledger_operations, ledger_postings, liability_days

    engine = open_engine(db_url)
    upgrade(engine, "0005")
    row = _old_entry(1, GENESIS_HASH)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ledger_entries (" + ", ".join(row) + ") VALUES ("
            + ", ".join(f":{k}" for k in row) + ")"
        ).bindparams(sa.bindparam("timestamp", type_=UTCDateTime)), row)
        conn.execute(sa.text("INSERT INTO ledger_transitions (entry_id, to_status, at, actor)"
                             " VALUES (1, 'confirmed', :at, 'cli')"
                             ).bindparams(sa.bindparam("at", type_=UTCDateTime)),
                     {"at": row["timestamp"]})
        for account, amount in (("program:funding", -500), ("user:u1", 500)):
            conn.execute(sa.insert(ledger_postings).values(
                entry_id=1, account=account, currency="INR", amount=amount))
    upgrade(engine)
    with engine.connect() as conn:
        legacy, folded = conn.execute(sa.select(ledger_operations).order_by("id")).all()
        assert (legacy.op_id, legacy.actor) == (operations.LEGACY_OP_ID, "migration 0007")
        assert json.loads(legacy.counts)["ledger_postings"][0] == 2
        # 0009 folds the rows it finds into the report's daily aggregate, sealed as its own.
        assert (folded.actor, json.loads(folded.counts)["liability_days"][0]) == (
            "migration 0009", 1)
        day = conn.execute(sa.select(liability_days)).one()
        assert (str(day.business_date), day.granted, day.op_id) == (
            "2026-09-01", 500, folded.op_id)
        assert ledger.verify(conn).ok
        for by in ("none", "rule"):
            fast, slow = (liabilities(conn, date(2026, 9, 1), by=by, reference=ref)
                          for ref in (False, True))
            assert (fast.currencies, fast.rows) == (slow.currencies, slow.rows)
            assert fast.currencies["INR"].granted == 500
    with engine.begin() as conn:
        for account, amount in (("program:funding", -1), ("program:funding", 1)):
            conn.execute(sa.insert(ledger_postings).values(
                entry_id=1, account=account, currency="INR", amount=amount))
    with engine.connect() as conn:
        problems = ledger.verify(conn).problems
    assert problems[1] == (
        f"operation id=1 {operations.LEGACY_OP_ID!r} (db upgrade 0007: rows written before "
        f"operation ids by migration 0007 at {operations._canonical(legacy.at)}): "
        "ledger_postings holds 4 rows, it wrote 2 (rows were added under its id)")
    assert problems[0] == "entry id=1 reference 'old1': postings do not match the entry and its" \
        " transitions"
    engine.dispose()


def test_migration_0007_downgrades_and_upgrades_again(db_url) -> None:
    from settlement import ledger

    engine = open_engine(db_url)
    upgrade(engine)
    cfg = Config()
    cfg.set_main_option("script_location", "settlement:migrations")

    def downgrade() -> None:
        with engine.connect() as conn, backend(conn).schema_changes(conn), conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0005")
            columns = {c["name"] for c in sa.inspect(conn).get_columns("ledger_entries")}
            assert "op_id" not in columns

    downgrade()
    assert upgrade(engine) == head_revision()
    with engine.connect() as conn:
        ledger.post_credit(conn, "u1", 500, "INR", "r1")
        conn.commit()
    with pytest.raises(RuntimeError, match="below 0009: 1 liability_days rows are sealed"):
        downgrade()
    with engine.connect() as conn:
        report = ledger.verify(conn)
    assert report.ok and report.checked == 1, report.problems
    engine.dispose()


def test_postgresql_connections_run_without_jit_and_keep_the_urls_options(pg_url) -> None:
    """JIT compiled short lookups for longer than they ran (tables without statistics look
    large to the planner); a URL's own ``options`` still apply beside it."""
    url = sa.make_url(pg_url).update_query_dict(
        {"options": "-c statement_timeout=12345"}).render_as_string(hide_password=False)
    engine = open_engine(url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW jit").scalar() == "off"
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "12345ms"
    engine.dispose()


def test_postgresql_lookups_by_referral_probe_the_index_on_tables_without_statistics(
        pg_url) -> None:
    """A run's own rows have no statistics (and autovacuum may be off): ``= ANY`` of a
    chunk's thousand ids was planned as a scan of the whole table for every chunk, so a
    run slowed down as the table grew.  The lookup must use the index anyway."""
    from settlement import facts

    upgrade(pg_url)
    engine = open_engine(pg_url)
    statements: list[tuple[str, object]] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        statements.append((statement, parameters))

    with engine.connect() as conn, conn.begin() as tx:
        conn.exec_driver_sql(
            "INSERT INTO settlement_facts (referral_id, digest, data, file, line, run_id)"
            " SELECT 'ref-' || n, repeat('0', 64), repeat('x', 300), 'f', n, 'run'"
            " FROM generate_series(1, 50000) AS n")
        sa.event.listen(conn, "before_cursor_execute", record)
        kept = facts.kept_snapshots(conn, [f"ref-{n}" for n in range(1, 2001, 2)])
        sa.event.remove(conn, "before_cursor_execute", record)
        assert len(kept) == 1000
        (statement, parameters), = statements
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(
            "EXPLAIN " + statement, parameters))
        tx.rollback()
    engine.dispose()
    assert "Seq Scan on settlement_facts" not in plan, plan
    assert "ix_settlement_facts_referral" in plan, plan


def test_a_connection_the_server_dropped_raises_the_servers_error_at_the_ledger_lock(
        pg_url) -> None:
    """The fault suite's backend kill met the ledger lock: its error handling asked the
    dropped connection for its info and raised SQLAlchemy's PendingRollbackError, which
    no exit code maps (exit 1 where a lost database is 3)."""
    from settlement.locks import lock_ledger

    upgrade(pg_url)
    engine = open_engine(pg_url)
    with engine.connect() as conn, engine.connect() as killer:
        conn.begin()
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        killer.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
        with pytest.raises(sa.exc.OperationalError):
            lock_ledger(conn)
    engine.dispose()
