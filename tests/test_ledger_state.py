"""Random operation sequences against a model oracle (hypothesis state machine).

After every step: each user's balances and the program balance equal the
model's, every currency's postings sum to zero, and ``verify`` finds nothing.
Runs on SQLite (a fresh copy of a migrated file per example) and PostgreSQL
(tables emptied per example with triggers bypassed by session_replication_role).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from settlement import ledger as L
from settlement.db import open_engine, upgrade
from settlement.ledger import CreditRequest, EntryNotFound, IdempotencyConflict, IllegalTransition

USERS = ["ann", "bob", "cy"]
REFS = ["a", "b", "c", "d", "e", "f"]
AMOUNTS = [1, 250, 50000, 999_999_999]
CURRENCIES = ["INR", "USD"]

users = st.sampled_from(USERS)
refs = st.sampled_from(REFS)
any_refs = st.sampled_from(REFS + [f"reversal:{r}" for r in REFS[:3]])
credits = st.tuples(refs, users, st.sampled_from(AMOUNTS), st.sampled_from(CURRENCIES))


class Ledger(RuleBasedStateMachine):
    """The subclass made per test sets ``fresh_engine``."""

    @staticmethod
    def fresh_engine() -> sa.Engine:
        raise NotImplementedError

    def __init__(self) -> None:
        super().__init__()
        self.engine = self.fresh_engine()
        self.conn = self.engine.connect()
        # ref -> [user, amount, currency, entry_type, status, paid_ever]
        self.model: dict[str, list] = {}

    def teardown(self) -> None:
        self.conn.close()
        if self.engine.dialect.name == "sqlite":
            self.engine.dispose()

    def _credit_payload_ok(self, ref: str, user: str, amount: int, currency: str) -> bool | None:
        """None: new; True: same payload exists; False: conflict."""
        if ref not in self.model:
            return None
        u, a, c, *_ = self.model[ref]
        return (u, a, c) == (user, amount, currency)

    @rule(credit=credits, confirmed=st.booleans())
    def post_credit(self, credit, confirmed: bool) -> None:
        ref, user, amount, currency = credit
        status = "confirmed" if confirmed else "pending"
        known = self._credit_payload_ok(ref, user, amount, currency)
        if known is False:
            with pytest.raises(IdempotencyConflict):
                L.post_credit(self.conn, user, amount, currency, ref, status=status)
            return
        result = L.post_credit(self.conn, user, amount, currency, ref, status=status)
        assert result.created is (known is None)
        if known is None:
            self.model[ref] = [user, amount, currency, "credit", status, False]
        assert result.entry.status == self.model[ref][4]

    @rule(batch=st.lists(credits, min_size=1, max_size=4))
    def post_credits(self, batch) -> None:
        seen: dict[str, tuple] = {}
        conflict = False
        for ref, user, amount, currency in batch:
            if self._credit_payload_ok(ref, user, amount, currency) is False:
                conflict = True
            if seen.setdefault(ref, (user, amount, currency)) != (user, amount, currency):
                conflict = True
        requests = [CreditRequest(u, a, c, r) for r, u, a, c in batch]
        if conflict:
            with pytest.raises(IdempotencyConflict):
                L.post_credits(self.conn, requests, actor="sm")
            return
        result = L.post_credits(self.conn, requests, actor="sm")
        new = [r for r in seen if r not in self.model]
        assert [e.reference_id for e in result.created] == new
        for ref in new:
            self.model[ref] = [*seen[ref], "credit", "pending", False]

    def _move(self, ref: str, to_status: str, allowed_from: str) -> None:
        entry = self.model.get(ref)
        fn = L.confirm if to_status == "confirmed" else L.pay
        if entry is None:
            with pytest.raises(EntryNotFound):
                fn(self.conn, ref)
        elif entry[4] == to_status:
            assert fn(self.conn, ref).changed is False
        elif entry[3] == "credit" and entry[4] == allowed_from:
            assert fn(self.conn, ref).changed is True
            entry[4] = to_status
            entry[5] = entry[5] or to_status == "paid"
        else:
            with pytest.raises(IllegalTransition):
                fn(self.conn, ref)

    @rule(ref=any_refs)
    def confirm(self, ref: str) -> None:
        self._move(ref, "confirmed", "pending")

    @rule(ref=any_refs)
    def pay(self, ref: str) -> None:
        self._move(ref, "paid", "confirmed")

    @rule(ref=any_refs)
    def reverse(self, ref: str) -> None:
        entry = self.model.get(ref)
        if entry is None:
            with pytest.raises(EntryNotFound):
                L.reverse(self.conn, ref, "sm")
            return
        if entry[3] == "debit":
            with pytest.raises(IllegalTransition):
                L.reverse(self.conn, ref, "sm")
            return
        key = f"reversal:{ref}"
        result = L.reverse(self.conn, ref, "sm")
        assert result.created is (key not in self.model)
        assert result.entry.reference_id == key
        if key not in self.model:
            self.model[key] = [entry[0], -entry[1], entry[2], "debit", "confirmed", False]
            entry[4] = "reversed"

    @invariant()
    def balances_match_model(self) -> None:
        expected: dict[str, dict[str, dict[str, int]]] = defaultdict(dict)
        program: dict[str, int] = defaultdict(int)
        for user, amount, currency, entry_type, status, paid in self.model.values():
            b = expected[user].setdefault(
                currency, {"pending": 0, "confirmed": 0, "paid": 0, "reversed": 0, "net": 0}
            )
            if entry_type == "credit":
                b[status] += amount
            b["net"] += amount - (amount if paid else 0)
            program[currency] -= amount
        for user in USERS:
            got = {cur: b.as_json() for cur, b in L.balance(self.conn, user).items()}
            assert got == expected.get(user, {}), user
        assert L.program_balance(self.conn) == dict(sorted(program.items()))

    @invariant()
    def postings_sum_to_zero_and_verify(self) -> None:
        sums = self.conn.execute(
            sa.text("SELECT currency, SUM(amount) FROM ledger_postings GROUP BY currency")
        ).all()
        assert all(int(total) == 0 for _, total in sums)
        report = L.verify(self.conn)
        assert report.ok, report.problems
        assert report.checked == len(self.model)
        self.conn.rollback()  # end the read transaction (SQLite: release the write lock)


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def sqlite_factory(tmp_path: Path):
    template = tmp_path / "template.db"
    upgrade(f"sqlite:///{template}")
    counter = iter(range(10**6))

    def fresh() -> sa.Engine:
        path = tmp_path / f"example{next(counter)}.db"
        shutil.copy(template, path)
        return open_engine(f"sqlite:///{path}")

    return fresh


def postgresql_factory(url: str):
    engine = open_engine(url)
    upgrade(engine)

    def fresh() -> sa.Engine:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL session_replication_role = replica"))
            conn.execute(sa.text(
                "TRUNCATE ledger_postings, ledger_transitions, ledger_entries, payout_covers,"
                " payout_items, payout_batches, payees, liability_days, ledger_operations"
                " RESTART IDENTITY"
            ))
        return engine

    return fresh, engine


def test_ledger_state_machine_sqlite(tmp_path) -> None:
    fresh = sqlite_factory(tmp_path)
    machine = type("SqliteLedger", (Ledger,), {"fresh_engine": staticmethod(fresh)})
    run_state_machine_as_test(machine, settings=SETTINGS)


def test_ledger_state_machine_postgresql(pg_url) -> None:
    fresh, engine = postgresql_factory(pg_url)
    machine = type("PgLedger", (Ledger,), {"fresh_engine": staticmethod(fresh)})
    try:
        run_state_machine_as_test(machine, settings=SETTINGS)
    finally:
        engine.dispose()
