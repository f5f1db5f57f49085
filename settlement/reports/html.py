"""The finance page: one static HTML file, its charts drawn as inline SVG by pygal.

Why pygal: a maintained pure-Python charting library that writes SVG itself (no
browser-side library, no network at view time); its tooltip script, which it
would link from a CDN, is switched off (``js=[]``), so the page references no
outside URL and opens from disk.  Amounts are formatted for people
(``people.format_amount``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import jinja2
import pygal
import sqlalchemy as sa
from pygal.style import Style
from sqlalchemy.engine import Connection

from settlement.ledger.liabilities import FIGURES, liabilities
from settlement.ledger.reads import entry_day
from settlement.reports.activity import FIGURES as ACTIVITY_FIGURES
from settlement.reports.activity import activity
from settlement.reports.people import format_amount
from settlement.tables import ledger_entries

TOP_PAYEES = 10
TOP_CLAWBACKS = 50
CHART_SERIES = ("granted", "reversed", "confirmed", "paid_out")
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("settlement.reports", "templates"),
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)
_STYLE = Style(background="white", plot_background="white", font_family="sans-serif",
               colors=("#2b6cb0", "#c53030", "#2f855a", "#6b46c1"))


def _first_day(conn: Connection) -> date | None:
    day = conn.execute(sa.select(sa.func.min(entry_day(conn, ledger_entries)))).scalar()
    if day is None or isinstance(day, date):
        return day
    return date.fromisoformat(str(day))


def _chart(currency: str, months: list[date], series: dict[str, list[int]],
           locale: str) -> str:
    chart = pygal.Bar(style=_STYLE, js=[], disable_xml_declaration=True, width=900,
                      height=360, legend_at_bottom=True, x_label_rotation=0,
                      title=f"Activity per month, {currency}",
                      value_formatter=lambda v: format_amount(int(v or 0), currency, locale))
    chart.x_labels = [m.strftime("%b %Y") for m in months]
    for name in CHART_SERIES:
        chart.add(name.replace("_", " "), series[name])
    svg: str = chart.render(is_unicode=True)
    return svg


def build_report(conn: Connection, as_of: date, out: Path, *, locale: str) -> Path:
    """Write ``out/index.html`` for the standing at the end of ``as_of``; its path."""
    totals = liabilities(conn, as_of)
    people = liabilities(conn, as_of, by="user")
    start = _first_day(conn) or as_of
    months = activity(conn, start.replace(day=1), as_of, by="month")

    def money(value: int, currency: str) -> str:
        return format_amount(value, currency, locale)

    charts: list[dict[str, Any]] = []
    for currency in sorted({r.currency for r in months}):
        rows = [r for r in months if r.currency == currency]
        labels = [r.period for r in rows]
        series = {name: [r.figures[name] for r in rows] for name in CHART_SERIES}
        charts.append({"currency": currency, "svg": _chart(currency, labels, series, locale),
                       "rows": rows})
    by_user = [(user, cur, s) for user, cur, s in people.rows if user is not None]
    payees = sorted((r for r in by_user if r[2].paid_out or r[2].liability),
                    key=lambda r: (-r[2].paid_out, -r[2].liability, r[0]))[:TOP_PAYEES]
    clawbacks = sorted((r for r in by_user if r[2].clawed_back or r[2].receivable),
                       key=lambda r: (-r[2].receivable, -r[2].clawed_back, r[0]))[:TOP_CLAWBACKS]
    html = _ENV.get_template("report.html.j2").render(
        as_of=as_of, locale=locale, totals=totals.currencies, figures=FIGURES,
        activity_figures=ACTIVITY_FIGURES, charts=charts, payees=payees, clawbacks=clawbacks,
        money=money,
    )
    out.mkdir(parents=True, exist_ok=True)
    page = out / "index.html"
    page.write_text(html, encoding="utf-8")
    return page
