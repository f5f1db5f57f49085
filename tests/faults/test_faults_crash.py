"""kill -9 during `referral settle`, on SQLite and PostgreSQL: a kill before COMMIT leaves
the ledger exactly as it was, a kill after COMMIT leaves exactly the completed run, never
anything in between; the rerun ends where an uninterrupted run does.

Kills come two ways: at moments spread over an uninterrupted run's timeline (while the
input streams in, on reaching a byte offset; after it, on the clock), with nothing
holding the run back, so a late kill may land after COMMIT; and at each named point of
``settlement.faultpoints`` (mid-write, after-read, before-commit, after-commit), where
the run waits to be killed, so every phase is hit for sure."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest

from settlement.db import upgrade
from settlement.demo import write_records
from settlement.faultpoints import ENV, POINTS
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
LEDGER = ("entries", "transitions", "postings")


def ledger_only(state: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The money (a rerun that posts nothing still logs its run and its quarantine)."""
    return {k: state[k] for k in LEDGER}


def kill_at_point(args: list[str], point: str, timeout: float = 600) -> str:
    """Run until ``point``, kill -9 it there; its stderr up to the point."""
    proc = spawn(args, env={ENV: point})
    guard = threading.Timer(timeout, proc.kill)
    guard.start()
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        while line := proc.stderr.readline():
            seen.append(line)
            if line.strip() == f"fault point: {point}":
                break
        else:
            raise AssertionError(f"settle never reached {point}: exit {proc.wait()}, "
                                 f"stderr: {''.join(seen)}")
        assert proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
    finally:
        guard.cancel()
    assert proc.returncode == -signal.SIGKILL, (point, proc.returncode)
    return "".join(seen)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_kill_9_leaves_the_ledger_before_or_after_the_run_never_between(
    backend, request, scale, figure, tmp_path: Path
) -> None:
    if backend == "postgresql":
        url = request.getfixturevalue("pg_url")
        reference = request.getfixturevalue("second_pg_url")
    else:
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        reference = f"sqlite:///{tmp_path / 'reference.db'}"
    records = tmp_path / "records.jsonl"
    with records.open("w") as fh:
        write_records(fh, scale.crash_records, seed=11)
    first = tmp_path / "first.jsonl"  # the night before: its start of the same stream
    lines = records.read_text().splitlines(keepends=True)
    first.write_text("".join(lines[: scale.crash_first]))

    # Both databases hold last night's run: kills must keep it, refunds reverse it, holds end.
    for u in (url, reference):
        upgrade(u)
        result = cli(*settle_args(RULES_DIR, first, u, FIRST_NIGHT, "--json"))
        assert result.exit_code == 0, result.output
    before = ledger_state(url)
    assert before == ledger_state(reference) and before["entries"]

    # The uninterrupted run, on the reference database: the state a completed run leaves,
    # and the timeline to spread the timed kills over.
    night = settle_args(RULES_DIR, records, reference, NIGHT, "--json")
    timeline, _ = run_watched(night, records)
    completed = ledger_only(ledger_state(reference))
    assert len(completed["entries"]) > len(before["entries"])
    args = settle_args(RULES_DIR, records, url, NIGHT, "--json")
    size = records.stat().st_size
    span = timeline.exited - timeline.opened
    rng = random.Random(SEED)
    reading = after = landed_after_commit = 0
    where: list[float] = []
    for _ in range(scale.kills):
        u = rng.uniform(0.02, 0.98)
        at = timeline.opened + u * span
        proc = spawn(args)
        if at < timeline.read:  # while records stream in: kill on reaching that byte
            fraction = (at - timeline.opened) / (timeline.read - timeline.opened)
            alive = wait_for_offset(proc, records, int(fraction * size))
            reading += 1
        else:  # input read: last chunk, confirmations, run log, COMMIT; kill on the clock
            alive = wait_until_read(proc, records)
            time.sleep(max(0.0, at - timeline.read))
            after += 1
        if alive and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        where.append(u)
        state = ledger_state(url)
        if state == before:
            continue
        # Not as before: then the run committed (the kill came too late), and wholly.
        assert ledger_only(state) == completed, f"kill at {u:.0%} of the run left a partial ledger"
        landed_after_commit += 1
        before = state  # later kills hit reruns, which must keep this

    # Each named point, for sure: before COMMIT nothing changes, after COMMIT all of it.
    for point in POINTS:
        state = ledger_state(url)
        out = kill_at_point(args, point)
        assert "Traceback" not in out, out
        if point == "after-commit":
            assert ledger_only(ledger_state(url)) == completed, "killed after COMMIT"
        else:
            assert ledger_state(url) == state, f"a kill at {point} changed the ledger"

    rerun = spawn(args)
    _, err = rerun.communicate(timeout=900)
    assert rerun.returncode == 0, err
    final = ledger_state(url)
    assert ledger_only(final) == completed
    assert export_without_times(url) == export_without_times(reference)
    verify_ok(url)
    figure(
        f"crash ({backend}): {len(where) + len(POINTS)} kill -9 ({len(where)} timed at "
        f"{min(where):.0%}..{max(where):.0%} of a {span:.1f}s run over "
        f"{scale.crash_records:,} records, {reading} while reading, {after} after, "
        f"{landed_after_commit} after COMMIT; and one at each of {', '.join(POINTS)}), "
        f"0 partial: each left the ledger as before the run or as the completed run; "
        f"final ledger identical to an uninterrupted run ({len(final['entries']):,} entries, "
        f"{len(final['transitions']):,} transitions), verify ok"
    )
