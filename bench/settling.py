"""Settlement: ``referral settle`` (a child process) vs a bulk load of the rows it wrote.

PostgreSQL: the run's entries, transitions and postings are exported with
COPY TO and loaded with COPY FROM into empty copies of the ledger tables
(``CREATE TABLE ... (LIKE ... INCLUDING ALL)``: same columns, indexes and
checks) in a fresh database; only the COPYs are timed.  SQLite: the same
rows go into a fresh database's ledger tables with ``INSERT ... SELECT``
from the attached settled file, the fastest bulk load SQLite has.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.common import ROOT, ChildRun, Databases, median, referral_argv, run_child

TABLES = ("ledger_entries", "ledger_transitions", "ledger_postings")
AS_OF = "2026-11-25"


def settle_cli(url: str, records: Path, env: dict[str, str] | None = None,
               rules: Path | None = None) -> tuple[ChildRun, dict[str, Any]]:
    run = run_child(referral_argv() + [
        "settle", "--rules", str(rules or ROOT / "rules"), "--records", str(records),
        "--db", url, "--as-of", AS_OF, "--json",
    ], env=env)
    return run, json.loads(run.stdout)


def settle_twice(url: str, records: Path) -> tuple[ChildRun, ChildRun, dict[str, Any]]:
    """A first run and its no-change rerun (which must post and confirm nothing)."""
    run, summary = settle_cli(url, records)
    again, resummary = settle_cli(url, records)
    assert resummary["posted"] == 0 and resummary["confirmed"] == 0, resummary
    return run, again, summary


def _libpq(url: str) -> str:
    u = sa.make_url(url)
    return f"host={u.host} port={u.port or 5432} user={u.username} dbname={u.database}"


def pg_export(url: str, folder: Path) -> dict[str, int]:
    """COPY each ledger table of a settled database to a file; row counts."""
    counts = {}
    with psycopg.connect(_libpq(url)) as conn, conn.cursor() as cur:
        for table in TABLES:
            with (folder / f"{table}.copy").open("wb") as fh, \
                    cur.copy(f"COPY {table} TO STDOUT") as copy:
                for block in copy:
                    fh.write(block)
            counts[table] = cur.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return counts


def pg_copy_load(dbs: Databases, folder: Path) -> float:
    """Seconds to COPY the exported rows into empty LIKE copies of the tables (fresh DB)."""
    name, url = dbs.fresh_pg()
    try:
        with psycopg.connect(_libpq(url), autocommit=True) as conn:
            for table in TABLES:
                conn.execute(f"CREATE TABLE copy_{table} (LIKE {table} INCLUDING ALL)")
            start = time.perf_counter()
            with conn.transaction(), conn.cursor() as cur:
                for table in TABLES:
                    with (folder / f"{table}.copy").open("rb") as fh, \
                            cur.copy(f"COPY copy_{table} FROM STDIN") as copy:
                        while block := fh.read(1 << 20):
                            copy.write(block)
            return time.perf_counter() - start
    finally:
        dbs.drop_pg(name)


def sqlite_bulk_load(dbs: Databases, settled: Path) -> float:
    """Seconds to INSERT ... SELECT the settled rows into a fresh database's empty tables."""
    target, _ = dbs.fresh_sqlite()
    conn = sqlite3.connect(target, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("ATTACH DATABASE ? AS src", (str(settled),))
        start = time.perf_counter()
        conn.execute("BEGIN")
        for table in TABLES:
            conn.execute(f"INSERT INTO main.{table} SELECT * FROM src.{table}")
        conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)


def bench_settle_pg(dbs: Databases, records: Path, count: int, reps: int,
                    log: Callable[[str], None]) -> dict[str, Any]:
    first, rerun, copy, rss = [], [], [], []
    rows: dict[str, int] = {}
    summary: dict[str, Any] = {}
    for rep in range(reps):
        name, url = dbs.fresh_pg()
        try:
            run, again, summary = settle_twice(url, records)
            with tempfile.TemporaryDirectory(dir=dbs.tmp) as folder:
                rows = pg_export(url, Path(folder))
                dbs.drop_pg(name)
                copy.append(pg_copy_load(dbs, Path(folder)))
        finally:
            dbs.drop_pg(name)
        first.append(run.seconds)
        rerun.append(again.seconds)
        rss.append(run.max_rss_kb)
        log(f"settle PostgreSQL {count} rep {rep + 1}: first {run.seconds:.1f}s"
            f" (rss {run.max_rss_kb // 1024} MiB), rerun {again.seconds:.1f}s,"
            f" COPY of its {sum(rows.values())} rows {copy[-1]:.1f}s")
    f, r, c = median(first), median(rerun), median(copy)
    return {
        "records": count, "reps": reps, "summary": summary, "rows": rows,
        "first_s": f, "rerun_s": r, "copy_s": c,
        "records_per_s": count / f, "rows_per_s": sum(rows.values()) / f,
        "copy_rows_per_s": sum(rows.values()) / c,
        "throughput_vs_copy": c / f, "first_vs_rerun": f / r,
        "max_rss_kb": max(rss), "all_first_s": first, "all_rerun_s": rerun, "all_copy_s": copy,
    }


def bench_settle_sqlite(dbs: Databases, records: Path, count: int, reps: int,
                        log: Callable[[str], None]) -> dict[str, Any]:
    first, rerun, load, rss = [], [], [], []
    rows: dict[str, int] = {}
    for rep in range(reps):
        path, url = dbs.fresh_sqlite()
        try:
            run, again, _ = settle_twice(url, records)
            with sqlite3.connect(path) as conn:
                rows = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                        for t in TABLES}
            load.append(sqlite_bulk_load(dbs, path))
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        first.append(run.seconds)
        rerun.append(again.seconds)
        rss.append(run.max_rss_kb)
        log(f"settle SQLite {count} rep {rep + 1}: first {run.seconds:.1f}s, rerun"
            f" {again.seconds:.1f}s, INSERT ... SELECT of its rows {load[-1]:.1f}s")
    f, r, b = median(first), median(rerun), median(load)
    return {
        "records": count, "reps": reps, "rows": rows, "first_s": f, "rerun_s": r,
        "bulk_s": b, "records_per_s": count / f, "throughput_vs_bulk_insert": b / f,
        "first_vs_rerun": f / r, "max_rss_kb": max(rss),
        "all_first_s": first, "all_rerun_s": rerun, "all_bulk_s": load,
    }


def bench_memory(dbs: Databases, sizes: list[int], make_records: Callable[[int], Path],
                 log: Callable[[str], None], known: dict[int, int]) -> dict[str, Any]:
    """Peak RSS of one settle per size (PostgreSQL); ``known`` = sizes already measured."""
    peaks: dict[int, int] = {}
    for size in sizes:
        if size in known:
            peaks[size] = known[size]
            log(f"memory {size}: {known[size] // 1024} MiB (from the settle benchmark)")
            continue
        records = make_records(size)
        name, url = dbs.fresh_pg()
        try:
            run, _ = settle_cli(url, records)
        finally:
            dbs.drop_pg(name)
        peaks[size] = run.max_rss_kb
        log(f"memory {size}: {run.max_rss_kb // 1024} MiB peak RSS, {run.seconds:.1f}s")
    smallest, largest = min(peaks), max(peaks)
    return {"peak_rss_kb": peaks, "largest_vs_smallest": peaks[largest] / peaks[smallest]}


def git_worktree(ref: str, folder: Path) -> Path:
    tree = folder / "ref"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                   check=True, capture_output=True)
    return tree


def drop_worktree(tree: Path) -> None:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                   check=False, capture_output=True)


def bench_compare_ref(dbs: Databases, ref: str, records: Path, count: int, reps: int,
                      log: Callable[[str], None], *, sqlite: bool = True) -> dict[str, Any]:
    """The same settle with the code at ``ref`` and with this tree, interleaved: a first
    run into an empty database, then its no-change rerun; on PostgreSQL (wall clock) and
    on SQLite (the settle process's CPU time, which is all of SQLite's work and is not
    inflated by other jobs on a shared machine the way wall time is)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = git_worktree(ref, Path(tmp))
        try:
            envs = {"ref": {**os.environ, "PYTHONPATH": str(tree)},
                    "now": {**os.environ, "PYTHONPATH": str(ROOT)}}
            times: dict[str, list[float]] = defaultdict(list)
            for rep in range(reps):
                for which, env in envs.items():
                    # Each tree migrates its own database: the ref may be behind on the schema.
                    name, url = dbs.fresh_pg(schema=False)
                    try:
                        run, again = _first_and_rerun(url, records, env, which == "now")
                    finally:
                        dbs.drop_pg(name)
                    times[which].append(run.seconds)
                    times[f"{which}_rerun"].append(again.seconds)
                    if not sqlite:
                        continue
                    lite = Path(tmp) / f"{which}.db"
                    lite.unlink(missing_ok=True)
                    run, again = _first_and_rerun(f"sqlite:///{lite}", records, env,
                                                  which == "now")
                    times[f"{which}_sqlite_cpu"].append(run.cpu_seconds)
                    times[f"{which}_sqlite_rerun_cpu"].append(again.cpu_seconds)
                log(f"compare {ref} rep {rep + 1}: " + ", ".join(
                    f"{k} {v[-1]:.1f}s" for k, v in times.items()))
        finally:
            drop_worktree(tree)
    out: dict[str, Any] = {"ref": ref, "records": count, "reps": reps, "all": dict(times)}
    for measure in ("", "_rerun", "_sqlite_cpu", "_sqlite_rerun_cpu"):
        if f"ref{measure}" not in times:
            continue
        out[f"ref{measure}_s"] = median(times[f"ref{measure}"])
        out[f"now{measure}_s"] = median(times[f"now{measure}"])
    return out


def _first_and_rerun(url: str, records: Path, env: dict[str, str],
                     strict: bool) -> tuple[ChildRun, ChildRun]:
    """``strict``: the rerun must post nothing (this tree; an older ref may not hold it:
    before reconciliation a LIMIT top-up could post on a rerun)."""
    subprocess.run([*referral_argv(), "db", "upgrade", "--db", url], env=env, check=True,
                   capture_output=True)
    run, _ = settle_cli(url, records, env=env)
    again, summary = settle_cli(url, records, env=env)
    assert summary["posted"] == 0 or not strict, summary
    return run, again


def profile_settle(dbs: Databases, records: Path, out: Path) -> list[tuple[float, str]]:
    """py-spy (wall clock, idle included) over one PostgreSQL settle; top functions."""
    name, url = dbs.fresh_pg()
    raw = out.with_suffix(".txt")
    try:
        subprocess.run([py_spy(), "record", "--idle", "-r", "50", "-f", "raw", "-o", str(raw),
                        "--", *referral_argv(), "settle", "--rules", str(ROOT / "rules"),
                        "--records", str(records), "--db", url, "--as-of", AS_OF, "--json"],
                       check=True, capture_output=True)
    finally:
        dbs.drop_pg(name)
    return top_functions(raw)


def py_spy() -> str:
    """py-spy from this environment's bin folder (the ``bench`` extra), else PATH."""
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else (shutil.which("py-spy") or "py-spy")


def top_functions(raw: Path, limit: int = 25) -> list[tuple[float, str]]:
    """Inclusive share of samples per function (each function once per stack)."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        total += count
        seen = set()
        for frame in stack.split(";"):
            func, _, where = frame.partition(" (")
            key = f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else func
            if key not in seen:
                seen.add(key)
                inclusive[key] = inclusive.get(key, 0) + count
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
    keep = [(100 * c / total, k) for k, c in ranked
            if any(m in k for m in ("batch.py", "reads.py", "writes.py", "dialect.py",
                                    "evaluate.py", "records.py", "connection.py", "cursor.py",
                                    "_copy.py", "__init__.py"))]
    return keep[:limit]
