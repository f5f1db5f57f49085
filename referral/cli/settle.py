"""`referral settle`: the nightly batch (one transaction per run)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from datetime import date
from typing import TextIO

import click

from dsl.money import Money, format_money
from referral.cli.common import Command, currency_option, db_option, load_rules, optional_date
from settlement.batch import PlannedReward, RunSummary
from settlement.batch import settle as settle_records
from settlement.db import open_engine
from settlement.records import BadRecord, Record, read_records

SHOWN_CAPPED = 10


def _with_progress(
    items: Iterator[Record | BadRecord], path: str, show: bool
) -> Iterator[Record | BadRecord]:
    """Show a progress bar (bytes of input read) only on a terminal."""
    if not show or path == "-":
        yield from items
        return
    with click.progressbar(length=os.path.getsize(path), label="settling", file=sys.stderr) as bar:
        for item in items:
            bar.update(len(item.raw.encode()) + 1)
            yield item


def _print_plan(p: PlannedReward) -> None:
    r = p.request
    line = f"would post {r.reference_id}: {r.user_id} {format_money(Money(r.amount, r.currency))}"
    line += f" {r.status}" + (f" until {r.hold_until}" if r.hold_until else "")
    if p.capped_from is not None:
        line += f" (capped from {format_money(Money(p.capped_from, r.currency))})"
    click.echo(line)


def _print_summary(summary: RunSummary) -> None:
    data = summary.as_json()
    title = "dry run (nothing written)" if summary.dry_run else "settlement run"
    click.echo(f"{title} {summary.run_id} as of {summary.as_of}")
    for key in RunSummary.COUNTERS:
        click.echo(f"  {key.replace('_', ' '):<15} {data[key]:>10}")
    for currency, amount in data["amount_posted"].items():
        click.echo(f"  {'amount posted':<15} {format_money(Money(amount, currency)):>10}")
    for note in summary.capped_notes[:SHOWN_CAPPED]:
        click.echo(f"  capped: {note}")
    if summary.capped > SHOWN_CAPPED:
        click.echo(f"  ... and {summary.capped - SHOWN_CAPPED} more capped (see --explain)")
    for note in summary.conflict_notes[:SHOWN_CAPPED]:
        click.echo(f"  conflict: {note}")


def _renames(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
             ) -> dict[str, str]:
    """``--renamed OLD=NEW`` (repeatable) as a mapping."""
    out: dict[str, str] = {}
    for value in values:
        old, sep, new = value.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise click.BadParameter(f"{value!r} is not OLD=NEW")
        out[old.strip()] = new.strip()
    return out


@click.command(cls=Command)
@click.option("--rules", "rule_paths", multiple=True, required=True,
              type=click.Path(exists=True), help="Rule files or directories (repeatable).")
@click.option("--records", "records_path", required=True,
              help="Referral records: JSON Lines, CSV or a JSON array, any of them gzipped;"
                   " - reads stdin.")
@db_option
@click.option("--as-of", callback=optional_date,
              help="Settlement date (default: today in the program's time zone).")
@click.option("--allow-future-as-of", is_flag=True,
              help="Allow an --as-of later than tomorrow (it confirms holds early).")
@click.option("--dry-run", is_flag=True, help="Print what would be posted; write nothing.")
@click.option("--strict", is_flag=True, help="Abort with nothing written on any bad record.")
@click.option("--json", "as_json", is_flag=True, help="Print exactly one JSON summary object.")
@click.option("--explain", type=click.File("w"), help="Write a JSON line per record: why.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for a running settlement, or stop at once.")
@currency_option
@click.option("--renamed", multiple=True, callback=_renames, metavar="OLD=NEW",
              help="Rule OLD is now called NEW: carry its standing rewards over, pay nothing "
                   "again (repeatable).")
@click.option("--allow-anonymous-rules", is_flag=True,
              help="Settle rules without a RULE header (their ids come from file names).")
@click.option("--allow-conflicts", is_flag=True,
              help="Settle the rest when a reference settlement would post is already taken "
                   "by another entry (counted as conflicts).")
def settle(
    rule_paths: tuple[str, ...],
    records_path: str,
    db_url: str,
    as_of: date | None,
    allow_future_as_of: bool,
    dry_run: bool,
    strict: bool,
    as_json: bool,
    explain: TextIO | None,
    wait: bool,
    currency: str | None,
    renamed: dict[str, str],
    allow_anonymous_rules: bool,
    allow_conflicts: bool,
) -> None:
    """Evaluate referral records against the rules and post ledger entries (one transaction)."""
    if records_path != "-" and not os.path.isfile(records_path):
        raise click.BadParameter(f"{records_path!r} is not a file", param_hint="--records")
    loaded = load_rules(rule_paths, note="rules are invalid; nothing was written",
                        currency=currency)
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            items = _with_progress(
                read_records(records_path), records_path,
                show=sys.stderr.isatty() and not as_json,
            )
            summary = settle_records(
                conn, loaded.program, items, as_of=as_of, input_name=records_path,
                dry_run=dry_run, strict=strict, wait=wait, explain=explain,
                on_plan=_print_plan if dry_run and not as_json else None,
                renamed=renamed, allow_anonymous=allow_anonymous_rules,
                allow_conflicts=allow_conflicts, allow_future_as_of=allow_future_as_of,
            )
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    else:
        _print_summary(summary)

