"""``rules check`` on large generated programs: validation must be linear.

A program of ``n`` rules (``check_program``) made to hit every pass of validation
at its worst: every rule at one priority, non-EXCLUSIVE and paying the referrer (the
equal-priority check compares rules that can both pay), each reading a field of its
own one edit from its neighbours' (the typo check), one phrase per ten rules, and
an EXAMPLE per hundred.  ``referral rules check`` runs as a child process on 1,000
and on 10,000 such rules (median of ``reps``); linear validation does about 10x the
work on ten times the rules.  Target: at most 15x.
"""

from __future__ import annotations

import resource
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import median, referral_argv

SIZES = (1_000, 10_000)
TARGET_RATIO = 15.0


def check_program(n: int) -> str:
    """``n`` rules at one priority, each with a field of its own (``referee.f00042``)."""
    out = []
    for p in range(0, n, 10):
        out.append(f'DEFINE "plan {p}" AS referrer.plan = "p{p}"\n')
    for i in range(n):
        phrase = f'\n  AND "plan {i - i % 10}"' if i % 2 else ""
        out.append(
            f'RULE g{i:05d} "generated"\n'
            f"  IF referee.f{i:05d} >= {i % 1000} AND referee.country IN [\"IN\", \"US\"]"
            f"{phrase}\n"
            f"  THEN ISSUE ₹{100 + i % 50} REWARD TO referrer\n")
    for i in range(0, n, 100):
        out.append(f'EXAMPLE "e{i}"\n  GIVEN referrer.id = "u1", referee.id = "u2", '
                   f'referee.f{i:05d} = {i % 1000}, referee.country = "IN"\n'
                   f"  EXPECT ISSUE ₹{100 + i % 50} TO referrer\n")
    return "\n".join(out)


def _run_check(path: Path) -> tuple[float, float, str]:
    """Wall and CPU seconds (user + system, of the child alone) of one ``rules check``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(referral_argv() + ["rules", "check", str(path)],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"rules check {path} failed:\n{run.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, run.stderr


def bench_check(tmp: Path, reps: int, log: Callable[[str], None],
                sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Median wall and CPU seconds per size; the ratio is of CPU time less that of a
    10-rule program (the interpreter's start and imports), so the box's other load and
    the fixed start-up cost do not flatter or hide the growth."""
    results: dict[int, dict[str, Any]] = {}
    for n in (10, *sizes):
        path = tmp / f"check-{n}.rule"
        path.write_text(check_program(n), encoding="utf-8")
        runs = [_run_check(path) for _ in range(reps)]
        results[n] = {"wall_s": median([r[0] for r in runs]),
                      "cpu_s": median([r[1] for r in runs]),
                      "all_cpu_s": [round(r[1], 2) for r in runs],
                      "warnings": runs[-1][2].count(": warning: ")}
        log(f"rules check, {n:,} rules: {results[n]['wall_s']:.2f} s wall, "
            f"{results[n]['cpu_s']:.2f} s CPU, {results[n]['warnings']:,} warnings")
    small, large = min(sizes), max(sizes)
    start_cpu = results[10]["cpu_s"]
    return {
        "sizes": list(sizes), "reps": reps, "start_cpu_s": start_cpu,
        "runs": {str(n): r for n, r in results.items()},
        "ratio": (results[large]["cpu_s"] - start_cpu) / (results[small]["cpu_s"] - start_cpu),
        "size_ratio": large / small,
    }


def render_check(c: dict[str, Any]) -> list[str]:
    sizes = [int(n) for n in c["sizes"]]
    runs = c["runs"]
    ratio = c["ratio"]
    return [
        "", "## 6. `rules check` on large programs", "",
        "`referral rules check` (child process, median of"
        f" {c['reps']}) on generated programs (bench/check.py: every rule at one priority,"
        " each with a field of its own one edit from its neighbours', a phrase per ten"
        " rules, an example per hundred). CPU time is the child's own (user + system);"
        f" the growth is of CPU time less a 10-rule program's ({c['start_cpu_s']:.2f} s:"
        " start-up and imports).", "",
        "| rules | wall s | CPU s | CPU s, each run | warnings |", "|---|---|---|---|---|",
        *(f"| {n:,} | {runs[str(n)]['wall_s']:.2f} | {runs[str(n)]['cpu_s']:.2f} |"
          f" {runs[str(n)]['all_cpu_s']} | {runs[str(n)]['warnings']:,} |" for n in sizes),
        "",
        f"{max(sizes):,} / {min(sizes):,} rules: **{ratio:.1f}x** the work for"
        f" {c['size_ratio']:.0f}x the rules (linear ≈ {c['size_ratio']:.0f}x; target"
        f" ≤ {TARGET_RATIO:.0f}x: {'met' if ratio <= TARGET_RATIO else 'not met'}).",
    ]
