"""`referral db ...`: the database schema (Alembic migrations)."""

from __future__ import annotations

import click

from referral.cli.common import Group, db_option
from settlement.db import upgrade


@click.group(cls=Group)
def db() -> None:
    """Database schema management."""


@db.command("upgrade")
@db_option
def db_upgrade(db_url: str) -> None:
    """Create or upgrade the schema to the code's revision (safe to repeat)."""
    click.echo(f"database schema at revision {upgrade(db_url)}")
