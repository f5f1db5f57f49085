"""The one map from errors to exit codes (referral.cli.common): every command, however run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dsl.errors import ReferralError
from referral.cli import main
from referral.cli.common import EXIT_CODE_MEANINGS, ChecksFailed, Command, Group
from referral.cli.rules import check
from settlement.errors import DatabaseUnavailable, EntryNotFound

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
    children = command.commands.values() if isinstance(command, click.Group) else ()
    return [command, *(c for child in children for c in _tree(child))]


def test_every_command_of_the_tree_maps_errors():
    """A plain click.command added to the tree would print tracebacks instead of exit codes."""
    for command in _tree(main):
        assert isinstance(command, Group if isinstance(command, click.Group) else Command), (
            command.name)
