"""Settlement keeps the ledger equal to what each referral is owed now (SQLite and PostgreSQL).

One test per way facts change after the first run; each failed on the settle that posted a
reward once per (rule, referral, role) and never looked at it again.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from dsl.program import load_program
from settlement import ledger
from settlement.audit import verify_settlement
from settlement.batch import RunSummary, settle
from settlement.db import open_engine, upgrade
from settlement.errors import SettlementError
from settlement.records import read_records
from settlement.tables import settlement_rule_renames

TIERS = """\
CURRENCY INR
RULE gold "₹600 for a first payment of ₹10,000 or more"
  PRIORITY 20
  EXCLUSIVE
  IF referee.subscribed AND referee.first_payment >= ₹10,000
  THEN ISSUE ₹600 TO referrer
  LIMIT ₹600 PER referrer PER MONTH
  REVERSE IF referee.refunded = true

RULE silver "₹500 for a first payment from ₹5,000"
  PRIORITY 20
  EXCLUSIVE
  IF referee.subscribed AND referee.first_payment >= ₹5,000 AND referee.first_payment < ₹10,000
  THEN ISSUE ₹500 TO referrer
  REVERSE IF referee.refunded = true

RULE base "₹100 to every subscribed referrer, 10% of the payment to the referee"
  PRIORITY 10
  IF referee.subscribed
  THEN ISSUE ₹100 TO referrer
  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹2,000
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true
"""


def rec(rid: str = "r1", referrer: str = "A", referee: str = "B", *, payment: int = 700000,
        subscribed: bool = True, refunded: bool = False, created: str = "2026-01-01",
        **top: Any) -> dict[str, Any]:
    return {"referral_id": rid, "referral": {"created_at": created},
            "referrer": {"id": referrer},
            "referee": {"id": referee, "subscribed": subscribed, "first_payment": payment,
                        "refunded": refunded},
            **top}


class World:
    """One database and one rules directory; ``run`` settles a list of records."""

    def __init__(self, url: str, tmp: Path) -> None:
        upgrade(url)
        self.engine = open_engine(url)
        self.tmp = tmp
        self.n = 0

    def program(self, text: str, name: str = "program.rule") -> Any:
        folder = self.tmp / f"rules{self.n}"
        self.n += 1
        folder.mkdir()
        (folder / name).write_text(text, encoding="utf-8")
        return load_program([folder]).program

    def run(self, program: Any, records: list[dict[str, Any]], as_of: str = "2026-01-10",
            **kw: Any) -> RunSummary:
        path = self.tmp / f"in{self.n}.jsonl"
        self.n += 1
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        with self.engine.connect() as conn:
            summary = settle(conn, program, read_records(str(path)),
                             as_of=date.fromisoformat(as_of), input_name=str(path), **kw)
        self.check()
        return summary

    def check(self) -> None:
        with self.engine.connect() as conn:
            report = ledger.verify(conn)
            assert report.ok, report.problems
            assert verify_settlement(conn) == []

    def standing(self) -> dict[tuple[str, str, str], tuple[str, int]]:
        """(rule, referral, role) -> (user, amount) of what stands, for keys with any."""
        out: dict[tuple[str, str, str], tuple[str, int]] = {}
        with self.engine.connect() as conn:
            for e in ledger.iter_entries(conn):
                if e.entry_type != "credit" or e.status == "reversed" or e.rule_id is None:
                    continue
                key = (e.rule_id, str(e.referral_id), str(e.role))
                user, amount = out.get(key, (e.user_id, 0))
                assert user == e.user_id
                out[key] = (user, amount + e.amount)
        return out

    def entries(self) -> dict[str, ledger.Entry]:
        with self.engine.connect() as conn:
            return {e.reference_id: e for e in ledger.iter_entries(conn)}


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Any:
    w = World(db_url, tmp_path)
    yield w
    w.engine.dispose()


# -------------------------------------------------------------- 1. HOLD and late conversions


def test_hold_counts_from_the_run_that_grants_a_late_conversion(world: World) -> None:
    program = world.program(TIERS)
    # Shared on January 1st, subscribed January 21st, settled that night.
    world.run(program, [rec(payment=100000)], as_of="2026-01-21")
    got = world.entries()["reward:base:r1:referrer"]
    assert (got.status, got.hold_until) == ("pending", date(2026, 2, 4))
    assert world.run(program, [], as_of="2026-02-03").confirmed == 0
    assert world.run(program, [], as_of="2026-02-04").confirmed == 2


def test_hold_from_a_field_counts_from_that_date(world: World) -> None:
    program = world.program(TIERS.replace("HOLD 14 DAYS", "HOLD 14 DAYS FROM referee.paid_at"))
    world.run(program, [rec(payment=100000) | {
        "referee": {"id": "B", "subscribed": True, "first_payment": 100000, "refunded": False,
                    "paid_at": "2026-01-20T23:30:00-05:00"}}], as_of="2026-01-25")
    # 23:30 in New York on the 20th is the 21st in UTC, the program's zone.
    assert world.entries()["reward:base:r1:referrer"].hold_until == date(2026, 2, 4)


# -------------------------------------------------------------- 2. versions, not read order


@pytest.mark.parametrize("field", ["version", "updated_at"])
def test_an_older_snapshot_after_a_refund_pays_nothing(world: World, field: str) -> None:
    program = world.program(TIERS)
    newer = {"version": 2} if field == "version" else {"updated_at": "2026-01-09T10:00:00Z"}
    older = {"version": 1} if field == "version" else {"updated_at": "2026-01-08T23:00:00-05:00"}
    summary = world.run(program, [rec(refunded=True, **newer), rec(**older)])
    assert summary.stale == 1
    assert world.standing() == {}
    # And on the next night, alone.
    assert world.run(program, [rec(**older)], as_of="2026-01-11").stale == 1
    assert world.standing() == {}


def test_without_versions_a_later_line_wins_and_a_rerun_changes_nothing(world: World) -> None:
    program = world.program(TIERS)
    lines = [rec(payment=100000), rec(payment=200000)]
    world.run(program, lines)
    assert world.standing()[("base", "r1", "referee")] == ("B", 20000)
    again = world.run(program, lines)
    assert (again.posted, again.stale) == (0, 1)
    assert world.standing()[("base", "r1", "referee")] == ("B", 20000)


# -------------------------------------------------------------- 3. EXCLUSIVE across runs


def test_an_upgrade_into_a_higher_tier_supersedes_the_lower_one(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=700000)])
    assert world.standing()[("silver", "r1", "referrer")] == ("A", 50000)
    summary = world.run(program, [rec(payment=1200000)])
    assert summary.superseded == 1
    standing = world.standing()
    assert ("silver", "r1", "referrer") not in standing
    assert standing[("gold", "r1", "referrer")] == ("A", 60000)
    assert ("base", "r1", "referrer") not in standing  # still suppressed by the tier
    assert world.entries()["reward:silver:r1:referrer"].status == "reversed"


# -------------------------------------------------------------- 4. amounts and beneficiaries


def test_a_corrected_payment_adjusts_the_amount_both_ways(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=150000)])
    assert world.standing()[("base", "r1", "referee")] == ("B", 15000)
    down = world.run(program, [rec(payment=100000)])  # a partial refund
    assert (down.adjusted, world.standing()[("base", "r1", "referee")]) == (1, ("B", 10000))
    up = world.run(program, [rec(payment=180000)])  # an upgrade
    assert (up.adjusted, world.standing()[("base", "r1", "referee")]) == (1, ("B", 18000))
    entries = world.entries()
    # The replacement keeps the first grant's hold; the increase is held like a new reward.
    first = entries["reward:base:r1:referee"]
    replacement = entries["reward:base:r1:referee#2"]
    increase = entries["reward:base:r1:referee#3"]
    assert (first.status, first.amount) == ("reversed", 15000)
    assert (replacement.amount, replacement.hold_until) == (10000, first.hold_until)
    assert replacement.adjusts == first.reference_id
    assert (increase.amount, increase.adjusts) == (8000, replacement.reference_id)
    assert world.run(program, [rec(payment=180000)]).posted == 0


def test_a_corrected_referrer_moves_the_reward(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(referrer="A")])
    summary = world.run(program, [rec(referrer="Z")])
    assert summary.moved == 1
    assert world.standing()[("silver", "r1", "referrer")] == ("Z", 50000)
    with world.engine.connect() as conn:
        assert ledger.balance(conn, "A")["INR"].net == 0
        assert ledger.balance(conn, "Z")["INR"].net == 50000


def test_a_paid_reward_that_shrinks_is_clawed_back(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=150000)])
    world.run(program, [], as_of="2026-02-01")  # holds end
    with world.engine.connect() as conn:
        ledger.pay(conn, "reward:base:r1:referee")
    world.run(program, [rec(payment=100000)], as_of="2026-02-02")
    with world.engine.connect() as conn:
        # Paid ₹150, owed ₹100: the referee owes ₹50.
        assert ledger.balance(conn, "B")["INR"].net == -5000
    assert world.standing()[("base", "r1", "referee")] == ("B", 10000)


# -------------------------------------------------------------- 5. EXCLUSIVE after LIMIT


def test_a_tier_cut_to_nothing_by_its_limit_does_not_block_the_lower_tier(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec("r1", payment=1200000)])  # gold ₹600: A's January limit used
    world.run(program, [rec("r2", referee="C", payment=1200000, created="2026-01-02")])
    standing = world.standing()
    assert ("gold", "r2", "referrer") not in standing
    assert standing[("base", "r2", "referrer")] == ("A", 10000)


def test_an_event_date_moved_into_another_limit_period_takes_that_periods_room(
        world: World) -> None:
    """Found by the property test: a grant dated in January, whose referral's corrected
    date falls in February, was topped up against February's room while its January part
    stayed, so the person held ₹1,500 where February's LIMIT allows ₹1,200."""
    limited = TIERS.replace(
        "  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹2,000\n",
        "  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹1,500\n"
        "  LIMIT ₹1,200 PER person PER MONTH\n")
    program = world.program(limited)
    world.run(program, [rec(payment=300000)])  # January: ₹300
    summary = world.run(program, [rec(payment=2500000, created="2026-01-31T22:00:00-05:00")])
    assert world.standing()[("base", "r1", "referee")] == ("B", 120000)
    assert summary.adjusted == 1
    entries = world.entries()
    assert entries["reward:base:r1:referee"].status == "reversed"
    regrant = entries["reward:base:r1:referee#2"]
    assert (regrant.amount, regrant.event_date) == (120000, date(2026, 2, 1))
    assert world.run(program, [rec(payment=2500000, created="2026-01-31T22:00:00-05:00")]
                     ).posted == 0


# -------------------------------------------------------------- 6. stopped campaigns


def test_a_removed_rule_keeps_its_hold_and_its_reverse_if(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=100000)])
    without_base = world.program(TIERS[:TIERS.index('RULE base')])
    kept = world.run(without_base, [rec(payment=100000)], as_of="2026-01-12")
    assert (kept.retired, kept.superseded) == (2, 0)
    assert world.standing()[("base", "r1", "referrer")] == ("A", 10000)
    refund = world.run(without_base, [rec(payment=100000, refunded=True)], as_of="2026-01-13")
    assert refund.reversed == 2
    assert world.standing() == {}


def test_a_removed_rule_grants_nothing_new_but_its_holds_end(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=100000)])
    without_base = world.program(TIERS[:TIERS.index('RULE base')])
    later = world.run(without_base, [rec("r2", referee="C", payment=100000)], as_of="2026-02-01")
    assert later.confirmed == 2
    assert set(world.standing()) == {("base", "r1", "referrer"), ("base", "r1", "referee")}


# -------------------------------------------------------------- 7. renames


def test_renaming_a_rule_is_refused_then_carried_over(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec()])
    renamed = world.program(TIERS.replace("RULE silver", "RULE silver_tier"))
    with pytest.raises(SettlementError, match=r"rule silver .* rule silver_tier .* --renamed"):
        world.run(renamed, [rec()])
    before = world.entries()
    summary = world.run(renamed, [rec()], renamed={"silver": "silver_tier"})
    assert summary.posted == 0 and world.entries().keys() == before.keys()
    assert world.standing()[("silver", "r1", "referrer")] == ("A", 50000)
    with world.engine.connect() as conn:
        assert conn.execute(sa.select(settlement_rule_renames.c.old_id,
                                      settlement_rule_renames.c.new_id)).all() == [
            ("silver", "silver_tier")]
    # Carried over: a later change of the referral adjusts the renamed rule's reward.
    world.run(renamed, [rec(payment=1200000)])
    assert ("silver", "r1", "referrer") not in world.standing()


def test_renaming_an_id_less_rule_file_is_refused(world: World) -> None:
    text = "CURRENCY INR\nIF referee.subscribed THEN ISSUE ₹100 TO referrer\n"
    program = world.program(text, name="seed.rule")
    with pytest.raises(SettlementError, match="no RULE header.*--allow-anonymous-rules"):
        world.run(program, [rec()])
    world.run(program, [rec()], allow_anonymous=True)
    moved = world.program(text, name="brief.rule")
    with pytest.raises(SettlementError, match="rule seed_1 .* rule brief_1"):
        world.run(moved, [rec()], allow_anonymous=True)


# -------------------------------------------------------------- conflicts (one mechanism)


def test_a_reference_taken_by_another_entry_is_a_conflict(world: World) -> None:
    program = world.program(TIERS)
    with world.engine.connect() as conn:
        with pytest.raises(ledger.LedgerError, match="reserved"):
            ledger.post_credit(conn, "attacker", 100, "INR", "reward:silver:r1:referrer",
                               status="confirmed")
        # Whoever bypasses the refusal still cannot take the referrer's reward.
        ledger.post_credits(conn, [ledger.CreditRequest(
            "attacker", 100, "INR", "reward:silver:r1:referrer", "confirmed")],
            actor="attack", reserved=True)
    with pytest.raises(SettlementError, match="1 idempotency conflict"):
        world.run(program, [rec()])
    summary = world.run(program, [rec()], allow_conflicts=True)
    assert summary.conflicts == 1
    assert world.standing().get(("silver", "r1", "referrer")) is None


# -------------------------------------------------------------- REVERSE IF is terminal


def test_reverse_if_is_terminal(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec()])
    world.run(program, [rec(refunded=True)])
    assert world.standing() == {}
    again = world.run(program, [rec(refunded=False, payment=800000)])
    assert again.posted == 0 and world.standing() == {}


# -------------------------------------------------------------- the CLI


def test_ledger_show_lists_an_adjusted_rewards_whole_history(world: World, db_url: str) -> None:
    from click.testing import CliRunner

    from referral.cli import main

    program = world.program(TIERS)
    for payment in (150000, 100000, 180000):
        world.run(program, [rec(payment=payment)])
    result = CliRunner().invoke(main, ["ledger", "show", "reward:base:r1:referee#2",
                                       "--db", db_url])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "adjusts:      reward:base:r1:referee" in lines
    start = lines.index("reward base:r1:referee (stands at ₹180):")
    assert [line.split()[0].lstrip("*") or line.split()[1] for line in lines[start + 1:]] == [
        "reward:base:r1:referee", "reversal:reward:base:r1:referee",
        "reward:base:r1:referee#2", "reward:base:r1:referee#3",
    ]
    assert "* reward:base:r1:referee#2  B  ₹100  pending adjusts reward:base:r1:referee" in (
        result.stdout)
    verify = CliRunner().invoke(main, ["ledger", "verify", "--db", db_url])
    assert verify.exit_code == 0, verify.output


def test_ledger_credit_refuses_settlements_references(world: World, db_url: str) -> None:
    from click.testing import CliRunner

    from referral.cli import main

    result = CliRunner().invoke(main, ["ledger", "credit", "attacker", "₹1", "--reference",
                                       "reward:paid_referrer_bonus:g1:referrer", "--confirmed",
                                       "--db", db_url])
    assert result.exit_code == 1
    assert result.stderr == (
        "error: reference 'reward:paid_referrer_bonus:g1:referrer' is reserved: 'reward:'"
        " references are posted by settlement only\n")


def test_everything_a_run_writes_is_dated_with_its_as_of(world: World) -> None:
    program = world.program(TIERS)
    world.run(program, [rec(payment=150000)], as_of="2025-12-20")
    world.run(program, [rec(payment=100000)], as_of="2025-12-28")
    with world.engine.connect() as conn:
        dated = {e.reference_id: e.business_date for e in ledger.iter_entries(conn)}
        moves = {t.to_status: t.business_date
                 for t in ledger.history(conn, "reward:base:r1:referee")}
    assert dated["reward:base:r1:referee"] == date(2025, 12, 20)
    assert dated["reversal:reward:base:r1:referee"] == date(2025, 12, 28)
    assert dated["reward:base:r1:referee#2"] == date(2025, 12, 28)
    assert moves == {"pending": date(2025, 12, 20), "reversed": date(2025, 12, 28)}
