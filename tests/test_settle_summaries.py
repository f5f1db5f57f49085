"""Honest summaries: a rerun of the same input reports the same state counters, and a dry
run's JSON says it was one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from referral.cli import main
from settlement.db import upgrade
from settlement.demo import write_records
from tests.test_settle_cli import settle_args
from tests.test_settlement import rec

# Where the input stands after the run: the same on a rerun.
STATE = ("records", "rewarded", "capped", "stale", "retired", "conflicts", "quarantined")
# What the run changed: nothing on a rerun.
CHANGES = ("posted", "reversed", "adjusted", "moved", "superseded", "confirmed")

# A's LIMIT is ₹1,200 a month.  r3 is cut to ₹200 and r4 to nothing when read; r1's refund,
# read last, frees ₹500, which the end of the run gives r3 (₹300) and r4 (₹200), in the
# order they were cut.  After the run r4 stands below its entitlement (capped), r1's
# first line is superseded by its refund (stale), and r1..r4 each have something standing.
LIMIT_FREED_LATE = [
    rec("r1", "A", "B", created="2026-01-01"),
    rec("r2", "A", "C", created="2026-01-05"),
    rec("r3", "A", "D", created="2026-01-20"),
    rec("r4", "A", "E", created="2026-01-25"),
    rec("r1", "A", "B", created="2026-01-01", refunded=True),
]


def settle_json(rules_dir: Path, path: Path, db_url: str, *extra: str) -> dict:
    result = CliRunner().invoke(main, settle_args(rules_dir, path, db_url, "--json", *extra))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_rerun_reports_the_same_state_counters(db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = tmp_path / "limit.jsonl"
    path.write_text("\n".join(LIMIT_FREED_LATE) + "\n", encoding="utf-8")
    first = settle_json(rules_dir, path, db_url)
    second = settle_json(rules_dir, path, db_url)
    third = settle_json(rules_dir, path, db_url)

    assert {k: first[k] for k in STATE} == {
        "records": 5, "rewarded": 4, "capped": 1, "stale": 1, "retired": 0, "conflicts": 0,
        "quarantined": 0}
    assert {k: second[k] for k in STATE} == {k: first[k] for k in STATE}
    assert {k: third[k] for k in STATE} == {k: first[k] for k in STATE}
    assert first["posted"] > 0 and first["adjusted"] == 2  # the two top-ups
    assert {k: second[k] for k in CHANGES} == dict.fromkeys(CHANGES, 0)
    assert second["already_posted"] == third["already_posted"] > 0


def versioned(line: str, version: int) -> str:
    return json.dumps({**json.loads(line), "version": version})


@pytest.mark.parametrize(("lines", "stale", "rewarded"), [
    # the same snapshot twice, then a change: both earlier records are superseded
    ([rec("r1", "A", "B"), rec("r1", "A", "B"), rec("r1", "A", "B", refunded=True)], 2, 1),
    # versions read out of order: the older one is stale
    ([versioned(rec("r1", "A", "B", refunded=True), 2), versioned(rec("r1", "A", "B"), 1)],
     1, 1),
    # exact copies are all the newest snapshot
    ([rec("r1", "A", "B"), rec("r1", "A", "B")], 0, 2),
    # a referral that stops paying anything
    ([rec("r5", "G", "H"), rec("r5", "G", "H", subscribed=False)], 1, 0),
], ids=["copies-then-change", "versions-out-of-order", "exact-copies", "stops-paying"])
def test_rerun_counters_on_repeated_referrals(db_url, rules_dir, tmp_path, lines, stale,
                                              rewarded) -> None:
    upgrade(db_url)
    path = tmp_path / "repeated.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    first = settle_json(rules_dir, path, db_url)
    second = settle_json(rules_dir, path, db_url)
    assert (first["stale"], first["rewarded"]) == (stale, rewarded)
    assert {k: second[k] for k in STATE} == {k: first[k] for k in STATE}


def test_rerun_counters_on_generated_records(db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = tmp_path / "demo.jsonl"
    with path.open("w") as fh:
        write_records(fh, 600, seed=3)  # repeats, refunds, bad lines, LIMIT cuts
    first = settle_json(rules_dir, path, db_url)
    second = settle_json(rules_dir, path, db_url)
    assert first["stale"] > 0 and first["capped"] > 0 and first["quarantined"] > 0
    assert {k: second[k] for k in STATE} == {k: first[k] for k in STATE}
    assert {k: second[k] for k in CHANGES} == dict.fromkeys(CHANGES, 0)


def test_a_dry_run_json_says_so(db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = tmp_path / "limit.jsonl"
    path.write_text("\n".join(LIMIT_FREED_LATE) + "\n", encoding="utf-8")
    dry = settle_json(rules_dir, path, db_url, "--dry-run")
    assert list(dry)[:4] == ["run_id", "dry_run", "as_of", "duration_s"]
    assert dry["dry_run"] is True and dry["as_of"] == "2026-01-10"
    assert isinstance(dry["duration_s"], float) and dry["duration_s"] >= 0
    real = settle_json(rules_dir, path, db_url)
    assert real["dry_run"] is False
    assert {k: dry[k] for k in STATE + CHANGES} == {k: real[k] for k in STATE + CHANGES}
