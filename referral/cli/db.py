"""`referral db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from referral.cli.common import Group, db_option
from settlement.db import DEFAULT_APP_ROLE, upgrade


@click.group(cls=Group)
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@click.option("--app-role", "app_role", is_flag=False, flag_value=DEFAULT_APP_ROLE,
              default=None, metavar="[NAME]",
              help="PostgreSQL: grant this role (alone: referral_app) SELECT and INSERT only;"
                   " run the commands as it.")
@click.option("--schema-role", "schema_role", metavar="NAME",
              help="PostgreSQL: create the tables as this role, their owner.")
@db_option
def db_upgrade(app_role: str | None, schema_role: str | None, db_url: str) -> None:
    """Create or upgrade the schema to the code's revision (safe to repeat)."""
    reached = upgrade(db_url, app_role=app_role, schema_role=schema_role)
    click.echo(f"database schema at revision {reached}"
               + (f"; role {app_role} may read and append only" if app_role else ""))
