"""Operations: one per command that writes, its op id on every row it wrote, sealed at the
end of its transaction (settlement/operations.py)."""

from __future__ import annotations

import getpass
import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement import ledger, operations
from settlement.dialect import backend
from settlement.errors import IdempotencyConflict, LedgerError
from settlement.tables import OPERATION_TABLES, ledger_operations


@pytest.fixture
def conn(ledger_engine):
    with ledger_engine.connect() as conn:
        yield conn


def _ops(conn: sa.Connection) -> list[sa.Row]:
    return conn.execute(sa.select(ledger_operations).order_by(ledger_operations.c.id)).all()


def _op_ids(conn: sa.Connection, table: str) -> set[str | None]:
    return set(conn.execute(sa.text(f"SELECT DISTINCT op_id FROM {table}")).scalars())


def test_each_cli_command_is_one_operation(db_url) -> None:
    runner = CliRunner()

    def run(*args: str) -> None:
        result = runner.invoke(main, [*args, "--db", db_url])
        assert result.exit_code == 0, result.output

    run("db", "upgrade")
    run("ledger", "credit", "u1", "₹5", "--reference", "r1")
    run("ledger", "confirm", "r1")
    run("ledger", "confirm", "r1")  # no change: nothing written, no operation
    from settlement.db import open_engine

    engine = open_engine(db_url)
    with engine.connect() as conn:
        ops = _ops(conn)
        assert [(o.id, o.command, o.actor) for o in ops] == [
            (1, "ledger credit", getpass.getuser()), (2, "ledger confirm", getpass.getuser())]
        assert json.loads(ops[0].counts).keys() == {"ledger_entries", "ledger_transitions",
                                                    "ledger_postings", "liability_days"}
        assert json.loads(ops[1].counts)["ledger_transitions"][0] == 1
        assert _op_ids(conn, "ledger_entries") == {ops[0].op_id}
        assert _op_ids(conn, "ledger_transitions") == {ops[0].op_id, ops[1].op_id}
        assert ops[1].prev_hash == ops[0].hash
        assert ledger.verify(conn).ok
    engine.dispose()


def test_library_writes_outside_an_operation_are_each_one(conn) -> None:
    ledger.post_credit(conn, "u1", 100, "INR", "r1")
    ledger.post_credit(conn, "u2", 100, "INR", "r2")
    assert [o.command for o in _ops(conn)] == ["ledger credit", "ledger credit"]


def test_writes_inside_an_operation_join_it(conn) -> None:
    with operations.operation(conn, "import", "bob") as op:
        ledger.post_credit(conn, "u1", 100, "INR", "r1", status="confirmed")
        ledger.pay(conn, "r1")
        ledger.reverse(conn, "r1", "refund")
    (row,) = _ops(conn)
    assert (row.op_id, row.command, row.actor) == (op.op_id, "import", "bob")
    assert json.loads(row.counts)["ledger_entries"][0] == 2
    for table in ("ledger_entries", "ledger_transitions", "ledger_postings"):
        assert _op_ids(conn, table) == {op.op_id}
    assert ledger.verify(conn).ok


def test_a_refused_write_leaves_no_operation_and_the_next_one_works(conn) -> None:
    ledger.post_credit(conn, "u1", 100, "INR", "r1")
    with pytest.raises(IdempotencyConflict):
        ledger.post_credit(conn, "u1", 999, "INR", "r1")
    ledger.post_credit(conn, "u2", 100, "INR", "r2")
    ops = _ops(conn)
    assert len(ops) == 2 and len({o.op_id for o in ops}) == 2
    assert ledger.verify(conn).ok


def test_a_row_needs_an_operation(conn) -> None:
    with conn.begin(), pytest.raises(LedgerError, match="a write outside an operation"):
        operations.op_id(conn)


def test_settle_rows_carry_the_run_id(db_url, tmp_path) -> None:
    from settlement.db import open_engine
    from settlement.demo import write_records
    from tests.faults.helpers import RULES_DIR

    records = tmp_path / "r.jsonl"
    with records.open("w") as fh:
        write_records(fh, 30, seed=4)
        fh.write("{}\n")
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade", "--db", db_url]).exit_code == 0
    result = runner.invoke(main, ["settle", "--rules", str(RULES_DIR), "--records", str(records),
                                  "--as-of", "2026-11-25", "--json", "--db", db_url])
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    engine = open_engine(db_url)
    with engine.connect() as conn:
        (op,) = _ops(conn)
        assert (op.op_id, op.command, op.actor) == (run_id, "settle", f"settle:{run_id}")
        sealed = json.loads(op.counts)
        for table in OPERATION_TABLES:
            assert _op_ids(conn, table) <= {run_id}
            rows = conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar()
            assert sealed.get(table, [0])[0] == rows
        assert {"settlement_runs", "settlement_quarantine", "settlement_facts"} <= set(sealed)
    engine.dispose()


def test_table_rows_encode_each_row_as_row_text(conn) -> None:
    """The per-table fast path writes exactly the documented canonical text of a row."""
    ledger.post_credit(conn, "u1", 100, "INR", "r1", status="confirmed")
    ledger.pay(conn, "r1")
    for table in ("ledger_entries", "ledger_transitions", "ledger_postings"):
        raw = [dict(r._mapping) for r in conn.execute(sa.text(
            f"SELECT * FROM {table} ORDER BY {', '.join(OPERATION_TABLES[table])}"))]
        assert [text for _, text in operations.table_rows(conn, table)] == [
            operations.row_text(r) for r in raw]
        assert [op for op, _ in operations.table_rows(conn, table)] == [
            r["op_id"] for r in raw]


HOSTILE = ['quote " backslash \\ slash /', "new\nline\ttab\rcr\x01\x1f\x7f", "é ü ₹ 𝄞 😀",
           "line\u2028sep\u2029", "{\"json\": [1]}", "trailing  "]


def test_table_rows_agree_with_row_text_on_hostile_values(conn) -> None:
    """The database's own encoding of rows (PostgreSQL) is byte for byte ``row_text``:
    quotes, backslashes, control characters, astral code points, line separators and
    NULLs; on SQLite both are ``row_text``."""
    for n, text in enumerate(HOSTILE):
        ledger.post_credit(conn, f"u{n} {text}", 100 + n, "INR", f"r{n} {text}",
                           status="confirmed", reason=text)
        ledger.pay(conn, f"r{n} {text}")
    for table in ("ledger_entries", "ledger_transitions", "ledger_postings"):
        raw = [dict(r._mapping) for r in conn.execute(sa.text(
            f"SELECT * FROM {table} ORDER BY {', '.join(OPERATION_TABLES[table])}"))]
        assert len(raw) >= len(HOSTILE)
        got = list(operations.table_rows(conn, table))
        assert [t for _, t in got] == [operations.row_text(r) for r in raw]
        assert [op for op, _ in got] == [r["op_id"] for r in raw]
        assert [t for _, t in operations.table_rows(conn, table, raw[0]["op_id"])] == [
            operations.row_text(r) for r in raw if r["op_id"] == raw[0]["op_id"]]
    assert any("😀" in json.loads(t).get("user_id", "") for _, t in
               operations.table_rows(conn, "ledger_entries"))
    by_server = backend(conn).sealed_rows(conn, "ledger_entries", "", {}, "id")
    assert (by_server is not None) == (conn.dialect.name == "postgresql")
