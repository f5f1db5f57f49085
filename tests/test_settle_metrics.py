"""`settle --metrics-file`: Prometheus text format, atomic, written on failure too."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from referral.cli import main
from settlement.db import upgrade
from settlement.metrics import RunMetrics, write_metrics
from tests.test_settle_cli import settle_args


def samples(path: Path) -> dict[tuple[str, tuple], float]:
    """Every sample of the file, parsed by the Prometheus client's own parser."""
    out = {}
    for family in text_string_to_metric_families(path.read_text(encoding="utf-8")):
        assert family.type == "gauge", family.name
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_file_of_a_successful_then_a_failed_run(db_url, rules_dir, small_input,
                                                        tmp_path) -> None:
    upgrade(db_url)
    metrics = tmp_path / "referral.prom"
    before = time.time()
    ok = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url,
                                              "--metrics-file", str(metrics)))
    assert ok.exit_code == 0, ok.output
    first = samples(metrics)
    success = first[("referral_settle_last_success_timestamp_seconds", ())]
    assert before - 1 <= success <= time.time() + 1
    assert first[("referral_settle_last_exit_code", ())] == 0
    assert first[("referral_settle_last_records", ())] == 8
    assert first[("referral_settle_last_posted", ())] == 11
    assert first[("referral_settle_last_quarantined", ())] == 3
    assert first[("referral_settle_last_amount_posted_minor_units",
                  (("currency", "INR"),))] == 190000
    assert first[("referral_settle_last_duration_seconds", ())] > 0
    assert first[("referral_settle_last_dry_run", ())] == 0
    assert oct(metrics.stat().st_mode & 0o777) == "0o644"

    failed = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--strict",
                                                  "--metrics-file", str(metrics)))
    assert failed.exit_code == 1
    second = samples(metrics)
    assert second[("referral_settle_last_exit_code", ())] == 1
    assert second[("referral_settle_last_success_timestamp_seconds", ())] == success  # kept
    assert second[("referral_settle_last_run_timestamp_seconds", ())] >= success
    assert ("referral_settle_last_posted", ()) not in second
    assert sorted(os.listdir(tmp_path)) == sorted(
        p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp"))  # no temp left


def test_metrics_file_of_a_first_run_that_fails_has_no_success(tmp_path, small_input,
                                                               rules_dir) -> None:
    metrics = tmp_path / "referral.prom"
    url = f"sqlite:///{tmp_path / 'never-upgraded.db'}"
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, url,
                                                  "--metrics-file", str(metrics)))
    assert result.exit_code == 1  # schema missing
    parsed = samples(metrics)
    assert parsed[("referral_settle_last_exit_code", ())] == 1
    assert ("referral_settle_last_success_timestamp_seconds", ()) not in parsed


def test_metrics_file_of_a_dry_run_keeps_the_last_success(db_url, rules_dir, small_input,
                                                          tmp_path) -> None:
    upgrade(db_url)
    metrics = tmp_path / "referral.prom"
    write_metrics(str(metrics), RunMetrics(exit_code=0, duration_s=1.0, finished=True, at=1e9))
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--dry-run",
                                                  "--metrics-file", str(metrics)))
    assert result.exit_code == 0, result.output
    parsed = samples(metrics)
    assert parsed[("referral_settle_last_success_timestamp_seconds", ())] == 1e9
    assert parsed[("referral_settle_last_dry_run", ())] == 1


def test_write_metrics_replaces_whole_or_not_at_all(tmp_path, monkeypatch) -> None:
    metrics = tmp_path / "referral.prom"
    write_metrics(str(metrics), RunMetrics(exit_code=0, duration_s=1.0, finished=True, at=1e9))
    old = metrics.read_text()

    def no_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_replace)
    with pytest.raises(OSError):
        write_metrics(str(metrics), RunMetrics(exit_code=3, duration_s=2.0))
    assert metrics.read_text() == old
    assert os.listdir(tmp_path) == ["referral.prom"]


def test_metrics_file_in_a_missing_directory_is_a_usage_error(tmp_path, small_input,
                                                              rules_dir) -> None:
    result = CliRunner().invoke(main, settle_args(
        rules_dir, small_input, f"sqlite:///{tmp_path / 'x.db'}", "--metrics-file",
        str(tmp_path / "nope" / "referral.prom")))
    assert result.exit_code == 2
    assert "no such directory" in result.stderr
