"""Engines, migrations and schema checks on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from settlement.db import head_revision, normalise_url, open_engine, require_schema, upgrade
from settlement.errors import DatabaseUnavailable, SchemaNotReady
from settlement.runs import runs_metadata
from settlement.schema import APPEND_ONLY_TABLES, metadata


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


def test_migration_0001_matches_ledger_tables(db_url) -> None:
    engine = open_engine(db_url)
    upgrade(engine)

    def ledger_only(obj, name, type_, reflected, compare_to) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in APPEND_ONLY_TABLES

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": ledger_only, "compare_type": True}
        )
        assert compare_metadata(ctx, metadata) == []
    engine.dispose()


def test_migration_0002_matches_settlement_tables(db_url) -> None:
    engine = open_engine(db_url)
    upgrade(engine)

    def settlement_only(obj, name, type_, reflected, compare_to) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is None or table.name in runs_metadata.tables

    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"include_object": settlement_only, "compare_type": True}
        )
        assert compare_metadata(ctx, runs_metadata) == []
    engine.dispose()
