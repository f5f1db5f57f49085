"""What every command shares: the command classes, the map from errors to exit codes, options.

Commands raise; they never choose an exit code.  ``Command.invoke`` is the one
place where an error of the project's tree (``dsl.errors.ReferralError``) or a
database that went away becomes one ``error: ...`` line on stderr and the exit
code ``EXIT_CODES`` gives its class, as alembic's ``CommandLine.run_cmd``
catches its root error once.  Every command of the ``referral`` tree is a
``Command``, so the map holds however it is run: the console script,
``python -m referral``, or ``CliRunner`` on the group or on one command.
Usage errors stay click's own (exit 2, click's formatting).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl.errors import ReferralError, RuleError
from dsl.program import LoadedProgram, load_program
from settlement.db import READ_ONLY, open_engine, require_schema
from settlement.errors import DatabaseUnavailable
from settlement.operations import operation

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB_URL = "sqlite:///referral.db"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DB_UNAVAILABLE = 0, 1, 2, 3

EXIT_CODE_MEANINGS = {
    EXIT_OK: "ok",
    EXIT_FAILED: "invalid input, a refused operation or a check that found problems",
    EXIT_USAGE: "usage",
    EXIT_DB_UNAVAILABLE: "database unavailable (nothing was written)",
}

EXIT_CODES_HELP = "Exit codes: " + "; ".join(
    f"{code} {meaning}" for code, meaning in EXIT_CODE_MEANINGS.items()
) + "."


class CommandInputError(ReferralError):
    """A file named on the command line that the command cannot use (unreadable, not JSON...)."""


class ChecksFailed(ReferralError):
    """A check found problems and the command has printed its report.

    The message, when there is one, is the report's last line (``error: <message>``).
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)


# First match wins: subclasses before their base.  ``OperationalError``: the server
# went away mid-command, or SQLite stayed locked past its busy timeout; the
# transaction was rolled back, so nothing was written.
EXIT_CODES: dict[type[Exception], int] = {
    DatabaseUnavailable: EXIT_DB_UNAVAILABLE,
    sa.exc.OperationalError: EXIT_DB_UNAVAILABLE,
    ReferralError: EXIT_FAILED,
}


def error_message(error: Exception) -> str:
    """The text after ``error:`` (empty: the command has already said everything)."""
    if isinstance(error, sa.exc.OperationalError):
        orig = error.orig
        reason = str(orig).strip().splitlines()[0] if orig is not None else str(error)
        return f"database unavailable: {reason}; nothing was written"
    return str(error)


class Command(click.Command):
    """A ``referral`` command: errors of the project's tree end it with their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except tuple(EXIT_CODES) as e:
            message = error_message(e)
            if message:
                click.echo(f"error: {message}", err=True)
            ctx.exit(next(code for kind, code in EXIT_CODES.items() if isinstance(e, kind)))


class Group(click.Group):
    """A ``referral`` group: its commands are ``Command``s and its sub-groups ``Group``s."""

    command_class = Command
    group_class = type


def as_of_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date:
    """``--as-of`` callback: an ISO date, today when not given."""
    return optional_date(ctx, param, value) or date.today()


def optional_date(ctx: click.Context, param: click.Parameter, value: str | None
                  ) -> date | None:
    """An ISO date option whose default the library decides (None when not given)."""
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


@contextmanager
def db_transaction(db_url: str, *, read_only: bool = False) -> Iterator[Connection]:
    """Open the database, check its schema, and run the block in one transaction; a
    read-only one does not queue behind a running settlement."""
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            if read_only:
                conn.execution_options(**READ_ONLY)
            with conn.begin():
                require_schema(conn)
                if read_only:
                    yield conn
                    return
                # One command, one operation: its rows carry the op id, sealed at the end.
                with operation(conn, _command_name(), actor_name(None)):
                    yield conn
    finally:
        engine.dispose()


def _command_name() -> str:
    """The running command's path below the root (``ledger credit``), however it was run."""
    names: list[str] = []
    ctx = click.get_current_context(silent=True)
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name or "")
        ctx = ctx.parent
    return " ".join(reversed(names)) or "referral"


def business_date_option(f: F) -> F:
    """``--date``: the business date the command's entries and moves belong to."""
    return click.option(
        "--date", "business_date", callback=as_of_date, default=None, metavar="YYYY-MM-DD",
        help="Business date of what the command writes (default today).",
    )(f)


def actor_name(by: str | None) -> str:
    """Who does it: ``--by``, else the OS user."""
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "cli"


def db_option(f: F) -> F:
    return click.option(
        "--db",
        "db_url",
        envvar="REFERRAL_DB_URL",
        default=DEFAULT_DB_URL,
        show_default=True,
        help="Database URL (also REFERRAL_DB_URL).",
    )(f)


paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)

strict_option = click.option("--strict", is_flag=True, help="Treat warnings as errors.")

currency_option = click.option(
    "--currency", default=None, metavar="CODE",
    help="The program's currency, that of bare integer amounts (default: its CURRENCY, "
         "else the only currency of its money literals).",
)


def load_rules(
    paths: Sequence[str | Path],
    *,
    strict: bool = False,
    note: str | None = None,
    currency: str | None = None,
) -> LoadedProgram:
    """Load a rule program, printing its warnings; on errors print every diagnostic, one a line.

    Every command that reads rules reports them exactly as ``rules check`` does;
    ``note`` is the last line then (``error: <note>``).  ``currency`` is ``--currency``.
    """
    try:
        loaded = load_program(paths, strict=strict, currency=currency)
    except RuleError as e:
        for d in e.diagnostics:
            click.echo(d.line(), err=True)
        raise ChecksFailed(note or "") from e
    for w in loaded.warnings:
        click.echo(w.line(), err=True)
    return loaded
