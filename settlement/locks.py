"""The locking policy: which locks exist, who takes them, in what order.

Two locks, each held until the end of the transaction that took it:

1. The settlement run lock: one ``settle`` at a time.  Taken by ``settle`` at
   the start of its one transaction (``settlement_transaction``, then
   ``lock_settlement_run``); ``--wait`` (the default) queues behind a running
   settle, ``--no-wait`` stops with SettlementError instead.
2. The ledger writer lock: entry ids and the hash chain are assigned in one
   order, and a read-then-insert under it is race-free.  Taken by every ledger
   write (``settlement.ledger.writes``, through ``writing``), by payee imports
   and payout runs (``settlement.payees``, ``settlement.payouts``: a payout's
   balances are read under it, so two payout runs never pay the same money), by
   ``db upgrade`` (two upgrades must not
   both create tables) and by ``settle`` right after the run lock, for the whole
   run (so its lookups need no second look when it posts).

Order: the run lock before the ledger lock, never the other way round, so two
writers cannot deadlock.  Readers take neither (``settlement.db.READ_ONLY``).

Run history (``settlement.runs``) is written outside the run's transaction, on a
connection of its own, under two more locks that never wait behind a run:

3. The run-history lock: the short transaction that writes a run's start row
   (and settles what earlier runs left unfinished) is serialised by it, so two
   starts do not both mark the same dead run aborted.
4. A run's marker: held by the history connection from the run's start to its
   end (PostgreSQL: a session-level advisory lock keyed by the run id), so that
   anyone can tell a live run from one whose process died (``run_markers_held``).
   SQLite has no such lock; there a run is live while its process is (host, pid).

How a database holds them is its backend's business (``settlement.dialect``):
PostgreSQL takes transaction-scoped advisory locks by key.  SQLite has one lock,
the database write lock, which every writing transaction takes when it begins
(BEGIN IMMEDIATE) and which stands in for both; there, waiting is the busy
timeout: 30 s for any writer, ``SQLITE_WAIT_MS`` for a settle with ``--wait``
and none with ``--no-wait``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RootTransaction

from settlement.dialect import backend
from settlement.errors import SettlementError

# Advisory lock keys (PostgreSQL), fixed so that every process agrees on them.
LEDGER_LOCK_KEY = 0x5EF_1ED6E2
SETTLE_LOCK_KEY = 0x5E771E
RUN_HISTORY_LOCK_KEY = 0x5E771E_0
# Run markers: two-int advisory locks (namespace, 32 bits of the run id's digest).
RUN_MARKER_NAMESPACE = 0x5E77
# How long a SQLite settle waits for another one with --wait (a nightly run may be long).
SQLITE_WAIT_MS = 6 * 3600 * 1000

_BUSY = "another settlement run holds the lock (--no-wait)"


def run_marker_key(run_id: str) -> int:
    """The signed 32-bit key of a run's marker lock (any run id text maps to one)."""
    value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big")
    return value - (1 << 32) if value >= 1 << 31 else value


def lock_run_history(conn: Connection) -> None:
    """Take the run-history lock for the rest of the caller's (short) transaction."""
    backend(conn).transaction_lock(conn, RUN_HISTORY_LOCK_KEY, wait=True)


def lock_ledger(conn: Connection) -> None:
    """Take the ledger writer lock for the rest of the caller's transaction."""
    backend(conn).transaction_lock(conn, LEDGER_LOCK_KEY, wait=True)


@contextmanager
def writing(conn: Connection) -> Iterator[None]:
    """Join the caller's transaction or open one; hold the ledger writer lock either way."""
    if conn.in_transaction():
        lock_ledger(conn)
        yield
    else:
        with conn.begin():
            lock_ledger(conn)
            yield


@contextmanager
def settlement_transaction(conn: Connection, *, wait: bool) -> Iterator[RootTransaction]:
    """Begin a settlement run's transaction; the caller commits or rolls it back after
    the block, and an exception inside rolls it back.

    On SQLite beginning it takes the run lock, waiting as ``wait`` says.
    """
    with backend(conn).writer_wait(conn, SQLITE_WAIT_MS if wait else 0):
        try:
            tx = conn.begin()
        except sa.exc.OperationalError as e:
            if not wait and "locked" in str(e.orig):
                raise SettlementError(_BUSY) from e
            raise
        try:
            yield tx
        except BaseException:
            tx.rollback()
            raise


def lock_settlement_run(conn: Connection, *, wait: bool) -> None:
    """Take the settlement run lock (before the ledger lock; see the module docstring)."""
    if not backend(conn).transaction_lock(conn, SETTLE_LOCK_KEY, wait=wait):
        raise SettlementError(_BUSY)
