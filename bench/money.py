"""Money out: a payout run and the liabilities report, on PostgreSQL, as ratios.

- payout: ``referral payout create`` (a child process, one transaction) over every person
  the settle of the generated records made payable (each gets a demo payee first, not
  timed), against that settle's own time (``referral settle``, child process, same
  database).  Target: at most 0.25x.
- liabilities: ``settlement.ledger.liabilities`` as of the run's date over the settled (and
  paid) ledger, against a plain ``SELECT sum(amount) FROM ledger_entries`` on the same
  connection, both in-process, median of ``reps``.  Target: at most 5x.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import Databases, median, referral_argv, run_child
from bench.settling import AS_OF, settle_cli
from settlement.db import open_engine
from settlement.demo import PAYEE_COLUMNS, demo_payees
from settlement.ledger.liabilities import liabilities


def bench_money_pg(dbs: Databases, records: Path, count: int, reps: int,
                   log: Callable[[str], None]) -> dict[str, Any]:
    name, url = dbs.fresh_pg()
    try:
        log(f"money: settle {count:,} records (PostgreSQL)")
        settled, summary = settle_cli(url, records)
        payees = dbs.tmp / "bench-payees.csv"
        with records.open(encoding="utf-8") as src, payees.open("w", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=PAYEE_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(demo_payees(src, seed=1, missing_per_mille=0))
        run_child(referral_argv() + ["payees", "import", str(payees), "--db", url])
        log("money: payout create")
        # As of today: until settle dates its entries with its as-of date (it passes no
        # business date yet), they carry the day the bench ran.
        day = max(date.fromisoformat(AS_OF), date.today()).isoformat()
        paid = run_child(referral_argv() + ["payout", "create", "--as-of", day, "--json",
                                            "--db", url])
        batch = json.loads(paid.stdout)
        again = run_child(referral_argv() + ["payout", "create", "--as-of", day, "--json",
                                             "--db", url])
        engine = open_engine(url)
        try:
            with engine.connect() as conn:
                entries = conn.execute(sa.text("SELECT count(*) FROM ledger_entries")).scalar()
                plain, report = [], []
                for _ in range(reps):
                    start = time.perf_counter()
                    conn.execute(sa.text("SELECT sum(amount) FROM ledger_entries")).scalar()
                    plain.append(time.perf_counter() - start)
                    start = time.perf_counter()
                    liabilities(conn, date.fromisoformat(day))
                    report.append(time.perf_counter() - start)
                    conn.rollback()
        finally:
            engine.dispose()
        return {
            "records": count, "settle_s": settled.seconds, "payout_s": paid.seconds,
            "rerun_s": again.seconds, "items": len(batch["items"]), "total": batch["total"],
            "skipped": batch["skipped"], "payout_vs_settle": paid.seconds / settled.seconds,
            "entries": entries, "sum_s": median(plain), "liabilities_s": median(report),
            "liabilities_vs_sum": median(report) / median(plain),
            "settle_summary": {k: v for k, v in summary.items() if k != "run_id"},
        }
    finally:
        dbs.drop_pg(name)


def render_money(m: dict[str, Any]) -> list[str]:
    def ok(met: bool) -> str:
        return "met" if met else "not met"

    return [
        "", "## 5. Payouts and the liabilities report (PostgreSQL)", "",
        f"`referral settle` of {m['records']:,} generated records, then (every person given a"
        " demo payee) `referral payout create` over everyone payable, both child processes on"
        " the same database; then `report liabilities` as of the run's date (in-process) over"
        f" that ledger of {m['entries']:,} entries against `SELECT sum(amount)` over it.", "",
        "| measure | value |", "|---|---|",
        f"| settle, first run | {m['settle_s']:,.1f} s |",
        f"| payout create | {m['payout_s']:,.1f} s: {m['items']:,} items, "
        f"{m['total'] / 100:,.2f} INR; skipped {json.dumps(m['skipped'])} |",
        f"| payout / settle (target ≤ 0.25) | {m['payout_vs_settle']:.2f}x"
        f" ({ok(m['payout_vs_settle'] <= 0.25)}) |",
        f"| payout create again (returns the batch) | {m['rerun_s']:,.1f} s |",
        f"| SELECT sum(amount) | {m['sum_s'] * 1000:,.0f} ms |",
        f"| liabilities as of the date | {m['liabilities_s'] * 1000:,.0f} ms |",
        f"| liabilities / sum (target ≤ 5) | {m['liabilities_vs_sum']:.1f}x"
        f" ({ok(m['liabilities_vs_sum'] <= 5)}) |",
    ]
