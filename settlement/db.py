"""Engines and schema versions for PostgreSQL (psycopg 3) and SQLite.

Every command opens its engine here so that both databases behave alike:
SQLite gets a busy timeout, foreign keys and ``BEGIN IMMEDIATE`` (writers
queue instead of failing on lock upgrade); PostgreSQL URLs use psycopg 3.
An unreachable server becomes ``DatabaseUnavailable`` with a one-line
message, never a traceback.  The schema is owned by the Alembic migrations
shipped inside this package.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from settlement.errors import DatabaseUnavailable, SchemaNotReady

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 30
PG_CONNECT_TIMEOUT_SECONDS = 5
# One fixed key for pg_advisory_xact_lock: every ledger writer takes it, so the
# hash chain stays linear and read-then-insert under the lock is race-free.
LEDGER_LOCK_KEY = 0x5EF_1ED6E2
MIGRATIONS = "settlement:migrations"


def normalise_url(url: str) -> str:
    """Point ``postgresql://`` and ``postgres://`` URLs at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def describe_url(url: sa.URL) -> str:
    """Where a URL points, without credentials: ``host:port/database`` or the SQLite file."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite database {url.database or ':memory:'}"
    host = url.host or "localhost"
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL database {url.database or ''} on {host}{port}"


def open_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once (DatabaseUnavailable if that fails)."""
    try:
        parsed = sa.make_url(normalise_url(url))
    except sa.exc.ArgumentError as e:
        raise DatabaseUnavailable(f"invalid database URL: {e}") from None
    backend = parsed.get_backend_name()
    kwargs: dict[str, Any] = {}
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}
    elif backend == "postgresql":
        # No server-side prepared statements: a settlement run fills tables inside
        # one transaction, and a generic plan made while they looked empty kept
        # scanning them (find_entries 12x slower on 20k records).
        kwargs["connect_args"] = {
            "connect_timeout": PG_CONNECT_TIMEOUT_SECONDS,
            "prepare_threshold": None,
        }
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise DatabaseUnavailable(f"unsupported database URL {describe_url(parsed)}: {e}") from None
    if backend == "sqlite":
        _sqlite_immediate_transactions(engine)
    try:
        with engine.connect():
            pass
    except sa.exc.DBAPIError as e:
        engine.dispose()
        reason = str(e.orig).strip().splitlines()[0] if e.orig is not None else str(e)
        raise DatabaseUnavailable(f"cannot connect to {describe_url(parsed)}: {reason}") from None
    return engine


def _sqlite_immediate_transactions(engine: Engine) -> None:
    """SQLAlchemy's pysqlite recipe: we emit BEGIN ourselves, as BEGIN IMMEDIATE.

    A deferred transaction that reads and then writes can fail with "database is
    locked" when another writer got in between; IMMEDIATE takes the write lock
    up front, so writers queue on the busy timeout and the hash chain is linear.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        # WAL: readers see the last commit while a settlement run writes.
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get("read_only", False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


# Execution options for a connection that only reads: on SQLite its transaction
# starts with a plain BEGIN, so it neither takes nor waits for the write lock.
READ_ONLY: dict[str, Any] = {"read_only": True}


def lock_ledger(conn: Connection) -> None:
    """Serialise ledger writers for the rest of the caller's transaction.

    PostgreSQL: a transaction-scoped advisory lock (re-entrant, released at
    commit or rollback).  SQLite: nothing to do, BEGIN IMMEDIATE already holds
    the database write lock.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": LEDGER_LOCK_KEY})


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS)
    return cfg


def head_revision() -> str:
    """The revision the code needs (the head of the shipped migrations)."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> str:
    """Apply the shipped migrations up to head (idempotent); returns the revision reached."""
    engine = open_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        cfg = _alembic_config()
        with engine.begin() as conn:
            lock_ledger(conn)  # two concurrent upgrades must not both create tables
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            revision = current_revision(conn)
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
    assert revision is not None
    log.info("database schema at revision %s", revision)
    return revision


def require_schema(conn: Connection) -> None:
    """Refuse to work on a database whose schema is missing or not at the code's revision."""
    current = current_revision(conn)
    needed = head_revision()
    if current is None:
        raise SchemaNotReady("database schema is missing; run `referral db upgrade`")
    if current != needed:
        raise SchemaNotReady(
            f"database schema is at revision {current}, code needs {needed}; "
            "run `referral db upgrade`"
        )
