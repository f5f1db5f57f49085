"""Money, time and limits that cannot be misread, as settlement sees them (SQLite and PostgreSQL).

The settlement half of issue 12's reproductions: a LIMIT in another currency, a rule in a
second currency, a percentage-only program, LIMIT by role, ids at the documented maximum,
a future --as-of, a balance beyond 64 bits.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from dsl.model import MAX_RULE_ID_CHARS
from dsl.program import load_program
from referral.cli import main
from settlement import ledger
from settlement.batch import RunSummary, settle
from settlement.db import open_engine, upgrade
from settlement.errors import LedgerError, SettlementError
from settlement.ledger import writes
from settlement.records import read_records
from settlement.references import MAX_REFERENCE_CHARS, max_referral_id_chars, reward_reference
from settlement.tables import settlement_quarantine

ROOT = Path(__file__).resolve().parent.parent


def person(pid: str, **fields: Any) -> dict[str, Any]:
    return {"id": pid, **fields}


def rec(rid: str, referrer: str, referee: str, *, created: str = "2026-01-05",
        **referee_fields: Any) -> dict[str, Any]:
    return {"referral_id": rid, "referral": {"created_at": created},
            "referrer": person(referrer), "referee": person(referee, **referee_fields)}


@pytest.fixture
def engine(db_url: str) -> Any:
    upgrade(db_url)
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def program_of(tmp: Path, text: str, name: str = "p") -> Any:
    folder = tmp / name
    folder.mkdir()
    (folder / "p.rule").write_text(text, encoding="utf-8")
    return load_program([folder]).program


def run(engine: Any, tmp: Path, program: Any, records: list[dict[str, Any]],
        as_of: date | None = date(2026, 1, 10), **kw: Any) -> RunSummary:
    path = tmp / f"in-{len(list(tmp.iterdir()))}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with engine.connect() as conn:
        return settle(conn, program, read_records(str(path)), as_of=as_of, input_name=str(path),
                      **kw)


def quarantined(engine: Any) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(settlement_quarantine.c.reason)).scalars())


def credits(engine: Any) -> dict[str, tuple[str, int, str]]:
    with engine.connect() as conn:
        return {e.reference_id: (e.user_id, e.amount, e.currency)
                for e in ledger.iter_entries(conn) if e.entry_type == "credit"}


def test_a_limit_caps_only_money_in_its_currency(engine: Any, tmp_path: Path) -> None:
    program = program_of(tmp_path, (
        "CURRENCY INR\n"
        "RULE share IF referee.first_payment >= ₹0\n"
        "  THEN ISSUE 10% OF referee.first_payment TO referee\n"
        "  LIMIT ₹50 PER referee PER MONTH\n"))
    summary = run(engine, tmp_path, program, [
        rec("r1", "A", "B", first_payment={"amount": 10000, "currency": "USD"}),
        rec("r2", "A", "C", first_payment={"amount": 900, "currency": "JPY"}),
        rec("r3", "A", "D", first_payment=100000),
    ])
    assert summary.quarantined == 2
    reasons = quarantined(engine)
    assert any("INR" in r and "USD" in r for r in reasons)
    assert any("INR" in r and "JPY" in r for r in reasons)
    assert credits(engine) == {"reward:share:r3:referee": ("D", 5000, "INR")}  # ₹100 cut to ₹50


def test_a_rule_in_a_second_currency_does_not_stop_settlement(engine: Any,
                                                              tmp_path: Path) -> None:
    text = "".join(p.read_text("utf-8") for p in sorted((ROOT / "rules").glob("*.rule")))
    extra = ("\nRULE usd_bonus IF referee.subscribed = true AND referee.country = \"US\"\n"
             "  THEN ISSUE USD 10 TO referrer\n")
    records = [rec(f"r{i}", f"u{i}", f"v{i}", subscribed=True, country="US",
                   first_payment=150000, subscribed_at="2026-01-06") for i in range(20)]
    for r in records:
        r["referrer"]["plan"] = "paid"
    plain = run(engine, tmp_path, program_of(tmp_path, text, "plain"), records, dry_run=True)
    both = run(engine, tmp_path, program_of(tmp_path, text + extra, "both"), records,
               dry_run=True)
    assert (plain.quarantined, both.quarantined) == (0, 0)
    assert both.amount_posted == {**plain.amount_posted, "USD": 20 * 1000}


def test_a_percentage_only_program_settles_with_currency(engine: Any, tmp_path: Path) -> None:
    program = program_of(tmp_path, (
        "RULE share IF referee.subscribed THEN ISSUE 5% OF referee.first_payment TO referee\n"))
    records = [rec("r1", "A", "B", subscribed=True, first_payment=100000)]
    unknown = run(engine, tmp_path, program, records, dry_run=True)
    assert unknown.quarantined == 1  # bare integer money and no currency anywhere
    summary = run(engine, tmp_path, program, records, currency="EUR")
    assert (summary.quarantined, credits(engine)) == (
        0, {"reward:share:r1:referee": ("B", 5000, "EUR")})


def test_limit_per_referrer_counts_only_what_the_person_earned_as_referrer(
        engine: Any, tmp_path: Path) -> None:
    program = program_of(tmp_path, (
        "CURRENCY INR\n"
        "RULE both IF referee.subscribed THEN ISSUE ₹500 TO referrer AND ISSUE ₹500 TO referee\n"
        "  LIMIT ₹1,000 PER referrer PER MONTH\n"))
    run(engine, tmp_path, program, [
        rec("r1", "Z", "A", subscribed=True),   # A earns ₹500 as a referee
        rec("r2", "A", "B", subscribed=True),   # then ₹500 + ₹500 as a referrer
        rec("r3", "A", "C", subscribed=True),
        rec("r4", "A", "D", subscribed=True),   # past ₹1,000 as a referrer: nothing
    ])
    got = credits(engine)
    assert got["reward:both:r2:referrer"][1] == got["reward:both:r3:referrer"][1] == 50000
    assert "reward:both:r4:referrer" not in got


def test_limit_per_person_counts_every_role(engine: Any, tmp_path: Path) -> None:
    program = program_of(tmp_path, (
        "CURRENCY INR\n"
        "RULE both IF referee.subscribed THEN ISSUE ₹500 TO referrer AND ISSUE ₹500 TO referee\n"
        "  LIMIT ₹1,000 PER person PER MONTH\n"))
    run(engine, tmp_path, program, [
        rec("r1", "Z", "A", subscribed=True),   # A: ₹500 as a referee
        rec("r2", "A", "B", subscribed=True),   # A: ₹500 as a referrer: ₹1,000 in all
        rec("r3", "A", "C", subscribed=True),   # nothing left for A
    ])
    got = credits(engine)
    assert got["reward:both:r2:referrer"][1] == 50000
    assert "reward:both:r3:referrer" not in got
    assert got["reward:both:r3:referee"][1] == 50000


def test_ids_at_the_documented_maximum_settle_and_reverse(engine: Any, tmp_path: Path) -> None:
    rule_id = "r" * MAX_RULE_ID_CHARS
    referral_id = "x" * 128
    assert max_referral_id_chars([rule_id]) == 128
    program = program_of(tmp_path, (
        f"CURRENCY INR\nRULE {rule_id} IF referee.subscribed THEN ISSUE ₹10 TO referrer\n"
        "  REVERSE IF referee.refunded = true\n"))
    run(engine, tmp_path, program, [rec(referral_id, "A", "B", subscribed=True)])
    run(engine, tmp_path, program, [rec(referral_id, "A", "B", subscribed=True, refunded=True)])
    refs = set(credits(engine))
    with engine.connect() as conn:
        longest = max(len(e.reference_id) for e in ledger.iter_entries(conn))
    assert refs == {reward_reference(rule_id, referral_id, "referrer")}
    assert longest <= MAX_REFERENCE_CHARS
    assert len("reversal:" + reward_reference(rule_id, referral_id, "referrer", 999999)) == 255


def test_the_database_refuses_what_does_not_fit_on_sqlite_too(engine: Any,
                                                              monkeypatch: Any) -> None:
    """The ledger names an over-long reference itself; beneath that check the database
    (SQLite's length triggers, PostgreSQL's VARCHAR(255)) refuses it as well."""
    with engine.connect() as conn, pytest.raises(LedgerError, match="256 characters"):
        ledger.post_credit(conn, "u", 1, "INR", "h" * 256)
    monkeypatch.setattr(writes, "_validate", lambda req, *, reserved: None)
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="too long"):
        ledger.post_credit(conn, "u", 1, "INR", "h" * 256)


def test_a_future_as_of_is_refused(engine: Any, tmp_path: Path) -> None:
    program = program_of(tmp_path, "CURRENCY INR\nRULE r IF x.y THEN ISSUE ₹1\n")
    with pytest.raises(SettlementError, match="in the future.*--allow-future-as-of"):
        run(engine, tmp_path, program, [], as_of=date(2099, 1, 1))
    tomorrow = date.today() + timedelta(days=1)
    run(engine, tmp_path, program, [], as_of=tomorrow)
    run(engine, tmp_path, program, [], as_of=date(2099, 1, 1), allow_future_as_of=True)


def test_a_balance_beyond_64_bits_names_the_user_and_currency(engine: Any, db_url: str) -> None:
    big = 2**62 + 1
    with engine.connect() as conn:
        for ref in ("a", "b"):
            ledger.post_credit(conn, "rich", big, "INR", ref, status="confirmed")
    result = CliRunner().invoke(main, ["ledger", "balance", "rich", "--json", "--db", db_url])
    if db_url.startswith("sqlite"):
        assert result.exit_code == 1
        assert result.stderr == ("error: the balance of user rich in INR does not fit 64 bits"
                                 " (more than 9,223,372,036,854,775,807 minor units)\n")
    else:  # PostgreSQL sums BIGINT as NUMERIC: the exact figure
        assert result.exit_code == 0
        assert json.loads(result.stdout)["INR"]["net"] == 2 * big
