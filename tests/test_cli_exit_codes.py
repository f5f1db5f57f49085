"""The one map from errors to exit codes (referral.cli.common): every command, however run."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dsl.errors import ReferralError
from referral.cli import main
from referral.cli.common import (
    EXIT_CODE_MEANINGS,
    ChecksFailed,
    Command,
    Group,
    commands_of,
)
from referral.cli.rules import check
from settlement.errors import (
    DatabaseUnavailable,
    EntryNotFound,
    InputRejected,
    Interrupted,
    InvalidDatabaseURL,
    LockBusy,
    SchemaNotReady,
)


def _sqlite_error(message: str, name: str) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorname = name
    return error


BROKEN = "RULE a\n  IF referee.plan = \n  THEN ISSUE ₹5 REWARD TO referrer\n"


def _raising(error: BaseException) -> click.Group:
    group = Group("g")

    @group.command("boom")
    def boom() -> None:
        click.echo("report")
        raise error

    return group


@pytest.mark.parametrize(("error", "code", "stderr"), [
    (DatabaseUnavailable("cannot connect"), 3, "error: cannot connect\n"),
    (sa.exc.OperationalError("SELECT 1", {}, Exception("database is locked\nmore")), 3,
     "error: database unavailable: database is locked; nothing was written\n"),
    (sa.exc.OperationalError("BEGIN", {}, _sqlite_error("database is locked", "SQLITE_BUSY")),
     75, "error: lock busy: another writer holds the database lock (database is locked);"
         " nothing was written; retry later or raise --lock-timeout\n"),
    (sa.exc.DataError("INSERT", {}, Exception("value too long for type character varying(255)")),
     1, "error: the database refused the command: value too long for type character"
        " varying(255); nothing was written\n"),
    (sa.exc.InternalError("INSERT", {}, Exception("cannot execute INSERT in a read-only"
                                                  " transaction")),
     1, "error: the database refused the command: cannot execute INSERT in a read-only"
        " transaction; nothing was written\n"),
    (LockBusy("another settlement run holds the lock (--no-wait)"), 75,
     "error: another settlement run holds the lock (--no-wait)\n"),
    (InputRejected("all 3 records were quarantined"), 4,
     "error: all 3 records were quarantined\n"),
    (InvalidDatabaseURL("unsupported database 'mysql' (sqlite, postgresql)"), 2,
     "error: unsupported database 'mysql' (sqlite, postgresql)\n"),
    (KeyboardInterrupt(), 130, "error: interrupted\n"),
    (Interrupted("interrupted: canceling statement due to user request; nothing was written"),
     130, "error: interrupted: canceling statement due to user request; nothing was written\n"),
    (EntryNotFound("no entry x"), 1, "error: no entry x\n"),
    (ReferralError("bad"), 1, "error: bad\n"),
    (ChecksFailed(), 1, ""),
    (ChecksFailed("ledger verification failed"), 1, "error: ledger verification failed\n"),
    (click.UsageError("give either USER or --program"), 2,
     "Usage: g boom [OPTIONS]\nTry 'g boom --help' for help.\n\n"
     "Error: give either USER or --program\n"),
])
def test_error_exit_code_and_message(error, code, stderr):
    result = CliRunner().invoke(_raising(error), ["boom"], prog_name="g")
    assert (result.exit_code, result.stdout, result.stderr) == (code, "report\n", stderr)


def test_an_error_outside_the_tree_is_not_hidden():
    result = CliRunner().invoke(_raising(KeyError("bug")), ["boom"])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)


def test_a_command_alone_answers_as_through_the_group(tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BROKEN, encoding="utf-8")
    alone = CliRunner().invoke(check, [str(bad)])
    grouped = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert (alone.exit_code, alone.stdout, alone.stderr) == (
        grouped.exit_code, grouped.stdout, grouped.stderr)
    assert alone.exit_code == 1 and alone.stderr.startswith(f"{bad}:3:3: error: unexpected")


def test_console_script_answers_as_cli_runner(tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BROKEN, encoding="utf-8")
    process = subprocess.run([sys.executable, "-m", "referral", "rules", "check", str(bad)],
                             capture_output=True, text=True, check=False, cwd=Path(bad).parent)
    runner = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert (process.returncode, process.stdout, process.stderr) == (
        runner.exit_code, runner.stdout, runner.stderr)


def test_help_lists_every_exit_code():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    for code, meaning in EXIT_CODE_MEANINGS.items():
        assert f"{code} {meaning}" in text


def _tree(command: click.Command) -> list[click.Command]:
    children = commands_of(command).values() if isinstance(command, click.Group) else ()
    return [command, *(c for child in children for c in _tree(child))]


def test_every_command_of_the_tree_maps_errors():
    """A plain click.command added to the tree would print tracebacks instead of exit codes."""
    for command in _tree(main):
        assert isinstance(command, Group if isinstance(command, click.Group) else Command), (
            command.name)


def test_every_help_lists_every_exit_code():
    for command in _tree(main):
        path = _path_of(command)
        result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
        assert result.exit_code == 0, path
        text = " ".join(result.stdout.split())
        for code in EXIT_CODE_MEANINGS:
            assert f"; {code} " in text or f"Exit codes: {code} " in text, (path, code)


def _path_of(target: click.Command) -> list[str]:
    def walk(command: click.Command, path: list[str]) -> list[str] | None:
        if command is target:
            return path
        if isinstance(command, click.Group):
            for name, child in commands_of(command).items():
                found = walk(child, [*path, name])
                if found is not None:
                    return found
        return None

    found = walk(main, [])
    assert found is not None
    return found


def test_debug_shows_the_traceback_instead(tmp_path):
    args = ["ledger", "balance", "u1", "--db", f"sqlite:///{tmp_path / 'none.db'}"]
    plain = CliRunner().invoke(main, args)
    debug = CliRunner().invoke(main, ["--debug", *args])
    assert plain.exit_code == 1 and "does not exist" in plain.stderr
    assert isinstance(debug.exception, SchemaNotReady)


@pytest.mark.parametrize(("url", "message"), [
    ("mysql://u@h/db", "error: unsupported database 'mysql' (sqlite, postgresql)\n"),
    ("nonsense", "error: invalid database URL 'nonsense': Could not parse SQLAlchemy URL"
                 " from given URL string\n"),
    ("postgresql://u@h:99999/db", "error: invalid database URL 'postgresql://u@h:99999/db':"
                                  " port 99999 is not in 1-65535\n"),
])
def test_bad_database_url_is_a_usage_error(url, message):
    result = CliRunner().invoke(main, ["ledger", "balance", "u1", "--db", url])
    assert (result.exit_code, result.stderr) == (2, message)


def test_read_command_never_creates_a_database_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REFERRAL_DB_URL", raising=False)
    result = CliRunner().invoke(main, ["ledger", "balance", "u1"])
    assert result.exit_code == 1
    assert result.stderr == (f"error: SQLite database {tmp_path / 'referral.db'} does not exist;"
                             " run `referral db upgrade` to create it (or check --db)\n")
    assert list(tmp_path.iterdir()) == []


def test_readme_exit_code_table_lists_every_code():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    rows = {int(line.split("|")[1]) for line in readme.splitlines()
            if line.startswith("| ") and line.split("|")[1].strip().isdigit()}
    assert set(EXIT_CODE_MEANINGS) <= rows
