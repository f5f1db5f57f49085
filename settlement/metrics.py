"""The metrics file of a settle run: Prometheus text format for node_exporter's textfile
collector, the usual way a cron job is watched (alert on an old success timestamp or a
non-zero exit code).

Written whole or not at all: a temporary file in the same directory, fsynced, then
``os.replace`` (the collector must never read half a file).  A failed run keeps the
previous success timestamp (read back from the file it replaces), so "no success
for 26 hours" alerts whatever happened since.  Amounts are integer minor units, one
series per currency.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field

PREFIX = "referral_settle"
LAST_SUCCESS = f"{PREFIX}_last_success_timestamp_seconds"


@dataclass(frozen=True)
class RunMetrics:
    """What one run reports; counts only for a run that finished (``finished``)."""

    exit_code: int
    duration_s: float
    dry_run: bool = False
    finished: bool = False
    records: int = 0
    posted: int = 0
    quarantined: int = 0
    amount_posted: dict[str, int] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and self.finished and not self.dry_run


def previous_success(path: str) -> float | None:
    """The success timestamp an existing metrics file holds (None: no file, or none in it)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                name, _, value = line.strip().partition(" ")
                if name == LAST_SUCCESS:
                    return float(value)
    except (OSError, ValueError):
        return None
    return None


def _number(value: float) -> str:
    return repr(round(value, 3)) if isinstance(value, float) else str(value)


def render(m: RunMetrics, last_success: float | None) -> str:
    """The file's text (exposition format 0.0.4)."""
    lines: list[str] = []

    def gauge(name: str, help_text: str, samples: list[tuple[str, float | int]]) -> None:
        lines.append(f"# HELP {PREFIX}_{name} {help_text}")
        lines.append(f"# TYPE {PREFIX}_{name} gauge")
        lines.extend(f"{PREFIX}_{name}{labels} {_number(v)}" for labels, v in samples)

    if last_success is not None:
        gauge("last_success_timestamp_seconds",
              "When a settle run last committed (Unix time).", [("", last_success)])
    gauge("last_run_timestamp_seconds", "When the last settle run ended (Unix time).",
          [("", round(m.at, 3))])
    gauge("last_exit_code", "Exit code of the last settle run (0 ok).", [("", m.exit_code)])
    gauge("last_duration_seconds", "How long the last settle run took.",
          [("", m.duration_s)])
    gauge("last_dry_run", "1 if the last settle run was a dry run.", [("", int(m.dry_run))])
    if m.finished:
        gauge("last_records", "Records the last settle run read.", [("", m.records)])
        gauge("last_posted", "Credits the last settle run posted.", [("", m.posted)])
        gauge("last_quarantined", "Records the last settle run quarantined.",
              [("", m.quarantined)])
        gauge("last_amount_posted_minor_units",
              "Sum of the credits the last settle run posted, in minor units.",
              [(f'{{currency="{c}"}}', a) for c, a in sorted(m.amount_posted.items())])
    return "\n".join(lines) + "\n"


def write_metrics(path: str, m: RunMetrics) -> None:
    """Replace ``path`` atomically with the metrics of run ``m``."""
    last = round(m.at, 3) if m.succeeded else previous_success(path)
    text = render(m, last)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # the collector runs as another user
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
