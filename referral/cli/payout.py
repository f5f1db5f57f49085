"""`referral payout ...`: create a batch, export its provider file, complete it, list, show."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import click

from dsl.money import parse_money
from referral.cli.common import (
    CommandInputError,
    Group,
    actor_name,
    as_of_date,
    business_date_option,
    db_option,
    db_transaction,
    locale_option,
    lock_timeout_option,
)
from referral.cli.output import atomic_file
from settlement.payouts import (
    FORMATS,
    Batch,
    complete_batch,
    create_batch,
    export_batch,
    get_batch,
    list_batches,
    read_results,
)
from settlement.reports import format_amount, resolve_locale


@click.group(cls=Group)
def payout() -> None:
    """Pay people in bulk: create a batch, export it for the provider, complete it."""


def _describe(batch: Batch, locale: str) -> list[str]:
    money = format_amount(batch.total, batch.currency, locale)
    counts = ", ".join(f"{n} {s}" for s, n in batch.counts().items() if n)
    lines = [f"batch {batch.batch_id} as of {batch.as_of}: {len(batch.items)} items, {money}, "
             f"{batch.status}" + (f" ({counts})" if counts else "")]
    if batch.skipped:
        lines.append("  skipped: " + ", ".join(f"{r} {n}" for r, n in batch.skipped.items()))
    return lines


@payout.command()
@click.option("--as-of", "as_of", callback=as_of_date, required=True, metavar="YYYY-MM-DD",
              help="Pay what was confirmed on or before this date (also the business date).")
@click.option("--currency", help="The batch's currency (default: the only one in the ledger).")
@click.option("--min", "minimum", help="Smallest payment, e.g. ₹100 (smaller: skipped).")
@click.option("--by", "by", help="Who creates the batch (default: the OS user).")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@locale_option
@lock_timeout_option
@db_option
def create(as_of: date, currency: str | None, minimum: str | None, by: str | None,
           as_json: bool, locale: str | None, db_url: str) -> None:
    """Create the payout batch of an as-of date (a rerun creates nothing and shows it)."""
    min_amount = 0
    if minimum is not None:
        money = parse_money(minimum)
        if currency is not None and money.currency != currency:
            raise CommandInputError(f"--min {minimum} is in {money.currency}, the batch in "
                                    f"{currency}")
        currency, min_amount = money.currency, money.amount
    with db_transaction(db_url) as conn:
        batch = create_batch(conn, as_of=as_of, currency=currency, min_amount=min_amount,
                             actor=actor_name(by))
    if as_json:
        click.echo(json.dumps(batch.as_json()))
        return
    verb = "created" if batch.created else "already exists"
    lines = _describe(batch, resolve_locale(locale))
    click.echo(f"{verb}: " + "\n".join(lines))


@payout.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True,
              help="csv: every method; paypal: PayPal's payouts CSV (PayPal payees).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the file here (default: standard output).")
@click.option("--by", "by", help="Who exports (default: the OS user).")
@business_date_option
@lock_timeout_option
@db_option
def export(batch_id: str, fmt: str, output: Path | None, by: str | None, business_date: date,
           db_url: str) -> None:
    """Write BATCH's provider file and mark its items sent (the same file again on a rerun)."""
    with db_transaction(db_url) as conn:
        result = export_batch(conn, batch_id, fmt, business_date=business_date,
                              actor=actor_name(by))
        if output is None:
            click.echo(result.text, nl=False)
        else:
            # Written before the transaction commits: a file on disk for every sent mark.
            with atomic_file(output, newline="") as fh:
                fh.write(result.text)
    note = f"; {result.left_out} other items are paid by another format" if result.left_out \
        else ""
    click.echo(f"{batch_id}: {result.items} items in the {fmt} file, {result.marked_sent} "
               f"newly marked sent{note}", err=output is None)


@payout.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--results", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The provider's result CSV (item reference and status per line); "
                   "without it every sent item is paid.")
@click.option("--by", "by", help="Who completes (default: the OS user).")
@business_date_option
@lock_timeout_option
@db_option
def complete(batch_id: str, results: Path | None, by: str | None, business_date: date,
             db_url: str) -> None:
    """Mark BATCH's sent items paid or failed (failed money returns to payable)."""
    outcomes = read_results(results) if results is not None else None
    with db_transaction(db_url) as conn:
        done = complete_batch(conn, batch_id, outcomes, business_date=business_date,
                              actor=actor_name(by))
    click.echo(f"{batch_id}: {done.paid} paid ({done.credits_paid} credits), {done.failed} "
               f"failed, {done.still_sent} still sent")


@payout.command("list")
@locale_option
@db_option
def list_cmd(locale: str | None, db_url: str) -> None:
    """Every batch, oldest first."""
    with db_transaction(db_url, read_only=True) as conn:
        batches = list_batches(conn)
    if not batches:
        click.echo("no payout batches")
    chosen = resolve_locale(locale)
    for batch in batches:
        click.echo(_describe(batch, chosen)[0])


@payout.command()
@click.argument("batch_id", metavar="BATCH")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@locale_option
@db_option
def show(batch_id: str, as_json: bool, locale: str | None, db_url: str) -> None:
    """BATCH and its items."""
    with db_transaction(db_url, read_only=True) as conn:
        batch = get_batch(conn, batch_id)
    if as_json:
        click.echo(json.dumps(batch.as_json()))
        return
    chosen = resolve_locale(locale)
    for line in _describe(batch, chosen):
        click.echo(line)
    for item in batch.items:
        click.echo(f"  {item.item_id}  {item.user_id}  "
                   f"{format_amount(item.amount, item.currency, chosen)}  {item.status}")
