"""Records read by settlement on SQLite and PostgreSQL: every format settles the same."""

from __future__ import annotations

import gzip
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
from settlement.db import open_engine, upgrade
from settlement.records import read_records
from settlement.tables import settlement_quarantine
from tests.test_settle_cli import error_line
from tests.test_settlement import FIRST, RULES

GOOD = [json.loads(line) for line in FIRST if line.startswith("{") and line.endswith("}")]


@pytest.fixture
def program(tmp_path: Path):
    path = tmp_path / "program.rule"
    path.write_text(RULES, encoding="utf-8")
    return load_program([path]).program


@pytest.fixture
def engine(db_url: str):
    upgrade(db_url)
    engine = open_engine(db_url)
    yield engine
    engine.dispose()


def run(engine, program, path: Path, as_of: str = "2026-01-10", **kw):
    with engine.connect() as conn:
        return settle(conn, program, read_records(str(path)), as_of=date.fromisoformat(as_of),
                      input_name=str(path), **kw)


def entries(engine) -> dict[str, tuple[str, int, str]]:
    with engine.connect() as conn:
        return {e.reference_id: (e.user_id, e.amount, e.status) for e in ledger.iter_entries(conn)}


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


@pytest.fixture
def expected(tmp_path, program, db_url) -> dict[str, tuple[str, int, str]]:
    """What the JSON Lines file settles to, in a database of its own."""
    other = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(other)
    path = tmp_path / "reference.jsonl"
    path.write_text(jsonl(GOOD), encoding="utf-8")
    engine = open_engine(other)
    try:
        summary = run(engine, program, path)
        assert (summary.records, summary.quarantined) == (len(GOOD), 2)  # r7, r8
        return entries(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("name", "content"),
    [("records.json", lambda: json.dumps(GOOD, indent=2).encode()),
     ("records.json.gz", lambda: gzip.compress(json.dumps(GOOD, indent=4).encode())),
     ("records.jsonl.gz", lambda: gzip.compress(jsonl(GOOD).encode())),
     ("feed.dat", lambda: gzip.compress(jsonl(GOOD).encode())),
     ("records", lambda: json.dumps(GOOD).encode())],
)
def test_settle_every_format_posts_what_json_lines_posts(engine, program, tmp_path, expected,
                                                         name, content) -> None:
    path = tmp_path / name
    path.write_bytes(content())
    summary = run(engine, program, path)
    assert (summary.records, summary.quarantined) == (len(GOOD), 2)
    assert entries(engine) == expected


def test_settle_cli_broken_json_array_exits_1_with_nothing_written(db_url, tmp_path) -> None:
    upgrade(db_url)
    rules = tmp_path / "rules.rule"
    rules.write_text(RULES, encoding="utf-8")
    path = tmp_path / "records.json"
    path.write_text(json.dumps(GOOD, indent=2)[:-40], encoding="utf-8")
    result = CliRunner().invoke(main, ["settle", "--rules", str(rules), "--records", str(path),
                                       "--db", db_url, "--as-of", "2026-01-10"])
    assert result.exit_code == 1, result.output
    assert error_line(result.stderr).startswith(f"error: {path}: not a valid JSON array at line ")
    engine = open_engine(db_url)
    try:
        assert entries(engine) == {}
    finally:
        engine.dispose()


def test_settle_csv_stray_quote_loses_no_row(engine, program, tmp_path) -> None:
    rows = [f"r{i},A{i},B{i},paid,true,100000\n" for i in range(102)]
    rows[1] = 'r1,"A1,B1,paid,true,100000\n'
    path = tmp_path / "records.csv"
    path.write_text("referral_id,referrer.id,referee.id,referrer.plan,referee.subscribed,"
                    "referee.first_payment\n" + "".join(rows), encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.records, summary.quarantined, summary.rewarded) == (102, 1, 101)
    with engine.connect() as conn:
        (line,) = conn.execute(sa.select(settlement_quarantine.c.line)).scalars()
    assert line == 3
    assert {ref.split(":")[2] for ref in entries(engine)} == {f"r{i}" for i in range(102)} - {"r1"}


def test_settle_csv_ids_77_and_0077_are_two_people(engine, program, tmp_path) -> None:
    path = tmp_path / "records.csv"
    path.write_text("referral_id,referrer.id,referrer.plan,referee.id,referee.subscribed\n"
                    "1,77,paid,0077,true\n", encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.quarantined, summary.rewarded) == (0, 1)
    assert entries(engine) == {
        "reward:paid_bonus:1:referrer": ("77", 50000, "pending"),
        "reward:signup_bonus:1:referee": ("0077", 5000, "confirmed")}


def test_settle_duplicate_key_pays_no_one(engine, program, tmp_path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text('{"referral_id": "g1", "referrer": {"id": "u900001", "id": "attacker",'
                    ' "plan": "paid"}, "referee": {"id": "B", "subscribed": true}}\n',
                    encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.records, summary.quarantined, summary.posted) == (1, 1, 0)
    with engine.connect() as conn:
        (reason,) = conn.execute(sa.select(settlement_quarantine.c.reason)).scalars()
    assert reason == "duplicate key referrer.id: a key may appear once in an object"


def test_settle_nfc_and_nfd_ids_settle_as_one(engine, program, tmp_path) -> None:
    def line(rid: str, referrer: str) -> str:
        return json.dumps({"referral_id": rid, "referrer": {"id": referrer, "plan": "paid"},
                           "referee": {"id": "B", "subscribed": True, "first_payment": 0}})

    composed, decomposed = "jos\u00e9", "jose\u0301"
    first = tmp_path / "first.jsonl"
    first.write_text(line(f"r-{composed}", composed) + "\n", encoding="utf-8")
    run(engine, program, first)
    again = tmp_path / "again.jsonl"
    again.write_text(line(f"r-{decomposed}", decomposed) + "\n", encoding="utf-8")
    summary = run(engine, program, again)
    assert (summary.posted, summary.already_posted) == (0, 2)
    assert entries(engine)[f"reward:paid_bonus:r-{composed}:referrer"] == (
        composed, 50000, "pending")
    assert len(entries(engine)) == 2


def test_settle_bidi_override_in_an_id_is_quarantined(engine, program, tmp_path) -> None:
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps({"referral_id": "r1", "referrer": {"id": "u1\u202e", "plan": "paid"},
                                "referee": {"id": "B", "subscribed": True}}) + "\n",
                    encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.quarantined, summary.posted, entries(engine)) == (1, 0, {})


# -- dates at the end of the calendar ----------------------------------------------------

HOLD_FROM = """\
RULE held "Held from the subscription"
  IF referee.subscribed = true
  THEN ISSUE ₹10 REWARD TO referee
  HOLD 30 DAYS FROM referee.subscribed_at
"""


def far(rid: str, **fields: object) -> dict:
    referee = {"id": f"E-{rid}", "subscribed": True, "first_payment": 100000}
    referee.update({k: v for k, v in fields.items() if k != "created_at" and k != "updated_at"})
    out: dict = {"referral_id": rid, "referrer": {"id": "A", "plan": "paid"}, "referee": referee}
    if "created_at" in fields:
        out["referral"] = {"created_at": fields["created_at"]}
    if "updated_at" in fields:
        out["updated_at"] = fields["updated_at"]
    return out


@pytest.mark.parametrize(
    ("bad", "reason"),
    [(far("late", created_at="9999-12-15"), "referral.created_at 9999-12-15: "),
     (far("late", created_at="9999-12-31T23:00:00-05:00"), "referral.created_at"),
     (far("late", created_at="0001-01-01T01:00:00+05:30"), "referral.created_at"),
     (far("late", updated_at="9999-12-31T23:00:00-05:00"), "updated_at"),
     (far("late", subscribed_at="9999-12-20"), "referee.subscribed_at 9999-12-20: ")],
)
def test_settle_date_beyond_the_calendar_quarantines_only_its_record(engine, tmp_path, bad,
                                                                     reason) -> None:
    rules = tmp_path / "rules.rule"
    rules.write_text(RULES + "\n" + HOLD_FROM, encoding="utf-8")
    program = load_program([rules]).program
    path = tmp_path / "records.jsonl"
    path.write_text(jsonl([far("ok", created_at="2026-01-02"), bad,
                           far("ok2", created_at="2026-01-03")]), encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.records, summary.quarantined) == (3, 1)
    with engine.connect() as conn:
        (row,) = conn.execute(sa.select(settlement_quarantine.c.line,
                                        settlement_quarantine.c.reason)).all()
    assert row.line == 2 and reason in row.reason and "out of range" in row.reason
    assert {ref.split(":")[2] for ref in entries(engine)} == {"ok", "ok2"}


@pytest.mark.parametrize("extra", [[], ["--allow-future-as-of"]])
def test_settle_cli_as_of_at_the_end_of_the_calendar_is_one_line(db_url, tmp_path, extra
                                                                  ) -> None:
    upgrade(db_url)
    rules = tmp_path / "rules.rule"
    rules.write_text(RULES, encoding="utf-8")
    path = tmp_path / "records.jsonl"
    path.write_text(jsonl(GOOD), encoding="utf-8")
    result = CliRunner().invoke(main, ["settle", "--rules", str(rules), "--records", str(path),
                                       "--db", db_url, "--as-of", "9999-12-31", *extra])
    assert result.exit_code in (1, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "9999-12-31" in error_line(result.stderr)


def test_settle_long_hold_from_late_in_9998_is_quarantined(engine, tmp_path) -> None:
    rules = tmp_path / "rules.rule"
    rules.write_text('RULE long "Long hold"\n  IF referee.subscribed = true\n'
                     "  THEN ISSUE ₹10 REWARD TO referee\n  HOLD 400 DAYS\n", encoding="utf-8")
    program = load_program([rules]).program
    path = tmp_path / "records.jsonl"
    path.write_text(jsonl([far("late", created_at="9998-12-01"),
                           far("ok", created_at="2026-01-02")]), encoding="utf-8")
    summary = run(engine, program, path)
    assert (summary.quarantined, summary.posted) == (1, 1)
    with engine.connect() as conn:
        (reason,) = conn.execute(sa.select(settlement_quarantine.c.reason)).scalars()
    assert reason == ("referral.created_at 9998-12-01: out of range: rule long's HOLD 400 DAYS"
                      " would end after 9999-12-31")
