"""`referral demo generate`: sample referral records for the example program in rules/."""

from __future__ import annotations

from typing import TextIO

import click

from referral.cli.common import Group
from settlement.demo import write_records


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
