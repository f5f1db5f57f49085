"""`rules diff` / settlement.impact: old vs new program on the same records.

The expected figures below are worked out by hand from RECORDS (see the
comments), not by running the code under test.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from dsl.money import Money
from dsl.program import load_program
from referral.cli import main
from referral.cli.formatting import format_report
from settlement.impact import diff_programs

AS_OF = date(2026, 3, 1)

BONUS_OLD = """\
RULE bonus "Referrer bonus"
  IF referee.subscribed = true
  THEN ISSUE ₹500 REWARD TO referrer
  LIMIT ₹1,200 PER referrer PER MONTH
  REVERSE IF referee.refunded = true
"""
WELCOME = """\
RULE welcome "Referees of free users get ₹100"
  PRIORITY 5
  IF referee.subscribed = true AND referrer.plan = "free"
  THEN ISSUE ₹100 REWARD TO referee
"""
BIG_PAYER = """\
RULE big_payer "10% of a first payment of ₹1,000 or more, up to ₹200"
  PRIORITY 7
  IF referee.subscribed = true AND referee.first_payment >= ₹1,000
  THEN ISSUE 10% OF referee.first_payment REWARD TO referee UP TO ₹200
"""
BONUS_NEW = BONUS_OLD.replace("₹500", "₹700")


def _record(rid: str, referrer: str, plan: str, referee: str, subscribed: bool,
            payment: int | None, created: str, refunded: bool = False) -> str:
    data: dict = {
        "referral_id": rid,
        "referrer": {"id": referrer, "plan": plan},
        "referee": {"id": referee, "subscribed": subscribed, "refunded": refunded},
        "referral": {"created_at": created},
    }
    if payment is not None:
        data["referee"]["first_payment"] = payment  # paise (the program's only currency)
    return json.dumps(data)


RECORDS = "\n".join([
    _record("r1", "u1", "paid", "u2", True, 150000, "2026-01-05"),
    _record("r2", "u1", "paid", "u3", True, 80000, "2026-01-10"),
    _record("r3", "u1", "paid", "u4", True, 300000, "2026-01-20"),
    _record("r4", "u5", "free", "u6", True, 50000, "2026-01-07"),
    _record("r5", "u7", "free", "u8", False, None, "2026-01-08"),
    _record("r4", "u5", "free", "u6", True, 50000, "2026-01-07", refunded=True),
    "this line is not JSON",
    _record("r7", "u9", "paid", "u10", True, 90000, "2026-02-01"),
]) + "\n"

# Old program (bonus ₹500 with LIMIT ₹1,200 per referrer per month; welcome ₹100):
#   bonus:   r1 u1 ₹500; r2 u1 ₹500; r3 u1 cut to ₹200 (the month's ₹1,200 is reached);
#            r4 u5 ₹500, then reversed by the refund record; r7 u9 ₹500.  Paid: ₹1,700.
#   welcome: r4 u6 ₹100 (the refund record finds it already posted; no REVERSE IF).
# New program (bonus ₹700, same LIMIT; welcome unchanged; big_payer added):
#   bonus:   r1 u1 ₹700; r2 u1 cut to ₹500; r3 u1 cut to ₹0 (nothing posted);
#            r4 ₹700 then reversed; r7 u9 ₹700.  Paid: ₹1,900.
#   big_payer: r1 u2 10% of ₹1,500 = ₹150; r3 u4 10% of ₹3,000 = ₹300 cut to ₹200.
# So bonus: 0 new, 1 stopped (r3), 2 changed (r1, r7), 1 unchanged (r2), net +₹200;
#    big_payer: 2 new, net +₹350; welcome: 1 unchanged.
# Totals ₹1,800 -> ₹2,350 (+₹550).  8 lines, 1 quarantined in both runs.


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def fixture(tmp_path: Path) -> dict[str, str]:
    old = write(tmp_path, "old/program.rule", BONUS_OLD + "\n" + WELCOME)
    new = write(tmp_path, "new/program.rule", BONUS_NEW + "\n" + WELCOME + "\n" + BIG_PAYER)
    records = write(tmp_path, "records.jsonl", RECORDS)
    return {"old": str(old.parent), "new": str(new.parent), "records": str(records)}


def _program(path: str):
    return load_program([path]).program


def _inr(rupees: int) -> Money:
    return Money(rupees * 100, "INR")


def test_changed_amount_and_added_rule(fixture):
    report = diff_programs(_program(fixture["old"]), _program(fixture["new"]),
                           fixture["records"], AS_OF)
    assert (report.records, report.quarantined_old, report.quarantined_new) == (8, 1, 1)
    rules = {r.rule_id: r for r in report.rules}
    assert [r.rule_id for r in report.rules] == ["big_payer", "bonus", "welcome"]
    assert {k: r.status for k, r in rules.items()} == {
        "big_payer": "added", "bonus": "modified", "welcome": "unchanged"}

    bonus = rules["bonus"].counts
    assert (bonus.newly_paying, bonus.stopped_paying, bonus.amount_changed, bonus.unchanged) == (
        0, 1, 2, 1)
    assert bonus.old_paid == {"INR": 170000} and bonus.new_paid == {"INR": 190000}
    assert bonus.net_change == {"INR": 20000}
    assert [(c.referral_id, c.role, c.user_id, c.kind, c.old, c.new)
            for c in rules["bonus"].changes] == [
        ("r1", "referrer", "u1", "changed", _inr(500), _inr(700)),
        ("r3", "referrer", "u1", "stopped", _inr(200), None),
        ("r7", "referrer", "u9", "changed", _inr(500), _inr(700)),
    ]

    big = rules["big_payer"]
    assert (big.counts.newly_paying, big.counts.stopped_paying, big.counts.amount_changed,
            big.counts.unchanged) == (2, 0, 0, 0)
    assert [(c.referral_id, c.user_id, c.kind, c.new) for c in big.changes] == [
        ("r1", "u2", "new", _inr(150)), ("r3", "u4", "new", _inr(200))]
    assert big.counts.net_change == {"INR": 35000}

    welcome = rules["welcome"]
    assert (welcome.counts.unchanged, welcome.counts.changed, welcome.changes) == (1, 0, [])
    assert welcome.counts.net_change == {}

    t = report.totals
    assert (t.newly_paying, t.stopped_paying, t.amount_changed, t.unchanged) == (2, 1, 2, 2)
    assert t.old_paid == {"INR": 180000} and t.new_paid == {"INR": 235000}
    assert t.net_change == {"INR": 55000}
    assert report.has_changes


def test_removed_rule_stops_paying(tmp_path, fixture):
    old = _program(fixture["old"])
    new = _program(str(write(tmp_path, "only_bonus.rule", BONUS_OLD)))
    report = diff_programs(old, new, fixture["records"], AS_OF)
    welcome = next(r for r in report.rules if r.rule_id == "welcome")
    assert welcome.status == "removed"
    assert [(c.referral_id, c.role, c.user_id, c.kind, c.old, c.new)
            for c in welcome.changes] == [("r4", "referee", "u6", "stopped", _inr(100), None)]
    t = report.totals
    assert (t.newly_paying, t.stopped_paying, t.amount_changed, t.unchanged) == (0, 1, 0, 4)
    assert t.net_change == {"INR": -10000}


def test_identical_programs_change_nothing(fixture):
    program = _program(fixture["old"])
    report = diff_programs(program, program, fixture["records"], AS_OF)
    assert not report.has_changes
    assert all(r.status == "unchanged" and not r.changes for r in report.rules)
    assert (report.totals.changed, report.totals.unchanged) == (0, 5)
    assert report.totals.net_change == {}
    assert format_report(report).splitlines()[-1] == "no changes"


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, ["rules", "diff", *args], env=env)


def test_cli_text_report(fixture):
    result = run(fixture["old"], fixture["new"], "--records", fixture["records"],
                 "--as-of", "2026-03-01", "--show", "1")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"rules diff {fixture['old']} -> {fixture['new']}",
        "8 records as of 2026-03-01; quarantined: 1 (old), 1 (new)",
        "rule big_payer (added): 2 newly pay, 0 stop paying, 0 amount changed, 0 unchanged; "
        "net +₹350",
        "  + r1 referee u2: ₹150",
        "  ... and 1 more",
        "rule bonus (modified): 0 newly pay, 1 stop paying, 2 amount changed, 1 unchanged; "
        "net +₹200",
        "  ~ r1 referrer u1: ₹500 -> ₹700",
        "  ... and 2 more",
        "rule welcome (unchanged): 0 newly pay, 0 stop paying, 0 amount changed, 1 unchanged; "
        "net no change",
        "total: 2 newly pay, 1 stop paying, 2 amount changed, 2 unchanged",
        "  INR: ₹1,800 -> ₹2,350 (+₹550)",
    ]


def test_cli_json_shape(fixture):
    result = run(fixture["old"], fixture["new"], "--records", fixture["records"],
                 "--as-of", "2026-03-01", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"as_of", "records", "quarantined", "rules", "totals"}
    assert (data["as_of"], data["records"], data["quarantined"]) == (
        "2026-03-01", 8, {"old": 1, "new": 1})
    bonus = data["rules"][1]
    assert bonus == {
        "rule_id": "bonus", "status": "modified",
        "newly_paying": 0, "stopped_paying": 1, "amount_changed": 2, "unchanged": 1,
        "old_paid": {"INR": {"amount": 170000, "currency": "INR", "formatted": "₹1,700"}},
        "new_paid": {"INR": {"amount": 190000, "currency": "INR", "formatted": "₹1,900"}},
        "net_change": {"INR": {"amount": 20000, "currency": "INR", "formatted": "+₹200"}},
        "changes": [
            {"referral_id": "r1", "role": "referrer", "user_id": "u1", "kind": "changed",
             "old": {"amount": 50000, "currency": "INR", "formatted": "₹500"},
             "new": {"amount": 70000, "currency": "INR", "formatted": "₹700"}},
            {"referral_id": "r3", "role": "referrer", "user_id": "u1", "kind": "stopped",
             "old": {"amount": 20000, "currency": "INR", "formatted": "₹200"}, "new": None},
            {"referral_id": "r7", "role": "referrer", "user_id": "u9", "kind": "changed",
             "old": {"amount": 50000, "currency": "INR", "formatted": "₹500"},
             "new": {"amount": 70000, "currency": "INR", "formatted": "₹700"}},
        ],
    }
    assert data["totals"]["net_change"] == {
        "INR": {"amount": 55000, "currency": "INR", "formatted": "+₹550"}}
    assert (data["totals"]["newly_paying"], data["totals"]["unchanged"]) == (2, 2)
    amounts = [m["amount"] for r in data["rules"] for c in r["changes"]
               for m in (c["old"], c["new"]) if m]
    assert amounts and all(type(a) is int for a in amounts)


def test_cli_invalid_rules_like_check(tmp_path, fixture):
    bad = write(tmp_path, "bad/x.rule", "RULE a IF x.y = 1 ISSUE ₹5\n")
    result = run(fixture["old"], str(bad.parent), "--records", fixture["records"])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{bad}:1:19: error: unexpected 'ISSUE', expected one of: AND, OR, THEN\n")
    check = CliRunner().invoke(main, ["rules", "check", str(bad.parent)])
    assert (check.exit_code, check.stderr) == (1, result.stderr)
    # Both versions' errors are reported, old first.
    worse = write(tmp_path, "worse/y.rule", "RULE b IF x.y THEN ISSUE ₹1.001\n")
    both = run(str(worse.parent), str(bad.parent), "--records", fixture["records"])
    assert both.exit_code == 1
    assert both.stderr.splitlines() == [
        f"{worse}:1:26: error: 1.001 INR has more decimals than INR allows (2)",
        f"{bad}:1:19: error: unexpected 'ISSUE', expected one of: AND, OR, THEN",
    ]


def test_cli_unreadable_records(tmp_path, fixture):
    missing = tmp_path / "nope.jsonl"
    result = run(fixture["old"], fixture["new"], "--records", str(missing))
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {missing}: cannot read records: No such file or directory\n")
    result = run(fixture["old"], fixture["new"], "--records", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path}: cannot read records: ")
    # A line that is not UTF-8 is a bad record, quarantined as settle would, not a failure.
    binary = tmp_path / "records.bin"
    binary.write_bytes(b'{"referral_id": "\xff"}\n')
    result = run(fixture["old"], fixture["new"], "--records", str(binary), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["quarantined"] == {"old": 1, "new": 1}


def test_cli_never_touches_the_real_database(tmp_path, fixture, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "real.db"
    result = run(fixture["old"], fixture["new"], "--records", fixture["records"],
                 env={"REFERRAL_DB_URL": f"sqlite:///{real}"})
    assert result.exit_code == 0, result.output
    assert not real.exists()
    assert not (tmp_path / "referral.db").exists()
