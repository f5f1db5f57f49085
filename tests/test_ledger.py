"""The ledger library on SQLite and PostgreSQL: idempotency, transitions, reversals, balances."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa

from settlement import ledger as L
from settlement.errors import LedgerError
from settlement.ledger import (
    CreditRequest,
    EntryNotFound,
    IdempotencyConflict,
    IllegalTransition,
)
from settlement.tables import ledger_entries
from tests.tampering import disable_append_only


@pytest.fixture
def conn(ledger_engine):
    with ledger_engine.connect() as conn:
        yield conn


def bal(conn, user: str) -> dict:
    return {cur: b.as_json() for cur, b in L.balance(conn, user).items()}


def test_post_credit_creates_pending_then_returns_existing_on_retry(conn) -> None:
    first = L.post_credit(conn, "u1", 50000, "INR", "r1")
    retries = [L.post_credit(conn, "u1", 50000, "INR", "r1") for _ in range(3)]
    assert first.created and first.entry.status == "pending"
    assert [r.created for r in retries] == [False, False, False]
    assert {r.entry for r in retries} == {first.entry}
    assert len(list(L.iter_entries(conn))) == 1
    assert bal(conn, "u1") == {
        "INR": {"pending": 50000, "confirmed": 0, "paid": 0, "reversed": 0, "net": 50000}
    }


def test_post_credit_confirmed_when_asked(conn) -> None:
    assert L.post_credit(conn, "u1", 100, "USD", "r1", status="confirmed").entry.status == (
        "confirmed"
    )


@pytest.mark.parametrize(
    ("user", "amount", "currency", "requested"),
    [
        ("u1", 60000, "INR", "user u1, ₹600 credit"),
        ("u2", 50000, "INR", "user u2, ₹500 credit"),
        ("u1", 50000, "USD", "user u1, $500 credit"),
    ],
)
def test_post_credit_conflict_names_both_payloads(conn, user, amount, currency, requested) -> None:
    L.post_credit(conn, "u1", 50000, "INR", "r1")
    with pytest.raises(IdempotencyConflict) as err:
        L.post_credit(conn, user, amount, currency, "r1")
    assert str(err.value) == (
        "idempotency conflict on reference 'r1': existing entry is user u1, ₹500 credit, "
        f"requested {requested}"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"amount": 0}, "credit 'r1': amount must be a positive number of minor units, got 0"),
        ({"amount": -5}, "credit 'r1': amount must be a positive number of minor units, got -5"),
        ({"currency": "XXX"}, "credit 'r1': unknown currency 'XXX'"),
        ({"reference_id": "reversal:x"}, "reference 'reversal:x' is reserved"),
        ({"reference_id": ""}, "a ledger entry needs a non-empty reference"),
        ({"user_id": ""}, "credit 'r1' needs a user id"),
        ({"status": "paid"}, "a new credit is pending or confirmed, not 'paid'"),
    ],
)
def test_post_credit_invalid_input_refused(conn, kwargs, message) -> None:
    args = {"user_id": "u1", "amount": 100, "currency": "INR", "reference_id": "r1"} | kwargs
    status = args.pop("status", "pending")
    with pytest.raises(LedgerError, match=message.replace("(", r"\(")):
        L.post_credit(conn, **args, status=status)
    assert list(L.iter_entries(conn)) == []


SETUP = {
    "pending": [],
    "confirmed": ["confirm"],
    "paid": ["confirm", "pay"],
    "reversed": ["reverse"],
}


def act(conn, action: str, ref: str):
    if action == "reverse":
        return L.reverse(conn, ref, "test")
    return getattr(L, action)(conn, ref)


@pytest.mark.parametrize(
    ("state", "action", "outcome"),
    [
        ("pending", "confirm", "changed: pending -> confirmed"),
        ("pending", "pay",
         "refused: entry 'r1' is pending; pending -> paid refused (confirm it first)"),
        ("pending", "reverse", "created"),
        ("confirmed", "confirm", "same: no change: already confirmed"),
        ("confirmed", "pay", "changed: confirmed -> paid"),
        ("confirmed", "reverse", "created"),
        ("paid", "confirm",
         "refused: entry 'r1' is paid; paid -> confirmed refused (not an allowed transition)"),
        ("paid", "pay", "same: no change: already paid"),
        ("paid", "reverse", "created"),
        ("reversed", "confirm",
         "refused: entry 'r1' is reversed; reversed -> confirmed refused"
         " (a reversed entry is final)"),
        ("reversed", "pay",
         "refused: entry 'r1' is reversed; reversed -> paid refused (a reversed entry is final)"),
        ("reversed", "reverse", "existing"),
    ],
)
def test_transition_table_on_credit(conn, state, action, outcome) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    for step in SETUP[state]:
        act(conn, step, "r1")
    before = L.history(conn, "r1")
    if outcome.startswith("refused: "):
        with pytest.raises(IllegalTransition) as err:
            act(conn, action, "r1")
        assert str(err.value) == outcome.removeprefix("refused: ")
        assert L.history(conn, "r1") == before
        return
    result = act(conn, action, "r1")
    if action == "reverse":
        assert result.created is (outcome == "created")
        assert result.entry.reference_id == "reversal:r1"
        assert L.get_entry(conn, "r1").status == "reversed"
        return
    kind, message = outcome.split(": ", 1)
    assert (result.changed, result.message) == (kind == "changed", message)
    assert len(L.history(conn, "r1")) == len(before) + (kind == "changed")


@pytest.mark.parametrize(
    ("action", "outcome"),
    [
        ("confirm", "same: no change: already confirmed"),
        ("pay", "refused: entry 'reversal:r1' is confirmed; confirmed -> paid refused "
                "(reversal entries are final)"),
        ("reverse", "refused: entry 'reversal:r1' is a reversal (confirmed); "
                    "reversing a reversal is refused"),
    ],
)
def test_transition_table_on_reversal_debit(conn, action, outcome) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    L.reverse(conn, "r1", "refund")
    if outcome.startswith("refused: "):
        with pytest.raises(IllegalTransition) as err:
            act(conn, action, "reversal:r1")
        assert str(err.value) == outcome.removeprefix("refused: ")
    else:
        result = act(conn, action, "reversal:r1")
        assert (result.changed, result.message) == (False, "no change: already confirmed")
    assert L.get_entry(conn, "reversal:r1").status == "confirmed"
    assert L.verify(conn).ok


@pytest.mark.parametrize("action", ["confirm", "pay", "reverse"])
def test_transition_unknown_reference_refused(conn, action) -> None:
    with pytest.raises(EntryNotFound, match="no ledger entry with reference 'nope'"):
        act(conn, action, "nope")


def test_transition_many_to_reversed_points_at_reverse(conn) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    with pytest.raises(LedgerError, match="use reverse"):
        L.transition_many(conn, ["r1"], "reversed", actor="t")


def test_reverse_twice_returns_the_same_reversal(conn) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    first = L.reverse(conn, "r1", "refund")
    again = L.reverse(conn, "r1", "refund again")
    assert (first.created, again.created) == (True, False)
    assert first.entry == again.entry
    assert (first.entry.amount, first.entry.entry_type, first.entry.reversal_id) == (
        -100, "debit", "r1",
    )
    assert len(list(L.iter_entries(conn))) == 2
    assert [(t.from_status, t.to_status, t.reason) for t in L.history(conn, "r1")] == [
        (None, "pending", None),
        ("pending", "reversed", "refund"),
    ]


def test_reverse_needs_a_reason(conn) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    with pytest.raises(LedgerError, match="a reversal needs a reason"):
        L.reverse(conn, "r1", " ")


def test_clawback_of_paid_entry_makes_net_negative(conn) -> None:
    L.post_credit(conn, "u1", 50000, "INR", "r1")
    L.confirm(conn, "r1")
    L.pay(conn, "r1")
    assert bal(conn, "u1") == {
        "INR": {"pending": 0, "confirmed": 0, "paid": 50000, "reversed": 0, "net": 0}
    }
    L.reverse(conn, "r1", "fraud")
    assert bal(conn, "u1") == {
        "INR": {"pending": 0, "confirmed": 0, "paid": 0, "reversed": 50000, "net": -50000}
    }
    assert L.program_balance(conn) == {"INR": 0}
    assert L.verify(conn).ok


def test_balance_per_currency_and_program(conn) -> None:
    L.post_credit(conn, "u1", 100, "INR", "a")
    L.post_credit(conn, "u1", 200, "USD", "b", status="confirmed")
    L.post_credit(conn, "u2", 300, "INR", "c")
    assert bal(conn, "u1") == {
        "INR": {"pending": 100, "confirmed": 0, "paid": 0, "reversed": 0, "net": 100},
        "USD": {"pending": 0, "confirmed": 200, "paid": 0, "reversed": 0, "net": 200},
    }
    assert bal(conn, "nobody") == {}
    assert L.program_balance(conn) == {"INR": -400, "USD": -200}


def test_entry_hash_recomputes_after_read_back(conn) -> None:
    posted = L.post_credit(
        conn, "u1", 100, "INR", "r1", rule_id="rule", rule_hash="h", referral_id="ref",
        role="referrer", event_date=date(2026, 1, 2), hold_until=date(2026, 1, 9),
    ).entry
    read = L.get_entry(conn, "r1")
    assert read == posted
    assert read.timestamp.tzinfo is not None and read.timestamp.utcoffset().total_seconds() == 0
    assert L.entry_hash(read.__dict__) == read.hash
    assert read.prev_hash == L.GENESIS_HASH


def _entry_hash_as_written_first(row) -> str:
    """The chain's hash as the first version wrote it: ``json.dumps`` with sorted keys."""
    import hashlib
    import json

    from settlement.ledger.hashing import HASHED_COLUMNS, HASHED_WHEN_SET, canonical

    content = {name: canonical(row[name]) for name in HASHED_COLUMNS
               if name not in HASHED_WHEN_SET or row[name] is not None}
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("text", ['a"b\\c', "é₹\t\n", "\u2028x", "", "NULL", "0"])
def test_entry_hash_is_the_chains_first_encoding(conn, text) -> None:
    """Old ledgers keep verifying: the shared encoder writes byte for byte what json.dumps
    with sorted keys wrote, for awkward text, dates, NULLs and the columns added later."""
    posted = L.post_credit(
        conn, f"u{text}", 7, "INR", f"r{text}", rule_id=text or None, rule_hash=text,
        referral_id=text, role="referrer", event_date=date(2026, 1, 2),
    ).entry
    for row in (posted.__dict__, {**posted.__dict__, "adjusts": None, "business_date": None,
                                  "op_id": None}, {**posted.__dict__, "adjusts": text}):
        assert L.entry_hash(row) == _entry_hash_as_written_first(row)
    assert L.entry_hash(posted.__dict__) == posted.hash


def test_writes_join_the_callers_transaction(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        with conn.begin() as tx:
            L.post_credit(conn, "u1", 100, "INR", "r1")
            L.reverse(conn, "r1", "oops")
            tx.rollback()
        assert L.get_entry(conn, "r1") is None
        conn.rollback()
        with conn.begin():
            L.post_credit(conn, "u1", 100, "INR", "r1")
    with ledger_engine.connect() as conn:
        assert L.get_entry(conn, "r1").status == "pending"


def test_write_opens_and_commits_its_own_transaction(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 100, "INR", "r1")
        assert not conn.in_transaction()
    with ledger_engine.connect() as conn:
        assert L.get_entry(conn, "r1") is not None


# -- append-only, enforced by the database --------------------------------

CHANGES = {
    "ledger_entries": "UPDATE ledger_entries SET user_id = 'thief'",
    "ledger_transitions": "UPDATE ledger_transitions SET to_status = 'paid'",
    "ledger_postings": "UPDATE ledger_postings SET amount = amount * 2",
}


@pytest.mark.parametrize("table", sorted(CHANGES))
@pytest.mark.parametrize("verb", ["UPDATE", "DELETE"])
def test_append_only_refused_by_database(ledger_engine, table, verb) -> None:
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 100, "INR", "r1")
        L.confirm(conn, "r1")
        L.pay(conn, "r1")
    sql = CHANGES[table] if verb == "UPDATE" else f"DELETE FROM {table}"
    with pytest.raises(sa.exc.DBAPIError, match=f"ledger is append-only: {verb} on {table}"):
        with ledger_engine.begin() as conn:
            conn.execute(sa.text(sql))
    with ledger_engine.connect() as conn:
        assert L.verify(conn).ok
        assert L.get_entry(conn, "r1").status == "paid"


def test_truncate_refused_on_postgresql(pg_url) -> None:
    from settlement.db import open_engine, upgrade

    engine = open_engine(pg_url)
    upgrade(engine)
    with pytest.raises(sa.exc.DBAPIError, match="ledger is append-only: TRUNCATE"):
        with engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE ledger_postings"))
    engine.dispose()


def test_verify_names_hand_edited_row(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        for i in range(1, 4):
            L.post_credit(conn, f"u{i}", 100 * i, "INR", f"r{i}")
    with ledger_engine.begin() as conn:
        disable_append_only(conn, "UPDATE", ("ledger_entries",))
        conn.execute(sa.text("UPDATE ledger_entries SET actor = 'x' WHERE reference_id = 'r2'"))
    with ledger_engine.connect() as conn:
        report = L.verify(conn)
    assert (report.ok, report.checked) == (False, 3)
    assert report.problems[0] == (
        "entry id=2 reference 'r2': hash mismatch (the row was changed after it was written)"
    )
    # ... and the operation that wrote it no longer matches its seal.
    assert [p.split(": ", 1)[1] for p in report.problems[1:]] == [
        "ledger_entries rows differ from what it wrote (a row was changed)"
    ]


def test_verify_catches_edit_with_recomputed_hash_by_the_chain(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        for i in range(1, 4):
            L.post_credit(conn, "u1", 100 * i, "INR", f"r{i}")
        row = dict(conn.execute(sa.select(ledger_entries).where(ledger_entries.c.id == 2))
                   .mappings().one())
    row["user_id"] = "thief"
    forged = L.entry_hash(row)
    with ledger_engine.begin() as conn:
        disable_append_only(conn, "UPDATE", ("ledger_entries",))
        conn.execute(
            sa.text("UPDATE ledger_entries SET user_id = 'thief', hash = :h WHERE id = 2"),
            {"h": forged},
        )
    with ledger_engine.connect() as conn:
        problems = L.verify(conn).problems
    assert problems[:2] == [
        "entry id=2 reference 'r2': postings do not match the entry and its transitions",
        "entry id=3 reference 'r3': prev_hash does not match the previous row's hash"
        " (a row was removed, inserted or reordered)",
    ]


def test_verify_catches_a_reversed_status_appended_without_its_reversal(ledger_engine) -> None:
    """Appending rows is allowed by the triggers; verify must still see the forged status."""
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 100, "INR", "r1", status="confirmed")
        conn.commit()
    with ledger_engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ledger_transitions (entry_id, from_status, to_status, at, actor) "
            "VALUES (1, 'confirmed', 'reversed', CURRENT_TIMESTAMP, 'forger')"
        ))
    with ledger_engine.connect() as conn:
        problems = L.verify(conn).problems
    assert problems == [
        "ledger_transitions row id=2: has no operation id (not written by a command)",
        "entry reference 'r1': reversed but has no reversal entry",
    ]


def test_verify_catches_a_removed_reversal_entry(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 100, "INR", "r1")
        L.reverse(conn, "r1", "refund")
        conn.commit()
    with ledger_engine.begin() as conn:
        disable_append_only(conn, "DELETE")
        conn.execute(sa.text("DELETE FROM ledger_postings WHERE entry_id = 2"))
        conn.execute(sa.text("DELETE FROM ledger_transitions WHERE entry_id = 2"))
        conn.execute(sa.text("DELETE FROM ledger_entries WHERE id = 2"))
    with ledger_engine.connect() as conn:
        report = L.verify(conn)
    # The last entry and its balanced postings are gone: the chain and the sums still
    # look fine; the seal of the operation that wrote them and the reversed status without
    # its reversal do not.
    assert report.checked == 1
    assert [p.split(": ", 1)[1] for p in report.problems] == [
        "ledger_entries holds 0 of the 1 rows it wrote (rows were deleted)",
        "ledger_transitions holds 1 of the 2 rows it wrote (rows were deleted)",
        "ledger_postings holds 0 of the 2 rows it wrote (rows were deleted)",
        "reversed but has no reversal entry",
    ]


# -- bulk API ---------------------------------------------------------------


def count_statements(engine):
    seen: list[str] = []

    def before(conn, cursor, statement, parameters, context, executemany) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", before)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", before)


def test_post_credits_bulk_created_then_existing_in_few_statements(ledger_engine) -> None:
    requests = [CreditRequest(f"u{i % 50}", 100 + i, "INR", f"b{i}") for i in range(2500)]
    seen, stop = count_statements(ledger_engine)
    with ledger_engine.connect() as conn:
        first = L.post_credits(conn, requests, actor="batch", run_id="run1")
    stop()
    assert (len(first.created), len(first.existing)) == (2500, 0)
    assert len(seen) < 40, f"{len(seen)} statements for 2500 entries"
    more = requests + [CreditRequest("u1", 7, "INR", "new1"), CreditRequest("u1", 7, "INR", "new1")]
    with ledger_engine.connect() as conn:
        second = L.post_credits(conn, more, actor="batch", run_id="run2")
        assert [e.reference_id for e in second.created] == ["new1"]
        assert len(second.existing) == 2500
        assert second.existing[0] == first.created[0]
        assert first.created[-1].run_id == "run1"
        report = L.verify(conn)
    assert (report.ok, report.checked) == (True, 2501)


def test_post_credits_conflict_writes_nothing(conn) -> None:
    L.post_credit(conn, "u1", 100, "INR", "r1")
    with pytest.raises(IdempotencyConflict, match="'r1'"):
        L.post_credits(
            conn,
            [CreditRequest("u1", 5, "INR", "r0"), CreditRequest("u1", 999, "INR", "r1")],
            actor="batch",
        )
    with pytest.raises(IdempotencyConflict, match="requested twice, as user u1, ₹1 credit and"):
        L.post_credits(
            conn,
            [CreditRequest("u1", 100, "INR", "r9"), CreditRequest("u1", 101, "INR", "r9")],
            actor="batch",
        )
    assert [e.reference_id for e in L.iter_entries(conn)] == ["r1"]


def test_find_entries_returns_only_existing(conn) -> None:
    L.post_credits(conn, [CreditRequest("u", 1, "INR", f"r{i}") for i in range(1200)], actor="t")
    found = L.find_entries(conn, [f"r{i}" for i in range(0, 2400, 2)])
    assert sorted(found) == sorted(f"r{i}" for i in range(0, 1200, 2))
    assert found["r10"].status == "pending"


def test_transition_many_and_reverse_many_in_input_order(conn) -> None:
    refs = [f"r{i}" for i in range(1200)]
    L.post_credits(conn, [CreditRequest("u", 10, "INR", r) for r in refs], actor="t")
    confirmed = L.transition_many(conn, refs + ["r0"], "confirmed", actor="t", run_id="run")
    assert [r.changed for r in confirmed[:2]] == [True, True]
    assert (confirmed[-1].changed, confirmed[-1].message) == (False, "no change: already confirmed")
    paid = L.transition_many(conn, refs[:600], "paid", actor="t")
    assert all(r.entry.status == "paid" for r in paid)
    reversed_ = L.reverse_many(conn, ["r1", "r700", "r1"], "refund", actor="t", run_id="run")
    assert [(r.entry.reference_id, r.created) for r in reversed_] == [
        ("reversal:r1", True), ("reversal:r700", True), ("reversal:r1", False),
    ]
    again = L.reverse_many(conn, ["r700"], "refund", actor="t")
    assert [(r.entry.reference_id, r.created) for r in again] == [("reversal:r700", False)]
    assert bal(conn, "u") == {
        "INR": {"pending": 0, "confirmed": 5990, "paid": 5990, "reversed": 20, "net": 5980}
    }
    assert L.verify(conn).ok


def test_transition_many_illegal_is_all_or_nothing(conn) -> None:
    L.post_credits(conn, [CreditRequest("u", 10, "INR", r) for r in ("a", "b")], actor="t")
    L.transition_many(conn, ["a"], "confirmed", actor="t")
    with pytest.raises(IllegalTransition, match="entry 'b' is pending; pending -> paid"):
        L.transition_many(conn, ["a", "b"], "paid", actor="t")
    assert L.get_entry(conn, "a").status == "confirmed"


def test_confirm_due_only_pending_with_ended_hold(conn) -> None:
    reqs = [
        CreditRequest("u", 1, "INR", "due", hold_until=date(2026, 1, 10)),
        CreditRequest("u", 1, "INR", "later", hold_until=date(2026, 1, 11)),
        CreditRequest("u", 1, "INR", "nohold"),
        CreditRequest("u", 1, "INR", "gone", hold_until=date(2026, 1, 1)),
        CreditRequest("u", 1, "INR", "done", hold_until=date(2026, 1, 1), status="confirmed"),
    ]
    L.post_credits(conn, reqs, actor="t")
    L.reverse(conn, "gone", "refund")

    def statuses() -> dict[str, str]:
        return {r: L.get_entry(conn, r).status for r in ("due", "later", "nohold", "gone", "done")}

    assert L.confirm_due(conn, date(2026, 1, 10), actor="t") == 1
    assert statuses() == {"due": "confirmed", "later": "pending", "nohold": "pending",
                          "gone": "reversed", "done": "confirmed"}
    assert L.confirm_due(conn, date(2026, 1, 11), actor="t") == 1
    assert statuses()["later"] == "confirmed"
    assert L.confirm_due(conn, date(2026, 1, 11), actor="t") == 0
    assert L.verify(conn).ok


def test_credited_totals_counts_unreversed_credits_in_window(conn) -> None:
    reqs = [
        CreditRequest("a", 100, "INR", "1", rule_id="R", event_date=date(2026, 1, 1)),
        CreditRequest("a", 200, "INR", "2", rule_id="R", event_date=date(2026, 1, 31)),
        CreditRequest("a", 400, "INR", "3", rule_id="R", event_date=date(2026, 2, 1)),
        CreditRequest("a", 800, "USD", "4", rule_id="R", event_date=date(2026, 1, 5)),
        CreditRequest("a", 1600, "INR", "5", rule_id="other", event_date=date(2026, 1, 5)),
        CreditRequest("b", 3200, "INR", "6", rule_id="R", event_date=date(2026, 1, 5)),
        CreditRequest("b", 6400, "INR", "7", rule_id="R", event_date=date(2026, 1, 6)),
    ]
    L.post_credits(conn, reqs, actor="t")
    L.reverse(conn, "7", "refund")

    def totals(users, start, end):
        got = L.credited_totals_many(conn, [("R", user, None, start, end) for user in users])
        assert set(got) == {("R", user, None, start, end) for user in users}
        return {user: got[("R", user, None, start, end)] for user in users}

    jan = totals(["a", "b", "c"], date(2026, 1, 1), date(2026, 2, 1))
    assert jan == {"a": {"INR": 300, "USD": 800}, "b": {"INR": 3200}, "c": {}}
    assert totals(["a"], None, None) == {"a": {"INR": 700, "USD": 800}}
    assert totals(["a"], date(2026, 2, 1), None) == {"a": {"INR": 400}}


def test_entry_written_equals_the_dataclass_and_refuses_a_wrong_row(conn) -> None:
    """``Entry.written`` (the writers' fast constructor) builds what ``Entry(**row)`` does,
    and a row that is not exactly the table's columns still fails as the dataclass would."""
    posted = L.post_credit(conn, "u-fast", 500, "INR", "fast-1", status="confirmed").entry
    row = {k: v for k, v in posted.__dict__.items() if k != "status"}
    built = L.Entry.written(row, "confirmed")
    assert built == posted and built.money == posted.money and built.day == posted.day
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        L.Entry.written({**row, "bogus": 1}, "confirmed")
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'hash'"):
        L.Entry.written({k: v for k, v in row.items() if k != "hash"}, "confirmed")
