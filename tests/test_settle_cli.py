"""`referral settle` as cron runs it: real processes, kill -9, concurrent runs, exit codes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement import ledger
from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.locks import LEDGER_LOCK_KEY, SETTLE_LOCK_KEY
from tests.faults.helpers import spawn
from tests.test_settlement import FIRST

SUMMARY_KEYS = ["run_id", "dry_run", "as_of", "duration_s", "records", "rewarded", "posted",
                "already_posted", "capped", "reversed", "adjusted", "moved", "superseded",
                "stale", "retired", "conflicts", "confirmed", "quarantined", "amount_posted"]


def error_line(stderr: str) -> str:
    """The command's final ``error: ...`` line: a settle logs its phases on stderr first
    (the run history's lines), but says what went wrong in exactly one line, no traceback."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.endswith(errors[0] + "\n"), stderr
    return errors[0] + "\n"


def settle_args(rules_dir: Path, records: Path, db: str, *extra: str) -> list[str]:
    return ["settle", "--rules", str(rules_dir), "--records", str(records), "--db", db,
            "--as-of", "2026-01-10", *extra]


def snapshot(url: str) -> set[tuple[str, str, int, str]]:
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            return {(e.reference_id, e.user_id, e.amount, e.status)
                    for e in ledger.iter_entries(conn)}
    finally:
        engine.dispose()


def test_settle_json_prints_exactly_one_object(db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--json"))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert list(data) == SUMMARY_KEYS
    assert (data["posted"], data["quarantined"], data["amount_posted"]) == (11, 3, {"INR": 190000})

    again = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--json"))
    assert again.exit_code == 0
    data = json.loads(again.stdout)
    assert (data["posted"], data["already_posted"]) == (0, 11)


def test_settle_table_output_and_dry_run(db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--dry-run"))
    assert result.exit_code == 0, result.output
    assert "would post reward:paid_bonus:r3:referrer: A ₹200 pending until 2026-02-03" \
        " (capped from ₹500)" in result.stdout
    assert "dry run (nothing written)" in result.stdout
    assert "posted" in result.stdout and "190000" not in result.stdout
    assert "₹1,900" in result.stdout
    assert snapshot(db_url) == set()


def test_settle_strict_exit_1_and_nothing_written(db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--strict"))
    assert result.exit_code == 1
    assert f"error: {small_input}:6: error: not valid JSON" in result.stderr
    assert snapshot(db_url) == set()


def test_settle_bad_rules_exit_1_before_writing(db_url, tmp_path, small_input) -> None:
    upgrade(db_url)
    bad = tmp_path / "bad.rule"
    bad.write_text('RULE broken\n  IF referrer.plan = "paid"\n  THEN ISSUE ₹1.005 REWARD\n')
    result = CliRunner().invoke(main, settle_args(bad, small_input, db_url))
    assert result.exit_code == 1
    assert "rules are invalid; nothing was written" in result.stderr
    assert f"{bad}:3:" in result.stderr
    assert snapshot(db_url) == set()


def test_settle_unreachable_database_exit_3(rules_dir, small_input) -> None:
    result = CliRunner().invoke(
        main, settle_args(rules_dir, small_input, "postgresql://postgres@127.0.0.1:1/test")
    )
    assert result.exit_code == 3
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_settle_missing_schema_says_to_upgrade(tmp_path, rules_dir, small_input) -> None:
    result = CliRunner().invoke(
        main, settle_args(rules_dir, small_input, f"sqlite:///{tmp_path / 'empty.db'}")
    )
    assert result.exit_code == 1
    assert "referral db upgrade" in result.stderr


@contextmanager
def held_settle_locks(url: str) -> Iterator[None]:
    """What a running settle holds: the run lock and the ledger lock (SQLite: the write lock)."""
    holder = open_engine(url)
    with holder.connect() as conn:
        tx = conn.begin()  # on SQLite: BEGIN IMMEDIATE holds the write lock
        if conn.dialect.name == "postgresql":
            for key in (SETTLE_LOCK_KEY, LEDGER_LOCK_KEY):
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        try:
            yield
        finally:
            tx.rollback()
    holder.dispose()


def test_settle_no_wait_stops_when_another_run_holds_the_lock(db_url, rules_dir, small_input):
    upgrade(db_url)
    with held_settle_locks(db_url):
        result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--no-wait"))
    assert result.exit_code == 75
    assert error_line(result.stderr) == ("error: another settlement run holds the lock (--no-wait);"
                             " nothing was written, retry later\n")
    assert snapshot(db_url) == set()


def test_settle_wait_timeout_elapsed_exit_75(db_url, rules_dir, small_input):
    upgrade(db_url)
    with held_settle_locks(db_url):
        started = time.monotonic()
        result = CliRunner().invoke(
            main, settle_args(rules_dir, small_input, db_url, "--wait-timeout", "1"))
        waited = time.monotonic() - started
    assert result.exit_code == 75, result.output
    assert error_line(result.stderr) == ("error: another settlement run holds the lock (waited 1 s,"
                             " --lock-timeout); nothing was written, retry later\n")
    assert 0.9 <= waited < 10
    assert snapshot(db_url) == set()


@pytest.mark.parametrize("args", [
    ["ledger", "credit", "u1", "₹5", "--reference", "hand:1"],
    ["ledger", "confirm", "hand:0"],
    ["ledger", "pay", "hand:0"],
    ["ledger", "reverse", "hand:0", "--reason", "test"],
    ["payout", "create", "--as-of", "2026-01-10"],
    ["db", "upgrade"],
])
def test_hand_write_behind_a_held_settle_lock_exit_75_within_the_timeout(db_url, args):
    upgrade(db_url)
    with held_settle_locks(db_url):
        started = time.monotonic()
        result = CliRunner().invoke(main, [*args, "--db", db_url, "--lock-timeout", "1"])
        waited = time.monotonic() - started
    assert result.exit_code == 75, result.output
    assert result.stderr.startswith("error: another writer holds the ")
    assert result.stderr.endswith(" (waited 1 s, --lock-timeout); nothing was written,"
                                  " retry later\n")
    assert 0.9 <= waited < 10
    assert snapshot(db_url) == set()


def test_demo_generate_is_deterministic(tmp_path) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    for path in (a, b):
        assert CliRunner().invoke(
            main, ["demo", "generate", "--records", "300", "--seed", "3", "-o", str(path)]
        ).exit_code == 0
    lines = a.read_text().splitlines()
    assert a.read_text() == b.read_text() and len(lines) == 300
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pass
    assert 0 < 300 - len(parsed) < 20  # a small rate of malformed lines
    refunds = [p for p in parsed if p.get("referee", {}).get("refunded")]
    assert refunds and all(
        any(q["referral_id"] == r["referral_id"] and not q["referee"]["refunded"] for q in parsed)
        for r in refunds
    )


@pytest.fixture
def big_input(tmp_path: Path) -> Path:
    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        write_records(fh, 30000, seed=11)
    return path


@pytest.mark.slow
def test_settle_kill_9_leaves_ledger_unchanged_and_rerun_matches(
    db_url, rules_dir, big_input, tmp_path
) -> None:
    upgrade(db_url)
    reference_db = f"sqlite:///{tmp_path / 'reference.db'}"
    upgrade(reference_db)
    assert CliRunner().invoke(main, settle_args(rules_dir, big_input, reference_db)).exit_code == 0
    expected = snapshot(reference_db)
    assert len(expected) > 1000

    explain = tmp_path / "explain.jsonl"
    proc = spawn(settle_args(rules_dir, big_input, db_url, "--explain", str(explain),
                             "--explain-all"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        written = list(tmp_path.glob(".explain.jsonl.*.tmp"))  # renamed when the run ends
        if written and written[0].stat().st_size > 2_000_000:  # well into the input
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    assert snapshot(db_url) == set()
    assert not explain.exists()  # no line says "posted" for what was rolled back
    rerun = spawn(settle_args(rules_dir, big_input, db_url, "--json"))
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert snapshot(db_url) == expected


@pytest.mark.slow
def test_settle_two_concurrent_runs_post_every_reward_once(pg_url, rules_dir, big_input) -> None:
    upgrade(pg_url)
    procs = [spawn(settle_args(rules_dir, big_input, pg_url, "--json", "--lock-timeout", "600"))
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in results]
    summaries = [json.loads(out) for out, _ in results]
    entries = snapshot(pg_url)
    credits = [e for e in entries if not e[0].startswith("reversal:")]
    assert sum(s["posted"] for s in summaries) == len(credits)
    assert sorted(s["posted"] for s in summaries)[0] == 0  # the second waited, found all posted
    engine = open_engine(pg_url)
    with engine.connect() as conn:
        assert ledger.verify(conn).ok
    engine.dispose()


def test_settle_locked_sqlite_past_busy_timeout_exit_75_one_line(tmp_path, rules_dir, small_input):
    url = f"sqlite:///{tmp_path / 'locked.db'}"
    upgrade(url)
    holder = open_engine(url)
    with holder.connect() as conn:
        tx = conn.begin()  # BEGIN IMMEDIATE: the write lock
        result = CliRunner().invoke(
            main, settle_args(rules_dir, small_input, url, "--lock-timeout", "0.1"))
        tx.rollback()
    holder.dispose()
    assert result.exit_code == 75
    assert error_line(result.stderr) == (
        "error: another settlement run holds the lock (waited 0.1 s, --lock-timeout);"
        " nothing was written, retry later\n")


def test_settle_reads_records_from_stdin_with_money_objects(db_url, rules_dir) -> None:
    upgrade(db_url)
    record = json.loads(FIRST[0])
    record["referee"]["first_payment"] = {"amount": 150000, "currency": "INR"}
    result = CliRunner().invoke(
        main,
        ["settle", "--rules", str(rules_dir), "--records", "-", "--db", db_url,
         "--as-of", "2026-01-10", "--json"],
        input=json.dumps(record) + "\n",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["posted"] == 3
    assert ("reward:paid_bonus:r1:referee", "B", 15000, "pending") in snapshot(db_url)


def _interrupt(process, *, after: float = 2.0) -> tuple[int, str]:
    time.sleep(after)  # the child is importing, then blocked
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr


def test_settle_ctrl_c_while_reading_exit_130_one_line(db_url, rules_dir) -> None:
    upgrade(db_url)
    process = subprocess.Popen(
        [sys.executable, "-m", "referral", "settle", "--rules", str(rules_dir), "--records", "-",
         "--db", db_url, "--as-of", "2026-01-10"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    process.stdin.write(FIRST[0] + "\n")  # then stdin stays open: settle waits for more
    process.stdin.flush()
    code, stderr = _interrupt(process, after=4.0)
    assert (code, error_line(stderr)) == (130, "error: interrupted\n")
    assert snapshot(db_url) == set()


def test_settle_ctrl_c_mid_statement_on_postgresql_is_interrupted_not_unavailable(
        pg_url, rules_dir, small_input) -> None:
    upgrade(pg_url)
    with held_settle_locks(pg_url):  # the child's statement waits for the run lock
        process = spawn(settle_args(rules_dir, small_input, pg_url))
        code, stderr = _interrupt(process, after=4.0)
    assert code == 130, stderr
    assert error_line(stderr) == "error: interrupted\n"
    assert "unavailable" not in stderr
    assert snapshot(pg_url) == set()


def test_hand_write_with_a_zero_lock_timeout_does_not_wait(db_url) -> None:
    """0 means "do not wait", never PostgreSQL's "lock_timeout = 0: wait forever"."""
    upgrade(db_url)
    with held_settle_locks(db_url):
        started = time.monotonic()
        result = CliRunner().invoke(main, ["ledger", "credit", "u1", "₹5", "--reference", "h:1",
                                           "--db", db_url, "--lock-timeout", "0"])
        waited = time.monotonic() - started
    assert result.exit_code == 75, result.output
    assert result.stderr.endswith(" (--no-wait); nothing was written, retry later\n")
    assert waited < 5
