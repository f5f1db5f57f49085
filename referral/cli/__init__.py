"""`referral`: the command group.  Each sub-group lives in its own module."""

from __future__ import annotations

import click

from referral.cli.catalog import catalog
from referral.cli.compile import compile_cmd, fmt, render
from referral.cli.ledger import db, ledger
from referral.cli.rules import rules
from referral.cli.settle import demo, settle


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="referral-rewards")
def main() -> None:
    """Referral rewards: rules that decide, a ledger that records."""


for command in (compile_cmd, fmt, render, catalog):
    rules.add_command(command)
main.add_command(rules)
main.add_command(db)
main.add_command(ledger)
main.add_command(settle)
main.add_command(demo)
