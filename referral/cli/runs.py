"""`referral runs list|show` and `referral quarantine list`: the settlement run history."""

from __future__ import annotations

import csv
import json
from typing import Any

import click

from dsl.money import Money, format_money
from referral.cli.common import Group, db_option, db_transaction
from settlement.batch import RunSummary
from settlement.runs import RunInfo, list_runs, quarantined, show_run

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@click.group(cls=Group)
def runs() -> None:
    """Settlement runs: every run's status, phase, input and counts, failed ones too."""


@click.group(cls=Group)
def quarantine() -> None:
    """Records settlement runs quarantined (not settled): file, line, reason, text."""


def _when(info: RunInfo) -> str:
    return info.started_at.strftime("%Y-%m-%d %H:%M:%S") if info.started_at else "-"


def _line(info: RunInfo) -> str:
    c = info.counts
    duration = f"{info.duration_s:.1f}s" if info.duration_s is not None else "-"
    counts = (f"records {c.get('records', '-')}, posted {c.get('posted', '-')}, "
              f"quarantined {c.get('quarantined', '-')}")
    where = "" if info.status in ("succeeded", "dry_run") else f" in {info.phase}"
    return (f"{info.run_id}  {_when(info)}  {info.status}{where}  as of {info.as_of or '-'}"
            f"  {duration}  {counts}  {info.input_name or '-'}")


@runs.command("list")
@click.option("--last", type=click.IntRange(min=1), default=20, show_default=True,
              help="How many runs, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON array of runs.")
@db_option
def list_cmd(last: int, as_json: bool, db_url: str) -> None:
    """The newest runs: status (running, succeeded, failed, dry_run, unknown, aborted)."""
    with db_transaction(db_url, read_only=True) as conn:
        infos = list_runs(conn, last)
    if as_json:
        click.echo(json.dumps([i.as_json() for i in infos]))
        return
    if not infos:
        click.echo("no settlement runs")
    for info in infos:
        click.echo(_line(info))


@runs.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
@db_option
def show_cmd(run: str, as_json: bool, db_url: str) -> None:
    """One run (its id or a unique prefix): input, every history row, what it committed."""
    with db_transaction(db_url, read_only=True) as conn:
        detail = show_run(conn, run)
    if as_json:
        click.echo(json.dumps(detail.as_json()))
        return
    info = detail.info
    click.echo(f"run {info.run_id}: {info.status}"
               + ("" if info.status in ("succeeded", "dry_run") else f" in phase {info.phase}"))
    click.echo(f"  as of           {info.as_of or '-'}")
    click.echo(f"  input           {info.input_name or '-'}"
               + (f" ({info.input_size} bytes, sha256 {info.input_digest})"
                  if info.input_size is not None else ""))
    click.echo(f"  started         {_when(info)}" + (f" on {info.host}, pid {info.pid}"
                                                 if info.host else ""))
    if info.duration_s is not None:
        click.echo(f"  duration        {info.duration_s:.1f} s")
    if info.error:
        click.echo(f"  error           {info.error}")
    for key in RunSummary.COUNTERS:  # the summary's order
        if key in info.counts:
            click.echo(f"  {key.replace('_', ' '):<15} {info.counts[key]}")
    for currency, amount in (info.counts.get("amount_posted") or {}).items():
        click.echo(f"  {'amount posted':<15} {format_money(Money(amount, currency))}")
    click.echo(f"  quarantine      {detail.quarantined} rows (`referral quarantine list --run "
               f"{info.run_id[:12]}`)")
    for e in detail.events:
        click.echo(f"  {e.at.strftime('%Y-%m-%d %H:%M:%S')}  {e.status:<9} {e.phase}"
                   + (f": {e.error}" if e.error else ""))


def _cell(value: Any) -> Any:
    """A CSV cell a spreadsheet will not run as a formula (OWASP's CSV injection advice)."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


class _Echo:
    def write(self, text: str) -> None:
        click.echo(text, nl=False)


@quarantine.command("list")
@click.option("--run", "run", help="Only this run's (its id or a unique prefix).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header row.")
@db_option
def quarantine_list(run: str | None, as_json: bool, as_csv: bool, db_url: str) -> None:
    """Quarantined records, run by run, in the order they were written (streamed)."""
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other")
    fields = ["run_id", "file", "line", "reason", "raw"]
    writer = csv.DictWriter(_Echo(), fieldnames=fields, lineterminator="\n")
    if as_csv:
        writer.writeheader()
    shown = 0
    with db_transaction(db_url, read_only=True) as conn:
        for record in quarantined(conn, run):
            shown += 1
            if as_json:
                click.echo(json.dumps(record.as_json(), ensure_ascii=False))
            elif as_csv:
                writer.writerow({k: _cell(v) for k, v in record.as_json().items()})
            else:
                click.echo(f"{record.run_id[:12]}  {record.file}:{record.line}: {record.reason}")
    if shown == 0 and not (as_json or as_csv):
        click.echo("no quarantined records")
