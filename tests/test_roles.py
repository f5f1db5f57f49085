"""Roles: the commands run as an application role that may read and append only
(`referral db upgrade --app-role`), so even a stolen application login cannot change,
delete or empty rows, nor switch the append-only triggers off.  PostgreSQL; on SQLite the
database file's permissions are the boundary and `--app-role` says so."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.db import head_revision, open_engine
from settlement.demo import write_records

RULES = Path(__file__).resolve().parents[1] / "rules"


@pytest.fixture
def app_role(pg_url) -> Iterator[tuple[str, str]]:
    """A login role of the test's own (roles are cluster-wide) and its URL; dropped after."""
    name = f"referral_app_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{name}" LOGIN'))
    try:
        yield name, sa.make_url(pg_url).set(username=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{name}"'))
            conn.execute(sa.text(f'DROP ROLE "{name}"'))
        admin.dispose()


REFUSED = [
    ("UPDATE ledger_entries SET amount = 1", "permission denied for table ledger_entries"),
    ("DELETE FROM ledger_postings", "permission denied for table ledger_postings"),
    ("TRUNCATE settlement_runs CASCADE", "permission denied for table settlement_runs"),
    ("UPDATE ledger_operations SET actor = 'x'", "permission denied for table ledger_operations"),
    ("DELETE FROM settlement_quarantine", "permission denied for table settlement_quarantine"),
    ("ALTER TABLE ledger_entries DISABLE TRIGGER USER", "must be owner of table ledger_entries"),
    ("DROP TRIGGER ledger_entries_append_only ON ledger_entries",
     "must be owner of relation ledger_entries"),
    ("UPDATE alembic_version SET version_num = '0001'",
     "permission denied for table alembic_version"),
]


def test_app_role_settles_but_cannot_change_delete_or_disable(pg_url, app_role, tmp_path
                                                               ) -> None:
    name, url = app_role
    runner = CliRunner()
    done = runner.invoke(main, ["db", "upgrade", "--app-role", name, "--db", pg_url])
    assert (done.exit_code, done.stdout) == (
        0, f"database schema at revision {head_revision()}; role {name} may read and append"
        " only\n")
    records = tmp_path / "records.jsonl"
    with records.open("w") as fh:
        write_records(fh, 40, seed=3)
        fh.write("not json\n")
    as_app = [
        ["settle", "--rules", str(RULES), "--records", str(records), "--as-of", "2026-11-25"],
        ["ledger", "credit", "u1", "₹5", "--reference", "hand:1"],
        ["ledger", "confirm", "hand:1"],
        ["ledger", "reverse", "hand:1", "--reason", "test"],
        ["ledger", "verify"],
    ]
    for args in as_app:
        result = runner.invoke(main, [*args, "--db", url])
        assert result.exit_code == 0, (args, result.output)
    engine = open_engine(url)
    try:
        for statement, message in REFUSED:
            with pytest.raises(sa.exc.ProgrammingError, match=message), engine.begin() as conn:
                conn.execute(sa.text(statement))
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_user")).scalar() == name
            assert conn.execute(sa.text("SELECT count(*) FROM settlement_quarantine")
                                ).scalar() == 1
    finally:
        engine.dispose()


def test_app_role_may_not_be_the_owner_nor_a_superuser(pg_url) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--app-role", "postgres", "--db", pg_url])
    assert (result.exit_code, result.stderr) == (
        1, "error: role 'postgres' is a superuser: the application role must be another role,"
           " without superuser rights\n")


@pytest.mark.parametrize("name", ["Robert'); DROP TABLE x;--", "1abc", "a" * 64])
def test_app_role_name_is_an_identifier(pg_url, name) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--app-role", name, "--db", pg_url])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: role name {name!r}: use lower-case letters")


def test_app_role_on_sqlite_says_file_permissions_are_the_boundary(tmp_path) -> None:
    result = CliRunner().invoke(main, ["db", "upgrade", "--app-role", "--db",
                                       f"sqlite:///{tmp_path}/x.db"])
    assert (result.exit_code, result.stderr) == (
        1, "error: database roles are PostgreSQL's: on SQLite the database file's permissions"
           " are the boundary (the application's OS user should not own the file)\n")


def test_schema_role_owns_the_tables(pg_url, app_role) -> None:
    app, _ = app_role
    owner = f"referral_owner_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{owner}" NOLOGIN'))
        conn.execute(sa.text(f'GRANT USAGE, CREATE ON SCHEMA public TO "{owner}"'))
    try:
        result = CliRunner().invoke(main, ["db", "upgrade", "--schema-role", owner,
                                           "--app-role", app, "--db", pg_url])
        assert result.exit_code == 0, result.output
        with admin.connect() as conn:
            owners = set(conn.execute(sa.text(
                "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")).scalars())
            granted = set(conn.execute(sa.text(
                "SELECT privilege_type FROM information_schema.role_table_grants"
                " WHERE grantee = :r AND table_name = 'ledger_entries'"), {"r": app}).scalars())
        assert owners == {owner}
        assert granted == {"SELECT", "INSERT"}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE"))
            conn.execute(sa.text("CREATE SCHEMA public"))
            conn.execute(sa.text(f'DROP OWNED BY "{owner}"'))
            conn.execute(sa.text(f'DROP ROLE "{owner}"'))
        admin.dispose()
