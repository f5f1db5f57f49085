"""Going behind the ledger's back, as an attacker with the table owner's rights would:
triggers out of the way, rows changed, and the hashes an attacker can recompute (entries,
operation seals, the operations chain) recomputed.

``ATTACKS`` are the attacks of issue 18 item 6 and the ones verify always caught, on the
ledger ``build_ledger`` makes; ``DETECTORS`` name verify's detectors and how to switch each
off alone (tests/test_tamper.py; the fault suite's tampering figures).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement import anchors, audit, operations
from settlement.db import open_engine
from settlement.demo import generate_records
from settlement.ledger import entry_hash, head
from settlement.ledger.daily import fold
from settlement.ledger.hashing import GENESIS_HASH
from settlement.tables import (
    OPERATION_TABLES,
    ledger_entries,
    ledger_operations,
    ledger_postings,
    ledger_transitions,
)

verify_mod = importlib.import_module("settlement.ledger.verify")
RULES = Path(__file__).resolve().parents[1] / "rules"
KEY = "anchor-test-key"
LEDGER_TABLES = ("ledger_postings", "ledger_transitions", "ledger_entries")
ALL_TABLES = (*reversed(tuple(OPERATION_TABLES)), "ledger_operations")


def disable_append_only(
    conn: sa.Connection, verb: str, tables: tuple[str, ...] = LEDGER_TABLES
) -> None:
    """Let ``verb`` (UPDATE or DELETE) through the append-only triggers of ``tables``."""
    for table in tables:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        else:
            conn.execute(sa.text(f"DROP TRIGGER IF EXISTS {table}_no_{verb.lower()}"))


def unguard(conn: sa.Connection) -> None:
    """Every append-only trigger out of the way (what the tables' owner may do)."""
    for verb in ("UPDATE", "DELETE"):
        disable_append_only(conn, verb, ALL_TABLES)


def sql(conn: sa.Connection, text: str, **params: Any) -> None:
    conn.execute(sa.text(text), params)


def delete_entries(conn: sa.Connection, ids: Iterable[int]) -> None:
    """Delete entries and every row that refers to them (payout rows, moves, postings)."""
    for entry_id in ids:
        sql(conn, "DELETE FROM payout_covers WHERE item_entry_id = :i OR entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM payout_items WHERE entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_postings WHERE entry_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_postings WHERE transition_id IN (SELECT id FROM"
                  " ledger_transitions WHERE item_id = :i)", i=entry_id)
        sql(conn, "DELETE FROM ledger_transitions WHERE entry_id = :i OR item_id = :i", i=entry_id)
        sql(conn, "DELETE FROM ledger_entries WHERE id = :i", i=entry_id)


def rechain(conn: sa.Connection, *, heads: bool) -> None:
    """Recompute every entry's prev_hash and hash; with ``heads``, the heads the run log
    and payout batches recorded too (a rewritten chain that the database alone accepts)."""
    e = ledger_entries
    prev = GENESIS_HASH
    rows = [dict(r) for r in conn.execute(sa.select(e).order_by(e.c.id)).mappings()]
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = entry_hash(row)
        conn.execute(e.update().where(e.c.id == row["id"]).values(
            prev_hash=row["prev_hash"], hash=row["hash"]))
    if heads:
        for table in ("settlement_runs", "payout_batches"):
            sql(conn, f"UPDATE {table} SET ledger_head_hash = (SELECT hash FROM ledger_entries"
                      f" WHERE ledger_entries.id = {table}.ledger_head_id)")


def reseal(conn: sa.Connection, *, refold: bool = True) -> None:
    """Recompute every operation's seal and the operations chain from the tables as they
    are now: what an attacker who read settlement/operations.py can do; ``refold``: the
    liabilities report's daily aggregate first (settlement/ledger/daily.py)."""
    o = ledger_operations
    prev = operations.GENESIS_HASH
    if refold:
        sql(conn, "DELETE FROM liability_days")
        for op_id in conn.execute(sa.select(o.c.op_id).order_by(o.c.id)).scalars().all():
            fold(conn, op_id)
    for row in [dict(r) for r in conn.execute(sa.select(o).order_by(o.c.id)).mappings()]:
        seal = operations.compute_seal(conn, row["op_id"])
        row.update(counts=operations._dumps(seal.as_json()), digest=seal.digest(),
                   prev_hash=prev)
        row["hash"] = prev = operations.operation_hash(row)
        conn.execute(o.update().where(o.c.id == row["id"]).values(
            counts=row["counts"], digest=row["digest"], prev_hash=row["prev_hash"],
            hash=row["hash"]))


@dataclass
class Ledger:
    """The ledger every attack starts from, and what the attacks need to know of it."""

    url: str
    anchor: Path
    run1: str
    run2: str
    settled: list[int]  # credits of the first run, in id order
    payout: int  # the payout item's entry
    late: list[int]  # hand credits after the last settle
    paid: int  # the hand credit the payout item paid


def _cli(url: str, *args: str) -> None:
    result = CliRunner().invoke(main, [*args, "--db", url])
    assert result.exit_code == 0, (args, result.output)


def build_ledger(db_url: str, tmp_path: Path) -> Ledger:
    """Two settle runs (the first with a quarantined line), a hand credit paid by a payout
    batch, two hand credits after the last settle, and a signed anchor of it all (the
    caller sets REFERRAL_ANCHOR_KEY to ``KEY``)."""
    lines = list(generate_records(50, seed=9))
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text("\n".join(lines[:30]) + "\nnot json\n", encoding="utf-8")
    second.write_text("\n".join(lines[30:]) + "\n", encoding="utf-8")
    payees = tmp_path / "payees.csv"
    payees.write_text("user_id,method,email\npayee1,paypal,payee1@example.com\n")
    _cli(db_url, "db", "upgrade")
    _cli(db_url, "settle", "--rules", str(RULES), "--records", str(first), "--as-of",
         "2026-11-25")
    _cli(db_url, "ledger", "credit", "payee1", "₹700", "--reference", "hand:payee1",
         "--confirmed", "--date", "2026-11-26")
    _cli(db_url, "payees", "import", str(payees))
    _cli(db_url, "payout", "create", "--as-of", "2026-11-30", "--min", "₹100")
    _cli(db_url, "payout", "export", "2026-11-30-INR", "--format", "csv", "-o",
         str(tmp_path / "payout.csv"))
    _cli(db_url, "payout", "complete", "2026-11-30-INR")
    _cli(db_url, "settle", "--rules", str(RULES), "--records", str(second), "--as-of",
         "2026-11-30")
    _cli(db_url, "ledger", "credit", "late1", "₹50", "--reference", "hand:late1")
    _cli(db_url, "ledger", "credit", "late2", "₹60", "--reference", "hand:late2")
    _cli(db_url, "ledger", "confirm", "hand:late1")
    anchor = tmp_path / "anchor.json"
    _cli(db_url, "ledger", "anchor", "-o", str(anchor))
    engine = open_engine(db_url)
    e = ledger_entries
    with engine.connect() as conn:
        runs = conn.execute(sa.text("SELECT run_id FROM settlement_runs ORDER BY as_of")
                            ).scalars().all()
        settled = conn.execute(sa.select(e.c.id).where(
            e.c.op_id == runs[0], e.c.entry_type == "credit").order_by(e.c.id)).scalars().all()
        payout = conn.execute(sa.select(e.c.id).where(e.c.entry_type == "payout")).scalar_one()
        late = conn.execute(sa.select(e.c.id).where(e.c.reference_id.like("hand:late%"))
                            .order_by(e.c.id)).scalars().all()
        paid = conn.execute(sa.select(e.c.id).where(e.c.reference_id == "hand:payee1")
                            ).scalar_one()
        assert audit.verify(conn).ok
    engine.dispose()
    assert len(settled) > 4 and len(late) == 2
    return Ledger(db_url, anchor, runs[0], runs[1], list(settled), payout, list(late), paid)


# -- the attacks ----------------------------------------------------------------------


def forge_credit(conn: sa.Connection, user: str, amount: int, ref: str, *,
                 paid: bool = False) -> int:
    """A credit appended with a correct hash, its move(s) and postings: what `ledger credit`
    (and `ledger pay`) would write, minus the operation."""
    last = head(conn)
    assert last is not None
    now = datetime.now(UTC)
    row = {c.name: None for c in ledger_entries.c}
    row.update(id=last[0] + 1, reference_id=ref, user_id=user, amount=amount, currency="INR",
               entry_type="credit", timestamp=now, actor="cli", prev_hash=last[1],
               business_date=now.date())
    row["hash"] = entry_hash(row)
    conn.execute(ledger_entries.insert(), row)
    t, p = ledger_transitions, ledger_postings
    conn.execute(t.insert(), {"entry_id": row["id"], "to_status": "confirmed", "at": now,
                              "actor": "cli"})
    conn.execute(p.insert(), [
        {"entry_id": row["id"], "account": "program:funding", "currency": "INR",
         "amount": -amount},
        {"entry_id": row["id"], "account": f"user:{user}", "currency": "INR", "amount": amount}])
    if paid:
        move = conn.execute(t.insert().returning(t.c.id), {
            "entry_id": row["id"], "from_status": "confirmed", "to_status": "paid", "at": now,
            "actor": "cli"}).scalar_one()
        conn.execute(p.insert(), [
            {"entry_id": row["id"], "transition_id": move, "account": f"user:{user}",
             "currency": "INR", "amount": -amount},
            {"entry_id": row["id"], "transition_id": move, "account": f"payout:{user}",
             "currency": "INR", "amount": amount}])
    return int(row["id"])


def middle(book: Ledger) -> int:
    return book.settled[len(book.settled) // 2]


def edit_amount(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_entries SET amount = amount - 1 WHERE id = :i", i=middle(book))


def edit_amount_and_postings(conn, book: Ledger) -> None:
    edit_amount(conn, book)
    sql(conn, "UPDATE ledger_postings SET amount = amount + (CASE WHEN amount > 0 THEN -1"
              " ELSE 1 END) WHERE entry_id = :i AND transition_id IS NULL", i=middle(book))


def edit_with_recomputed_hash(conn, book: Ledger) -> None:
    row = dict(conn.execute(sa.select(ledger_entries).where(ledger_entries.c.id == middle(book))
                            ).mappings().one())
    row["actor"] = "someone else"
    sql(conn, "UPDATE ledger_entries SET actor = :a, hash = :h WHERE id = :i",
        a=row["actor"], h=entry_hash(row), i=row["id"])


def delete_middle(conn, book: Ledger) -> None:
    delete_entries(conn, [middle(book)])


def delete_run2_and_after(conn, book: Ledger) -> None:
    first = conn.execute(sa.select(sa.func.min(ledger_entries.c.id)).where(
        ledger_entries.c.op_id == book.run2)).scalar_one()
    last = head(conn)
    assert last is not None
    delete_entries(conn, range(last[0], first - 1, -1))


def edit_posting(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_postings SET amount = amount * 2 WHERE entry_id = :i", i=middle(book))


def extra_posting_pair(conn, book: Ledger) -> None:
    op = conn.execute(sa.text("SELECT op_id FROM ledger_entries WHERE id = :i"),
                      {"i": middle(book)}).scalar_one()
    for amount in (-500, 500):
        conn.execute(ledger_postings.insert(), {"entry_id": middle(book), "account":
                     "program:funding", "currency": "INR", "amount": amount, "op_id": op})


def edit_status(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_transitions SET to_status = 'paid' WHERE entry_id = :i",
        i=middle(book))


def edit_from_status(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_transitions SET from_status = 'created' WHERE entry_id = :i"
              " AND to_status = 'paid'", i=book.payout)


def delete_transition(conn, book: Ledger) -> None:
    sql(conn, "DELETE FROM ledger_transitions WHERE entry_id = :i", i=book.late[1])


def edit_run_head(conn, book: Ledger) -> None:
    sql(conn, "UPDATE settlement_runs SET ledger_head_hash = :h WHERE run_id = :r",
        h="f" * 64, r=book.run1)


def forged_credit(conn, book: Ledger) -> None:
    forge_credit(conn, "attacker", 99_999_00, "hand:forged")


def forged_credit_and_payout(conn, book: Ledger) -> None:
    forge_credit(conn, "attacker", 99_999_00, "hand:forged", paid=True)


def rewrite_chain(conn, book: Ledger) -> None:
    edit_amount_and_postings(conn, book)
    rechain(conn, heads=True)


def rewrite_chain_unanchored_heads(conn, book: Ledger) -> None:
    edit_amount_and_postings(conn, book)
    rechain(conn, heads=False)


def rewrite_everything(conn, book: Ledger) -> None:
    rewrite_chain(conn, book)
    reseal(conn)


def delete_late_credits(conn, book: Ledger) -> None:
    delete_entries(conn, reversed(book.late))


def delete_late_operations(conn, book: Ledger) -> None:
    ops = conn.execute(sa.text("SELECT DISTINCT op_id FROM ledger_transitions WHERE entry_id"
                               " IN (:a, :b)"), {"a": book.late[0], "b": book.late[1]}
                       ).scalars().all()
    delete_entries(conn, reversed(book.late))
    for op in ops:
        sql(conn, "DELETE FROM liability_days WHERE op_id = :o", o=op)
        sql(conn, "DELETE FROM ledger_operations WHERE op_id = :o", o=op)


def delete_payout(conn, book: Ledger) -> None:
    delete_entries(conn, [book.payout])


def edit_reason_and_actor(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_transitions SET reason = 'approved by the CFO', actor = 'cfo'"
              " WHERE entry_id = :i", i=book.late[0])


def edit_transition_time(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_transitions SET business_date = '2026-01-01' WHERE entry_id = :i",
        i=book.late[0])


def wipe_quarantine(conn, book: Ledger) -> None:
    sql(conn, "DELETE FROM settlement_quarantine")


def edit_run_counters(conn, book: Ledger) -> None:
    sql(conn, "UPDATE settlement_runs SET posted = 0, quarantined = 0, records = 1")


def empty_everything(conn, book: Ledger) -> None:
    for table in ("liability_days", "payout_covers", "payout_items", "payout_batches", "payees",
                  "settlement_terminations", "settlement_rule_renames",
                  "settlement_rule_versions", "settlement_facts", "settlement_quarantine",
                  "ledger_postings", "ledger_transitions", "ledger_entries",
                  "settlement_runs", "ledger_operations"):
        sql(conn, f"DELETE FROM {table}")


def edit_liability_day(conn, book: Ledger) -> None:
    sql(conn, "UPDATE liability_days SET granted = granted + 100 WHERE id = (SELECT min(id)"
              " FROM liability_days WHERE granted > 0)")
    reseal(conn, refold=False)


def edit_operation(conn, book: Ledger) -> None:
    sql(conn, "UPDATE ledger_operations SET actor = 'nobody' WHERE id = 2")


def edit_operation_rehashed(conn, book: Ledger) -> None:
    o = operations.ledger_operations
    row = dict(conn.execute(sa.select(o).where(o.c.id == 2)).mappings().one())
    row["actor"] = "nobody"
    sql(conn, "UPDATE ledger_operations SET actor = 'nobody', hash = :h WHERE id = 2",
        h=operations.operation_hash(row))


# -- detectors: what each reports, and how to switch it off alone ------------------------

NONE: Callable[..., None] = lambda *a, **k: None  # noqa: E731
EMPTY: Callable[..., list[str]] = lambda *a, **k: []  # noqa: E731

DETECTORS: dict[str, tuple[tuple[object, str, Callable[..., object]], ...]] = {
    "chain": ((verify_mod, "_link_problem", NONE),),
    "entry-hash": ((verify_mod, "_hash_problem", NONE),),
    "run-heads": ((verify_mod, "_anchor_problem", NONE),
                  (verify_mod, "_missing_anchor_problems", EMPTY)),
    "postings": ((verify_mod, "_postings_problem", NONE),),
    "transitions": ((verify_mod, "_check_transitions", EMPTY),),
    "op-chain": ((operations, "_op_link_problem", NONE),),
    "op-hash": ((operations, "_op_hash_problem", NONE),),
    "op-ids": ((operations, "_row_op_problem", NONE),),
    "seals": ((operations, "_seal_problems", EMPTY),),
    "anchor-heads": ((anchors, "_head_problem", NONE),),
    "anchor-counts": ((anchors, "_count_problems", EMPTY),),
    # The liabilities report's daily aggregate against the rows it folds: a second reader
    # of what most attacks change, switched off with every other sole detector.
    "daily": ((verify_mod, "aggregate_problems", EMPTY),
              (verify_mod, "aggregate_report_problems", EMPTY)),
}
MESSAGES: dict[str, str | tuple[str, ...]] = {
    "chain": "prev_hash does not match the previous row's hash",
    "entry-hash": "hash mismatch (the row was changed after it was written)",
    "run-heads": "recorded",
    "postings": "postings do not match the entry and its transitions",
    "transitions": "transition",
    "op-chain": "does not match the previous operation's hash",
    "op-hash": "the operations row was changed",
    "op-ids": "(not written by a command)",
    "seals": " it wrote",
    "anchor-heads": ("recorded it as the head", "recorded (the chain was rewritten)"),
    "anchor-counts": "(rows were deleted)",
    "daily": ("liability_days", "from the daily aggregate"),
}


@dataclass(frozen=True)
class Attack:
    name: str
    do: Callable[[sa.Connection, Ledger], None]
    caught_by: tuple[str, ...]  # detectors whose report must name it
    sole: str | None = None  # the one detector that catches it (after ``reseal``)
    resealed: bool = False  # the attacker recomputes every seal and the operations chain
    needs_anchor: bool = False  # the database alone accepts it


ATTACKS = [
    # The eight verify always caught.
    Attack("entry amount edited", edit_amount, ("entry-hash", "postings", "seals")),
    Attack("entry amount and postings edited, seals recomputed", edit_amount_and_postings,
           ("entry-hash",), sole="entry-hash", resealed=True),
    Attack("entry edited with its hash recomputed", edit_with_recomputed_hash,
           ("chain", "seals")),
    Attack("middle entry deleted, seals recomputed", delete_middle, ("chain",), sole="chain",
           resealed=True),
    Attack("newest entries deleted (a run's head), seals recomputed", delete_run2_and_after,
           ("run-heads",), sole="run-heads", resealed=True),
    Attack("posting amount edited", edit_posting, ("postings", "seals")),
    Attack("a balanced posting pair slipped in, seals recomputed", extra_posting_pair,
           ("postings",), sole="postings", resealed=True),
    Attack("transition status edited", edit_status, ("transitions", "seals")),
    # Issue 18 item 6: the ten verify missed.
    Attack("forged credit with a correct hash", forged_credit, ("op-ids",), sole="op-ids"),
    Attack("forged credit and payout", forged_credit_and_payout, ("op-ids",), sole="op-ids"),
    Attack("chain rewritten, run-log heads recomputed", rewrite_chain, ("seals",),
           sole="seals"),
    Attack("hand credits newer than the last settle deleted", delete_late_credits, ("seals",),
           sole="seals"),
    Attack("payout deleted", delete_payout, ("chain", "seals")),
    Attack("transition reason and actor edited", edit_reason_and_actor, ("seals",),
           sole="seals"),
    Attack("transition date edited", edit_transition_time, ("seals",), sole="seals"),
    Attack("quarantine wiped", wipe_quarantine, ("seals",), sole="seals"),
    Attack("run-log counters edited", edit_run_counters, ("seals",), sole="seals"),
    Attack("every table emptied", empty_everything, ("anchor-heads", "anchor-counts"),
           needs_anchor=True),
    # What an attacker who read the code can do besides: caught by the anchor or the log.
    Attack("chain rewritten, heads and every seal recomputed", rewrite_everything,
           ("anchor-heads",), sole="anchor-heads", needs_anchor=True),
    Attack("newest operations deleted with their rows", delete_late_operations,
           ("anchor-heads", "anchor-counts"), needs_anchor=True),
    Attack("chain rewritten, run heads left as they were, seals recomputed",
           rewrite_chain_unanchored_heads, ("run-heads",), sole="run-heads", resealed=True),
    Attack("operations row edited", edit_operation, ("op-hash",), sole="op-hash"),
    Attack("operations row edited and rehashed", edit_operation_rehashed, ("op-chain",),
           sole="op-chain"),
    Attack("transition of a late credit deleted", delete_transition,
           ("transitions", "seals")),
    Attack("a move's from-status edited, seals recomputed", edit_from_status, ("transitions",),
           sole="transitions", resealed=True),
    Attack("the report's daily aggregate edited, seals recomputed", edit_liability_day,
           ("daily",), sole="daily"),
]


def says(detector: str, problem: str) -> bool:
    wanted = MESSAGES[detector]
    return any(w in problem for w in ((wanted,) if isinstance(wanted, str) else wanted))


def verify(book: Ledger, *, anchored: bool) -> list[str]:
    engine = open_engine(book.url)
    try:
        with engine.connect() as conn:
            anchor = (anchors.loads(book.anchor.read_text(), KEY.encode(), "anchor.json")
                      if anchored else None)
            return audit.verify(conn, anchor, "anchor.json").problems
    finally:
        engine.dispose()


def carry_out(book: Ledger, attack: Attack) -> None:
    engine = open_engine(book.url)
    try:
        with engine.begin() as conn:
            unguard(conn)
            attack.do(conn, book)
            if attack.resealed:
                reseal(conn)
    finally:
        engine.dispose()
