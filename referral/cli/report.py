"""`referral report ...`: liabilities as of a date, activity per period, the HTML page."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import click

from referral.cli.common import Group, as_of_date, db_option, db_transaction, locale_option
from settlement.csvcells import SafeWriter
from settlement.reports import (
    FIGURES,
    GROUPINGS,
    PERIODS,
    ActivityRow,
    Liabilities,
    activity,
    format_amount,
    liabilities,
    resolve_locale,
)
from settlement.reports.activity import FIGURES as ACTIVITY_FIGURES
from settlement.reports.html import build_report

as_json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object.")
as_csv_option = click.option("--csv", "as_csv", is_flag=True, help="CSV, one row per line.")


class _Echo:
    def write(self, text: str) -> None:
        click.echo(text, nl=False)


@click.group(cls=Group)
def report() -> None:
    """Finance reports from the ledger's dated history."""


def _formatted(figures: dict[str, int], currency: str, locale: str) -> dict[str, str]:
    return {k: format_amount(v, currency, locale) for k, v in figures.items()}


def _liabilities_json(report_: Liabilities, locale: str) -> dict[str, Any]:
    key = {"rule": "rule_id", "user": "user_id"}.get(report_.by, "key")
    rows: list[dict[str, Any]] = []
    for name, currency, s in report_.rows:
        figures = s.as_json()
        rows.append({key: name, "currency": currency, **figures,
                     "formatted": _formatted(figures, currency, locale)})
    return {
        "as_of": report_.as_of.isoformat() if report_.as_of else None,
        "currencies": {c: {**s.as_json(), "formatted": _formatted(s.as_json(), c, locale)}
                       for c, s in report_.currencies.items()},
        "rows": rows,
    }


@report.command("liabilities")
@click.option("--as-of", "as_of", callback=as_of_date, metavar="YYYY-MM-DD",
              help="Standing at the end of this business date (default today).")
@click.option("--by", "by", type=click.Choice(GROUPINGS), default="none", show_default=True)
@click.option("--currency", help="Only this currency.")
@as_json_option
@as_csv_option
@locale_option
@db_option
def liabilities_cmd(as_of: date, by: str, currency: str | None, as_json: bool, as_csv: bool,
                    locale: str | None, db_url: str) -> None:
    """What the program owes (pending, payable, in payout) and is owed, as of a date."""
    chosen = resolve_locale(locale)
    with db_transaction(db_url, read_only=True) as conn:
        result = liabilities(conn, as_of, by=by, currency=currency)
    if as_json:
        click.echo(json.dumps(_liabilities_json(result, chosen), ensure_ascii=False))
        return
    key = {"rule": "rule_id", "user": "user_id"}.get(by)
    if as_csv:
        writer = SafeWriter(_Echo())
        writer.writerow(([key] if key else []) + ["currency", *FIGURES,
                                                  *(f"{f}_formatted" for f in FIGURES)])
        rows = result.rows if key else [(None, c, s) for c, s in result.currencies.items()]
        for name, cur, s in rows:
            figures = s.as_json()
            writer.writerow(([name or ""] if key else []) + [cur, *figures.values(),
                            *_formatted(figures, cur, chosen).values()])
        return
    if not result.currencies:
        click.echo(f"nothing in the ledger as of {as_of}")
    for cur, s in result.currencies.items():
        click.echo(f"{cur} as of {as_of}")
        for name, value in s.as_json().items():
            click.echo(f"  {name.replace('_', ' '):<12} {format_amount(value, cur, chosen):>20}")
    for name, cur, s in result.rows:
        text = ", ".join(f"{k} {format_amount(v, cur, chosen)}" for k, v in s.as_json().items()
                         if v)
        click.echo(f"{key} {name if name is not None else '(none)'} {cur}: {text or '-'}")


def _activity_row(row: ActivityRow, by_rule: bool, locale: str) -> dict[str, Any]:
    data = row.as_json(by_rule)
    return {**data, "formatted": _formatted(row.figures, row.currency, locale)}


@report.command("activity")
@click.option("--from", "start", callback=as_of_date, required=True, metavar="YYYY-MM-DD")
@click.option("--to", "end", callback=as_of_date, required=True, metavar="YYYY-MM-DD")
@click.option("--by", "by", type=click.Choice(PERIODS), default="month", show_default=True)
@click.option("--by-rule", is_flag=True, help="One row per rule too.")
@click.option("--currency", help="Only this currency.")
@as_json_option
@as_csv_option
@locale_option
@db_option
def activity_cmd(start: date, end: date, by: str, by_rule: bool, currency: str | None,
                 as_json: bool, as_csv: bool, locale: str | None, db_url: str) -> None:
    """Granted, adjusted, reversed, confirmed and paid out per day, week or month."""
    chosen = resolve_locale(locale)
    with db_transaction(db_url, read_only=True) as conn:
        rows = activity(conn, start, end, by=by, by_rule=by_rule, currency=currency)
    if as_json:
        click.echo(json.dumps({"from": start.isoformat(), "to": end.isoformat(), "by": by,
                               "rows": [_activity_row(r, by_rule, chosen) for r in rows]},
                              ensure_ascii=False))
        return
    if as_csv:
        writer = SafeWriter(_Echo())
        writer.writerow(["period", "currency"] + (["rule_id"] if by_rule else [])
                        + [*ACTIVITY_FIGURES, *(f"{f}_formatted" for f in ACTIVITY_FIGURES)])
        for r in rows:
            writer.writerow([r.period.isoformat(), r.currency]
                            + ([r.rule_id or ""] if by_rule else [])
                            + [*r.figures.values(),
                               *_formatted(r.figures, r.currency, chosen).values()])
        return
    if not rows:
        click.echo(f"nothing moved from {start} to {end}")
    for r in rows:
        rule = f" {r.rule_id or '-'}" if by_rule else ""
        figures = "  ".join(f"{k} {format_amount(v, r.currency, chosen)}"
                            for k, v in r.figures.items())
        click.echo(f"{r.period} {r.currency}{rule}  {figures}")


@report.command("html")
@click.option("--as-of", "as_of", callback=as_of_date, metavar="YYYY-MM-DD",
              help="Standing at the end of this business date (default today).")
@click.option("-o", "--output", "out", type=click.Path(file_okay=False, path_type=Path),
              required=True, help="Directory to write index.html into.")
@locale_option
@db_option
def html_cmd(as_of: date, out: Path, locale: str | None, db_url: str) -> None:
    """A static page for finance: liabilities, activity per month as charts, the largest
    payees, the clawbacks; no network needed to view it."""
    chosen = resolve_locale(locale)
    with db_transaction(db_url, read_only=True) as conn:
        page = build_report(conn, as_of, out, locale=chosen)
    click.echo(f"wrote {page}")
