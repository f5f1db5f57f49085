"""Payout batches on SQLite and PostgreSQL: netting, lifecycle, reruns, concurrency, verify."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from settlement import ledger
from settlement.errors import IllegalTransition, PayoutError
from settlement.payees import import_payees
from settlement.payouts import (
    complete_batch,
    create_batch,
    export_batch,
    get_batch,
    list_batches,
    read_results,
)
from settlement.tables import payout_covers

D1, D2, D3 = date(2026, 10, 31), date(2026, 11, 30), date(2026, 12, 31)


def payees_file(tmp_path: Path, *users: str, method: str = "paypal") -> Path:
    path = tmp_path / f"payees-{method}-{'-'.join(users)}.jsonl"
    rows = []
    for u in users:
        if method == "paypal":
            rows.append({"user_id": u, "method": "paypal", "email": f"{u}@example.com"})
        else:
            rows.append({"user_id": u, "method": "upi", "vpa": f"{u}@okhdfc"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@contextmanager
def tx(conn) -> Iterator[None]:
    """One transaction (ending the one a previous read began)."""
    if conn.in_transaction():
        conn.rollback()
    with conn.begin():
        yield


def credit(conn, user: str, rupees: int, ref: str, day: date, *, status: str = "confirmed"):
    return ledger.post_credit(conn, user, rupees * 100, "INR", ref, status=status,
                              business_date=day)


def verified(conn) -> None:
    report = ledger.verify(conn, anchors=ledger.ledger_anchors(conn))
    assert report.ok, report.problems


def net(conn, user: str) -> int:
    return ledger.balance(conn, user)["INR"].net


def pay_all(conn, batch_id: str, day: date) -> None:
    export_batch(conn, batch_id, "csv", business_date=day)
    complete_batch(conn, batch_id, business_date=day)


@pytest.fixture
def conn(ledger_engine, tmp_path):
    with ledger_engine.connect() as c:
        with tx(c):
            import_payees(c, payees_file(tmp_path, "u1", "u2", "u3", "u4"),
                          business_date=D1, actor="test")
        yield c


def test_netting_pays_what_is_left_after_clawback_debt(conn) -> None:
    """₹700 confirmed and ₹500 of debt: paid ₹200, net 0.  ₹100 and ₹500 of debt: paid
    nothing, net −₹400 (the ₹100 is set against the debt)."""
    with tx(conn):
        credit(conn, "u1", 500, "old1", D1)
        credit(conn, "u2", 500, "old2", D1)
    with tx(conn):
        first = create_batch(conn, as_of=D1, currency="INR")
        pay_all(conn, first.batch_id, D1)
    assert [(i.user_id, i.amount, i.status) for i in get_batch(conn, first.batch_id).items] == [
        ("u1", 50000, "paid"), ("u2", 50000, "paid")]
    with tx(conn):
        ledger.reverse(conn, "old1", "refund", business_date=D2)
        ledger.reverse(conn, "old2", "refund", business_date=D2)
        credit(conn, "u1", 700, "new1", D2)
        credit(conn, "u2", 100, "new2", D2)
    verified(conn)
    assert (net(conn, "u1"), net(conn, "u2")) == (20000, -40000)
    with tx(conn):
        batch = create_batch(conn, as_of=D2, currency="INR")
    assert batch.as_json() == {
        "batch_id": "2026-11-30-INR", "as_of": "2026-11-30", "currency": "INR",
        "status": "created", "total": 20000, "skipped": {"in_debt": 1},
        "items": [{"item_id": "2026-11-30-INR-000001", "user_id": "u1", "amount": 20000,
                   "status": "created"}],
    }
    verified(conn)
    with tx(conn):
        pay_all(conn, batch.batch_id, D2)
    verified(conn)
    assert (net(conn, "u1"), net(conn, "u2")) == (0, -40000)
    assert ledger.get_entry(conn, "new1").status == "paid"
    assert ledger.get_entry(conn, "new2").status == "confirmed"
    covered = conn.execute(sa.select(sa.func.count()).select_from(payout_covers).where(
        payout_covers.c.item_entry_id == batch.items[0].entry_id)).scalar()
    assert covered == 2  # new1 and reversal:old1, the debt it recovered


def test_a_failed_item_is_paid_by_the_next_batch(conn, tmp_path) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
        credit(conn, "u2", 200, "b", D1)
    with tx(conn):
        batch = create_batch(conn, as_of=D1, currency="INR")
        export_batch(conn, batch.batch_id, "csv", business_date=D1)
    results = tmp_path / "results.csv"
    results.write_text(f"item_id,status,reason\n{batch.items[0].item_id},failed,account closed\n"
                       f"{batch.items[1].item_id},Completed,\n")
    with tx(conn):
        done = complete_batch(conn, batch.batch_id, read_results(results), business_date=D1)
    assert (done.paid, done.failed, done.still_sent) == (1, 1, 0)
    verified(conn)
    assert ledger.get_entry(conn, "a").status == "confirmed"
    assert net(conn, "u1") == 30000 and net(conn, "u2") == 0
    with tx(conn):
        again = create_batch(conn, as_of=D2, currency="INR")
    assert [(i.user_id, i.amount) for i in again.items] == [("u1", 30000)]
    with tx(conn):
        pay_all(conn, again.batch_id, D2)
    verified(conn)
    assert ledger.get_entry(conn, "a").status == "paid" and net(conn, "u1") == 0


def test_a_batch_pays_only_what_was_confirmed_by_its_date(conn) -> None:
    """Posted on D1 and confirmed on D2, a credit is not payable as of D1 (nor is one
    posted on D2): the batch reads each credit's confirmation date."""
    with tx(conn):
        credit(conn, "u1", 300, "late-confirm", D1, status="pending")
        credit(conn, "u2", 200, "on-time", D1)
        credit(conn, "u3", 100, "late-post", D2)
        ledger.confirm(conn, "late-confirm", business_date=D2)
    with tx(conn):
        first = create_batch(conn, as_of=D1, currency="INR")
    assert [(i.user_id, i.amount) for i in first.items] == [("u2", 20000)]
    with tx(conn):
        second = create_batch(conn, as_of=D2, currency="INR")
    assert [(i.user_id, i.amount) for i in second.items] == [("u1", 30000), ("u3", 10000)]
    verified(conn)


def test_without_a_currency_a_batch_takes_the_only_one_credited(conn) -> None:
    with tx(conn), pytest.raises(PayoutError, match="holds credits in no currency"):
        create_batch(conn, as_of=D1)
    with tx(conn):
        credit(conn, "u1", 300, "rupees", D1)
    with tx(conn):
        batch = create_batch(conn, as_of=D1)
    assert (batch.currency, batch.total) == ("INR", 30000)
    with tx(conn):
        ledger.post_credit(conn, "u2", 500, "USD", "dollars", status="confirmed",
                           business_date=D1)
    with tx(conn), pytest.raises(PayoutError, match="give --currency: the ledger holds "
                                                    "credits in INR, USD"):
        create_batch(conn, as_of=D2)


def test_rerun_of_create_creates_nothing(conn) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
    with tx(conn):
        first = create_batch(conn, as_of=D1, currency="INR")
    head = ledger.head(conn)
    with tx(conn):
        second = create_batch(conn, as_of=D1, currency="INR")
    assert (first.created, second.created) == (True, False)
    assert second.as_json() == first.as_json()
    assert ledger.head(conn) == head
    with tx(conn), pytest.raises(PayoutError, match="exists with minimum 0, not 10000"):
        create_batch(conn, as_of=D1, currency="INR", min_amount=10000)
    verified(conn)


def test_skips_are_counted_by_reason(conn) -> None:
    with tx(conn):
        credit(conn, "u1", 50, "small", D1)
        credit(conn, "u9", 500, "nopayee", D1)
        credit(conn, "u3", 500, "held", D1, status="pending")
    with tx(conn):
        batch = create_batch(conn, as_of=D1, currency="INR", min_amount=10000)
    assert batch.skipped == {"below_minimum": 1, "no_payee": 1}
    assert batch.items == [] and batch.status == "empty"
    verified(conn)


def test_covered_credit_reversed_while_sent_becomes_debt_for_the_next_batch(conn) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
        credit(conn, "u1", 200, "b", D1)
    with tx(conn):
        batch = create_batch(conn, as_of=D1, currency="INR")
        export_batch(conn, batch.batch_id, "csv", business_date=D1)
    with tx(conn):  # settlement reverses a covered credit, and a new one arrives
        ledger.reverse(conn, "b", "refund", business_date=D2)
        credit(conn, "u1", 400, "c", D2)
    verified(conn)
    with tx(conn):
        blocked = create_batch(conn, as_of=D2, currency="INR")
    assert blocked.skipped == {"payout_in_flight": 1} and not blocked.items
    with tx(conn):
        complete_batch(conn, batch.batch_id, business_date=D2)
    verified(conn)
    assert [ledger.get_entry(conn, r).status for r in "abc"] == ["paid", "reversed", "confirmed"]
    assert net(conn, "u1") == 20000  # ₹400 new minus the ₹200 paid and clawed back
    with tx(conn):
        later = create_batch(conn, as_of=D3, currency="INR")
    assert [(i.user_id, i.amount) for i in later.items] == [("u1", 20000)]
    verified(conn)


def test_covered_credit_reversed_then_item_failed_leaves_no_debt(conn, tmp_path) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
        credit(conn, "u1", 200, "b", D1)
    with tx(conn):
        batch = create_batch(conn, as_of=D1, currency="INR")
        export_batch(conn, batch.batch_id, "paypal", business_date=D1)
        ledger.reverse(conn, "b", "refund", business_date=D1)
    results = tmp_path / "r.csv"
    results.write_text(f"Customer ID,Status\n{batch.items[0].item_id},Returned\n")
    with tx(conn):
        complete_batch(conn, batch.batch_id, read_results(results), business_date=D2)
    verified(conn)
    assert net(conn, "u1") == 30000 and ledger.get_entry(conn, "a").status == "confirmed"


def test_ledger_pay_refuses_a_credit_in_an_open_item(conn) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
    with tx(conn):
        batch = create_batch(conn, as_of=D1, currency="INR")
    with tx(conn), pytest.raises(IllegalTransition, match="covered by payout item"):
        ledger.pay(conn, "a")
    assert batch.items[0].status == "created"


def test_export_in_another_format_is_refused_and_same_format_repeats(conn) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
        batch = create_batch(conn, as_of=D1, currency="INR")
        first = export_batch(conn, batch.batch_id, "paypal", business_date=D1)
        again = export_batch(conn, batch.batch_id, "paypal", business_date=D1)
    assert first.text == again.text == (
        "u1@example.com,300.00,INR,2026-10-31-INR-000001,Referral rewards 2026-10-31-INR,"
        "PAYPAL\n")
    assert (first.marked_sent, again.marked_sent) == (1, 0)
    with tx(conn), pytest.raises(PayoutError, match="exported as paypal already"):
        export_batch(conn, batch.batch_id, "csv", business_date=D1)


def test_batches_go_forward_and_results_name_unknown_items(conn, tmp_path) -> None:
    with tx(conn):
        credit(conn, "u1", 300, "a", D1)
        batch = create_batch(conn, as_of=D2, currency="INR")
    with tx(conn), pytest.raises(PayoutError, match="dated after 2026-10-31"):
        create_batch(conn, as_of=D1, currency="INR")
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,status\nnope,paid\n")
    with tx(conn), pytest.raises(PayoutError, match="line 2: item nope is not in batch"):
        complete_batch(conn, batch.batch_id, read_results(bad))
    unknown = tmp_path / "unknown.csv"
    unknown.write_text(f"item_id,status\n{batch.items[0].item_id},lost\n")
    with pytest.raises(PayoutError, match=r"unknown.csv:2: status: unknown status 'lost'"):
        read_results(unknown)
    assert [b.batch_id for b in list_batches(conn)] == ["2026-11-30-INR"]


def _create_in_process(url: str, as_of: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "referral", "payout", "create", "--as-of", as_of,
         "--currency", "INR", "--json", "--db", url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_concurrent_creates_in_processes_never_pay_twice(ledger_engine, db_url, tmp_path):
    with ledger_engine.connect() as conn, tx(conn):
        import_payees(conn, payees_file(tmp_path, *(f"u{i}" for i in range(40))),
                      business_date=D1, actor="test")
        ledger.post_credits(conn, [ledger.CreditRequest(f"u{i}", 100 + i, "INR", f"r{i}",
                                                        "confirmed") for i in range(40)],
                            actor="test", business_date=D1)
    url = db_url.replace("postgresql+psycopg://", "postgresql://")
    procs = [_create_in_process(url, day) for day in
             ("2026-11-30", "2026-11-30", "2026-12-31", "2026-12-31")]
    outputs = [p.communicate(timeout=120) for p in procs]
    # The December batch may commit first: then November's is refused (batches go forward).
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0 or (p.returncode == 1 and "dated after" in err), err
    batches = [json.loads(out) for p, (out, _) in zip(procs, outputs, strict=True)
               if p.returncode == 0]
    with ledger_engine.connect() as conn:
        verified(conn)
        paid = [i.user_id for b in list_batches(conn) for i in b.items]
    assert sorted(paid) == sorted(f"u{i}" for i in range(40))  # each person once
    by_id = {b["batch_id"]: b for b in batches}
    assert all(b == by_id[b["batch_id"]] for b in batches)  # a rerun answers the same batch
