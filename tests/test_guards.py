"""A run that fails as a whole: empty input, too much quarantine, an as-of going back."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner

from referral.cli import main
from settlement.db import upgrade
from settlement.guards import QuarantineLimit
from tests.test_settle_cli import error_line, settle_args, snapshot
from tests.test_settlement import FIRST


def records(tmp_path: Path, lines: list[str], name: str = "in.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


BAD = ['{"referral_id": "x1", "referrer": ', "not json", '{"referral_id": "x3"}']


@pytest.mark.parametrize(("text", "limit"), [
    ("0", QuarantineLimit(count=0)), ("10", QuarantineLimit(count=10)),
    ("2.5%", QuarantineLimit(percent=Decimal("2.5"))), ("100%", QuarantineLimit(percent=100)),
])
def test_quarantine_limit_parses(text, limit) -> None:
    assert QuarantineLimit.parse(text) == limit
    assert str(QuarantineLimit.parse(text)) == text


@pytest.mark.parametrize("text", ["", "ten", "-1", "1.5", "101%", "5 %x"])
def test_quarantine_limit_refuses(text) -> None:
    with pytest.raises(ValueError):
        QuarantineLimit.parse(text)


@pytest.mark.parametrize(("limit", "quarantined", "records", "ok"), [
    ("3", 3, 10, True), ("3", 4, 10, False), ("30%", 3, 10, True), ("30%", 4, 10, False),
    ("0", 0, 10, True), ("0%", 1, 1000, False),
])
def test_quarantine_limit_allows(limit, quarantined, records, ok) -> None:
    assert QuarantineLimit.parse(limit).allows(quarantined, records) is ok


def test_all_records_quarantined_fails_exit_4_naming_the_first_reasons(
        db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = records(tmp_path, BAD)
    result = CliRunner().invoke(main, settle_args(rules_dir, path, db_url))
    assert result.exit_code == 4, result.output
    assert error_line(result.stderr).startswith(f"error: all 3 records of {path} were quarantined;"
                                    " nothing was written; first: " f"{path}:1: ")
    assert f"{path}:2: " in result.stderr and f"{path}:3: " in result.stderr
    assert error_line(result.stderr)
    assert snapshot(db_url) == set()
    accepted = CliRunner().invoke(main, settle_args(rules_dir, path, db_url,
                                                    "--max-quarantine", "100%", "--json"))
    assert accepted.exit_code == 0, accepted.output
    assert json.loads(accepted.stdout)["quarantined"] == 3


def test_max_quarantine_beyond_the_limit_writes_nothing(db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = records(tmp_path, FIRST)  # 8 records, 3 of them quarantined
    over = CliRunner().invoke(main, settle_args(rules_dir, path, db_url, "--max-quarantine", "2"))
    assert over.exit_code == 4
    assert error_line(over.stderr).startswith(
        f"error: 3 of 8 records of {path} were quarantined, more than --max-quarantine 2"
        " allows; nothing was written; first: ")
    assert snapshot(db_url) == set()
    pct = CliRunner().invoke(main, settle_args(rules_dir, path, db_url, "--max-quarantine", "30%"))
    assert pct.exit_code == 4 and "more than --max-quarantine 30% allows" in pct.stderr
    ok = CliRunner().invoke(main, settle_args(rules_dir, path, db_url, "--json"),
                            env={"REFERRAL_MAX_QUARANTINE": "40%"})
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["posted"] == 11


def test_bad_max_quarantine_is_a_usage_error(db_url, rules_dir, tmp_path) -> None:
    result = CliRunner().invoke(main, settle_args(rules_dir, records(tmp_path, FIRST), db_url,
                                                  "--max-quarantine", "lots"))
    assert result.exit_code == 2
    assert "'lots' is not a count (10) or a percentage (2.5%)" in result.stderr


@pytest.mark.parametrize("stdin", [True, False])
def test_empty_input_fails_exit_4_unless_allow_empty(db_url, rules_dir, tmp_path, stdin) -> None:
    upgrade(db_url)
    path = records(tmp_path, [])
    args = settle_args(rules_dir, Path("-") if stdin else path, db_url)
    name = "<stdin>" if stdin else str(path)
    result = CliRunner().invoke(main, args, input="")
    assert result.exit_code == 4
    assert error_line(result.stderr) == (
        f"error: {name}: no records; nothing was written (--allow-empty settles an empty"
        " input, which only confirms the holds that ended)\n")
    allowed = CliRunner().invoke(main, [*args, "--allow-empty", "--json"], input="")
    assert allowed.exit_code == 0, allowed.output
    assert json.loads(allowed.stdout)["records"] == 0


def test_as_of_before_the_newest_run_is_refused_unless_backfill(db_url, rules_dir,
                                                                tmp_path) -> None:
    upgrade(db_url)
    path = records(tmp_path, FIRST)
    assert CliRunner().invoke(main, settle_args(rules_dir, path, db_url)).exit_code == 0
    args = ["settle", "--rules", str(rules_dir), "--records", str(path), "--db", db_url]
    before = snapshot(db_url)
    back = CliRunner().invoke(main, [*args, "--as-of", "2026-01-09"])
    assert back.exit_code == 1
    assert error_line(back.stderr).startswith(
        "error: --as-of 2026-01-09 is before the newest run's as-of 2026-01-10 (run ")
    assert error_line(back.stderr).endswith(
        "): runs go forward in time; pass --backfill to settle an earlier date on purpose\n")
    same = CliRunner().invoke(main, [*args, "--as-of", "2026-01-10"])
    assert same.exit_code == 0  # a rerun of the same date
    backfill = CliRunner().invoke(main, [*args, "--as-of", "2026-01-09", "--backfill"])
    assert backfill.exit_code == 0, backfill.output
    assert snapshot(db_url) == before
