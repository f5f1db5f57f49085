"""Finance reports on SQLite and PostgreSQL: a scripted month, computed by hand.

The month (business dates are the runs' as-of dates and the payout commands' dates):

- Nov 3, settle: r1 (a refers x) and r2 (b refers y): ``bonus`` ₹500 to a and to b, held 7
  days; ``welcome`` ₹100 to x and to y, confirmed.
- Nov 10, settle again with r3 (a refers z): a's and b's holds end (confirmed); a's second
  bonus is held; z's welcome is confirmed.  A payout batch as of Nov 10 covers a, b, x, y
  (z has no payee), exported Nov 11, paid Nov 12.
- Nov 20, settle: r2 refunded: b's and y's paid rewards are clawed back; a's second bonus is
  confirmed.  The same run again posts nothing.

The holds end the same way whether they count from the event date or from the run that
first granted the reward (issue 11).
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dsl.program import load_program
from referral.cli import main
from settlement import ledger
from settlement.batch import settle
from settlement.ledger import daily
from settlement.ledger.daily import aggregate_problems
from settlement.payees import import_payees
from settlement.payouts import complete_batch, create_batch, export_batch
from settlement.records import read_records
from settlement.reports import activity, format_amount, liabilities, resolve_locale
from settlement.tables import ledger_operations, liability_days
from tests.tampering import disable_append_only

RULES = """\
RULE bonus "Referrers earn ₹500 when their referee subscribes"
  IF referee.subscribed = true
  THEN ISSUE ₹500 REWARD TO referrer
  HOLD 7 DAYS
  REVERSE IF referee.refunded = true

RULE welcome "Referees get ₹100"
  IF referee.subscribed = true
  THEN ISSUE ₹100 REWARD TO referee
  REVERSE IF referee.refunded = true
"""
NOV = {d: date(2026, 11, d) for d in (1, 2, 3, 9, 10, 11, 12, 16, 20, 30)}


def rec(rid: str, referrer: str, referee: str, created: date, refunded: bool = False) -> str:
    return json.dumps({"referral_id": rid, "referral": {"created_at": created.isoformat()},
                       "referrer": {"id": referrer},
                       "referee": {"id": referee, "subscribed": True, "refunded": refunded}})


def rupees(**figures: int) -> dict[str, int]:
    """A liabilities object in minor units from rupees (missing figures are 0)."""
    out = {f: figures.get(f, 0) * 100 for f in (
        "pending", "payable", "in_payout", "paid_out", "clawed_back", "receivable")}
    out["liability"] = out["pending"] + out["payable"] + out["in_payout"]
    return out


def standing(conn, day: date) -> dict[str, dict[str, int]]:
    return {c: s.as_json() for c, s in liabilities(conn, day).currencies.items()}


@pytest.fixture
def month(ledger_engine, tmp_path: Path):
    rules = tmp_path / "month.rule"
    rules.write_text(RULES, encoding="utf-8")
    program = load_program([rules]).program
    payees = tmp_path / "payees.jsonl"
    payees.write_text("".join(json.dumps({"user_id": u, "method": "paypal",
                                          "email": f"{u}@example.com"}) + "\n"
                              for u in ("a", "b", "x", "y")))
    runs = {
        NOV[3]: [rec("r1", "a", "x", NOV[1]), rec("r2", "b", "y", NOV[2])],
        NOV[10]: [rec("r1", "a", "x", NOV[1]), rec("r2", "b", "y", NOV[2]),
                  rec("r3", "a", "z", NOV[9])],
        NOV[20]: [rec("r2", "b", "y", NOV[2], refunded=True), rec("r3", "a", "z", NOV[9])],
    }

    def run(as_of: date) -> dict:
        path = tmp_path / f"{as_of}.jsonl"
        path.write_text("\n".join(runs[as_of]) + "\n")
        with ledger_engine.connect() as conn, ledger.business_day(conn, as_of):
            return settle(conn, program, read_records(str(path)), as_of=as_of,
                          input_name=str(path)).as_json()

    return ledger_engine, run, payees


def verified(conn) -> None:
    report = ledger.verify(conn, anchors=ledger.ledger_anchors(conn))
    assert report.ok, report.problems
    conn.rollback()


def test_scripted_month_liabilities_and_weekly_activity(month) -> None:
    engine, run, payees = month
    early = None
    with engine.connect() as conn:
        run(NOV[3])
        verified(conn)
        early = standing(conn, NOV[3])
        assert early == {"INR": rupees(pending=1000, payable=200)}
        conn.rollback()
        with conn.begin():
            import_payees(conn, payees, business_date=NOV[3], actor="finance")
        run(NOV[10])
        verified(conn)
        with conn.begin():
            batch = create_batch(conn, as_of=NOV[10], currency="INR", actor="finance")
        assert (batch.total, batch.skipped) == (120000, {"no_payee": 1})
        verified(conn)
        with conn.begin():
            export_batch(conn, batch.batch_id, "paypal", business_date=NOV[11])
        with conn.begin():
            complete_batch(conn, batch.batch_id, business_date=NOV[12])
        verified(conn)
        run(NOV[20])
        verified(conn)
        rerun = run(NOV[20])
        assert (rerun["posted"], rerun["reversed"], rerun["confirmed"]) == (0, 0, 0)
        verified(conn)

        assert standing(conn, NOV[3]) == early  # unchanged by everything after it
        assert standing(conn, NOV[10]) == {"INR": rupees(pending=500, payable=100,
                                                         in_payout=1200)}
        assert standing(conn, NOV[12]) == {"INR": rupees(pending=500, payable=100,
                                                         paid_out=1200)}
        assert standing(conn, NOV[20]) == {"INR": rupees(payable=600, paid_out=1200,
                                                         clawed_back=600, receivable=600)}
        s = liabilities(conn, NOV[20]).currencies["INR"]
        assert (s.granted, s.reversed) == (180000, 60000) and s.balances()

        weeks = [r.as_json(False) for r in activity(conn, NOV[1], NOV[30], by="week")]
        assert weeks == [
            {"period": "2026-11-02", "currency": "INR", "granted": 120000, "adjusted": 0,
             "reversed": 0, "confirmed": 20000, "paid_out": 0},
            {"period": "2026-11-09", "currency": "INR", "granted": 60000, "adjusted": 0,
             "reversed": 0, "confirmed": 110000, "paid_out": 120000},
            {"period": "2026-11-16", "currency": "INR", "granted": 0, "adjusted": 0,
             "reversed": 60000, "confirmed": 50000, "paid_out": 0},
        ]
        by_rule = liabilities(conn, NOV[20], by="rule")
        assert [(r, s.as_json()) for r, _, s in by_rule.rows] == [
            ("bonus", rupees(payable=500, paid_out=1000, clawed_back=500, receivable=500)),
            ("welcome", rupees(payable=100, paid_out=200, clawed_back=100, receivable=100)),
        ]
        people = {u: s.as_json() for u, _, s in liabilities(conn, NOV[20], by="user").rows}
        assert people == {
            "a": rupees(payable=500, paid_out=500), "b": rupees(paid_out=500, clawed_back=500,
                                                                receivable=500),
            "x": rupees(paid_out=100), "y": rupees(paid_out=100, clawed_back=100,
                                                   receivable=100),
            "z": rupees(payable=100),
        }


def same_as_history(conn, days) -> None:
    """The report from the daily aggregate equals the one from the history alone, each day."""
    for day in days:
        for by in ("none", "rule"):
            fast = liabilities(conn, day, by=by)
            slow = liabilities(conn, day, by=by, reference=True)
            assert (fast.currencies, fast.rows) == (slow.currencies, slow.rows), (day, by)


def test_scripted_month_aggregate_equals_the_history_every_day(month) -> None:
    engine, run, payees = month
    days = [date(2026, 11, d) for d in range(1, 31)]
    with engine.connect() as conn:
        run(NOV[3])
        with conn.begin():
            import_payees(conn, payees, business_date=NOV[3], actor="finance")
        run(NOV[10])
        with conn.begin():
            batch = create_batch(conn, as_of=NOV[10], currency="INR", actor="finance")
        same_as_history(conn, days)
        conn.rollback()
        with conn.begin():
            export_batch(conn, batch.batch_id, "paypal", business_date=NOV[11])
        with conn.begin():
            complete_batch(conn, batch.batch_id, business_date=NOV[12])
        run(NOV[20])
        same_as_history(conn, days)
        assert conn.execute(sa.select(sa.func.count()).select_from(liability_days)).scalar()
        conn.rollback()
        # A hand credit dated back (as --backfill may): both change from that day on.
        before = {d: liabilities(conn, d).currencies["INR"].payable for d in (NOV[3], NOV[9])}
        conn.rollback()
        ledger.post_credit(conn, "a", 7000, "INR", "late", status="confirmed",
                           business_date=NOV[9])
        conn.commit()
        same_as_history(conn, days)
        assert liabilities(conn, NOV[9]).currencies["INR"].payable == before[NOV[9]] + 7000
        assert liabilities(conn, NOV[3]).currencies["INR"].payable == before[NOV[3]]
        conn.rollback()
        verified(conn)
        # Folded again now, each operation gives what it wrote (a cover and the payout's
        # move written by two operations are counted once, by the later).
        d = liability_days
        for op_id in conn.execute(sa.select(ledger_operations.c.op_id)).scalars().all():
            stored = daily._by_key(conn, sa.select(
                d.c.business_date, d.c.currency, d.c.rule_id,
                *(sa.func.sum(d.c[n]) for n in daily.FOLDED)).where(d.c.op_id == op_id)
                .group_by(d.c.business_date, d.c.currency, d.c.rule_id))
            assert daily._by_key(conn, daily._grouped(conn, op_id)) == stored, op_id


def test_report_reads_the_aggregate_not_the_history(ledger_engine) -> None:
    """What the totals show is what liability_days holds (verify names the difference)."""
    with ledger_engine.connect() as conn:
        ledger.post_credit(conn, "u1", 50000, "INR", "c1", status="confirmed",
                           business_date=NOV[1])
        conn.commit()
        with conn.begin():
            disable_append_only(conn, "UPDATE", ("liability_days",))
            conn.execute(sa.update(liability_days).values(granted=liability_days.c.granted + 1))
        assert liabilities(conn, NOV[1]).currencies["INR"].payable == 50001
        assert liabilities(conn, NOV[1], reference=True).currencies["INR"].payable == 50000
        assert aggregate_problems(conn) == [
            "liability_days 2026-11-01 INR rule None: granted 50001 (rows say 50000)"]
        assert "liability_days rows differ from what it wrote" in ledger.verify(conn).problems[0]


def test_netting_row_reconciles_rules_with_the_totals(ledger_engine) -> None:
    """A person's clawback under one rule is set against a confirmed credit of another."""
    with ledger_engine.connect() as conn, conn.begin():
        ledger.post_credit(conn, "u1", 50000, "INR", "reward:r1:ref1:referrer", reserved=True,
                           status="confirmed", rule_id="r1", referral_id="ref1",
                           role="referrer", business_date=NOV[1])
        ledger.pay(conn, "reward:r1:ref1:referrer", business_date=NOV[2])
        ledger.reverse(conn, "reward:r1:ref1:referrer", "refund", business_date=NOV[3])
        ledger.post_credit(conn, "u1", 30000, "INR", "reward:r2:ref2:referrer", reserved=True,
                           status="confirmed", rule_id="r2", referral_id="ref2",
                           role="referrer", business_date=NOV[3])
    with ledger_engine.connect() as conn:
        report = liabilities(conn, NOV[3], by="rule")
        assert report.currencies["INR"].as_json() == rupees(paid_out=500, clawed_back=500,
                                                            receivable=200)
        assert [(r, s.payable, s.receivable) for r, _, s in report.rows] == [
            ("r1", 0, 50000), ("r2", 30000, 0), ("(netting)", -30000, -30000)]
        verified(conn)


@pytest.mark.parametrize(("locale", "text"), [("en_IN", "₹14,30,374.45"),
                                              ("en_US", "₹1,430,374.45")])
def test_money_for_people_uses_the_locale_grouping(locale: str, text: str) -> None:
    assert format_amount(143037445, "INR", locale) == text
    assert format_amount(143037445, "USD", "en_US") == "$1,430,374.45"


def test_locale_defaults_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("REFERRAL_LOCALE", "en_US")
    assert resolve_locale(None) == "en_US"
    assert resolve_locale("en-IN") == "en_IN"


def test_cli_reports_json_csv_and_people(db_url, monkeypatch) -> None:
    runner = CliRunner()

    def cli(*args: str):
        return runner.invoke(main, [*args, "--db", db_url])

    assert cli("db", "upgrade").exit_code == 0
    cli("ledger", "credit", "u1", "₹1430374.45", "--reference", "big", "--confirmed",
        "--date", "2026-11-03")
    result = cli("report", "liabilities", "--as-of", "2026-11-30", "--json", "--locale",
                 "en_IN")
    data = json.loads(result.stdout)
    assert data["currencies"]["INR"]["payable"] == 143037445
    assert data["currencies"]["INR"]["formatted"]["payable"] == "₹14,30,374.45"
    monkeypatch.setenv("REFERRAL_LOCALE", "en_US")
    csv_out = cli("report", "liabilities", "--as-of", "2026-11-30", "--csv").stdout
    assert csv_out.splitlines()[1] == (
        'INR,0,143037445,0,0,0,0,143037445,₹0.00,"₹1,430,374.45",₹0.00,₹0.00,₹0.00,₹0.00,'
        '"₹1,430,374.45"')
    before = cli("report", "liabilities", "--as-of", "2026-11-02", "--json").stdout
    assert json.loads(before)["currencies"] == {}
    weekly = cli("report", "activity", "--from", "2026-11-01", "--to", "2026-11-30", "--by",
                 "week", "--csv").stdout
    assert weekly.splitlines()[:2] == [
        "period,currency,granted,adjusted,reversed,confirmed,paid_out,granted_formatted,"
        "adjusted_formatted,reversed_formatted,confirmed_formatted,paid_out_formatted",
        "2026-11-02,INR,143037445,0,0,143037445,0,\"₹1,430,374.45\",₹0.00,₹0.00,"
        "\"₹1,430,374.45\",₹0.00",
    ]
    bad = cli("report", "liabilities", "--locale", "xx_YY")
    assert (bad.exit_code, bad.stderr) == (
        1, "error: unknown locale 'xx_YY' (for example en_IN, en_US, de_DE)\n")
