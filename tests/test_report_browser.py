"""The finance page in Debian's headless Chromium: tables and charts drawn, nothing fetched.

Chromium and Playwright as in ``test_catalog_browser`` (skipped without them, failed in CI).
A screenshot is kept under $TEST_ARTIFACTS (default tests/artifacts/).
"""

from __future__ import annotations

import re
from datetime import date

from settlement import ledger
from settlement.payees import import_payees
from settlement.payouts import complete_batch, create_batch, export_batch
from settlement.reports.html import build_report
from tests.test_catalog_browser import ARTIFACTS, Watch, browser  # noqa: F401  (fixture)

OUTSIDE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//""",
                     re.IGNORECASE)


def _month(conn, tmp_path) -> None:
    payees = tmp_path / "payees.csv"
    payees.write_text("user_id,method,email,name\n"
                      + "".join(f"u{i},paypal,u{i}@example.com,Person {i}\n" for i in range(6)))
    with conn.begin():
        import_payees(conn, payees, business_date=date(2026, 9, 1), actor="t")
        for i in range(6):
            for month in (9, 10, 11):
                ledger.post_credit(conn, f"u{i}", (i + 1) * 10000 * month, "INR",
                                   f"r{i}-{month}", status="confirmed",
                                   business_date=date(2026, month, 5))
        for month in (9, 10):
            batch = create_batch(conn, as_of=date(2026, month, 28), currency="INR")
            export_batch(conn, batch.batch_id, "paypal", business_date=date(2026, month, 29))
            complete_batch(conn, batch.batch_id, business_date=date(2026, month, 30))
        ledger.reverse(conn, "r2-9", "refund", business_date=date(2026, 11, 10))
        ledger.reverse(conn, "r4-10", "refund", business_date=date(2026, 11, 12))


def test_finance_page_renders_tables_and_charts_without_outside_urls(
    browser, ledger_engine, tmp_path  # noqa: F811
) -> None:
    with ledger_engine.connect() as conn:
        _month(conn, tmp_path)
        page_path = build_report(conn, date(2026, 11, 30), tmp_path / "site", locale="en_IN")
    html = page_path.read_text(encoding="utf-8")
    assert not OUTSIDE.search(html), OUTSIDE.search(html)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    watch = Watch(page, "file://")
    page.goto(page_path.as_uri(), wait_until="load")
    assert page.title() == "Referral rewards: finance report as of 2026-11-30"
    rows = page.locator("table.liabilities tbody tr")
    assert rows.count() == 7
    assert rows.last.inner_text().split() == ["liability", "₹15,400.00"]  # Nov, net of debt
    chart = page.locator("figure.chart svg").first
    box = chart.bounding_box()
    assert box is not None and box["width"] > 400 and box["height"] > 200
    assert page.locator("figure.chart svg .series rect, figure.chart svg .series path").count() >= 9
    assert page.locator("table.activity tbody tr").count() == 3
    assert page.locator("table.payees tbody tr").count() == 6
    assert page.locator("table.clawbacks tbody tr").count() == 2
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "finance-report.png"
    page.screenshot(path=str(shot), full_page=True)
    watch.check()
    page.close()
    assert shot.stat().st_size > 10_000
