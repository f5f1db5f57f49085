"""`referral db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from referral.cli.common import Group, command_lock_timeout, db_option, lock_timeout_option
from settlement.db import (
    DEFAULT_APP_ROLE,
    current_revision,
    head_revision,
    history,
    offline_sql,
    open_engine,
    upgrade,
)


@click.group(cls=Group)
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--sql", "as_sql", is_flag=True,
              help="Print the SQL instead of running it (PostgreSQL; for a DBA to review).")
@click.option("--from", "from_revision", metavar="REV",
              help="With --sql: the revision the database is at (default: an empty one).")
@click.option("--app-role", "app_role", is_flag=False, flag_value=DEFAULT_APP_ROLE,
              default=None, metavar="[NAME]",
              help="PostgreSQL: grant this role (alone: referral_app) SELECT and INSERT only;"
                   " run the commands as it.")
@click.option("--schema-role", "schema_role", metavar="NAME",
              help="PostgreSQL: create the tables as this role, their owner.")
@lock_timeout_option
@db_option
def db_upgrade(as_sql: bool, from_revision: str | None, app_role: str | None,
               schema_role: str | None, db_url: str) -> None:
    """Create or upgrade the schema to the code's revision (safe to repeat)."""
    if from_revision is not None and not as_sql:
        raise click.UsageError("--from goes with --sql")
    if as_sql:
        click.echo(offline_sql(db_url, from_revision=from_revision), nl=False)
        return
    reached = upgrade(db_url, lock_timeout=command_lock_timeout(), app_role=app_role,
                      schema_role=schema_role)
    click.echo(f"database schema at revision {reached}"
               + (f"; role {app_role} may read and append only" if app_role else ""))


@db.command("current")
@db_option
def db_current(db_url: str) -> None:
    """The database's schema revision, and whether it is the one the code needs."""
    engine = open_engine(db_url, must_exist=True)
    try:
        with engine.connect() as conn:
            current = current_revision(conn)
    finally:
        engine.dispose()
    head = head_revision()
    if current is None:
        click.echo(f"no schema (the code needs {head}); run `referral db upgrade`")
    elif current == head:
        click.echo(f"{current} (head)")
    else:
        click.echo(f"{current} (the code needs {head}; run `referral db upgrade`)")


@db.command("history")
def db_history() -> None:
    """The shipped migrations, newest first."""
    head = head_revision()
    for m in reversed(history()):
        mark = " (head)" if m.revision == head else ""
        click.echo(f"{m.down_revision or '<base>'} -> {m.revision}{mark}, {m.doc}")
