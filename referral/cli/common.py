"""What every command shares: the command classes, the map from errors to exit codes, options.

Commands raise; they never choose an exit code.  ``Command.invoke`` is the one
place where an error of the project's tree (``dsl.errors.ReferralError``) or a
database that went away becomes one ``error: ...`` line on stderr and the exit
code ``EXIT_CODES`` gives its class, as alembic's ``CommandLine.run_cmd``
catches its root error once.  Every command of the ``referral`` tree is a
``Command``, so the map holds however it is run: the console script,
``python -m referral``, or ``CliRunner`` on the group or on one command.
Usage errors stay click's own (exit 2, click's formatting); a database URL that
cannot be used is one too.  Driver errors are first turned into the project's
tree (``settlement.db.database_error``: lock busy, interrupted, unavailable,
refused), so no command prints a traceback for what a user can cause;
``--debug`` (on the ``referral`` group) re-raises instead, to show it.
"""

from __future__ import annotations

import getpass
import importlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dsl import timeutil
from dsl.errors import ReferralError, RuleError
from referral import config
from settlement.db import READ_ONLY, database_error, open_engine, require_schema
from settlement.errors import (
    DatabaseUnavailable,
    InputRejected,
    Interrupted,
    InvalidDatabaseURL,
    LockBusy,
)
from settlement.locks import DEFAULT_LOCK_TIMEOUT, write_transaction
from settlement.operations import operation

if TYPE_CHECKING:
    from dsl.program import LoadedProgram

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_DB_URL = "sqlite:///referral.db"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_DB_UNAVAILABLE = 0, 1, 2, 3
EXIT_INPUT_REJECTED, EXIT_LOCK_BUSY, EXIT_INTERRUPTED = 4, 75, 130

EXIT_CODE_MEANINGS = {
    EXIT_OK: "ok",
    EXIT_FAILED: "invalid input, a refused operation or a check that found problems",
    EXIT_USAGE: "usage (bad options, an unusable database URL or configuration file)",
    EXIT_DB_UNAVAILABLE: "database unavailable (nothing was written)",
    EXIT_INPUT_REJECTED: "quarantine threshold exceeded or empty input (nothing was written)",
    EXIT_LOCK_BUSY: "lock busy: another writer holds it (--no-wait, --lock-timeout), retry later",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
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


class CommandOutputError(ReferralError):
    """A file the command writes that cannot be written (a full disk, no permission)."""


# First match wins: subclasses before their base.  Driver errors reach this table
# already translated by ``database_error``; ``KeyboardInterrupt`` is Ctrl-C.
EXIT_CODES: dict[type[BaseException], int] = {
    KeyboardInterrupt: EXIT_INTERRUPTED,
    Interrupted: EXIT_INTERRUPTED,
    InvalidDatabaseURL: EXIT_USAGE,
    DatabaseUnavailable: EXIT_DB_UNAVAILABLE,
    LockBusy: EXIT_LOCK_BUSY,
    InputRejected: EXIT_INPUT_REJECTED,
    ReferralError: EXIT_FAILED,
    # A file the command could not read or write (a full disk, a missing directory...).
    # A broken pipe (``| head``) is not: it stays Python's own, quiet on exit.
    OSError: EXIT_FAILED,
}


# ctx.meta key: a command may set how its final error line is printed (``settle
# --log-format json`` prints it as a JSON object); the default is ``error: <message>``.
ERROR_PRINTER = "referral.error_printer"


def exit_code_for(error: BaseException) -> int:
    """The exit code ``Command.invoke`` gives an error (1 for one outside the table)."""
    if isinstance(error, click.exceptions.Exit):
        return error.exit_code
    if isinstance(error, click.ClickException):
        return error.exit_code
    return next((code for kind, code in EXIT_CODES.items() if isinstance(error, kind)),
                EXIT_FAILED)


def _echo_error(message: str) -> None:
    click.echo(f"error: {message}", err=True)


def error_message(error: BaseException) -> str:
    """The text after ``error:`` (empty: the command has already said everything)."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    if isinstance(error, OSError) and not isinstance(error, ReferralError):
        cause = error.strerror or str(error)
        return f"{error.filename}: {cause}" if error.filename else cause
    return str(error)


def _debugging(ctx: click.Context) -> bool:
    return bool(ctx.find_root().meta.get(DEBUG_KEY))


DEBUG_KEY = "referral.debug"


class ConfiguredOption(click.Option):
    """An option whose default the configuration may set (``referral.config``)."""

    def __init__(self, *args: Any, config_key: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_key = config_key


class Defaults(dict[str, Any]):
    """click's ``default_map`` for ``command``: its configured options' values from the
    environment or the file (a flag still wins); a sub-command's map is made when click
    asks for it, so a lazy group's other commands stay unimported."""

    def __init__(self, command: click.Command, cfg: config.Config) -> None:
        super().__init__()
        self._command, self._cfg = command, cfg
        for param in command.params:
            key = getattr(param, "config_key", None)
            if key is not None and param.name and cfg.settings[key].source != "default":
                self[param.name] = cfg.value(key)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self or not isinstance(self._command, click.Group):
            return super().get(key, default)
        ctx = click.get_current_context(silent=True) or click.Context(self._command)
        sub = self._command.get_command(ctx, key)
        return Defaults(sub, self._cfg) if sub is not None else default


def commands_of(group: click.Group) -> dict[str, click.Command]:
    """Every command of ``group`` by name, loading lazy ones (help, tests, docs)."""
    ctx = click.Context(group)
    found = {name: group.get_command(ctx, name) for name in group.list_commands(ctx)}
    return {name: command for name, command in found.items() if command is not None}


class _ConfigUnusable(click.ClickException):
    exit_code = EXIT_USAGE

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def _configure(command: click.Command, ctx: click.Context) -> None:
    """At the root of a command line: read the configuration once, as the defaults."""
    if ctx.parent is not None:
        return
    try:
        cfg = config.load()
    except config.ConfigError as e:
        raise _ConfigUnusable(str(e)) from None
    ctx.meta[CONFIG_KEY] = cfg
    if ctx.default_map is None:
        ctx.default_map = Defaults(command, cfg)


CONFIG_KEY = "referral.config"


def current_config() -> config.Config:
    """The configuration of the running command line (read now outside one)."""
    ctx = click.get_current_context(silent=True)
    cfg = ctx.meta.get(CONFIG_KEY) if ctx is not None else None
    return cfg if cfg is not None else config.load()


class _Referral(click.Command):
    """What commands and groups share: ``--help`` lists the exit codes, and the options'
    defaults come from the configuration (``referral.config``) before parsing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("epilog", EXIT_CODES_HELP)
        super().__init__(*args, **kwargs)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        _configure(self, ctx)
        return super().parse_args(ctx, args)


class Command(_Referral):
    """A ``referral`` command: errors of the project's tree end it with their exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except sa.exc.DBAPIError as e:
            if _debugging(ctx):
                raise
            _fail(ctx, database_error(e))
        except BrokenPipeError:
            raise
        except tuple(EXIT_CODES) as e:
            if _debugging(ctx) and not isinstance(e, KeyboardInterrupt):
                raise
            _fail(ctx, e)


def _fail(ctx: click.Context, error: BaseException) -> NoReturn:
    message = error_message(error)
    if message:
        ctx.meta.get(ERROR_PRINTER, _echo_error)(message)
    ctx.exit(exit_code_for(error))


class Group(_Referral, click.Group):
    """A ``referral`` group: its commands are ``Command``s and its sub-groups ``Group``s."""

    command_class = Command
    group_class = type


class LazyGroup(Group):
    """A group whose commands' modules are imported when a command line names them (or
    help lists them): a command pays for its own imports only, not for the parser, the
    compiler and alembic that other commands need (a third of a payout run's start)."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)  # name -> "module:attribute"

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return self.commands.get(cmd_name)


def as_of_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date:
    """``--as-of`` callback: an ISO date, today when not given (in the configured time
    zone, else the machine's)."""
    return optional_date(ctx, param, value) or configured_today()


def configured_today() -> date:
    """Today in the configured ``timezone`` (the machine's local date without one)."""
    name = current_config().value("timezone")
    if name is None:
        return date.today()
    try:
        return timeutil.today(timeutil.zone(name))
    except ReferralError as e:
        raise click.BadParameter(f"timezone (configured): {e}") from None


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
def db_transaction(db_url: str, *, read_only: bool = False,
                   lock_timeout: float | None = None) -> Iterator[Connection]:
    """Open the database, check its schema, and run the block in one transaction; a
    read-only one does not queue behind a running settlement, a writing one waits
    for locks at most ``lock_timeout`` seconds (default: the command's
    ``--lock-timeout``).  A missing SQLite file is an error, never created here."""
    engine = open_engine(db_url, must_exist=True)
    try:
        with engine.connect() as conn:
            if read_only:
                conn.execution_options(**READ_ONLY)
                with conn.begin():
                    require_schema(conn)
                    yield conn
                return
            timeout = command_lock_timeout() if lock_timeout is None else lock_timeout
            with write_transaction(conn, lock_timeout=timeout):
                require_schema(conn)
                if read_only:
                    yield conn
                    return
                # One command, one operation: its rows carry the op id, sealed at the end.
                with operation(conn, _command_name(), actor_name(None)):
                    yield conn
    finally:
        engine.dispose()


_LOCK_TIMEOUT_KEY = "referral.lock_timeout"


def command_lock_timeout() -> float:
    """The running command's ``--lock-timeout`` (the default outside a command)."""
    ctx = click.get_current_context(silent=True)
    value = ctx.meta.get(_LOCK_TIMEOUT_KEY) if ctx is not None else None
    return DEFAULT_LOCK_TIMEOUT if value is None else float(value)


def _keep_lock_timeout(ctx: click.Context, param: click.Parameter, value: float | None
                       ) -> float | None:
    ctx.meta[_LOCK_TIMEOUT_KEY] = value
    return value


def lock_timeout_option(f: F) -> F:
    """``--lock-timeout``: how long a writing command waits for a lock (then exit 75)."""
    return click.option(
        "--lock-timeout", "--wait-timeout", "lock_timeout", type=click.FloatRange(min=0),
        default=DEFAULT_LOCK_TIMEOUT, show_default=True, metavar="SECONDS",
        cls=ConfiguredOption, config_key="lock_timeout", expose_value=False,
        callback=_keep_lock_timeout,
        help="Wait at most this long for another writer's lock, then stop (exit 75; "
             "also REFERRAL_LOCK_TIMEOUT).",
    )(f)


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
        cls=ConfiguredOption,
        config_key="db_url",
        default=DEFAULT_DB_URL,
        show_default=True,
        help="Database URL (also REFERRAL_DB_URL, db_url in referral.toml).",
    )(f)


paths_argument = click.argument(
    "paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path)
)

strict_option = click.option("--strict", is_flag=True, help="Treat warnings as errors.")

currency_option = click.option(
    "--currency", default=None, metavar="CODE", cls=ConfiguredOption, config_key="currency",
    help="The program's currency, that of bare integer amounts (default: its CURRENCY, "
         "else the only currency of its money literals).",
)


def load_rules(
    paths: Sequence[str | Path],
    *,
    strict: bool = False,
    note: str | None = None,
    currency: str | None = None,
    echo: Callable[[str], None] | None = None,
) -> LoadedProgram:
    """Load a rule program, printing its warnings; on errors print every diagnostic, one a line.

    Every command that reads rules reports them exactly as ``rules check`` does;
    ``note`` is the last line then (``error: <note>``).  ``currency`` is ``--currency``;
    ``echo`` prints a diagnostic line (default: as it is, on stderr).
    """
    def stderr(line: str) -> None:
        click.echo(line, err=True)

    # Imported here: the parser and its grammar are for the commands that read rules.
    from dsl.program import load_program

    echo = echo or stderr
    try:
        loaded = load_program(paths, strict=strict, currency=currency)
    except RuleError as e:
        for d in e.diagnostics:
            echo(d.line())
        raise ChecksFailed(note or "") from e
    for w in loaded.warnings:
        echo(w.line())
    return loaded


locale_option = click.option(
    "--locale", cls=ConfiguredOption, config_key="locale",
    help="Locale of amounts (default REFERRAL_LOCALE, locale in referral.toml, else en_IN).")
