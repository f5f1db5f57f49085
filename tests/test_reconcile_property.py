"""Reconciliation as a property: however versioned snapshots arrive, the standing ledger is
what settling only each referral's newest snapshot once would give (SQLite and PostgreSQL).

Each example draws referrals with several versioned snapshots (refunds only ever stay
refunded, as in life: REVERSE IF is terminal), shuffles them, splits them into runs and
settles run after run into one database, and settles the newest snapshot of each referral
once into another.  Per (rule, referral, role) the beneficiary and amount that stand must
be equal, and the statuses too (every run has the same as-of date).  With a LIMIT the same
must hold for any delivery that keeps each beneficiary's grants in the oracle's order: the
snapshots of each referral together, referrals in the oracle's order.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.program import load_program
from settlement import ledger
from settlement.audit import verify_settlement
from settlement.batch import settle
from settlement.db import open_engine, upgrade
from settlement.records import read_records
from tests.conftest import _reset_pg_schema

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

RULE base "₹100 and 10% of the payment"
  PRIORITY 10
  IF referee.subscribed
  THEN ISSUE ₹100 TO referrer
  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹1,500
  HOLD 14 DAYS
  REVERSE IF referee.refunded = true
"""
LIMITED = PROGRAM.replace(
    "  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹1,500\n",
    "  AND ISSUE 10% OF referee.first_payment TO referee UP TO ₹1,500\n"
    "  LIMIT ₹1,200 PER person PER MONTH\n")
AS_OF = date(2026, 1, 20)


@st.composite
def snapshots(draw: st.DrawFn) -> list[dict[str, Any]]:
    """One referral's snapshots, versions 1..n, in version order."""
    rid = draw(st.sampled_from(["r1", "r2", "r3", "r4", "r5"]))
    out: list[dict[str, Any]] = []
    refunded = False
    for version in range(1, draw(st.integers(1, 4)) + 1):
        refunded = refunded or draw(st.integers(0, 3)) == 0
        out.append({
            "referral_id": rid, "version": version,
            "referral": {"created_at": draw(st.sampled_from(
                ["2026-01-01", "2026-01-15", "2026-01-31T22:00:00-05:00"]))},
            "referrer": {"id": draw(st.sampled_from(["A", "B"]))},
            "referee": {"id": draw(st.sampled_from(["X", "Y", "A"])),
                        "subscribed": draw(st.booleans()),
                        "first_payment": draw(st.sampled_from(
                            [0, 300000, 700000, 999999, 1000000, 2500000])),
                        "refunded": refunded},
        })
    return out


def referral_sets() -> st.SearchStrategy[list[list[dict[str, Any]]]]:
    return st.lists(snapshots(), min_size=1, max_size=4,
                    unique_by=lambda s: s[0]["referral_id"])


class Database:
    def __init__(self, url: str, tmp: Path, name: str) -> None:
        if url.startswith("sqlite"):
            path = tmp / f"{name}.db"
            path.unlink(missing_ok=True)
            url = f"sqlite:///{path}"
        else:
            _reset_pg_schema(url)
        upgrade(url)
        self.engine = open_engine(url)
        self.tmp = tmp
        self.runs = 0

    def settle(self, program: Any, records: list[dict[str, Any]]) -> None:
        self.runs += 1
        path = self.tmp / f"run{self.runs}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
        with self.engine.connect() as conn:
            settle(conn, program, read_records(str(path)), as_of=AS_OF, input_name=str(path))

    def standing(self) -> dict[tuple[str, str, str], tuple[str, int, frozenset[str]]]:
        out: dict[tuple[str, str, str], tuple[str, int, frozenset[str]]] = {}
        with self.engine.connect() as conn:
            assert ledger.verify(conn).ok
            assert verify_settlement(conn) == []
            for e in ledger.iter_entries(conn):
                if e.entry_type != "credit" or e.status == "reversed":
                    continue
                key = (str(e.rule_id), str(e.referral_id), str(e.role))
                user, amount, statuses = out.get(key, (e.user_id, 0, frozenset()))
                assert user == e.user_id, key
                out[key] = (user, amount + e.amount, statuses | {e.status})
        return out

    def close(self) -> None:
        self.engine.dispose()


def _program(tmp: Path, text: str) -> Any:
    folder = tmp / ("limited" if "LIMIT" in text else "plain")
    folder.mkdir(exist_ok=True)
    (folder / "p.rule").write_text(text, encoding="utf-8")
    return load_program([folder]).program


def _split(items: list[Any], cuts: list[int]) -> list[list[Any]]:
    bounds = sorted({c % (len(items) + 1) for c in cuts} | {0, len(items)})
    return [items[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def _check(url: str, tmp: Path, text: str, delivered: list[dict[str, Any]],
           newest: list[dict[str, Any]], cuts: list[int]) -> None:
    program = _program(tmp, text)
    runs = Database(url, tmp, "runs")
    oracle = Database(url, tmp, "oracle")
    try:
        for part in _split(delivered, cuts):
            runs.settle(program, part)
        got = runs.standing()
        runs.settle(program, delivered)  # a rerun of everything changes nothing
        assert runs.standing() == got
        oracle.settle(program, newest)
        assert got == oracle.standing()
    finally:
        runs.close()
        oracle.close()


def _examples(url: str) -> int:
    """PROPERTY_EXAMPLES=n explores further (n on SQLite, n/3 on PostgreSQL)."""
    n = int(os.environ.get("PROPERTY_EXAMPLES", "40"))
    return n if url.startswith("sqlite") else max(n // 3, 1)


def test_any_delivery_settles_to_the_newest_snapshots(db_url: str, tmp_path: Path) -> None:
    @settings(max_examples=_examples(db_url), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(referral_sets(), st.randoms(use_true_random=False),
           st.lists(st.integers(0, 20), max_size=3))
    def check(referrals: list[list[dict[str, Any]]], rnd: Any, cuts: list[int]) -> None:
        delivered = [s for snaps in referrals for s in snaps]
        rnd.shuffle(delivered)
        _check(db_url, tmp_path, PROGRAM, delivered, [s[-1] for s in referrals], cuts)

    check()


def test_with_a_limit_a_delivery_in_grant_order_settles_the_same(db_url: str,
                                                                 tmp_path: Path) -> None:
    @settings(max_examples=_examples(db_url), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture,
                                     HealthCheck.too_slow])
    @given(referral_sets(), st.randoms(use_true_random=False),
           st.lists(st.integers(0, 20), max_size=3))
    def check(referrals: list[list[dict[str, Any]]], rnd: Any, cuts: list[int]) -> None:
        delivered = []
        for snaps in referrals:  # each referral's snapshots together, in any order
            block = list(snaps)
            rnd.shuffle(block)
            delivered += block
        _check(db_url, tmp_path, LIMITED, delivered, [s[-1] for s in referrals], cuts)

    check()
