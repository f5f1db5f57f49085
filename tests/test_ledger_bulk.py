"""The ledger's bulk paths (settlement's): awkward text round-trips, lookups, LIMIT totals.

On PostgreSQL entries go in by COPY; quotes, backslashes, braces, commas, tabs and the
word NULL must come back exactly, with the hash chain intact.
"""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from settlement import ledger as L
from settlement.tables import ledger_entries

AWKWARD = ['a"b\\c,{}', "NULL", "null", " sp ace ", "é₹\t", "x'y", "{1,2}"]


def test_bulk_post_round_trips_awkward_text(ledger_engine) -> None:
    requests = [
        L.CreditRequest(f'u"{i}\\', 5 + i, "INR", ref, rule_id=None if i % 2 else 'R"{x}',
                        event_date=date(2026, 1, i + 1), referral_id=ref)
        for i, ref in enumerate(AWKWARD)
    ]
    with ledger_engine.connect() as conn:
        created = L.post_credits(conn, requests, actor='bench "a\\b"', run_id="NULL").created
        got = list(L.iter_entries(conn))
        assert got == created
        assert [(e.reference_id, e.user_id, e.amount, e.rule_id, e.referral_id, e.event_date)
                for e in got] == [(r.reference_id, r.user_id, r.amount, r.rule_id, r.referral_id,
                                   r.event_date) for r in requests]
        assert {e.actor for e in got} == {'bench "a\\b"'} and {e.run_id for e in got} == {"NULL"}
        assert L.verify(conn).ok
        assert L.existing_references(conn, [*AWKWARD[:3], "absent"]) == set(AWKWARD[:3])
        assert L.existing_references(conn, []) == set()


def test_a_reference_written_behind_the_lock_refuses_the_whole_post(ledger_engine) -> None:
    """The writers look references up under the ledger lock; one they did not see (passed
    as unknown) still meets the unique index, and the post writes nothing, on both
    databases (COPY has no ON CONFLICT: PostgreSQL refuses the statement)."""
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 500, "INR", "ref:taken")
        conn.commit()
        fresh = L.CreditRequest("u2", 700, "INR", "ref:fresh")
        taken = L.CreditRequest("u1", 500, "INR", "ref:taken")
        with pytest.raises(L.LedgerError, match="another writer added entries without the"
                                                " ledger lock; nothing was written"):
            L.post_credits(conn, [fresh, taken], actor="t", known={})
        conn.rollback()
        refs = conn.execute(sa.select(ledger_entries.c.reference_id)).scalars().all()
        assert refs == ["ref:taken"]
        assert L.verify(conn).ok


def test_credited_totals_probe_matches_per_user_sums(ledger_engine) -> None:
    requests = [
        L.CreditRequest(f"u{i % 7}", 100 + i, "INR" if i % 3 else "USD", f"r{i}", rule_id="R",
                        event_date=date(2026, 1 + i % 3, 1 + i % 27))
        for i in range(300)
    ]
    with ledger_engine.connect() as conn:
        L.post_credits(conn, requests, actor="t")
        L.reverse(conn, "r7", "refund", actor="t")
        users = [f"u{i}" for i in range(9)]
        feb, mar = date(2026, 2, 1), date(2026, 3, 1)
        got = L.credited_totals_many(conn, [("R", user, None, feb, mar) for user in users])
    want: dict[L.TotalsKey, dict[str, int]] = {("R", u, None, feb, mar): {} for u in users}
    for r in requests:
        if r.reference_id != "r7" and feb <= r.event_date < mar:
            key = ("R", r.user_id, None, feb, mar)
            want[key][r.currency] = want[key].get(r.currency, 0) + r.amount
    assert got == want


def test_credited_totals_many_matches_per_key_sums(ledger_engine) -> None:
    requests = [
        L.CreditRequest(f"u{i % 5}", 10 + i, "INR", f"m{i}", rule_id=f"R{i % 2}",
                        role=("referrer", "referee")[i % 3 % 2],
                        event_date=date(2026, 1 + i % 4, 1 + i % 20))
        for i in range(200)
    ]
    windows = [(date(2026, 1, 1), date(2026, 2, 1)), (date(2026, 2, 1), None), (None, None),
               (None, date(2026, 3, 1))]
    wanted = [(rule, f"u{u}", role, start, end) for rule in ("R0", "R1", "R9") for u in range(6)
              for role in (None, "referrer", "referee") for start, end in windows]
    with ledger_engine.connect() as conn:
        L.post_credits(conn, requests, actor="t")
        L.reverse(conn, "m3", "refund", actor="t")
        got = L.credited_totals_many(conn, wanted)
    # The oracle sums the requests in Python.
    want: dict[L.TotalsKey, dict[str, int]] = {key: {} for key in wanted}
    for rule, user, role, start, end in wanted:
        for r in requests:
            if (r.rule_id, r.user_id) == (rule, user) and r.reference_id != "m3" and (
                role is None or r.role == role) and (
                start is None or start <= r.event_date) and (end is None or r.event_date < end):
                key = (rule, user, role, start, end)
                want[key][r.currency] = want[key].get(r.currency, 0) + r.amount
    assert got == want
    assert any(got.values())
