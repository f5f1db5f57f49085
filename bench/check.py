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
import sys
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


# In a child: what `rules check` runs (load_program), after a warm-up on a small program
# (imports, Babel's currency table), in CPU seconds of that process alone.
_TIMER = """
import sys, time
from dsl.program import load_program
load_program([sys.argv[1]])
start = time.process_time()
load_program([sys.argv[2]])
print(time.process_time() - start)
"""


def _run_check(path: Path, warm: Path) -> tuple[float, float, float, str]:
    """One ``rules check``: its wall and CPU seconds (user + system of the child), and
    the CPU seconds of the check itself (``load_program``) in a second child."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    run = subprocess.run(referral_argv() + ["rules", "check", str(path)],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if run.returncode != 0:
        raise RuntimeError(f"rules check {path} failed:\n{run.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timed = subprocess.run([sys.executable, "-c", _TIMER, str(warm), str(path)],
                           capture_output=True, text=True, check=True)
    return wall, cpu, float(timed.stdout), run.stderr


def bench_check(tmp: Path, reps: int, log: Callable[[str], None],
                sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    """Median seconds per size.  The ratio is of the check's own CPU time (measured in
    the child around ``load_program``, after a warm-up): the whole command's also counts
    the interpreter's start and imports, a fixed second or so that hides the growth,
    and wall time counts the box's other load."""
    warm = tmp / "check-warm.rule"
    warm.write_text(check_program(10), encoding="utf-8")
    results: dict[int, dict[str, Any]] = {}
    for n in sizes:
        path = tmp / f"check-{n}.rule"
        path.write_text(check_program(n), encoding="utf-8")
        runs = [_run_check(path, warm) for _ in range(reps)]
        results[n] = {"wall_s": median([r[0] for r in runs]),
                      "cpu_s": median([r[1] for r in runs]),
                      "check_cpu_s": median([r[2] for r in runs]),
                      "all_check_cpu_s": [round(r[2], 2) for r in runs],
                      "warnings": runs[-1][3].count(": warning: ")}
        log(f"rules check, {n:,} rules: {results[n]['wall_s']:.2f} s wall, "
            f"{results[n]['cpu_s']:.2f} s CPU, the check itself "
            f"{results[n]['check_cpu_s']:.2f} s CPU, {results[n]['warnings']:,} warnings")
    small, large = min(sizes), max(sizes)
    return {
        "sizes": list(sizes), "reps": reps,
        "runs": {str(n): r for n, r in results.items()},
        "ratio": results[large]["check_cpu_s"] / results[small]["check_cpu_s"],
        "size_ratio": large / small,
    }


def render_check(c: dict[str, Any]) -> list[str]:
    sizes = [int(n) for n in c["sizes"]]
    runs = c["runs"]
    ratio = c["ratio"]
    return [
        "", "## 7. `rules check` on large programs", "",
        "`referral rules check` (child process, median of"
        f" {c['reps']}) on generated programs (bench/check.py: every rule at one priority,"
        " each with a field of its own one edit from its neighbours', a phrase per ten"
        " rules, an example per hundred).  CPU is the child's own (user + system); the"
        " check itself is `load_program` (what the command runs) timed in a child after a"
        " warm-up, without the interpreter's start and imports.", "",
        "| rules | wall s | CPU s | the check itself, CPU s | each run | warnings |",
        "|---|---|---|---|---|---|",
        *(f"| {n:,} | {runs[str(n)]['wall_s']:.2f} | {runs[str(n)]['cpu_s']:.2f} |"
          f" {runs[str(n)]['check_cpu_s']:.2f} | {runs[str(n)]['all_check_cpu_s']} |"
          f" {runs[str(n)]['warnings']:,} |" for n in sizes),
        "",
        f"{max(sizes):,} / {min(sizes):,} rules: **{ratio:.1f}x** the check's CPU time for"
        f" {c['size_ratio']:.0f}x the rules (linear ≈ {c['size_ratio']:.0f}x; target"
        f" ≤ {TARGET_RATIO:.0f}x: {'met' if ratio <= TARGET_RATIO else 'not met'}).",
    ]
