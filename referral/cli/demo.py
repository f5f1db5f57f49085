"""`referral demo generate|payees`: sample records for the example program in rules/, and
payees for the people in them."""

from __future__ import annotations

import csv
from typing import TextIO

import click

from referral.cli.common import Group
from settlement.demo import PAYEE_COLUMNS, demo_payees, write_records


@click.group(cls=Group)
def demo() -> None:
    """Demo data for the example program in rules/."""


@demo.command("generate")
@click.option("--records", "count", type=click.IntRange(min=1), required=True,
              help="How many lines to write.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-o", "--output", type=click.File("w"), default="-", help="Output file.")
def generate(count: int, seed: int, output: TextIO) -> None:
    """Write realistic JSONL referral records (with refunds and some malformed lines)."""
    write_records(output, count, seed=seed)


@demo.command("payees")
@click.option("--records", type=click.File("r"), required=True,
              help="The records whose people get payees.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("-o", "--output", type=click.File("w"), default="-", help="Output CSV file.")
def payees(records: TextIO, seed: int, output: TextIO) -> None:
    """Write a payees CSV (UPI, Indian bank, IBAN, PayPal; a few people without one)."""
    writer = csv.DictWriter(output, fieldnames=PAYEE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(demo_payees(records, seed=seed))
