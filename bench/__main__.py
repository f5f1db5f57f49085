"""``make bench`` / ``python -m bench``: rule evaluation, settlement, memory, profile.

Every figure is a ratio against a baseline measured in the same run (median of
``--reps`` repetitions), so it means the same on a busy 2-core box and on a
laptop.  Results go to bench/RESULTS.md (and bench/results.json), rewritten
after each part so an interrupted run still leaves what it measured.  Targets
are reported next to the figures, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import ROOT, Databases, machine, pg_available
from settlement.demo import write_records

PARTS = ("eval", "settle", "sqlite", "memory", "profile", "compare", "money", "explain",
         "check")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply every default size (0.05 for a quick run)")
    p.add_argument("--eval-contexts", type=int, help="contexts per engine (default 1,000,000)")
    p.add_argument("--peer-contexts", type=int, default=20_000,
                   help="contexts for rule-engine / business-rules, which take ~0.1-1 ms each"
                        " (default 20,000)")
    p.add_argument("--settle-records", type=int, help="records to settle (default 1,000,000)")
    p.add_argument("--memory-sizes", help="records per memory run (default 250000,1000000,4000000)")
    p.add_argument("--reps", type=int, default=3, help="repetitions for evaluation (median)")
    p.add_argument("--settle-reps", type=int, default=3, help="repetitions for settlement")
    p.add_argument("--sqlite-reps", type=int, help="repetitions for SQLite (default: settle-reps)")
    p.add_argument("--only", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--compare-ref", default=None,
                   help="git ref whose settle to time against this tree (git worktree add)")
    p.add_argument("--compare-records", type=int, default=50_000)
    p.add_argument("--compare-sqlite", action=argparse.BooleanOptionalAction, default=True,
                   help="also compare on SQLite (the settle's CPU time); default on")
    p.add_argument("--profile-records", type=int, default=50_000)
    p.add_argument("--money-records", type=int,
                   help="records settled before the payout run (default 1,000,000)")
    p.add_argument("--explain-records", type=int, default=2_000,
                   help="records settled with --explain and --explain-all (default 2,000)")
    p.add_argument("--check-reps", type=int, default=3,
                   help="repetitions of rules check per program size (median)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    p.add_argument("--merge", action="store_true",
                   help="keep the other parts' results from the results.json beside --out")
    return p.parse_args(argv)


class Report:
    def __init__(self, args: argparse.Namespace, argv: list[str]) -> None:
        self.out: Path = args.out
        earlier: dict[str, Any] = {}
        saved = self.out.with_name("results.json")
        if args.merge and saved.exists():
            earlier = json.loads(saved.read_text())
        self.data: dict[str, Any] = {
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m bench " + " ".join(shlex.quote(a) for a in argv),
            "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "machine": machine(),
        }
        self.log_lines: list[str] = []
        if earlier:
            keep = {k: v for k, v in earlier.items() if k not in self.data and k != "log"}
            self.data.update(keep)
            self.data["earlier"] = earlier.get("earlier", []) + [
                f"{earlier['started']}: `{earlier['command']}` at {earlier['commit']}"]
            self.log_lines = list(earlier.get("log", []))

    def log(self, line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        print(f"[{stamp}] {line}", flush=True)
        self.log_lines.append(f"{stamp} {line}")

    def save(self) -> None:
        self.data["log"] = self.log_lines
        self.out.with_name("results.json").write_text(json.dumps(self.data, indent=2) + "\n")
        self.out.write_text(render(self.data), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    s = args.scale
    eval_n = args.eval_contexts or int(1_000_000 * s)
    settle_n = args.settle_records or int(1_000_000 * s)
    sizes = ([int(x) for x in args.memory_sizes.split(",")] if args.memory_sizes
             else [int(250_000 * s), int(1_000_000 * s), int(4_000_000 * s)])
    parts = set(args.only.split(","))
    report = Report(args, argv)
    report.data["sizes"] = {"eval_contexts": eval_n, "peer_contexts": args.peer_contexts,
                            "settle_records": settle_n, "memory_sizes": sizes,
                            "reps": args.reps, "settle_reps": args.settle_reps,
                            "sqlite_reps": args.sqlite_reps or args.settle_reps}
    report.save()
    if "eval" in parts:
        from bench.evaluation import bench_evaluation

        report.log(f"evaluation: {eval_n} contexts, peers on {args.peer_contexts}")
        report.data["evaluation"] = bench_evaluation(eval_n, args.peer_contexts, args.reps,
                                                     report.log)
        report.save()
    with tempfile.TemporaryDirectory(prefix="referral-bench-") as tmpdir:
        tmp = Path(tmpdir)
        files: dict[int, Path] = {}
        if "check" in parts:
            from bench.check import bench_check

            report.log("rules check: generated programs of 1,000 and 10,000 rules")
            report.data["check"] = bench_check(tmp, args.check_reps, report.log)
            report.save()

        def records(n: int) -> Path:
            if n not in files:
                files[n] = tmp / f"records-{n}.jsonl"
                with files[n].open("w", encoding="utf-8") as fh:
                    write_records(fh, n, seed=1)
            return files[n]

        if not pg_available():
            report.log("PostgreSQL is not reachable: PostgreSQL parts skipped")
            parts -= {"settle", "memory", "profile", "compare", "money"}
        dbs = Databases(tmp) if parts & {"settle", "sqlite", "memory", "profile",
                                           "compare", "money", "explain"} else None
        try:
            run_settlement(report, args, parts, dbs, records, settle_n, sizes)
        finally:
            if dbs is not None:
                dbs.close()
    report.data["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    report.save()
    report.log(f"wrote {report.out}")


def run_settlement(report: Report, args: argparse.Namespace, parts: set[str],
                   dbs: Databases | None, records: Any, settle_n: int, sizes: list[int]) -> None:
    from bench import settling

    if dbs is None:
        return
    if "profile" in parts:
        report.log(f"profile: py-spy over a PostgreSQL settle of {args.profile_records}")
        top = settling.profile_settle(dbs, records(args.profile_records),
                                      dbs.tmp / "profile")
        report.data["profile"] = {"records": args.profile_records, "top": top}
        report.save()
    if "compare" in parts and args.compare_ref:
        report.data["compare"] = settling.bench_compare_ref(
            dbs, args.compare_ref, records(args.compare_records), args.compare_records,
            args.settle_reps, report.log, sqlite=args.compare_sqlite)
        report.save()
    if "settle" in parts:
        start = time.perf_counter()
        report.data["settle_pg"] = settling.bench_settle_pg(
            dbs, records(settle_n), settle_n, args.settle_reps, report.log)
        report.log(f"settle PostgreSQL done in {time.perf_counter() - start:.0f}s")
        report.save()
    if "sqlite" in parts:
        report.data["settle_sqlite"] = settling.bench_settle_sqlite(
            dbs, records(settle_n), settle_n, args.sqlite_reps or args.settle_reps, report.log)
        report.save()
    if "explain" in parts:
        from bench.explain import bench_explain

        n = args.explain_records
        report.data["explain"] = bench_explain(dbs, records(n), n, report.log)
        report.save()
    if "money" in parts:
        from bench.money import bench_money_pg

        n = args.money_records or settle_n
        report.data["money"] = bench_money_pg(dbs, records(n), n, args.reps, report.log)
        report.save()
    if "memory" in parts:
        known = {}
        if "settle" in parts and "settle_pg" in report.data:  # measured in this invocation
            known[settle_n] = report.data["settle_pg"]["max_rss_kb"]
        report.data["memory"] = {"sizes": sizes, "partial": True}
        peaks: dict[int, int] = {}
        for size in sorted(sizes):  # one at a time, saved as it goes
            got = settling.bench_memory(dbs, [size], records, report.log, known)
            peaks.update(got["peak_rss_kb"])
            report.data["memory"] = {
                "sizes": sizes, "peak_rss_kb": peaks, "partial": len(peaks) < len(sizes),
                "largest_vs_smallest": peaks[max(peaks)] / peaks[min(peaks)],
            }
            report.save()


# ---- RESULTS.md ---------------------------------------------------------------------


def _f(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def _target(value: float, ok: bool, text: str) -> str:
    return f"{text}: {'met' if ok else 'NOT met'}"


def render(d: dict[str, Any]) -> str:
    m = d["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python -m bench` (`make bench`); how each part is measured is in the"
        " docstrings of bench/.",
        "Every figure is a ratio to a baseline measured in the same run, median of the",
        "repetitions; targets are reported, not asserted.  The machine is shared (2 cores,",
        "other jobs running), so absolute seconds are noisy; the ratios are the result.",
        "",
        f"- date: {d['started']}" + (f" to {d['finished']}" if "finished" in d else
                                    " (run still going or interrupted: partial)"),
        f"- command: `{d['command']}` at commit {d['commit']}",
        *(f"- merged with the parts not re-run from {e}" for e in d.get("earlier", [])),
        f"- sizes: {json.dumps(d.get('sizes', {}))}",
    ]
    lines += [f"- {k}: {v}" for k, v in m.items() if k != "rusage self max rss (KB)"]
    ev = d.get("evaluation")
    if ev:
        lines += ["", "## 1. Rule evaluation", "",
                  "Same contexts and same decisions for every engine (checked on 5,000 contexts"
                  " before timing).",
                  "ours = `CompiledProgram.evaluate` (generated Python per program); hand ="
                  " plain Python (bench/hand_rules.py; for the generated program, Python source"
                  " generated from the same spec); peers evaluate the same conditions, with"
                  " rewards computed by the same Python (bench/peers.py).",
                  "Peers take 0.1-1 ms per context, so they are timed on the first"
                  f" {d['sizes']['peer_contexts']:,} contexts, against ours on those same"
                  " contexts.", "",
                  "| program | contexts | ours µs/ctx | hand µs/ctx | ours / hand (target ≤ 1.5)"
                  " | rule-engine / ours (target ≥ 5) | business-rules / ours |",
                  "|---|---|---|---|---|---|---|"]
        for key, name in (("example", "rules/ (5 rules)"), ("generated", "generated 20 rules")):
            r = ev[key]
            br = (f"{_f(r['business-rules_vs_ours'], 1)}x" if "business-rules_vs_ours" in r
                  else "n/a")
            lines.append(
                f"| {name} | {r['contexts']:,} ({r['distinct_contexts']:,} distinct) | "
                f"{_f(r['ours_us_per_context'])} | {_f(r['hand_us_per_context'])} | "
                f"{_f(r['ours_vs_hand'])}x ({'met' if r['ours_vs_hand'] <= 1.5 else 'not met'})"
                f" | {_f(r['rule-engine_vs_ours'], 1)}x"
                f" ({'met' if r['rule-engine_vs_ours'] >= 5 else 'not met'}) | {br} |")
        lines += ["", f"business-rules on Python {m['python']}: {ev['business_rules_import']}"
                  " (it installs and imports; version pinned in the `bench` extra)."]
        for key in ("example", "generated"):
            s = ev[key]["sample"]
            lines.append(f"- {key}, µs per context on the peer sample: "
                         + ", ".join(f"{k} {_f(v)}" for k, v in s.items()))
    pg = d.get("settle_pg")
    if pg:
        rows = pg["rows"]
        lines += ["", "## 2. Settlement into PostgreSQL", "",
                  f"`referral settle` (child process) over {pg['records']:,} generated records"
                  " (settlement.demo.write_records, seed 1), fresh database each repetition;"
                  " baseline: COPY FROM of exactly the rows that run wrote (entries "
                  f"{rows.get('ledger_entries', 0):,}, transitions "
                  f"{rows.get('ledger_transitions', 0):,}, postings"
                  f" {rows.get('ledger_postings', 0):,}) into empty `LIKE ... INCLUDING ALL`"
                  " copies in a fresh database (only the COPY timed).", "",
                  "| measure | value |", "|---|---|",
                  f"| settle, first run | {_f(pg['first_s'], 1)} s ="
                  f" {_f(pg['records_per_s'], 0)} records/s, {_f(pg['rows_per_s'], 0)} rows/s |",
                  f"| COPY of the same rows | {_f(pg['copy_s'], 1)} s ="
                  f" {_f(pg['copy_rows_per_s'], 0)} rows/s |",
                  f"| settle throughput / COPY throughput (target ≥ 0.5) |"
                  f" {_f(pg['throughput_vs_copy'])}"
                  f" ({'met' if pg['throughput_vs_copy'] >= 0.5 else 'not met'}) |",
                  f"| no-change rerun | {_f(pg['rerun_s'], 1)} s |",
                  f"| first run / rerun (target ≥ 10) | {_f(pg['first_vs_rerun'], 1)}x"
                  f" ({'met' if pg['first_vs_rerun'] >= 10 else 'not met'}) |",
                  f"| repetitions (first, rerun, COPY s) | {pg['reps']}:"
                  f" {[round(x, 1) for x in pg['all_first_s']]},"
                  f" {[round(x, 1) for x in pg['all_rerun_s']]},"
                  f" {[round(x, 1) for x in pg['all_copy_s']]} |",
                  f"| run summary | `{json.dumps({k: v for k, v in pg['summary'].items() if k != 'run_id'})}` |"]  # noqa: E501
    sq = d.get("settle_sqlite")
    if sq:
        lines += ["", "### SQLite, same input", "",
                  "Baseline: `INSERT INTO ... SELECT * FROM` the settled file (attached) into a"
                  " fresh database's empty ledger tables, one transaction.", "",
                  "| measure | value |", "|---|---|",
                  f"| settle, first run | {_f(sq['first_s'], 1)} s ="
                  f" {_f(sq['records_per_s'], 0)} records/s |",
                  f"| bulk INSERT ... SELECT of the same rows | {_f(sq['bulk_s'], 1)} s |",
                  f"| settle / bulk insert throughput | {_f(sq['throughput_vs_bulk_insert'])} |",
                  f"| no-change rerun | {_f(sq['rerun_s'], 1)} s;"
                  f" first / rerun {_f(sq['first_vs_rerun'], 1)}x |"]
        if pg:
            lines.append(f"| SQLite first run / PostgreSQL first run | "
                         f"{_f(sq['first_s'] / pg['first_s'])} |")
    mem = d.get("memory")
    if mem and mem.get("peak_rss_kb"):
        peaks = mem["peak_rss_kb"]
        lines += ["", "## 3. Memory", "",
                  "Peak RSS of the `referral settle` process (its own VmHWM, written at"
                  " exit; see bench/common.py), PostgreSQL, one run per size.", "",
                  "| records | peak RSS |", "|---|---|"]
        lines += [f"| {int(k):,} | {int(v) / 1024:,.0f} MiB |" for k, v in sorted(
            peaks.items(), key=lambda kv: int(kv[0]))]
        ratio = mem["largest_vs_smallest"]
        lines += ["", f"Largest / smallest: {_f(ratio)} (target ≤ 1.2:"
                  f" {'met' if ratio <= 1.2 else 'not met'})"
                  + (" - PARTIAL: not every size finished" if mem.get("partial") else "")]
    prof = d.get("profile")
    if prof:
        lines += ["", "## 4. Profile of the settle hot path", "",
                  f"py-spy (wall clock, idle included) over a PostgreSQL settle of"
                  f" {prof['records']:,} records; inclusive share of samples:", "",
                  "| share | function |", "|---|---|"]
        lines += [f"| {share:.1f}% | `{name}` |" for share, name in prof["top"]]
    cmp_ = d.get("compare")
    if cmp_:
        lines += ["", "### Before / after", "",
                  f"The same settle of {cmp_['records']:,} records with the code at"
                  f" `{cmp_['ref']}` (git worktree, PYTHONPATH) and with this tree, interleaved,"
                  f" {cmp_['reps']} repetition(s) of a first run into an empty database and its"
                  " no-change rerun: PostgreSQL wall clock"
                  + (", and the SQLite settle's own CPU time (robust to the other jobs on a"
                     " shared machine)" if "ref_sqlite_cpu_s" in cmp_ else "") + ".", "",
                  "| measure | before | after | after / before |", "|---|---|---|---|"]
        for label, measure, target in (
                ("PostgreSQL first run (wall)", "", 1.3),
                ("PostgreSQL rerun (wall)", "_rerun", None),
                ("SQLite first run (CPU)", "_sqlite_cpu", 1.3),
                ("SQLite rerun (CPU)", "_sqlite_rerun_cpu", None)):
            if f"ref{measure}_s" not in cmp_:
                continue
            before, after = cmp_[f"ref{measure}_s"], cmp_[f"now{measure}_s"]
            verdict = "" if target is None else (
                f" (target ≤ {target}: {'met' if after / before <= target else 'not met'})")
            lines.append(f"| {label} | {_f(before, 1)} s | {_f(after, 1)} s |"
                         f" {_f(after / before)}x{verdict} |")
        lines += ["", f"All runs (s): {json.dumps({k: [round(x, 1) for x in v] for k, v in cmp_['all'].items()})}"]  # noqa: E501
    if d.get("money"):
        from bench.money import render_money

        lines += render_money(d["money"])
    if d.get("explain"):
        from bench.explain import render_explain

        lines += render_explain(d["explain"])
    if d.get("check"):
        from bench.check import render_check

        lines += render_check(d["check"])
    notes = d.get("notes")
    if notes:
        lines += ["", "## Notes", "", *notes]
    lines += ["", "## Log", "", "```", *d.get("log", []), "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
