"""`referral settle` (the nightly batch) and `referral demo generate`."""

from __future__ import annotations

import click


@click.command()
def settle() -> None:
    """Evaluate referral records against the rules and post ledger entries."""
    raise click.ClickException("not implemented yet")


@click.group()
def demo() -> None:
    """Demo data for the example program in rules/."""
