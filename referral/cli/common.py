"""What every command shares: the --db option and the mapping of errors to exit codes.

Exit codes: 0 ok, 1 refused or invalid (rule, data or ledger errors), 2 usage,
3 database unavailable.  Library errors become one line on stderr, never a
traceback.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
import sqlalchemy as sa

from dsl.errors import ReferralError, RuleError
from dsl.program import LoadedProgram, load_program
from settlement.errors import DatabaseUnavailable

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB_URL = "sqlite:///referral.db"

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_DB_UNAVAILABLE = 0, 1, 2, 3


def as_of_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date:
    """``--as-of`` callback: an ISO date, today when not given."""
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from None


class CliError(click.ClickException):
    """A library error shown as ``error: <message>`` with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_INVALID) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def db_option(f: F) -> F:
    return click.option(
        "--db",
        "db_url",
        envvar="REFERRAL_DB_URL",
        default=DEFAULT_DB_URL,
        show_default=True,
        help="Database URL (also REFERRAL_DB_URL).",
    )(f)


def handle_errors(f: F) -> F:
    """Turn the project's own exceptions into CliError with the right exit code."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except DatabaseUnavailable as e:
            raise CliError(str(e), EXIT_DB_UNAVAILABLE) from e
        except ReferralError as e:
            raise CliError(str(e), EXIT_INVALID) from e
        except sa.exc.OperationalError as e:
            # The server went away mid-command, or SQLite stayed locked past its
            # busy timeout: the transaction was rolled back, nothing was written.
            reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
            raise CliError(
                f"database unavailable: {reason}; nothing was written", EXIT_DB_UNAVAILABLE
            ) from e

    return wrapper  # type: ignore[return-value]


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)


def load_rules(
    paths: tuple[Path, ...], *, strict: bool = False, note: str | None = None
) -> LoadedProgram:
    """Load a rule program; on errors print every diagnostic (one a line) and exit 1.

    Every command that reads rules reports them exactly as ``rules check`` does.
    """
    try:
        loaded = load_program(paths, strict=strict)
    except RuleError as e:
        for d in e.diagnostics:
            click.echo(d.line(), err=True)
        if note:
            click.echo(f"error: {note}", err=True)
        raise SystemExit(EXIT_INVALID) from e
    for w in loaded.warnings:
        click.echo(w.line(), err=True)
    return loaded
