"""`referral payees ...`: import where people are paid, show a person's payee."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import click

from referral.cli.common import (
    ChecksFailed,
    Group,
    actor_name,
    business_date_option,
    db_option,
    db_transaction,
    lock_timeout_option,
)
from settlement.errors import PayeeImportError
from settlement.payees import import_payees, payee_history


@click.group(cls=Group)
def payees() -> None:
    """Where people are paid: one current payee per person, with its history."""


@payees.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--by", "by", help="Who imports (default: the OS user).")
@business_date_option
@lock_timeout_option
@db_option
def import_cmd(file: Path, by: str | None, business_date: date, db_url: str) -> None:
    """Import payees from FILE (CSV with a header, or JSON Lines): user_id, method (bank, upi,
    paypal), the method's fields, name.  Every row is checked first; one bad row and
    nothing is imported (each problem is reported as file:line: field: message)."""
    try:
        with db_transaction(db_url) as conn:
            result = import_payees(conn, file, business_date=business_date,
                                   actor=actor_name(by))
    except PayeeImportError as e:
        for problem in e.problems:
            click.echo(problem, err=True)
        raise ChecksFailed(str(e)) from e
    click.echo(f"{file}: {result.rows} rows: {result.added} new, {result.changed} changed, "
               f"{result.unchanged} unchanged")


@payees.command()
@click.argument("user")
@db_option
def show(user: str, db_url: str) -> None:
    """USER's current payee (account numbers masked) and the earlier ones."""
    with db_transaction(db_url, read_only=True) as conn:
        history = payee_history(conn, user)
    if not history:
        raise ChecksFailed(f"no payee for user {user}")
    for n, p in enumerate(history):
        label = "current" if n == 0 else "earlier"
        fields = "  ".join(f"{k} {v}" for k, v in p.masked().items())
        name = f" ({p.name})" if p.name else ""
        click.echo(f"{label}: {p.method}{name}  {fields}  since {p.business_date}"
                   f"  from {p.source}")
