"""Concurrent writers: one entry per reference, one transition, one reversal; chain intact."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from concurrent.futures import ThreadPoolExecutor

from settlement import ledger as L
from settlement.db import open_engine, upgrade

REFS = [f"r{i}" for i in range(30)]
WORKERS = 6


def in_threads(engine, work) -> list:
    barrier = threading.Barrier(WORKERS)

    def worker(_: int):
        barrier.wait()
        with engine.connect() as conn:
            return work(conn)

    with ThreadPoolExecutor(WORKERS) as pool:
        return list(pool.map(worker, range(WORKERS)))


def test_concurrent_threads_post_each_reference_once(ledger_engine) -> None:
    def work(conn) -> int:
        return sum(L.post_credit(conn, "u1", 100, "INR", ref).created for ref in REFS)

    created = in_threads(ledger_engine, work)
    assert sum(created) == len(REFS)
    with ledger_engine.connect() as conn:
        assert [e.reference_id for e in L.iter_entries(conn)] == REFS
        assert L.verify(conn).ok


def test_concurrent_threads_transition_and_reverse_once(ledger_engine) -> None:
    with ledger_engine.connect() as conn:
        L.post_credit(conn, "u1", 100, "INR", "r1")
        L.post_credit(conn, "u1", 100, "INR", "r2")

    def work(conn) -> tuple[bool, bool]:
        return L.confirm(conn, "r1").changed, L.reverse(conn, "r2", "refund").created

    results = in_threads(ledger_engine, work)
    assert sum(c for c, _ in results) == 1
    assert sum(r for _, r in results) == 1
    with ledger_engine.connect() as conn:
        assert len(L.history(conn, "r1")) == 2
        assert L.balance(conn, "u1")["INR"].net == 100
        assert L.verify(conn).ok


CHILD = textwrap.dedent(
    """
    import sys, time
    from settlement import ledger as L
    from settlement.db import open_engine
    url, start = sys.argv[1], float(sys.argv[2])
    engine = open_engine(url)
    time.sleep(max(0.0, start - time.time()))
    created = 0
    with engine.connect() as conn:
        for i in range(30):
            created += L.post_credit(conn, "u1", 100, "INR", f"r{i}").created
        bulk = [L.CreditRequest("u2", 5, "INR", f"b{i}") for i in range(300)]
        created += len(L.post_credits(conn, bulk, actor="proc").created)
    print(created)
    """
)


def test_concurrent_processes_post_each_reference_once_on_postgresql(pg_url) -> None:
    import time

    upgrade(pg_url)
    start = time.time() + 2.0
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD, pg_url, str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in outputs]
    assert sum(int(out) for out, _ in outputs) == 330
    engine = open_engine(pg_url)
    with engine.connect() as conn:
        assert len(list(L.iter_entries(conn))) == 330
        assert L.balance(conn, "u2")["INR"].pending == 1500
        assert L.verify(conn).ok
    engine.dispose()
