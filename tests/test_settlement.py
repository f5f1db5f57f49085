"""End-to-end settlement runs on SQLite and PostgreSQL, hand-checked on a small fixture."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from dsl.errors import EvaluationError
from dsl.program import load_program
from settlement import ledger
from settlement.batch import event_date, period_window, settle
from settlement.db import open_engine, upgrade
from settlement.errors import SettlementError
from settlement.ledger import ledger_anchors
from settlement.records import Record, read_records
from settlement.tables import settlement_quarantine, settlement_runs
from tests.tampering import disable_append_only

RULES = """\
RULE paid_bonus "Paid referrers earn; their referee gets 10% back"
  PRIORITY 10
  IF referrer.plan = "paid" AND referee.subscribed = true AND NOT referee.id = referrer.id
  THEN ISSUE ₹500 REWARD TO referrer
  AND ISSUE 10% OF referee.first_payment REWARD TO referee UP TO ₹200
  LIMIT ₹1,200 PER referrer PER MONTH
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true

RULE signup_bonus "Every subscribed referee gets a welcome bonus"
  IF referee.subscribed = true
  THEN ISSUE ₹50 REWARD TO referee
"""


def rec(rid: str, referrer: str, referee: str, *, plan: str = "paid", subscribed: bool = True,
        payment: object = 150000, created: str = "2026-01-01", refunded: bool = False) -> str:
    return json.dumps({
        "referral_id": rid,
        "referral": {"created_at": created},
        "referrer": {"id": referrer, "plan": plan},
        "referee": {"id": referee, "subscribed": subscribed, "first_payment": payment,
                    "refunded": refunded},
    })


FIRST = [
    rec("r1", "A", "B", payment=150000, created="2026-01-01"),   # A 500 held, B 150 held, B 50
    rec("r2", "A", "C", payment=500000, created="2026-01-05"),   # A 500, C 200 (UP TO), C 50
    rec("r3", "A", "D", payment=100000, created="2026-01-20"),   # A 200 (LIMIT cut), D 100, D 50
    rec("r4", "E", "F", plan="free"),                            # F 50
    rec("r5", "G", "G"),                                         # self-referral: G 50 only
    '{"referral_id": "r6", "referrer": ',                        # unparseable
    json.dumps({"referral_id": "r7", "referrer": {"id": "H"}}),  # no referee.id
    rec("r8", "A", "J", payment="lots"),                         # wrong type for a rule
]


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


def write(tmp_path: Path, name: str, lines: list[str]) -> str:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def run(engine, program, path: str, as_of: str = "2026-01-10", **kw):
    with engine.connect() as conn:
        return settle(conn, program, read_records(path), as_of=date.fromisoformat(as_of),
                      input_name=path, **kw)


def entries(engine) -> dict[str, tuple[str, int, str]]:
    with engine.connect() as conn:
        return {e.reference_id: (e.user_id, e.amount, e.status) for e in ledger.iter_entries(conn)}


def test_settle_first_run_posts_the_hand_checked_entries(engine, program, tmp_path) -> None:
    summary = run(engine, program, write(tmp_path, "first.jsonl", FIRST))

    assert summary.as_json() | {"run_id": None, "duration_s": None} == {
        "run_id": None, "dry_run": False, "as_of": "2026-01-10", "duration_s": None,
        "records": 8, "rewarded": 5, "posted": 11, "already_posted": 0,
        "capped": 1, "reversed": 0, "adjusted": 0, "moved": 0, "superseded": 0, "stale": 0,
        "retired": 0, "conflicts": 0, "confirmed": 0, "quarantined": 3,
        "amount_posted": {"INR": 190000},
    }
    assert entries(engine) == {
        "reward:paid_bonus:r1:referrer": ("A", 50000, "pending"),
        "reward:paid_bonus:r1:referee": ("B", 15000, "pending"),
        "reward:signup_bonus:r1:referee": ("B", 5000, "confirmed"),
        "reward:paid_bonus:r2:referrer": ("A", 50000, "pending"),
        "reward:paid_bonus:r2:referee": ("C", 20000, "pending"),
        "reward:signup_bonus:r2:referee": ("C", 5000, "confirmed"),
        "reward:paid_bonus:r3:referrer": ("A", 20000, "pending"),
        "reward:paid_bonus:r3:referee": ("D", 10000, "pending"),
        "reward:signup_bonus:r3:referee": ("D", 5000, "confirmed"),
        "reward:signup_bonus:r4:referee": ("F", 5000, "confirmed"),
        "reward:signup_bonus:r5:referee": ("G", 5000, "confirmed"),
    }


def test_settle_records_provenance_run_log_and_quarantine(engine, program, tmp_path) -> None:
    path = write(tmp_path, "first.jsonl", FIRST)
    summary = run(engine, program, path)
    with engine.connect() as conn:
        entry = ledger.get_entry(conn, "reward:paid_bonus:r1:referrer")
        runs = conn.execute(sa.select(settlement_runs)).mappings().all()
        quarantine = conn.execute(
            sa.select(settlement_quarantine).order_by(settlement_quarantine.c.line)
        ).mappings().all()
    assert entry.rule_id == "paid_bonus" and entry.run_id == summary.run_id
    assert entry.referral_id == "r1" and entry.role == "referrer"
    assert len(entry.rule_hash) == 64
    # HOLD 14 DAYS counts from the later of the event date and the run's as-of date.
    assert entry.hold_until == date(2026, 1, 24) and entry.event_date == date(2026, 1, 1)
    assert [(r["run_id"], r["posted"], r["quarantined"]) for r in runs] == [
        (summary.run_id, 11, 3)
    ]
    assert json.loads(runs[0]["amount_posted"]) == {"INR": 190000}
    assert [(q["line"], q["reason"].split(":")[0]) for q in quarantine] == [
        (6, "not valid JSON"),
        (7, "missing required field referee.id"),
        (8, quarantine[2]["reason"].split(":")[0]),
    ]
    assert "first_payment" in quarantine[2]["reason"]
    assert quarantine[0]["raw"] == FIRST[5] and quarantine[0]["file"] == path


def test_settle_rerun_posts_nothing_twice(engine, program, tmp_path) -> None:
    path = write(tmp_path, "first.jsonl", FIRST)
    run(engine, program, path)
    before = entries(engine)

    again = run(engine, program, path)

    assert (again.posted, again.already_posted, again.amount_posted) == (0, 11, {})
    assert entries(engine) == before


def test_settle_overlapping_input_posts_only_the_new_records(engine, program, tmp_path) -> None:
    run(engine, program, write(tmp_path, "a.jsonl", FIRST[:2]))
    summary = run(engine, program, write(tmp_path, "b.jsonl", FIRST[1:5]))
    assert (summary.posted, summary.already_posted) == (5, 3)
    assert len(entries(engine)) == 11


def test_settle_refund_reverses_exactly_the_rules_rewards_once(engine, program, tmp_path) -> None:
    run(engine, program, write(tmp_path, "first.jsonl", FIRST))
    refund = write(tmp_path, "refund.jsonl", [rec("r1", "A", "B", refunded=True)])

    summary = run(engine, program, refund, as_of="2026-01-11")
    again = run(engine, program, refund, as_of="2026-01-12")

    assert (summary.reversed, again.reversed, summary.posted, again.posted) == (2, 0, 0, 0)
    got = entries(engine)
    assert got["reward:paid_bonus:r1:referrer"][2] == "reversed"
    assert got["reward:paid_bonus:r1:referee"][2] == "reversed"
    assert got["reward:signup_bonus:r1:referee"][2] == "confirmed"  # no REVERSE IF
    assert got["reversal:reward:paid_bonus:r1:referrer"] == ("A", -50000, "confirmed")
    assert got["reversal:reward:paid_bonus:r1:referee"] == ("B", -15000, "confirmed")
    assert len(got) == 13
    with engine.connect() as conn:
        assert ledger.verify(conn).ok


def test_settle_refund_in_the_same_file_reverses_after_posting(engine, program, tmp_path) -> None:
    lines = [rec("r1", "A", "B"), rec("r2", "A", "C"), rec("r1", "A", "B", refunded=True)]
    summary = run(engine, program, write(tmp_path, "same.jsonl", lines))
    assert (summary.posted, summary.reversed) == (6, 2)
    assert entries(engine)["reward:paid_bonus:r1:referrer"][2] == "reversed"


def test_settle_refunded_before_any_payment_pays_nothing(engine, program, tmp_path) -> None:
    summary = run(engine, program, write(tmp_path, "x.jsonl", [rec("r1", "A", "B", refunded=True)]))
    assert (summary.posted, summary.reversed) == (1, 0)  # only the signup bonus
    assert set(entries(engine)) == {"reward:signup_bonus:r1:referee"}


@pytest.mark.parametrize(
    ("as_of", "confirmed"), [("2026-01-14", 0), ("2026-01-15", 2), ("2026-01-19", 4)]
)
def test_settle_hold_confirms_on_the_right_date(engine, program, tmp_path, as_of, confirmed):
    # Settled on the day the first referral was made: each hold counts from its event date.
    run(engine, program, write(tmp_path, "first.jsonl", FIRST), as_of="2026-01-01")
    later = run(engine, program, write(tmp_path, "empty.jsonl", []), as_of=as_of)
    assert later.confirmed == confirmed
    statuses = entries(engine)
    assert (statuses["reward:paid_bonus:r1:referrer"][2] == "confirmed") == (confirmed >= 2)
    assert (statuses["reward:paid_bonus:r2:referee"][2] == "confirmed") == (confirmed >= 4)


def test_settle_hold_never_confirms_a_reversed_reward(engine, program, tmp_path) -> None:
    run(engine, program, write(tmp_path, "first.jsonl", FIRST[:1]))
    run(engine, program, write(tmp_path, "refund.jsonl", [rec("r1", "A", "B", refunded=True)]))
    later = run(engine, program, write(tmp_path, "empty.jsonl", []), as_of="2026-03-01")
    assert later.confirmed == 0
    assert entries(engine)["reward:paid_bonus:r1:referrer"][2] == "reversed"


def test_settle_limit_caps_across_runs_and_periods(engine, program, tmp_path) -> None:
    run(engine, program, write(tmp_path, "a.jsonl", FIRST[:2]))  # A has ₹1,000 in January
    second = run(engine, program, write(tmp_path, "b.jsonl", [
        rec("r3", "A", "D", created="2026-01-20"),   # ₹200 left in January
        rec("r9", "A", "K", created="2026-01-21"),   # nothing left: no entry
        rec("r10", "A", "L", created="2026-02-01"),  # a new month: full ₹500
    ]))
    got = entries(engine)
    assert second.capped == 2
    assert got["reward:paid_bonus:r3:referrer"][1] == 20000
    assert "reward:paid_bonus:r9:referrer" not in got
    assert got["reward:paid_bonus:r9:referee"][1] == 15000  # the cap is PER referrer only
    assert got["reward:paid_bonus:r10:referrer"][1] == 50000


def test_settle_dry_run_writes_nothing(engine, program, tmp_path) -> None:
    planned = []
    summary = run(engine, program, write(tmp_path, "first.jsonl", FIRST), dry_run=True,
                  on_plan=planned.append)
    assert (summary.posted, summary.quarantined, len(planned)) == (11, 3, 11)
    assert entries(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(settlement_runs)).scalar() == 0


def test_settle_strict_aborts_with_nothing_written(engine, program, tmp_path) -> None:
    path = write(tmp_path, "first.jsonl", FIRST)
    with pytest.raises(SettlementError, match=r"first\.jsonl:6: error: not valid JSON"):
        run(engine, program, path, strict=True)
    assert entries(engine) == {}
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(settlement_runs)).scalar() == 0


def test_settle_reads_csv_with_dotted_columns(engine, program, tmp_path) -> None:
    path = tmp_path / "records.csv"
    path.write_text(
        "referral_id,referral.created_at,referrer.id,referrer.plan,referee.id,"
        "referee.subscribed,referee.first_payment,referee.refunded\n"
        "r1,2026-01-01,A,paid,B,true,150000,false\n"
        "r2,2026-01-02,A,paid,C,yes,150000,false\n",
        encoding="utf-8",
    )
    summary = run(engine, program, str(path))
    assert (summary.posted, summary.quarantined) == (3, 1)  # "yes" is not a boolean
    assert entries(engine)["reward:paid_bonus:r1:referee"] == ("B", 15000, "pending")


def test_settle_explain_writes_one_line_per_record(engine, program, tmp_path) -> None:
    out = tmp_path / "explain.jsonl"
    with out.open("w") as fh:
        run(engine, program, write(tmp_path, "first.jsonl", FIRST), explain=fh)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 8
    r3 = lines[2]
    assert r3["referral_id"] == "r3"
    capped = [a for a in r3["actions"] if a["outcome"] == "capped"]
    assert capped and capped[0]["amount"] == 20000 and capped[0]["requested"] == 50000
    assert {r["rule_id"] for r in r3["rules"]} == {"paid_bonus", "signup_bonus"}
    assert all(r["trace"] for r in r3["rules"])
    assert lines[5]["quarantined"].startswith("not valid JSON")


@pytest.mark.parametrize(
    ("period", "day", "window"),
    [
        ("day", date(2026, 3, 5), (date(2026, 3, 5), date(2026, 3, 6))),
        ("month", date(2026, 12, 31), (date(2026, 12, 1), date(2027, 1, 1))),
        ("year", date(2026, 2, 1), (date(2026, 1, 1), date(2027, 1, 1))),
        ("ever", date(2026, 2, 1), (None, None)),
    ],
)
def test_period_window_bounds(period, day, window) -> None:
    assert period_window(period, day) == window


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE settlement_runs SET posted = 0",
        "DELETE FROM settlement_runs",
        "UPDATE settlement_quarantine SET reason = 'fine'",
        "DELETE FROM settlement_quarantine",
    ],
)
def test_settlement_log_is_append_only_in_the_database(engine, program, tmp_path, statement):
    run(engine, program, write(tmp_path, "first.jsonl", FIRST))
    with engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text(statement))


def test_settle_rule_paying_one_role_twice_posts_one_summed_entry(engine, tmp_path) -> None:
    path = tmp_path / "double.rule"
    path.write_text(
        'RULE double\n  IF referee.subscribed = true\n'
        "  THEN ISSUE ₹100 REWARD TO referrer\n"
        "  AND ISSUE 10% OF referee.first_payment REWARD TO referrer\n",
        encoding="utf-8",
    )
    program = load_program([path]).program
    summary = run(engine, program, write(tmp_path, "one.jsonl", [rec("r1", "A", "B")]))
    assert summary.posted == 1
    assert entries(engine) == {"reward:double:r1:referrer": ("A", 10000 + 15000, "confirmed")}


def test_settle_summed_rewards_beyond_bigint_quarantine_the_record(engine, tmp_path) -> None:
    """Each share fits the ledger's BIGINT; their sum does not: that record, not the run."""
    path = tmp_path / "double.rule"
    path.write_text(
        'RULE double\n  IF referee.subscribed = true\n'
        "  THEN ISSUE ₹100 REWARD TO referee\n"
        "  AND ISSUE 60% OF referee.first_payment REWARD TO referrer\n"
        "  AND ISSUE 60% OF referee.first_payment REWARD TO referrer\n",
        encoding="utf-8",
    )
    program = load_program([path]).program
    huge = 2**63 - 1  # 60% of it fits; 120% does not
    lines = [rec("r1", "A", "B", payment=huge), rec("r2", "C", "D", payment=1000)]
    summary = run(engine, program, write(tmp_path, "two.jsonl", lines))
    assert (summary.quarantined, summary.posted) == (1, 2)
    assert entries(engine) == {
        "reward:double:r2:referrer": ("C", 1200, "confirmed"),
        "reward:double:r2:referee": ("D", 10000, "confirmed"),
    }
    with engine.connect() as conn:
        reason = conn.execute(sa.select(settlement_quarantine.c.reason)).scalar_one()
    assert reason == (f"rule double: the rewards to referrer sum to {2 * (huge * 6 // 10)} "
                      f"minor units; at most {huge}")


def test_verify_detects_newest_entries_deleted_after_a_run(engine, program, tmp_path) -> None:
    """The chain alone cannot see its tail cut off; the head each run recorded can."""
    summary = run(engine, program, write(tmp_path, "first.jsonl", FIRST))
    with engine.connect() as conn:
        head = ledger.head(conn)
        assert ledger.verify(conn, anchors=ledger_anchors(conn)).ok
    with engine.begin() as conn:
        disable_append_only(conn, "DELETE")
        for table, column in (("ledger_postings", "entry_id"),
                              ("ledger_transitions", "entry_id"), ("ledger_entries", "id")):
            conn.execute(sa.text(f"DELETE FROM {table} WHERE {column} = :id"), {"id": head[0]})
    with engine.connect() as conn:
        unanchored = ledger.verify(conn).problems  # the chain alone sees nothing; the seal does
        problems = ledger.verify(conn, anchors=ledger_anchors(conn)).problems
    n = head[0]
    assert [p.split(": ", 1)[1].split(" holds")[0] for p in unanchored] == [
        "ledger_entries", "ledger_transitions", "ledger_postings"]
    assert unanchored[0].endswith(f"ledger_entries holds {n - 1} of the {n} rows it wrote"
                                  " (rows were deleted)")
    assert all(p.startswith(f"operation id=1 {summary.run_id!r} (settle by ") and
               p.endswith("(rows were deleted)") for p in unanchored)
    assert problems == [
        f"entry id={head[0]} is missing: {summary.run_id} recorded it as the ledger head, "
        f"but the ledger ends at id {head[0] - 1} (newest entries were removed)",
        *unanchored,
    ]


def test_read_records_csv_column_conflict_is_a_bad_record(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("referral_id,referrer.id,referee.id,referee,referee.plan\n"
                    "r1,A,B,x,paid\n", encoding="utf-8")
    (bad,) = list(read_records(str(path)))
    assert bad.line == 2
    assert bad.reason == "columns: referee has a value and also fields under it"


@pytest.mark.parametrize(
    ("created_at", "day"),
    [("2026-01-05", date(2026, 1, 5)), ("2026-01-05T23:30:00+00:00", date(2026, 1, 5)),
     (None, date(2026, 1, 10))],
)
def test_event_date_reads_iso_dates_and_datetimes(created_at, day) -> None:
    data = {"referral_id": "r", "referrer": {"id": "a"}, "referee": {"id": "b"}}
    if created_at:
        data["referral"] = {"created_at": created_at}
    assert event_date(Record("f", 1, "", data), date(2026, 1, 10)) == day


@pytest.mark.parametrize("created_at", ["2026-01-05garbage", "soon", 20260105])
def test_event_date_refuses_what_is_not_a_date(created_at) -> None:
    data = {"referral_id": "r", "referral": {"created_at": created_at}}
    with pytest.raises(EvaluationError, match="referral.created_at must be an ISO date"):
        event_date(Record("f", 1, "", data), date(2026, 1, 10))
