"""A model-oracle state machine of the whole money path (SQLite and PostgreSQL).

Hypothesis drives one ledger through any interleaving of: new and changed versioned
referral snapshots (and old ones delivered again), settle runs with the as-of date
moving forward, hand credits and hand reversals (``ledger.post_credit`` under a
reference settlement does not own, ``ledger.reverse`` of rewards and hand credits),
approvals, and payout batches created, exported and completed (paid or failed).
After every step the ledger must agree with ``tests.faults.ledger_model``, a plain
Python model that evaluates each referral's newest settled snapshot with the DSL's
interpreter: the same reward credits stand (reference, beneficiary, amount), the same
hand credits, every person's net balance is what the model owes them, every currency's
postings sum to zero, and ``ledger.verify`` and ``verify_settlement`` find nothing.

The program has EXCLUSIVE tiers, HOLD, REVERSE IF and a LIMIT per person per month;
the model follows LIMIT's first-come-first-served order because it settles the very
records the run gets, in their input order.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from dsl.evaluate import compile_program
from dsl.program import load_program
from settlement import ledger, payouts
from settlement.audit import verify_settlement
from settlement.batch import settle
from settlement.db import open_engine, upgrade
from settlement.payees import import_payees
from settlement.records import read_records
from settlement.tables import ledger_postings
from tests.conftest import _reset_pg_schema
from tests.faults.ledger_model import HandCredit, Item, Model

pytestmark = pytest.mark.faults

PROGRAM = """\
CURRENCY INR
RULE gold "₹600 from ₹10,000"
  PRIORITY 20
  EXCLUSIVE
  IF referee.subscribed AND referee.first_payment >= ₹10,000
  THEN ISSUE ₹600 TO referrer
  REVERSE IF referee.refunded = true

RULE silver "₹500 from ₹5,000"
  PRIORITY 20
  EXCLUSIVE
  IF referee.subscribed AND referee.first_payment >= ₹5,000 AND referee.first_payment < ₹10,000
  THEN ISSUE ₹500 TO referrer
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true

RULE base "₹100 and 10% of the payment, at most ₹1,200 a person a month"
  PRIORITY 10
  IF referee.subscribed
  THEN ISSUE ₹100 TO referrer
  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹1,500
  LIMIT ₹1,200 PER person PER MONTH
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true
"""
REFERRALS = ["r1", "r2", "r3", "r4", "r5"]
REFERRERS, REFEREES = ["A", "B"], ["X", "Y", "A"]  # A is referrer and referee: PER person
PEOPLE = ["A", "B", "X", "Y", "H"]  # H only ever gets hand credits
PAYMENTS = [0, 300000, 700000, 999999, 1000000, 2500000]
# The last is 2026-02-01 in UTC, the program's zone: another LIMIT period.
CREATED = ["2026-01-01", "2026-01-15", "2026-01-31T22:00:00-05:00"]
START = date(2026, 1, 20)
STEPS = {"short": 25, "full": 50}
EXAMPLES = {"short": 10, "full": 80}  # on SQLite; PostgreSQL runs half as many


class LedgerMachine(RuleBasedStateMachine):
    """One ledger and its model; ``url``, ``tmp`` and ``stats`` are set per test."""

    url: ClassVar[str]
    tmp: ClassVar[Path]
    stats: ClassVar[Counter[str]]
    serial: ClassVar[itertools.count[int]]

    def __init__(self) -> None:
        super().__init__()
        n = next(self.serial)
        url = self.url
        if url.startswith("sqlite"):
            url = f"sqlite:///{self.tmp / f'machine{n}.db'}"
        else:
            _reset_pg_schema(url)
        upgrade(url)
        self.engine = open_engine(url)
        folder = self.tmp / "rules"
        folder.mkdir(exist_ok=True)
        (folder / "program.rule").write_text(PROGRAM, encoding="utf-8")
        self.program = load_program([folder]).program
        self.model = Model(self.program, compile_program(self.program, default_currency="INR"))
        payees = self.tmp / "payees.jsonl"
        payees.write_text("".join(
            json.dumps({"user_id": u, "method": "paypal", "email": f"{u}@example.com"}) + "\n"
            for u in PEOPLE))
        with self.engine.connect() as conn:
            import_payees(conn, payees, business_date=START, actor="machine")
        self.snapshots: dict[str, list[dict[str, Any]]] = {}
        self.as_of = START
        self.runs = self.hand_credits = 0
        self.batches: list[str] = []
        self.stats["examples"] += 1

    def teardown(self) -> None:
        self.engine.dispose()

    def write(self, fn: Any) -> Any:
        """``fn(conn)`` in one transaction of its own."""
        with self.engine.connect() as conn, conn.begin():
            return fn(conn)

    # -- facts and settle runs ---------------------------------------------------------

    def _snapshot(self, rid: str, referrer: str, referee: str, subscribed: bool, payment: int,
                  refunded: bool, created: str) -> dict[str, Any]:
        """A new referral, or a newer version of one (any field may change)."""
        versions = self.snapshots.setdefault(rid, [])
        versions.append({
            "referral_id": rid, "version": len(versions) + 1,
            "referral": {"created_at": created},
            "referrer": {"id": referrer},
            "referee": {"id": referee, "subscribed": subscribed, "first_payment": payment,
                        "refunded": refunded},
        })
        return versions[-1]

    @rule(data=st.data(), days=st.integers(0, 10))
    def settle_run(self, data: st.DataObject, days: int) -> None:
        """A run over new snapshots and old ones delivered again (a kept newer snapshot
        is what settles then), the as-of date moved forward."""
        records: list[dict[str, Any]] = []
        for _ in range(data.draw(st.integers(1, 4), label="records")):
            if self.snapshots and data.draw(st.integers(0, 3), label="again") == 0:
                rid = data.draw(st.sampled_from(sorted(self.snapshots)))
                records.append(data.draw(st.sampled_from(self.snapshots[rid])))
                self.stats["snapshots delivered again"] += 1
                continue
            records.append(self._snapshot(
                data.draw(st.sampled_from(REFERRALS), label="referral"),
                data.draw(st.sampled_from(REFERRERS), label="referrer"),
                data.draw(st.sampled_from(REFEREES), label="referee"),
                data.draw(st.booleans(), label="subscribed"),
                data.draw(st.sampled_from(PAYMENTS), label="payment"),
                data.draw(st.integers(0, 5), label="refunded") == 0,
                data.draw(st.sampled_from(CREATED), label="created")))
        self.as_of += timedelta(days=days)
        self.runs += 1
        path = self.tmp / f"run{self.runs}.jsonl"
        path.write_text("".join(json.dumps(s) + "\n" for s in records), encoding="utf-8")
        with self.engine.connect() as conn:
            summary = settle(conn, self.program, read_records(str(path)), as_of=self.as_of,
                             input_name=path.name)
        assert summary.records == len(records) and summary.quarantined == 0
        self.model.settle(records)
        self.stats["settle runs"] += 1
        self.stats["rewards capped by LIMIT"] += summary.capped

    # -- hand writes ---------------------------------------------------------------

    @rule(data=st.data())
    def hand_write(self, data: st.DataObject) -> None:
        """``ledger credit`` under a reference settlement does not own, or ``ledger
        reverse`` of a standing reward or hand credit (a paid one is clawed back)."""
        refs = sorted(r for r, _, _ in self.model.standing_rewards() | self.model.standing_hand())
        if refs and data.draw(st.booleans(), label="reverse"):
            ref = data.draw(st.sampled_from(refs), label="reference")
            self.write(lambda conn: ledger.reverse(conn, ref, "reversed by hand",
                                                   actor="machine", business_date=self.as_of))
            self.model.reverse_by_hand(ref)
            self.stats["hand reversals"] += 1
            return
        user = data.draw(st.sampled_from(PEOPLE), label="user")
        amount = data.draw(st.integers(1, 90000), label="amount")
        status = data.draw(st.sampled_from(["pending", "confirmed"]), label="status")
        self.hand_credits += 1
        ref = f"hand:{self.hand_credits}"
        self.write(lambda conn: ledger.post_credit(conn, user, amount, "INR", ref, status=status,
                                                   actor="machine", business_date=self.as_of))
        self.model.hand[ref] = HandCredit(user, amount)
        self.stats["hand credits"] += 1

    # -- approvals and payouts -------------------------------------------------------

    @rule(action=st.sampled_from(["pay out", "approve base", "pay out, first fails",
                                  "approve silver", "create", "export", "complete"]))
    def finance(self, action: str) -> None:
        """Approvals, and payout batches: created, exported, completed (in one go or not)."""
        self.stats[f"finance {action}"] += 1
        if action.startswith("approve"):
            rule_id = action.split()[1]
            moved = self.write(lambda conn: ledger.approve(
                conn, rule_id=rule_id, reason="checked by finance", approver="machine",
                business_date=self.as_of))
            self.stats["credits approved"] += len(moved)
        elif action.startswith("pay out"):
            self._create_batch()
            self._export()
            self._complete(fail_first=action.endswith("fails"))
        elif action == "create":
            self._create_batch()
        elif action == "export":
            self._export()
        else:
            self._complete(fail_first=False)

    def _create_batch(self) -> None:
        batch = self.write(lambda conn: payouts.create_batch(conn, as_of=self.as_of,
                                                             currency="INR", actor="machine"))
        if batch.batch_id not in self.batches:
            self.batches.append(batch.batch_id)
        for item in batch.items:
            assert item.amount > 0, item
            self.model.items.setdefault(item.item_id, Item(item.user_id, item.amount,
                                                           "created"))
        self.stats["payout items"] += len(batch.items) if batch.created else 0

    def _open(self, status: str) -> list[str]:
        return sorted(i for i, item in self.model.items.items() if item.status == status)

    def _export(self) -> None:
        for batch_id in self.batches:
            self.write(lambda conn, b=batch_id: payouts.export_batch(
                conn, b, "paypal", business_date=self.as_of, actor="machine"))
        for item_id in self._open("created"):
            self.model.items[item_id].status = "sent"

    def _complete(self, *, fail_first: bool) -> None:
        sent = self._open("sent")
        for batch_id in self.batches:
            mine = [i for i in sent if i.startswith(batch_id + "-")]
            if not mine:
                continue
            results = {i: payouts.Outcome("paid", None, 0) for i in mine}
            if fail_first:
                results[mine[0]] = payouts.Outcome("failed", "account closed", 0)
            self.write(lambda conn, b=batch_id, r=results: payouts.complete_batch(
                conn, b, r, business_date=self.as_of, actor="machine"))
            for item_id, outcome in results.items():
                self.model.items[item_id].status = outcome.status
                self.stats[f"payout items {outcome.status}"] += 1

    # -- the oracle ----------------------------------------------------------------

    @invariant()
    def ledger_agrees_with_the_model(self) -> None:
        self.stats["steps checked"] += 1
        with self.engine.connect() as conn:
            rewards, hand = set(), set()
            for e in ledger.iter_entries(conn):
                if e.entry_type != "credit" or e.status == "reversed":
                    continue
                (rewards if e.rule_id is not None else hand).add(
                    (e.reference_id, e.user_id, e.amount))
            model = self.model.standing_rewards()
            assert rewards == model, (
                f"rewards standing in the ledger, not in the model: {sorted(rewards - model)}; "
                f"in the model, not in the ledger: {sorted(model - rewards)}")
            assert hand == self.model.standing_hand()
            for user in sorted(self.model.users()):
                net = ledger.balance(conn, user).get("INR")
                assert (net.net if net else 0) == self.model.net(user), user
            sums = conn.execute(sa.select(ledger_postings.c.currency,
                                          sa.func.sum(ledger_postings.c.amount))
                                .group_by(ledger_postings.c.currency)).all()
            assert all(int(total) == 0 for _, total in sums), sums
            report = ledger.verify(conn, anchors=ledger.ledger_anchors(conn))
            assert report.ok, report.problems
            assert verify_settlement(conn) == []


def test_money_path_agrees_with_the_model_after_every_step(
    db_url: str, tmp_path: Path, scale: Any, figure: Any
) -> None:
    examples = EXAMPLES[scale.name] // (1 if db_url.startswith("sqlite") else 2)
    stats: Counter[str] = Counter()
    machine = type("Machine", (LedgerMachine,), {
        "url": db_url, "tmp": tmp_path, "stats": stats, "serial": itertools.count()})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=examples, stateful_step_count=STEPS[scale.name], deadline=None,
        database=None, suppress_health_check=list(HealthCheck)))
    backend = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    assert stats["settle runs"] > 0 and stats["hand reversals"] > 0
    figure(
        f"state machine ({backend}): {stats['examples']} ledgers, {stats['steps checked']:,} "
        f"steps checked against the model ({stats['settle runs']} settle runs, "
        f"{stats['snapshots delivered again']} old snapshots again, {stats['hand credits']} "
        f"hand credits, {stats['hand reversals']} hand reversals, "
        f"{stats['credits approved']} credits approved, {stats['payout items']} payout items "
        f"({stats['payout items paid']} paid, {stats['payout items failed']} failed), "
        f"{stats['rewards capped by LIMIT']} rewards capped by LIMIT): standing = "
        "entitlement, nets as the model, zero-sum, verify ok after every step"
    )


def test_a_shrinking_reward_moved_into_another_limit_period(db_url: str, tmp_path: Path) -> None:
    """Found by the machine: a referral whose date moves into another LIMIT period while
    its reward shrinks is moved there whole, which needs that period's LIMIT total; the
    run asked for none (a smaller reward "needs no room") and died with a KeyError."""
    machine = type("Machine", (LedgerMachine,), {
        "url": db_url, "tmp": tmp_path, "stats": Counter(), "serial": itertools.count()})()
    try:
        first = machine._snapshot("r3", "A", "Y", True, 1000000, False, "2026-01-15")
        moved = machine._snapshot("r3", "A", "Y", True, 300000, False, CREATED[2])
        for run, records in enumerate([[first], [moved]]):
            path = tmp_path / f"r{run}.jsonl"
            path.write_text("".join(json.dumps(s) + "\n" for s in records), encoding="utf-8")
            with machine.engine.connect() as conn:
                settle(conn, machine.program, read_records(str(path)), as_of=START,
                       input_name=path.name)
            machine.model.settle(records)
            machine.ledger_agrees_with_the_model()
        assert machine.model.standing_rewards() == {
            ("reward:base:r3:referee#2", "Y", 30000), ("reward:base:r3:referrer", "A", 10000)}
    finally:
        machine.teardown()
