"""`referral payout`, `ledger approve` and `ledger pending` through CliRunner: exact output."""

from __future__ import annotations

import json
from datetime import date

import pytest
from click.testing import CliRunner

from referral.cli import main
from settlement import ledger
from settlement.db import open_engine


@pytest.fixture
def cli(db_url):
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(main, [*args, "--db", db_url])

    assert run("db", "upgrade").exit_code == 0
    return run


def test_month_end_in_five_commands(cli, tmp_path) -> None:
    payees = tmp_path / "payees.csv"
    payees.write_text("user_id,method,email\nu1,paypal,u1@example.com\nu2,paypal,u2@example.com\n")
    cli("ledger", "credit", "u1", "₹700", "--reference", "a", "--confirmed", "--date", "2026-11-02")
    cli("ledger", "credit", "u2", "₹50", "--reference", "b", "--confirmed", "--date", "2026-11-02")
    assert cli("payees", "import", str(payees)).exit_code == 0
    created = cli("payout", "create", "--as-of", "2026-11-30", "--min", "₹100", "--json")
    assert json.loads(created.stdout) == {
        "batch_id": "2026-11-30-INR", "as_of": "2026-11-30", "currency": "INR",
        "status": "created", "total": 70000, "skipped": {"below_minimum": 1},
        "items": [{"item_id": "2026-11-30-INR-000001", "user_id": "u1", "amount": 70000,
                   "status": "created"}],
    }
    out = tmp_path / "payout.csv"
    exported = cli("payout", "export", "2026-11-30-INR", "--format", "paypal", "-o", str(out),
                   "--date", "2026-12-01")
    assert (exported.exit_code, exported.stdout) == (
        0, "2026-11-30-INR: 1 items in the paypal file, 1 newly marked sent\n")
    assert out.read_text() == ("u1@example.com,700.00,INR,2026-11-30-INR-000001,"
                               "Referral rewards 2026-11-30-INR,PAYPAL\n")
    refused = cli("payout", "export", "2026-11-30-INR", "--format", "csv")
    assert refused.exit_code == 1 and "exported as paypal already" in refused.stderr
    results = tmp_path / "results.csv"
    results.write_text("Customer ID,Status\n2026-11-30-INR-000001,Completed\n")
    done = cli("payout", "complete", "2026-11-30-INR", "--results", str(results), "--date",
               "2026-12-02")
    assert done.stdout == "2026-11-30-INR: 1 paid (1 credits), 0 failed, 0 still sent\n"
    assert cli("payout", "list", "--locale", "en_IN").stdout == (
        "batch 2026-11-30-INR as of 2026-11-30: 1 items, ₹700.00, completed (1 paid)\n")
    shown = json.loads(cli("payout", "show", "2026-11-30-INR", "--json").stdout)
    assert shown["status"] == "completed" and shown["items"][0]["status"] == "paid"
    assert cli("ledger", "verify").exit_code == 0
    export = [json.loads(line) for line in cli("ledger", "export", "--status", "paid").stdout
              .splitlines()]
    assert [(e["reference_id"], e["paid_date"], e["payout_batch"]) for e in export] == [
        ("a", "2026-12-02", "2026-11-30-INR"),
        ("payout:2026-11-30-INR-000001", "2026-12-02", "2026-11-30-INR"),
    ]
    missing = cli("payout", "show", "nope")
    assert (missing.exit_code, missing.stderr) == (1, "error: no payout batch 'nope'\n")


def test_approve_confirms_a_rules_pending_rewards_with_reason_and_approver(cli, db_url):
    engine = open_engine(db_url)
    with engine.begin() as conn:
        for n, (rule, user, day) in enumerate([("vip", "u1", 1), ("vip", "u2", 5),
                                               ("vip", "u1", 20), ("other", "u1", 1)]):
            ledger.post_credit(conn, user, 10000, "INR", f"reward:{rule}:ref{n}:referrer",
                               reserved=True, rule_id=rule, referral_id=f"ref{n}", role="referrer",
                               event_date=date(2026, 11, day), business_date=date(2026, 11, 21))
    pending = json.loads(cli("ledger", "pending", "--rule", "vip", "--json").stdout)
    assert [p["reference_id"] for p in pending["pending"]] == [
        "reward:vip:ref0:referrer", "reward:vip:ref1:referrer", "reward:vip:ref2:referrer"]
    assert pending["totals"] == {"INR": 30000}
    approved = cli("ledger", "approve", "--rule", "vip", "--until", "2026-11-10", "--reason",
                   "checked by hand", "--by", "priya", "--date", "2026-11-22")
    assert (approved.exit_code, approved.stdout) == (
        0, "approved 2 pending rewards of rule vip: ₹200\n")
    with engine.connect() as conn:
        moves = ledger.history(conn, "reward:vip:ref1:referrer")
        assert [(t.to_status, t.actor, t.reason, t.business_date) for t in moves][-1] == (
            "confirmed", "priya", "checked by hand", date(2026, 11, 22))
        assert ledger.get_entry(conn, "reward:vip:ref2:referrer").status == "pending"
    engine.dispose()
    left = cli("ledger", "pending")
    assert left.stdout.splitlines()[-1] == "2 pending: ₹200"
    no_reason = cli("ledger", "approve", "--rule", "vip", "--reason", " ")
    assert (no_reason.exit_code, no_reason.stderr) == (1, "error: an approval needs a reason\n")
