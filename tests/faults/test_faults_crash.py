"""kill -9 during `referral settle` on PostgreSQL: every kill leaves the ledger as it was,
and the rerun ends exactly where an uninterrupted run does."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from settlement.db import upgrade
from settlement.demo import write_records
from tests.faults.helpers import (
    RULES_DIR,
    cli,
    export_without_times,
    ledger_state,
    run_watched,
    settle_args,
    spawn,
    verify_ok,
    wait_for_offset,
    wait_until_read,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

SEED = 20261125
FIRST_NIGHT, NIGHT = "2026-09-01", "2026-11-25"


def test_kill_9_at_random_points_leaves_ledger_unchanged(
    pg_url, second_pg_url, scale, figure, tmp_path: Path
) -> None:
    records = tmp_path / "records.jsonl"
    with records.open("w") as fh:
        write_records(fh, scale.crash_records, seed=11)
    first = tmp_path / "first.jsonl"  # the night before: its start of the same stream
    lines = records.read_text().splitlines(keepends=True)
    first.write_text("".join(lines[: scale.crash_first]))

    # Both databases hold last night's run: kills must keep it, refunds reverse it, holds end.
    for url in (pg_url, second_pg_url):
        upgrade(url)
        result = cli(*settle_args(RULES_DIR, first, url, FIRST_NIGHT, "--json"))
        assert result.exit_code == 0, result.output
    before = ledger_state(pg_url)
    assert before == ledger_state(second_pg_url) and before["entries"]

    # The uninterrupted run, on the second database, measures the run to spread kills over.
    timeline, _ = run_watched(settle_args(RULES_DIR, records, second_pg_url, NIGHT, "--json"),
                              records)
    size = records.stat().st_size
    span = timeline.exited - timeline.opened
    rng = random.Random(SEED)
    reading = after = 0
    where: list[float] = []
    for _ in range(scale.kills):
        u = rng.uniform(0.02, 0.98)
        at = timeline.opened + u * span
        # The run's last write goes to the run log: while the test holds it, the run can
        # get as far as that write but cannot commit, so a timed kill cannot come too late.
        gate = sa.create_engine(pg_url)
        with gate.connect() as held:
            held.execute(sa.text("LOCK TABLE settlement_runs IN ACCESS EXCLUSIVE MODE"))
            proc = spawn(settle_args(RULES_DIR, records, pg_url, NIGHT, "--json"))
            if at < timeline.read:  # while records stream in: kill on reaching that byte
                fraction = (at - timeline.opened) / (timeline.read - timeline.opened)
                alive = wait_for_offset(proc, records, int(fraction * size))
                reading += 1
            else:  # input read: last chunk, confirmations, run log; kill on the clock
                alive = wait_until_read(proc, records)
                time.sleep(max(0.0, at - timeline.read))
                after += 1
            assert alive and proc.poll() is None, (
                f"settle finished before the kill at {u:.0%} of the run; "
                f"stderr: {proc.communicate()[1]}"
            )
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
            held.rollback()
        gate.dispose()
        assert proc.returncode == -signal.SIGKILL
        where.append(u)
        assert ledger_state(pg_url) == before, f"kill at {u:.0%} of the run changed the ledger"

    rerun = spawn(settle_args(RULES_DIR, records, pg_url, NIGHT, "--json"))
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    final = ledger_state(pg_url)
    assert final == ledger_state(second_pg_url)
    assert export_without_times(pg_url) == export_without_times(second_pg_url)
    assert len(final["entries"]) > len(before["entries"])
    verify_ok(pg_url)
    figure(
        f"crash: {len(where)}/{scale.kills} kill -9 (at {min(where):.0%}..{max(where):.0%} of a "
        f"{span:.1f}s run over {scale.crash_records:,} records; {reading} while reading, "
        f"{after} after), 0 partial postings, final ledger identical to an uninterrupted run "
        f"({len(final['entries']):,} entries, {len(final['transitions']):,} transitions), "
        "verify ok"
    )
