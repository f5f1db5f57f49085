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
(BEGIN IMMEDIATE) and which stands in for both.

Liveness: no writer waits forever.  Every writing transaction begun here has a
lock timeout (``--lock-timeout``, ``DEFAULT_LOCK_TIMEOUT`` seconds): SQLite's busy
timeout while BEGIN IMMEDIATE waits, PostgreSQL's ``lock_timeout`` for every lock
wait of the transaction (advisory, row, table).  A wait that runs out is
``LockBusy`` (exit 75): nothing was written, and retrying later is safe.
``--no-wait`` on settle is a timeout of zero.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RootTransaction

from settlement.dialect import backend
from settlement.errors import LockBusy

# Advisory lock keys (PostgreSQL), fixed so that every process agrees on them.
LEDGER_LOCK_KEY = 0x5EF_1ED6E2
SETTLE_LOCK_KEY = 0x5E771E
RUN_HISTORY_LOCK_KEY = 0x5E771E_0
# Run markers: two-int advisory locks (namespace, 32 bits of the run id's digest).
RUN_MARKER_NAMESPACE = 0x5E77
# How long a writer waits for a lock unless told otherwise (--lock-timeout).
DEFAULT_LOCK_TIMEOUT = 30.0
_TIMEOUT_KEY = "settlement.lock_timeout"


def _busy(what: str, waited: float | None) -> str:
    """``waited``: the lock timeout that ran out (None or 0: the caller did not wait)."""
    how = f"waited {waited:g} s, --lock-timeout" if waited else "--no-wait"
    return f"{what} ({how}); nothing was written, retry later"


def run_marker_key(run_id: str) -> int:
    """The signed 32-bit key of a run's marker lock (any run id text maps to one)."""
    value = int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:4], "big")
    return value - (1 << 32) if value >= 1 << 31 else value


def lock_run_history(conn: Connection) -> None:
    """Take the run-history lock for the rest of the caller's (short) transaction."""
    backend(conn).transaction_lock(conn, RUN_HISTORY_LOCK_KEY, wait=True)


def lock_ledger(conn: Connection) -> None:
    """Take the ledger writer lock for the rest of the caller's transaction."""
    try:
        backend(conn).transaction_lock(conn, LEDGER_LOCK_KEY, wait=True)
    except sa.exc.OperationalError as e:
        if backend(conn).is_lock_busy(e):
            raise LockBusy(_busy("another writer holds the ledger lock",
                                 conn.info.get(_TIMEOUT_KEY))) from e
        raise


def _begin(conn: Connection, lock_timeout: float, what: str, *, begin_wait: float | None = None
           ) -> RootTransaction:
    """Begin a writing transaction whose lock waits end after ``lock_timeout`` seconds;
    beginning itself (SQLite's write lock) waits ``begin_wait`` (default the same)."""
    db = backend(conn)
    begin_wait = lock_timeout if begin_wait is None else begin_wait
    conn.info[_TIMEOUT_KEY] = lock_timeout
    with db.writer_wait(conn, round(begin_wait * 1000)):
        try:
            tx = conn.begin()
        except sa.exc.OperationalError as e:
            if db.is_lock_busy(e):
                raise LockBusy(_busy(what, begin_wait)) from e
            raise
    try:
        db.set_lock_timeout(conn, lock_timeout)
    except BaseException:
        tx.rollback()
        raise
    return tx


@contextmanager
def write_transaction(conn: Connection, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
                      ) -> Iterator[RootTransaction]:
    """A writing command's one transaction, committed at the end of the block (rolled
    back by an exception), whose lock waits end after ``lock_timeout`` seconds."""
    tx = _begin(conn, lock_timeout, "another writer holds the database")
    try:
        yield tx
    except BaseException:
        tx.rollback()
        raise
    if tx.is_active:
        tx.commit()


@contextmanager
def writing(conn: Connection) -> Iterator[None]:
    """Join the caller's transaction or open one; hold the ledger writer lock either way."""
    if conn.in_transaction():
        lock_ledger(conn)
        yield
    else:
        with write_transaction(conn):
            lock_ledger(conn)
            yield


_RUN_BUSY = "another settlement run holds the lock"


@contextmanager
def settlement_transaction(conn: Connection, *, wait: bool,
                           lock_timeout: float = DEFAULT_LOCK_TIMEOUT
                           ) -> Iterator[RootTransaction]:
    """Begin a settlement run's transaction; the caller commits or rolls it back after
    the block, and an exception inside rolls it back.

    On SQLite beginning it takes the run lock, waiting ``lock_timeout`` seconds if
    ``wait``, else not at all; on PostgreSQL ``lock_settlement_run`` does.  Every other
    lock wait of the run ends after ``lock_timeout`` seconds.
    """
    tx = _begin(conn, lock_timeout, _RUN_BUSY, begin_wait=lock_timeout if wait else 0)
    try:
        yield tx
    except BaseException:
        tx.rollback()
        raise


def lock_settlement_run(conn: Connection, *, wait: bool) -> None:
    """Take the settlement run lock (before the ledger lock; see the module docstring)."""
    try:
        taken = backend(conn).transaction_lock(conn, SETTLE_LOCK_KEY, wait=wait)
    except sa.exc.OperationalError as e:
        if backend(conn).is_lock_busy(e):
            raise LockBusy(_busy(_RUN_BUSY, conn.info.get(_TIMEOUT_KEY))) from e
        raise
    if not taken:
        raise LockBusy(_busy(_RUN_BUSY, None))
