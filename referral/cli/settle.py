"""`referral settle`: the nightly batch (one transaction per run)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import date
from pathlib import Path
from typing import Any

import click

from dsl.money import Money, format_money
from referral.cli.common import (
    ERROR_PRINTER,
    Command,
    CommandInputError,
    ConfiguredOption,
    command_lock_timeout,
    currency_option,
    db_option,
    exit_code_for,
    load_rules,
    lock_timeout_option,
    optional_date,
)
from referral.cli.logs import LOG_FORMATS, command_logging, json_error_printer
from referral.cli.output import atomic_file
from settlement.batch import PlannedReward, RunSummary
from settlement.db import open_engine
from settlement.guards import InputGuards, QuarantineLimit
from settlement.metrics import RunMetrics, write_metrics
from settlement.records import BadRecord, Record, read_records
from settlement.runs import ProgressPolicy, settle_recorded

SHOWN_CAPPED = 10


class _PhaseBar:
    """A progress bar on a terminal: bytes of input read, labelled with the run's phase
    (so posting, confirming and committing show too, after the last byte is read)."""

    def __init__(self, path: str, show: bool) -> None:
        self.bar: Any = None
        if show and path != "-":
            self.bar = click.progressbar(length=max(os.path.getsize(path), 1),
                                         label=self._label("start"), file=sys.stderr)

    @staticmethod
    def _label(phase: str) -> str:
        return f"settling: {phase:<10}"

    def __enter__(self) -> _PhaseBar:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def items(self, items: Iterator[Record | BadRecord]) -> Iterator[Record | BadRecord]:
        if self.bar is None:
            yield from items
            return
        for item in items:
            self.bar.update(len(item.raw.encode()) + 1)
            yield item

    def phase(self, name: str) -> None:
        if self.bar is not None:
            self.bar.label = self._label(name)
            self.bar.render_progress()


def _print_plan(p: PlannedReward) -> None:
    r = p.request
    line = f"would post {r.reference_id}: {r.user_id} {format_money(Money(r.amount, r.currency))}"
    line += f" {r.status}" + (f" until {r.hold_until}" if r.hold_until else "")
    if p.capped_from is not None:
        line += f" (capped from {format_money(Money(p.capped_from, r.currency))})"
    click.echo(line)


def _print_summary(summary: RunSummary, verbose: bool) -> None:
    """Counts; with -v, samples of what was capped and quarantined too."""
    data = summary.as_json()
    title = "dry run (nothing written)" if summary.dry_run else "settlement run"
    click.echo(f"{title} {summary.run_id} as of {summary.as_of} ({summary.duration_s:.1f} s)")
    for key in RunSummary.COUNTERS:
        click.echo(f"  {key.replace('_', ' '):<15} {data[key]:>10}")
    for currency, amount in data["amount_posted"].items():
        click.echo(f"  {'amount posted':<15} {format_money(Money(amount, currency)):>10}")
    if verbose:
        _samples("capped", summary.capped_notes, summary.capped)
        _samples("quarantined", summary.quarantine_notes, summary.quarantined,
                 "(see `referral quarantine list`)")
    for note in summary.conflict_notes[:SHOWN_CAPPED]:
        click.echo(f"  conflict: {note}")


def _samples(kind: str, notes: list[str], total: int, more: str = "(see --explain)") -> None:
    for note in notes[:SHOWN_CAPPED]:
        click.echo(f"  {kind}: {note}")
    if total > min(len(notes), SHOWN_CAPPED):
        click.echo(f"  ... and {total - min(len(notes), SHOWN_CAPPED)} more {kind} {more}")


def _metrics_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--metrics-file``: a file in a directory that exists (checked before the run)."""
    if value is None:
        return None
    directory = os.path.dirname(os.path.abspath(value))
    if not os.path.isdir(directory) or os.path.isdir(value):
        raise click.BadParameter(f"{value!r}: no such directory {directory!r}"
                                 if not os.path.isdir(directory) else f"{value!r} is a directory")
    return value


def _write_metrics(path: str, metrics: RunMetrics) -> None:
    try:
        write_metrics(path, metrics)
    except OSError as e:
        raise CommandInputError(f"{path}: cannot write the metrics file: "
                                f"{e.strerror or e}") from None


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


def _check_records_path(path: str) -> None:
    """Refuse before any work what reading the records would fail on: no such file, a
    closed standard input, a path that cannot be stored (the run log keeps it as text)."""
    if path == "-":
        if sys.stdin is None or sys.stdin.closed:
            raise CommandInputError("--records -: standard input is closed; nothing was read")
        return
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        raise CommandInputError(
            f"--records '{shown}': the path is not valid UTF-8 (the run log stores it);"
            " rename the file, or pipe it: --records - < FILE") from None
    if not os.path.isfile(path):
        raise click.BadParameter(f"{path!r} is not a file", param_hint="--records")


def _quarantine_limit(ctx: click.Context, param: click.Parameter, value: str | None
                      ) -> QuarantineLimit | None:
    if value is None or isinstance(value, QuarantineLimit):
        return value
    try:
        return QuarantineLimit.parse(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


@click.command(cls=Command)
@click.option("--rules", "rule_paths", multiple=True, required=True,
              type=click.Path(exists=True), cls=ConfiguredOption, config_key="rules",
              help="Rule files or directories (repeatable; also REFERRAL_RULES, rules in "
                   "referral.toml).")
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
@click.option("--explain", "explain_path", metavar="FILE",
              type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write a JSON line per record whose rules decided something: matched, "
                   "capped, suppressed, reversed or failed (renamed into place when the run "
                   "ends; - is stdout).")
@click.option("--explain-all", is_flag=True,
              help="With --explain: every record and every rule, with the full trace.")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for a running settlement (up to --lock-timeout), or stop at once "
                   "(exit 75).")
@lock_timeout_option
@currency_option
@click.option("--renamed", multiple=True, callback=_renames, metavar="OLD=NEW",
              help="Rule OLD is now called NEW: carry its standing rewards over, pay nothing "
                   "again (repeatable).")
@click.option("--allow-anonymous-rules", is_flag=True,
              help="Settle rules without a RULE header (their ids come from file names).")
@click.option("--max-quarantine", callback=_quarantine_limit, metavar="N|P%",
              cls=ConfiguredOption, config_key="max_quarantine",
              help="Fail (exit 4, nothing written) when more records than this are "
                   "quarantined: a count or a percentage (default: fail only when all are; "
                   "also REFERRAL_MAX_QUARANTINE).")
@click.option("--allow-empty", is_flag=True,
              help="Settle an input without records (it only confirms holds that ended); "
                   "without it an empty input fails (exit 4).")
@click.option("--backfill", is_flag=True,
              help="Allow an --as-of before the newest run's (runs otherwise go forward).")
@click.option("--allow-conflicts", is_flag=True,
              help="Settle the rest when a reference settlement would post is already taken "
                   "by another entry (counted as conflicts).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="Log lines on stderr: text, or one JSON object a line (every stderr line).")
@click.option("-q", "--quiet", "quiet", is_flag=True,
              help="Warnings and errors only; no summary unless --json.")
@click.option("-v", "--verbose", "verbose", is_flag=True,
              help="Debug log lines, and samples of capped and quarantined records.")
@click.option("--progress-every", type=click.IntRange(min=1), default=10_000,
              show_default=True, metavar="N",
              help="Log progress every N records (or every 10 seconds).")
@click.option("--metrics-file", callback=_metrics_path, metavar="PATH",
              help="Write Prometheus text-format metrics here (atomically; also on failure), "
                   "for node_exporter's textfile collector.")
def settle(
    rule_paths: tuple[str, ...],
    records_path: str,
    db_url: str,
    as_of: date | None,
    allow_future_as_of: bool,
    dry_run: bool,
    strict: bool,
    as_json: bool,
    explain_path: Path | None,
    explain_all: bool,
    wait: bool,
    currency: str | None,
    renamed: dict[str, str],
    allow_anonymous_rules: bool,
    allow_conflicts: bool,
    max_quarantine: QuarantineLimit | None,
    allow_empty: bool,
    backfill: bool,
    log_format: str,
    quiet: bool,
    verbose: bool,
    progress_every: int,
    metrics_file: str | None,
) -> None:
    """Evaluate referral records against the rules and post ledger entries (one transaction).

    Every run leaves a row in the run history (`referral runs list`), failed ones too.
    """
    _check_records_path(records_path)
    if quiet and verbose:
        raise click.UsageError("-q and -v exclude each other")
    if explain_all and explain_path is None:
        raise click.UsageError("--explain-all goes with --explain FILE")
    run_id = uuid.uuid4().hex
    if log_format == "json":
        click.get_current_context().meta[ERROR_PRINTER] = json_error_printer(run_id=run_id)
    started = time.monotonic()
    try:
        summary = _run(
            rule_paths, records_path, db_url, log_format=log_format, quiet=quiet,
            verbose=verbose, as_json=as_json, explain_path=explain_path, currency=currency,
            as_of=as_of, dry_run=dry_run, strict=strict, wait=wait,
            lock_timeout=command_lock_timeout(), explain_only_decisions=not explain_all,
            renamed=renamed, allow_anonymous=allow_anonymous_rules,
            allow_conflicts=allow_conflicts, allow_future_as_of=allow_future_as_of,
            input_guards=InputGuards(max_quarantine, allow_empty), backfill=backfill,
            progress_every=progress_every, run_id=run_id,
        )
    except BaseException as e:
        if metrics_file is not None:
            _write_metrics(metrics_file, RunMetrics(
                exit_code=exit_code_for(e), duration_s=time.monotonic() - started,
                dry_run=dry_run))
        raise
    if metrics_file is not None:
        _write_metrics(metrics_file, RunMetrics(
            exit_code=0, duration_s=summary.duration_s, dry_run=dry_run, finished=True,
            records=summary.records, posted=summary.posted, quarantined=summary.quarantined,
            amount_posted=summary.amount_posted))
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    elif not quiet:
        _print_summary(summary, verbose)


def _run(rule_paths: tuple[str, ...], records_path: str, db_url: str, *, log_format: str,
         quiet: bool, verbose: bool, as_json: bool, explain_path: Path | None,
         currency: str | None, progress_every: int, **options: Any) -> RunSummary:
    """Load the rules and settle, logging as asked; the summary.  ``options`` go to
    ``settlement.batch.settle``."""
    verbosity = 1 if verbose else -1 if quiet else 0
    # On a terminal the bar shows the phases; -v shows log lines instead.
    bar = (sys.stderr.isatty() and not as_json and log_format == "text" and verbosity == 0)
    with command_logging(log_format, -1 if bar else verbosity) as diagnostic:
        loaded = load_rules(rule_paths, note="rules are invalid; nothing was written",
                            currency=currency, echo=diagnostic)
        engine = open_engine(db_url, must_exist=True)
        explaining = atomic_file(explain_path) if explain_path is not None else nullcontext(None)
        try:
            with explaining as explain, engine.connect() as conn, \
                    _PhaseBar(records_path, show=bar) as progress:
                summary = settle_recorded(
                    conn, loaded.program, progress.items(read_records(records_path)),
                    records_path=records_path, explain=explain,
                    on_plan=_print_plan if options["dry_run"] and not as_json else None,
                    progress=ProgressPolicy(records=progress_every, log=not bar,
                                            on_phase=progress.phase if bar else None),
                    **options,
                )
        finally:
            engine.dispose()
    return summary

