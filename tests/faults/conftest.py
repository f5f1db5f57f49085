"""The fault suite: its scale, a second PostgreSQL database, and the one-line figures.

``FAULTS_SCALE=short`` (the default, part of ``make test``) runs every fault at a
size that takes about a minute; ``FAULTS_SCALE=full`` (``make faults``) runs the
sizes the README quotes.  Each test records one line ("crash: 20/20 kills, ...");
they are printed at the end of the run and, with ``FAULTS_RESULTS=<file>``,
written to that file.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import fresh_pg_database


@dataclass(frozen=True)
class Scale:
    name: str
    kills: int  # kill -9 points in the crash suite
    crash_records: int  # lines of the big night's input
    crash_first: int  # lines settled the night before (the ledger the kills must keep)
    concurrent_records: int  # lines of the union of the 4 overlapping inputs
    settles: int  # simultaneous settles
    bad_records: int  # malformed JSONL records
    good_records: int
    fuzz_examples: int  # rule texts


SCALES = {
    "short": Scale("short", kills=3, crash_records=4000, crash_first=1000,
                   concurrent_records=2000, settles=4, bad_records=1000, good_records=2000,
                   fuzz_examples=1000),
    "full": Scale("full", kills=20, crash_records=30000, crash_first=5000,
                  concurrent_records=20000, settles=4, bad_records=1000, good_records=5000,
                  fuzz_examples=10000),
}

FIGURES: list[str] = []


@pytest.fixture(scope="session")
def scale() -> Scale:
    name = os.environ.get("FAULTS_SCALE", "short")
    if name not in SCALES:
        raise pytest.UsageError(f"FAULTS_SCALE must be one of {sorted(SCALES)}, got {name!r}")
    return SCALES[name]


@pytest.fixture
def figure() -> Callable[[str], None]:
    """Record this test's one-line figure (printed in the terminal summary)."""
    return FIGURES.append


@pytest.fixture
def second_pg_url(pg_url: str) -> Iterator[str]:
    """Another empty PostgreSQL database, for the uninterrupted run to compare against."""
    with fresh_pg_database("referral_faults") as url:
        yield url


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ARG001
    if not FIGURES:
        return
    scale = os.environ.get("FAULTS_SCALE", "short")
    terminalreporter.write_sep("=", f"fault suite ({scale})")
    for line in FIGURES:
        terminalreporter.write_line(line)
    out = os.environ.get("FAULTS_RESULTS")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(f"# fault suite, FAULTS_SCALE={scale}\n" + "\n".join(FIGURES) + "\n",
                             encoding="utf-8")


@pytest.fixture(autouse=True)
def patient_writers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults queue settles behind each other and hold locks on purpose: each waits as long
    as a whole run may take, not the default 30 s (``--lock-timeout``)."""
    monkeypatch.setenv("REFERRAL_LOCK_TIMEOUT", "900")
