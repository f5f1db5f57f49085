"""Run history: every settle run leaves a row (failed, dry and killed ones too), and
`referral runs list|show` and `referral quarantine list` read it back."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.tables import settlement_run_events, settlement_runs
from tests.faults.helpers import spawn
from tests.test_settle_cli import settle_args, snapshot
from tests.test_settlement import FIRST


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def runs_json(db_url: str, *extra: str) -> list[dict]:
    result = invoke("runs", "list", "--json", "--db", db_url, *extra)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def events(db_url: str) -> list[tuple[str, str, str]]:
    engine = open_engine(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(settlement_run_events.c.run_id,
                                      settlement_run_events.c.status,
                                      settlement_run_events.c.phase)
                            .order_by(settlement_run_events.c.id)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_runs_list_shows_succeeded_and_dry_runs_with_absolute_input(
        db_url, rules_dir, small_input, monkeypatch) -> None:
    upgrade(db_url)
    monkeypatch.chdir(small_input.parent)
    relative = small_input.name
    first = invoke(*settle_args(rules_dir, Path(relative), db_url, "--json"))
    assert first.exit_code == 0, first.output
    dry = invoke(*settle_args(rules_dir, Path(relative), db_url, "--json", "--dry-run"))
    assert dry.exit_code == 0, dry.output
    first_id, dry_id = json.loads(first.stdout)["run_id"], json.loads(dry.stdout)["run_id"]

    listed = runs_json(db_url)
    assert [(r["run_id"], r["status"]) for r in listed] == [(dry_id, "dry_run"),
                                                           (first_id, "succeeded")]
    run = listed[1]
    data = small_input.read_bytes()
    assert run["input_name"] == str(small_input)  # absolute, though given relative
    assert run["input_size"] == len(data)
    assert run["input_sha256"] == hashlib.sha256(data).hexdigest()  # lines as read
    assert run["as_of"] == "2026-01-10" and run["pid"] == os.getpid()
    assert (run["counts"]["records"], run["counts"]["posted"], run["counts"]["quarantined"]) \
        == (8, 11, 3)
    assert run["duration_s"] is not None and run["ended_at"] is not None
    engine = open_engine(db_url)
    with engine.connect() as conn:
        assert conn.execute(sa.select(settlement_runs.c.input_name)).scalar_one() \
            == str(small_input)
    engine.dispose()
    assert [r["run_id"] for r in runs_json(db_url, "--last", "1")] == [dry_id]

    text = invoke("runs", "list", "--db", db_url)
    assert text.exit_code == 0
    assert f"{first_id}  " in text.stdout and "succeeded" in text.stdout


def test_failed_run_leaves_a_failed_row_with_its_phase_and_error(
        db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    result = invoke(*settle_args(rules_dir, small_input, db_url, "--strict"))
    assert result.exit_code == 1
    assert snapshot(db_url) == set()  # nothing of the run, but its history
    [run] = runs_json(db_url)
    assert run["status"] == "failed" and run["phase"] == "evaluating"
    assert f"{small_input}:6: error: not valid JSON" in run["error"]
    assert run["error"].endswith("(--strict)")
    assert run["error"].startswith("SettlementError: ")
    rows = [e[1:] for e in events(db_url)]
    beside = [("running", "locking")] if db_url.startswith("postgresql") else []
    assert rows == [("running", "start"), *beside, ("failed", "evaluating")]

    shown = invoke("runs", "show", run["run_id"][:6], "--db", db_url)
    assert shown.exit_code == 0, shown.output
    assert f"run {run['run_id']}: failed in phase evaluating" in shown.stdout
    assert "not valid JSON" in shown.stdout


def test_runs_show_json_of_a_committed_run(db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    settled = invoke(*settle_args(rules_dir, small_input, db_url, "--json"))
    run_id = json.loads(settled.stdout)["run_id"]
    result = invoke("runs", "show", run_id, "--json", "--db", db_url)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["status"] == "succeeded" and data["quarantined_rows"] == 3
    assert [(e["status"], e["phase"]) for e in data["events"]][0] == ("running", "start")
    assert data["events"][-1]["status"] == "succeeded"
    assert data["committed"]["posted"] == 11
    assert data["committed"]["amount_posted"] == {"INR": 190000}


@pytest.mark.parametrize("run", ["nope", ""])
def test_runs_show_unknown_run_exit_1(db_url, rules_dir, small_input, run) -> None:
    upgrade(db_url)
    for _ in range(2):
        assert invoke(*settle_args(rules_dir, small_input, db_url)).exit_code == 0
    result = invoke("runs", "show", run, "--db", db_url)
    assert result.exit_code == 1
    expected = ("error: no settlement run 'nope'" if run
                else "error: run id prefix '' names 2 runs")
    assert result.stderr.startswith(expected), result.stderr


def test_quarantine_list_json_csv_and_run_filter(db_url, rules_dir, small_input) -> None:
    upgrade(db_url)
    with small_input.open("a") as fh:
        fh.write('=HYPERLINK("http://x")\n')
    first = json.loads(invoke(*settle_args(rules_dir, small_input, db_url, "--json")).stdout)
    invoke(*settle_args(rules_dir, small_input, db_url, "--json"))

    every = invoke("quarantine", "list", "--json", "--db", db_url)
    assert every.exit_code == 0, every.output
    rows = [json.loads(line) for line in every.stdout.splitlines()]
    assert len(rows) == 8  # 4 per run
    mine = invoke("quarantine", "list", "--run", first["run_id"][:10], "--json", "--db", db_url)
    rows = [json.loads(line) for line in mine.stdout.splitlines()]
    rows.sort(key=lambda r: r["line"])
    assert [(r["line"], r["run_id"]) for r in rows] == [(n, first["run_id"]) for n in (6, 7, 8, 9)]
    assert rows[0]["reason"].startswith("not valid JSON")
    assert rows[1]["reason"] == "missing required field referee.id"

    as_csv = invoke("quarantine", "list", "--run", first["run_id"], "--csv", "--db", db_url)
    parsed = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    parsed.sort(key=lambda r: int(r["line"]))
    assert [int(r["line"]) for r in parsed] == [6, 7, 8, 9]
    assert parsed[-1]["raw"] == "'=HYPERLINK(\"http://x\")"  # not a formula in a spreadsheet

    text = invoke("quarantine", "list", "--db", db_url)
    assert f"{first['run_id'][:12]}  {small_input}:7: missing required field referee.id" \
        in text.stdout


def test_quarantine_list_json_and_csv_exclude_each_other(db_url) -> None:
    upgrade(db_url)
    result = invoke("quarantine", "list", "--json", "--csv", "--db", db_url)
    assert result.exit_code == 2


@pytest.fixture
def big_input(tmp_path: Path) -> Path:
    path = tmp_path / "big.jsonl"
    with path.open("w") as fh:
        write_records(fh, 20000, seed=5)
    return path


def _kill_when_read(proc, records: int) -> dict:
    """kill -9 ``proc`` once a JSON progress line reports ``records`` read."""
    assert proc.stderr is not None
    for line in proc.stderr:
        entry = json.loads(line)
        if entry["event"] == "progress" and entry["counts"]["records"] >= records:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return entry
    raise AssertionError(f"settle ended before {records} records: {proc.wait()}")


@pytest.mark.slow
def test_killed_run_is_aborted_and_the_next_start_records_it(
        db_url, rules_dir, big_input) -> None:
    upgrade(db_url)
    proc = spawn(settle_args(rules_dir, big_input, db_url, "--log-format", "json",
                             "--progress-every", "2000"))
    _kill_when_read(proc, 4000)
    assert snapshot(db_url) == set()
    deadline = time.monotonic() + 10
    while (runs := runs_json(db_url))[0]["status"] == "running":  # the server notices the kill
        assert time.monotonic() < deadline, runs
        time.sleep(0.1)
    [killed] = runs
    assert killed["status"] == "aborted"
    # PostgreSQL records phases beside the run; SQLite's one write lock is the run's.
    expected_phase = "reading" if db_url.startswith("postgresql") else "start"
    assert killed["phase"] == expected_phase
    if expected_phase == "reading":
        assert killed["counts"]["records"] >= 4000

    rerun = invoke(*settle_args(rules_dir, big_input, db_url, "--json", "--log-format", "json"))
    assert rerun.exit_code == 0, rerun.output
    warnings = [json.loads(line) for line in rerun.stderr.splitlines()]
    resolved = [w for w in warnings if w["event"] == "resolved"]
    assert [w["resolved_run"] for w in resolved] == [killed["run_id"]]
    assert resolved[0]["message"] == (f"run {killed['run_id']} was aborted in phase "
                                      f"{expected_phase}: nothing of it was written")
    assert [e[1:] for e in events(db_url) if e[0] == killed["run_id"]][-1] \
        == ("aborted", expected_phase)
    assert [r["status"] for r in runs_json(db_url)] == ["succeeded", "aborted"]


@pytest.mark.parametrize(("newest", "committed", "live", "shown"), [
    ("succeeded", False, False, "succeeded"),
    ("failed", True, False, "failed"),
    ("dry_run", False, True, "dry_run"),
    ("running", False, True, "running"),
    ("running", False, False, "aborted"),
    ("running", True, False, "succeeded"),   # killed after COMMIT, before its end row
    ("unknown", True, False, "succeeded"),
    ("unknown", False, True, "failed"),      # done with its transaction, which never committed
])
def test_status_derived_from_the_newest_row(newest, committed, live, shown) -> None:
    from settlement.runs import _derive

    assert _derive(newest, committed, live) == shown


def test_stdin_runs_are_recorded_as_stdin(db_url, rules_dir) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, ["settle", "--rules", str(rules_dir), "--records", "-",
                                       "--db", db_url, "--as-of", "2026-01-10"],
                                input=FIRST[0] + "\n")
    assert result.exit_code == 0, result.output
    [run] = runs_json(db_url)
    assert (run["input_name"], run["input_size"]) == ("<stdin>", None)
    assert run["input_sha256"] == hashlib.sha256(FIRST[0].encode() + b"\n").hexdigest()


@pytest.mark.slow
def test_interrupted_run_leaves_a_failed_row_with_its_phase(db_url, rules_dir, big_input) -> None:
    upgrade(db_url)
    proc = spawn(settle_args(rules_dir, big_input, db_url, "--log-format", "json",
                             "--progress-every", "2000"))
    assert proc.stderr is not None
    for line in proc.stderr:
        entry = json.loads(line)
        if entry["event"] == "progress":
            proc.send_signal(signal.SIGINT)  # Ctrl-C
            break
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    assert snapshot(db_url) == set()
    [run] = runs_json(db_url)
    assert (run["status"], run["error"]) == ("failed", "interrupted")
    assert run["phase"] in ("reading", "evaluating", "posting")


def test_a_run_marker_in_another_database_is_not_this_ones(pg_url) -> None:
    """Advisory locks belong to a database while ``pg_locks`` lists the server's: a live run
    of another database on the same server (another program, a parallel test) must not
    make this database's run look alive."""
    from settlement.dialect import backend
    from settlement.locks import RUN_MARKER_NAMESPACE
    from tests.conftest import fresh_pg_database

    with fresh_pg_database("referral_other") as other_url:
        other, here = open_engine(other_url), open_engine(pg_url)
        try:
            with other.connect() as holder, here.connect() as conn:
                backend(holder).hold_marker(holder, RUN_MARKER_NAMESPACE, 4242)
                holder.commit()
                assert 4242 in (backend(holder).markers_held(holder, RUN_MARKER_NAMESPACE)
                                or set())
                assert 4242 not in (backend(conn).markers_held(conn, RUN_MARKER_NAMESPACE)
                                    or set())
                backend(holder).release_marker(holder, RUN_MARKER_NAMESPACE, 4242)
                holder.commit()
        finally:
            other.dispose()
            here.dispose()
