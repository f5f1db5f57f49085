"""Engines and schema versions for PostgreSQL (psycopg 3) and SQLite.

Every command opens its engine here so that both databases behave alike: the
URL's backend (``settlement.dialect``) gives the connect arguments and sets up
each connection (on SQLite a busy timeout, foreign keys and ``BEGIN
IMMEDIATE``); PostgreSQL URLs use psycopg 3.  An unreachable server becomes
``DatabaseUnavailable`` with a one-line message, never a traceback.  The
schema is owned by the Alembic migrations shipped inside this package.
"""

from __future__ import annotations

import io
import logging
import os
from contextlib import nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from settlement.dialect import READ_ONLY as READ_ONLY  # for commands that only read
from settlement.dialect import backend, for_name, of_error
from settlement.errors import (
    DatabaseRefused,
    DatabaseUnavailable,
    Interrupted,
    InvalidDatabaseURL,
    LockBusy,
    SchemaNotReady,
)
from settlement.locks import DEFAULT_LOCK_TIMEOUT, lock_ledger, write_transaction

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS = "settlement:migrations"
# The revision this code needs.  Every command checks it (``require_schema``), so it is a
# constant here rather than alembic's reading of the migration scripts, which costs a
# command a tenth of a second of imports; a test holds it equal to the scripts' head.
SCHEMA_REVISION = "0010"
VERSION_TABLE = "alembic_version"


def normalise_url(url: str) -> str:
    """Point ``postgresql://`` and ``postgres://`` URLs at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def parse_url(url: str) -> sa.URL:
    """``url`` parsed (InvalidDatabaseURL: unparsable, a bad port, an unsupported database)."""
    try:
        parsed = sa.make_url(normalise_url(url))
        parsed.port  # noqa: B018 -- parsed lazily: "h:abc" fails here
    except (sa.exc.ArgumentError, ValueError) as e:
        raise InvalidDatabaseURL(f"invalid database URL {_shown(url)}: {e}") from None
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InvalidDatabaseURL(
            f"invalid database URL {_shown(url)}: port {parsed.port} is not in 1-65535")
    for_name(parsed.get_backend_name())
    return parsed


def _shown(url: str) -> str:
    """The URL for a message, its password masked when it parses that far."""
    try:
        return repr(sa.make_url(url).render_as_string(hide_password=True))
    except (sa.exc.ArgumentError, ValueError):
        return "(unparsable)" if "@" in url else repr(url)


def sqlite_file(parsed: sa.URL) -> str | None:
    """The file a SQLite URL names (None: in memory, or not SQLite)."""
    if parsed.get_backend_name() != "sqlite":
        return None
    name = parsed.database or ""
    if not name or name == ":memory:" or name.startswith("file:"):
        return None
    return name


def open_engine(url: str, *, must_exist: bool = False) -> Engine:
    """An engine for ``url``, checked by connecting once (DatabaseUnavailable if that fails).

    ``must_exist``: a SQLite file that does not exist is an error naming it
    (SchemaNotReady) instead of an empty database created by connecting, so a
    command that only reads, or a typo in the path, leaves no file behind.
    """
    parsed = parse_url(url)
    db = for_name(parsed.get_backend_name())
    path = sqlite_file(parsed)
    if must_exist and path is not None and not os.path.exists(path):
        raise SchemaNotReady(
            f"SQLite database {os.path.abspath(path)} does not exist; "
            "run `referral db upgrade` to create it (or check --db)")
    try:
        engine = sa.create_engine(parsed, connect_args=db.connect_args(parsed))
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise InvalidDatabaseURL(
            f"unsupported database URL {db.describe(parsed)}: {e}"
        ) from None
    db.prepare(engine)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        raise DatabaseUnavailable(
            f"cannot connect to {db.describe(parsed)}: {reason}"
        ) from None
    return engine


def _alembic_config() -> Config:
    # alembic is imported by the few commands that change or describe the schema.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def head_revision() -> str:
    """The head of the shipped migrations (``SCHEMA_REVISION`` must equal it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(conn: Connection) -> str | None:
    """The database's schema revision (None: no schema), read as alembic records it."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    found = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).scalars().all()
    return found[0] if len(found) == 1 else None


@dataclass(frozen=True)
class Migration:
    """One shipped migration: its revision, the one it follows, its first doc line."""

    revision: str
    down_revision: str | None
    doc: str


def history() -> list[Migration]:
    """The shipped migrations, oldest first."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config())
    out = []
    for rev in reversed(list(script.walk_revisions())):
        down = rev.down_revision
        assert down is None or isinstance(down, str), "the migrations are one line"
        out.append(Migration(rev.revision, down, (rev.doc or "").strip().splitlines()[0]
                             if rev.doc else ""))
    return out


def offline_sql(url: str, *, from_revision: str | None = None) -> str:
    """The SQL ``upgrade`` would run on ``url``'s kind of database, from ``from_revision``
    (None: an empty database) to head, without connecting: for a DBA to review.

    PostgreSQL only: SQLite alters a table by rebuilding it, which alembic can only
    plan against the live database.
    """
    parsed = parse_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SchemaNotReady(
            "db upgrade --sql writes PostgreSQL's SQL; SQLite's migrations rebuild tables and"
            " need the database itself (run `referral db upgrade`)")
    if from_revision is not None and from_revision not in {m.revision for m in history()}:
        raise SchemaNotReady(f"unknown revision {from_revision!r} (see `referral db history`)")
    buffer = io.StringIO()
    cfg = _alembic_config()
    cfg.output_buffer = buffer
    cfg.set_main_option("sqlalchemy.url", parsed.render_as_string(hide_password=True))
    target = f"{from_revision}:head" if from_revision else "head"
    from alembic import command

    command.upgrade(cfg, target, sql=True)
    return buffer.getvalue()


DEFAULT_APP_ROLE = "referral_app"


def upgrade(engine_or_url: Engine | str, revision: str = "head", *,
            lock_timeout: float = DEFAULT_LOCK_TIMEOUT, app_role: str | None = None,
            schema_role: str | None = None) -> str:
    """Apply the shipped migrations up to head (idempotent); returns the revision reached.
    Behind another writer it waits at most ``lock_timeout`` seconds (LockBusy).

    PostgreSQL only: ``schema_role`` creates the tables as that role (their owner; the
    connecting user must be a member); ``app_role`` (created NOLOGIN if missing) is granted
    SELECT and INSERT on every table and USAGE on the sequences, and nothing else, so a
    command connected as it can neither change nor delete rows nor disable the triggers."""
    from alembic import command

    engine = open_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        cfg = _alembic_config()
        with engine.connect() as conn, backend(conn).schema_changes(conn), \
                write_transaction(conn, lock_timeout=lock_timeout):
            lock_ledger(conn)  # two concurrent upgrades must not both create tables
            cfg.attributes["connection"] = conn
            with (backend(conn).schema_role(conn, schema_role) if schema_role is not None
                  else nullcontext()):
                command.upgrade(cfg, revision)
            reached = current_revision(conn)
            backend(conn).check_schema(conn)
            if app_role is not None:
                backend(conn).grant_app_role(conn, app_role)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    assert reached is not None
    log.info("database schema at revision %s", reached)
    return reached


def require_schema(conn: Connection) -> None:
    """Refuse to work on a database whose schema is missing or not at the code's revision."""
    current = current_revision(conn)
    needed = SCHEMA_REVISION
    if current is None:
        raise SchemaNotReady("database schema is missing; run `referral db upgrade`")
    if current != needed:
        raise SchemaNotReady(
            f"database schema is at revision {current}, code needs {needed}; "
            "run `referral db upgrade`"
        )


def database_error(error: sa.exc.DBAPIError) -> Exception:
    """A driver's error as the project's own, with a one-line message: a lock wait that
    timed out, a statement cancelled by Ctrl-C, a lost or locked database, or a
    statement the database refused.  The transaction was rolled back in every case."""
    reason = _first_line(error)
    db = of_error(error)
    if db is not None and db.is_lock_busy(error):
        return LockBusy(f"lock busy: another writer holds the database lock ({reason});"
                        " nothing was written; retry later or raise --lock-timeout")
    if db is not None and db.is_cancelled(error):
        return Interrupted(f"interrupted: {reason}; nothing was written")
    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return DatabaseUnavailable(f"database unavailable: {reason}; nothing was written")
    return DatabaseRefused(f"the database refused the command: {reason}; nothing was written")


def _first_line(error: sa.exc.DBAPIError) -> str:
    text = str(error.orig if error.orig is not None else error).strip()
    return text.splitlines()[0] if text else type(error.orig or error).__name__
