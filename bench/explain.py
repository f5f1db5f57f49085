"""``settle --explain`` size: bytes per record read, decisions only against the full trace.

One SQLite settle of the generated records per mode, each into a fresh database, in a
child process: ``--explain FILE`` (the default since issue 15: the records and rules
that decided something, no traces) and ``--explain FILE --explain-all`` (every record,
every rule, every trace: what ``--explain`` wrote before).  The figure is their ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import ROOT, Databases, referral_argv, run_child
from bench.settling import AS_OF


def bench_explain(dbs: Databases, records: Path, count: int,
                  log: Callable[[str], None]) -> dict[str, Any]:
    out: dict[str, Any] = {"records": count}
    for mode, extra in (("decisions", []), ("all", ["--explain-all"])):
        _, url = dbs.fresh_sqlite()
        why = dbs.tmp / f"explain-{mode}.jsonl"
        log(f"explain: settle {count:,} records with --explain {' '.join(extra)}".rstrip())
        run_child(referral_argv() + [
            "settle", "--rules", str(ROOT / "rules"), "--records", str(records), "--db", url,
            "--as-of", AS_OF, "--json", "--max-quarantine", "100%", "--explain", str(why),
            *extra])
        size = why.stat().st_size
        with why.open(encoding="utf-8") as fh:
            lines = sum(1 for _ in fh)
        out[mode] = {"bytes": size, "lines": lines, "bytes_per_record": size / count}
    out["ratio"] = out["all"]["bytes"] / max(1, out["decisions"]["bytes"])
    return out


def render_explain(d: dict[str, Any]) -> list[str]:
    n = d["records"]
    rows = [("--explain (decisions)", d["decisions"]), ("--explain --explain-all", d["all"])]
    lines = ["", "## 6. `settle --explain` size", "",
             f"SQLite settle of {n:,} generated records (first run), one file per mode;"
             " --explain-all is what --explain wrote before (every rule's trace for every"
             " record).", "",
             "| mode | lines | bytes | bytes per record read |", "|---|---|---|---|"]
    lines += [f"| {name} | {r['lines']:,} | {r['bytes']:,} | {r['bytes_per_record']:,.0f} |"
              for name, r in rows]
    lines += ["", f"Full trace / decisions only: {d['ratio']:.1f}x smaller by default."]
    return lines
