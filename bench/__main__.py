"""Settlement and evaluation benchmarks.

Every figure is a ratio against a baseline measured in the same run on the same
data, so the numbers mean the same thing on a slow CI box and a fast laptop:

- settle: the set-based batch vs the naive loop it replaces (evaluate a record,
  then one ``post_credit`` round trip per reward), both in one transaction;
- evaluate: compiled rules per record vs ``json.loads`` of the same record;
- memory: peak Python allocations settling 4N records vs N records (flat ~ 1.0).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from dsl.evaluate import compile_program
from dsl.program import load_program
from settlement import ledger
from settlement.batch import event_date, reward_reference, settle
from settlement.db import open_engine, upgrade
from settlement.demo import write_records
from settlement.records import Record, read_records

RULES = Path(__file__).resolve().parent.parent / "rules"
AS_OF = date(2026, 11, 25)
PG_ADMIN = os.environ.get("REFERRAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def timed(fn: Callable[..., object], *args: object) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def naive_settle(url: str, program, path: Path) -> None:
    """The baseline: per-record evaluation and one ledger round trip per reward."""
    compiled = compile_program(program, default_currency="INR")
    engine = open_engine(url)
    with engine.connect() as conn, conn.begin():
        for item in read_records(str(path)):
            if not isinstance(item, Record):
                continue
            try:
                evaluation = compiled.evaluate(item.data)
                day = event_date(item, AS_OF)
            except Exception:  # noqa: BLE001 - the baseline quarantines like the batch
                continue
            for reward in evaluation.rewards:
                ledger.post_credit(
                    conn, str(item.get(f"{reward.role}.id")), reward.amount.amount,
                    reward.amount.currency,
                    reward_reference(reward.rule_id, item.referral_id, reward.role),
                    actor="bench", event_date=day,
                )
    engine.dispose()


def batch_settle(url: str, program, path: Path) -> dict:
    engine = open_engine(url)
    with engine.connect() as conn:
        summary = settle(conn, program, read_records(str(path)), as_of=AS_OF,
                         input_name=str(path))
    engine.dispose()
    return summary.as_json()


class Databases:
    """Fresh empty databases for each measurement: SQLite files and, if up, PostgreSQL."""

    def __init__(self, tmp: Path, with_pg: bool) -> None:
        self.tmp = tmp
        self.admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT") if with_pg else None
        self.created: list[str] = []

    def fresh(self, kind: str) -> str:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        if kind == "sqlite":
            url = f"sqlite:///{self.tmp / (name + '.db')}"
        else:
            with self.admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
            self.created.append(name)
            url = sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(False)
        upgrade(url)
        return url

    def close(self) -> None:
        if self.admin is not None:
            with self.admin.connect() as conn:
                for name in self.created:
                    conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            self.admin.dispose()


def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_ADMIN)
        with engine.connect():
            pass
        engine.dispose()
        return True
    except sa.exc.OperationalError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--records", type=int, default=20000)
    args = parser.parse_args()
    program = load_program([RULES]).program
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        small, large = tmp / "n.jsonl", tmp / "4n.jsonl"
        with small.open("w") as fh:
            write_records(fh, args.records, seed=1)
        with large.open("w") as fh:
            write_records(fh, 4 * args.records, seed=1)
        dbs = Databases(tmp, pg_available())
        results: dict[str, object] = {"records": args.records}
        try:
            for kind in ("sqlite", "postgresql") if dbs.admin else ("sqlite",):
                naive = timed(naive_settle, dbs.fresh(kind), program, small)
                url = dbs.fresh(kind)
                batch = timed(batch_settle, url, program, small)
                rerun = timed(batch_settle, url, program, small)
                results[f"settle_{kind}"] = {
                    "naive_s": round(naive, 2),
                    "batch_s": round(batch, 2),
                    "batch_records_per_s": round(args.records / batch),
                    "speedup_vs_naive_loop": round(naive / batch, 2),
                    "rerun_vs_first_run": round(rerun / batch, 2),
                }
            records = [r for r in read_records(str(small)) if isinstance(r, Record)]
            compiled = compile_program(program, default_currency="INR")

            def evaluate_all() -> None:
                for r in records:
                    try:
                        compiled.evaluate(r.data)
                    except Exception:  # noqa: BLE001, S112 - bad records are skipped here
                        continue

            parse = timed(lambda: [json.loads(r.raw) for r in records])
            results["evaluate_vs_json_parse"] = round(timed(evaluate_all) / parse, 2)

            peaks = []
            for path in (small, large):
                url = dbs.fresh("sqlite")
                tracemalloc.start()
                batch_settle(url, program, path)
                peaks.append(tracemalloc.get_traced_memory()[1])
                tracemalloc.stop()
            results["peak_memory_4n_vs_n"] = round(peaks[1] / peaks[0], 2)
        finally:
            dbs.close()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
