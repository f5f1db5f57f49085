"""Engines and schema versions for PostgreSQL (psycopg 3) and SQLite.

Every command opens its engine here so that both databases behave alike: the
URL's backend (``settlement.dialect``) gives the connect arguments and sets up
each connection (on SQLite a busy timeout, foreign keys and ``BEGIN
IMMEDIATE``); PostgreSQL URLs use psycopg 3.  An unreachable server becomes
``DatabaseUnavailable`` with a one-line message, never a traceback.  The
schema is owned by the Alembic migrations shipped inside this package.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from settlement.dialect import READ_ONLY as READ_ONLY  # for commands that only read
from settlement.dialect import backend, for_name
from settlement.errors import DatabaseUnavailable, SchemaNotReady
from settlement.locks import lock_ledger

log = logging.getLogger(__name__)

MIGRATIONS = "settlement:migrations"


def normalise_url(url: str) -> str:
    """Point ``postgresql://`` and ``postgres://`` URLs at the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def open_engine(url: str) -> Engine:
    """An engine for ``url``, checked by connecting once (DatabaseUnavailable if that fails)."""
    try:
        parsed = sa.make_url(normalise_url(url))
    except sa.exc.ArgumentError as e:
        raise DatabaseUnavailable(f"invalid database URL: {e}") from None
    db = for_name(parsed.get_backend_name())
    try:
        engine = sa.create_engine(parsed, connect_args=db.connect_args())
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as e:
        raise DatabaseUnavailable(
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


DEFAULT_APP_ROLE = "referral_app"


def upgrade(engine_or_url: Engine | str, revision: str = "head", *, app_role: str | None = None,
            schema_role: str | None = None) -> str:
    """Apply the shipped migrations up to head (idempotent); returns the revision reached.

    PostgreSQL only: ``schema_role`` creates the tables as that role (their owner; the
    connecting user must be a member); ``app_role`` (created NOLOGIN if missing) is granted
    SELECT and INSERT on every table and USAGE on the sequences, and nothing else, so a
    command connected as it can neither change nor delete rows nor disable the triggers."""
    engine = open_engine(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        cfg = _alembic_config()
        with engine.connect() as conn, backend(conn).schema_changes(conn), conn.begin():
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
    needed = head_revision()
    if current is None:
        raise SchemaNotReady("database schema is missing; run `referral db upgrade`")
    if current != needed:
        raise SchemaNotReady(
            f"database schema is at revision {current}, code needs {needed}; "
            "run `referral db upgrade`"
        )
