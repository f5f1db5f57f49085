"""`settle` logs: as cron runs it (no TTY, JSON lines), -q and -v, and the samples."""

from __future__ import annotations

import json
from datetime import datetime

from click.testing import CliRunner

from referral.cli import main
from settlement.db import upgrade
from tests.faults.helpers import spawn
from tests.test_settle_cli import settle_args

LOG_KEYS = {"ts", "level", "run_id", "phase", "event", "message", "counts"}


def parse_every_line(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert lines, "no log lines"
    parsed = [json.loads(line) for line in lines]  # every line, or this raises
    for entry in parsed:
        assert LOG_KEYS <= set(entry), entry
        datetime.fromisoformat(entry["ts"].replace("Z", "+00:00"))
    return parsed


def test_settle_as_cron_runs_it_every_stderr_line_is_json(db_url, rules_dir, small_input):
    upgrade(db_url)
    proc = spawn(settle_args(rules_dir, small_input, db_url, "--log-format", "json",
                             "--progress-every", "1"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    entries = parse_every_line(err)
    run_id = entries[0]["run_id"]
    assert {e["run_id"] for e in entries} == {run_id}
    assert f"settlement run {run_id} as of 2026-01-10" in out  # the summary stays on stdout
    events = [(e["event"], e["phase"]) for e in entries]
    assert events[0] == ("start", "start")
    for phase in ("locking", "reading", "evaluating", "posting", "confirming", "committing"):
        assert ("phase", phase) in events, phase
    assert ("progress", "reading") in events
    assert events[-1] == ("summary", "done")
    summary = entries[-1]
    assert summary["status"] == "succeeded" and summary["level"] == "info"
    assert (summary["counts"]["records"], summary["counts"]["posted"]) == (8, 11)
    assert entries[0]["input"] == str(small_input) and entries[0]["as_of"] == "2026-01-10"


def test_settle_json_logs_a_failure_and_a_rule_warning_as_json(db_url, tmp_path, small_input):
    upgrade(db_url)
    rules = tmp_path / "anonymous.rule"  # no RULE header: a warning, and refused
    rules.write_text('IF referrer.plan = "paid" THEN ISSUE ₹100 REWARD\n', encoding="utf-8")
    result = CliRunner().invoke(main, settle_args(rules, small_input, db_url,
                                                  "--log-format", "json"))
    assert result.exit_code == 1
    entries = parse_every_line(result.stderr)
    assert entries[0]["event"] == "diagnostic" and entries[0]["level"] == "warning"
    assert entries[0]["message"].startswith(f"{rules}:1:")
    assert entries[-2]["event"] == "summary" and entries[-2]["status"] == "failed"
    assert entries[-1]["event"] == "error" and entries[-1]["level"] == "error"
    assert entries[-1]["run_id"] == entries[-2]["run_id"] is not None
    assert "--allow-anonymous-rules" in entries[-1]["message"]


def test_settle_default_output_shows_counts_only_and_v_the_samples(
        db_url, rules_dir, small_input):
    upgrade(db_url)
    default = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--dry-run"))
    assert default.exit_code == 0, default.output
    assert "capped:" not in default.stdout and "quarantined:" not in default.stdout
    assert "  capped                   1" in default.stdout
    assert " INFO    run " in default.stderr and " DEBUG " not in default.stderr

    verbose = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--dry-run",
                                                   "-v"))
    assert verbose.exit_code == 0, verbose.output
    assert ("  capped: reward:paid_bonus:r3:referrer: ₹500 cut to ₹200 by LIMIT ₹1,200 PER"
            " referrer PER MONTH") in verbose.stdout
    assert f"  quarantined: {small_input}:7: missing required field referee.id" \
        in verbose.stdout
    assert " DEBUG " in verbose.stderr


def test_settle_quiet_prints_nothing_on_success(db_url, rules_dir, small_input):
    upgrade(db_url)
    quiet = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "-q"))
    assert quiet.exit_code == 0, quiet.output
    assert (quiet.stdout, quiet.stderr) == ("", "")
    as_json = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "-q",
                                                   "--json"))
    assert as_json.stderr == ""
    assert json.loads(as_json.stdout)["already_posted"] == 11


def test_settle_quiet_and_verbose_exclude_each_other(db_url, rules_dir, small_input):
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "-q", "-v"))
    assert result.exit_code == 2
