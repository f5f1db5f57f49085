"""`referral db current`, `db history`, `db upgrade --sql` (offline, for a DBA)."""

from __future__ import annotations

import psycopg
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement import ledger
from settlement.db import head_revision, history, open_engine, require_schema, upgrade


def test_db_history_lists_every_migration_newest_first() -> None:
    result = CliRunner().invoke(main, ["db", "history"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    revisions = [m.revision for m in history()]
    assert len(lines) == len(revisions) and revisions[-1] == head_revision()
    assert lines[0].startswith(f"{revisions[-2]} -> {revisions[-1]} (head), ")
    assert lines[-1].startswith(f"<base> -> {revisions[0]}, Ledger: ")


def test_db_current_missing_empty_behind_and_head(db_url, tmp_path) -> None:
    if db_url.startswith("sqlite"):
        missing = tmp_path / "missing.db"
        gone = CliRunner().invoke(main, ["db", "current", "--db", f"sqlite:///{missing}"])
        assert gone.exit_code == 1 and "does not exist" in gone.stderr
        assert not missing.exists()
    open_engine(db_url).dispose()
    empty = CliRunner().invoke(main, ["db", "current", "--db", db_url])
    assert (empty.exit_code, empty.stdout) == (
        0, f"no schema (the code needs {head_revision()}); run `referral db upgrade`\n")
    first = history()[0].revision
    upgrade(db_url, first)
    behind = CliRunner().invoke(main, ["db", "current", "--db", db_url])
    assert behind.stdout == (f"{first} (the code needs {head_revision()}; run"
                             " `referral db upgrade`)\n")
    upgrade(db_url)
    head = CliRunner().invoke(main, ["db", "current", "--db", db_url])
    assert head.stdout == f"{head_revision()} (head)\n"


def _run_script(url: str, sql: str) -> None:
    target = sa.make_url(url).set(drivername="postgresql")
    with psycopg.connect(target.render_as_string(hide_password=False), autocommit=True) as c:
        c.execute(sql)  # the whole script: BEGIN; ... COMMIT;


def test_db_upgrade_sql_prints_a_script_that_builds_the_schema(pg_url) -> None:
    # No connection is made: an unreachable server gives the same script.
    offline = CliRunner().invoke(main, ["db", "upgrade", "--sql", "--db",
                                        "postgresql://dba@127.0.0.1:1/prod"])
    assert offline.exit_code == 0, offline.output
    sql = offline.stdout
    assert sql.startswith("BEGIN;") and sql.rstrip().endswith("COMMIT;")
    assert f"UPDATE alembic_version SET version_num='{head_revision()}'" in sql
    _run_script(pg_url, sql)
    engine = open_engine(pg_url)
    with engine.connect() as conn:
        require_schema(conn)
        ledger.post_credit(conn, "u1", 500, "INR", "hand:1", status="confirmed")
        conn.commit()
        assert ledger.verify(conn).ok
    engine.dispose()


def test_db_upgrade_sql_from_a_revision_is_the_rest(pg_url) -> None:
    first = history()[0].revision
    upgrade(pg_url, first)
    result = CliRunner().invoke(main, ["db", "upgrade", "--sql", "--from", first, "--db", pg_url])
    assert result.exit_code == 0, result.output
    assert f"Running upgrade  -> {first}" not in result.stdout
    _run_script(pg_url, result.stdout)
    engine = open_engine(pg_url)
    with engine.connect() as conn:
        require_schema(conn)
    engine.dispose()


def test_db_upgrade_sql_refuses_sqlite_and_unknown_revisions(tmp_path) -> None:
    lite = CliRunner().invoke(main, ["db", "upgrade", "--sql", "--db", f"sqlite:///{tmp_path}/x"])
    assert lite.exit_code == 1
    assert lite.stderr.startswith("error: db upgrade --sql writes PostgreSQL's SQL; ")
    assert list(tmp_path.iterdir()) == []
    unknown = CliRunner().invoke(main, ["db", "upgrade", "--sql", "--from", "9999", "--db",
                                        "postgresql://u@h/db"])
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: unknown revision '9999' (see `referral db history`)\n"
    alone = CliRunner().invoke(main, ["db", "upgrade", "--from", "0001"])
    assert alone.exit_code == 2
