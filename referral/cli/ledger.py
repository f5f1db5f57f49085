"""`referral db ...` and `referral ledger ...`."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Database schema management."""


@click.group()
def ledger() -> None:
    """Post, move, reverse, inspect and verify ledger entries."""
