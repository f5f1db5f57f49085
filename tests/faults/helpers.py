"""What the fault tests share: running `referral settle` as cron does, watching it, and
reading back everything a run writes so that "unchanged" can be checked exactly."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.db import open_engine
from settlement.tables import (
    ledger_entries,
    ledger_postings,
    ledger_transitions,
    settlement_quarantine,
    settlement_runs,
)

RULES_DIR = Path(__file__).resolve().parents[2] / "rules"


def settle_args(rules: Path, records: Path, db: str, as_of: str, *extra: str) -> list[str]:
    return ["settle", "--rules", str(rules), "--records", str(records), "--db", db,
            "--as-of", as_of, *extra]


def spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """`referral ...` in its own process (kill -9 needs one)."""
    return subprocess.Popen([sys.executable, "-m", "referral", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def cli(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def input_offset(pid: int, path: Path) -> int | None:
    """How far process ``pid`` has read ``path`` (None: not open, or not any more)."""
    target = str(path.resolve())
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != target:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as fh:
                for line in fh:
                    if line.startswith("pos:"):
                        return int(line.split()[1])
        except OSError:
            continue
    return None


def wait_for_offset(proc: subprocess.Popen, path: Path, at_least: int, timeout: float = 300):
    """Block until ``proc`` has read ``at_least`` bytes of ``path``; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        pos = input_offset(proc.pid, path)
        if pos is not None and pos >= at_least:
            return True
        time.sleep(0.005)
    raise AssertionError(f"settle did not read {at_least} bytes of {path} in {timeout}s")


def wait_until_read(proc: subprocess.Popen, path: Path, timeout: float = 300) -> bool:
    """Block until ``proc`` has read all of ``path`` and closed it; False if it ended first."""
    if not wait_for_offset(proc, path, 0, timeout):  # opened
        return False
    while input_offset(proc.pid, path) is not None:
        if proc.poll() is not None:
            return False
        time.sleep(0.002)
    return proc.poll() is None


@dataclass(frozen=True)
class Timeline:
    """When an uninterrupted run opened its input, finished reading it, and exited (seconds)."""

    opened: float
    read: float
    exited: float


def run_watched(args: list[str], path: Path, timeout: float = 900) -> tuple[Timeline, str]:
    """Run a settle to completion, sampling how far it has read its input."""
    start = time.monotonic()
    proc = spawn(args)
    opened = read = None
    while proc.poll() is None:
        pos = input_offset(proc.pid, path)
        now = time.monotonic() - start
        if pos is not None and opened is None:
            opened = now
        if pos is None and opened is not None and read is None:
            read = now
        if now > timeout:
            proc.kill()
            raise AssertionError("uninterrupted settle took too long")
        time.sleep(0.005)
    exited = time.monotonic() - start
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert opened is not None, "never saw the settle open its input"
    return Timeline(opened, read if read is not None else exited, exited), out


def ledger_state(url: str) -> dict[str, list[tuple]]:
    """Everything settlement writes, minus what differs between equal runs (run ids,
    clocks, hashes over clocks, sequence-assigned ids that a rolled-back run used up)."""
    engine = open_engine(url)
    e, t, p = ledger_entries, ledger_transitions, ledger_postings
    try:
        with engine.connect() as conn:
            entries = conn.execute(
                sa.select(e.c.id, e.c.reference_id, e.c.user_id, e.c.amount, e.c.currency,
                          e.c.entry_type, e.c.reversal_id, e.c.rule_id, e.c.rule_hash,
                          e.c.referral_id, e.c.role, e.c.event_date, e.c.hold_until)
                .order_by(e.c.id)
            ).all()
            transitions = conn.execute(
                sa.select(e.c.reference_id, t.c.from_status, t.c.to_status, t.c.reason)
                .join(e, e.c.id == t.c.entry_id).order_by(t.c.id)
            ).all()
            postings = conn.execute(
                sa.select(e.c.reference_id, p.c.account, p.c.currency, p.c.amount,
                          t.c.to_status)
                .join(e, e.c.id == p.c.entry_id)
                .outerjoin(t, t.c.id == p.c.transition_id).order_by(p.c.id)
            ).all()
            r = settlement_runs
            runs = conn.execute(
                sa.select(r.c.as_of, r.c.rules_digest, r.c.input_digest, r.c.input_name,
                          r.c.records, r.c.rewarded, r.c.posted, r.c.already_posted,
                          r.c.capped, r.c.reversed, r.c.confirmed, r.c.quarantined,
                          r.c.amount_posted, r.c.ledger_head_id)
                .order_by(r.c.ledger_head_id, r.c.started_at)
            ).all()
            q = settlement_quarantine
            quarantine = conn.execute(
                sa.select(q.c.file, q.c.line, q.c.raw, q.c.reason).order_by(q.c.id)
            ).all()
    finally:
        engine.dispose()
    return {"entries": [tuple(x) for x in entries],
            "transitions": [tuple(x) for x in transitions],
            "postings": [tuple(x) for x in postings],
            "runs": [tuple(x) for x in runs],
            "quarantine": [tuple(x) for x in quarantine]}


def export_without_times(url: str) -> list[dict[str, Any]]:
    """`referral ledger export`, one dict per entry, without the clock (nor the run id, a
    random name per run)."""
    result = cli("ledger", "export", "--db", url)
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    for row in rows:
        del row["timestamp"], row["run_id"]
    return rows


def verify_ok(url: str) -> str:
    result = cli("ledger", "verify", "--db", url)
    assert result.exit_code == 0, result.output
    return result.stdout.strip()


def tight_limits(src: Path, dst: Path, divisor: int = 5) -> Path:
    """The example program with every LIMIT ``divisor`` times smaller, so that a few
    thousand demo records meet them (the example's own limits are for a real month)."""
    dst.mkdir(parents=True, exist_ok=True)

    def smaller(m: re.Match[str]) -> str:
        rupees = int(m.group(2).replace(",", "")) // divisor
        return f"{m.group(1)}₹{rupees:,}"

    for f in sorted(src.glob("*.rule")):
        text = re.sub(r"(?m)^(\s*LIMIT )₹([\d,]+)", smaller, f.read_text(encoding="utf-8"))
        (dst / f.name).write_text(text, encoding="utf-8")
    return dst


# A settle log line (``referral.cli.logs.TextFormatter``): timestamp, level, the rest.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")


def one_line_error(stderr: str) -> str:
    """The CLI's whole stderr but its log lines, checked to be one ``error: ...`` line and
    no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.strip().splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]
