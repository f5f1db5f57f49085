"""Run history: every settle run leaves a record, failed, interrupted and killed ones too.

A run is one transaction (``settlement.batch``), so what it writes vanishes when it
fails; ``settlement_runs`` is written inside it and shows only runs that committed.
The history is written beside it, in ``settlement_run_events``, on a connection of
its own:

- a start row (status ``running``: as-of, absolute input path, size, host, pid),
  committed in a short transaction before the run begins; the same transaction
  settles what earlier runs left unfinished (below);
- phase rows while the run runs, where the database lets another connection
  write beside it (PostgreSQL; SQLite's one write lock is the run's);
- an end row: ``succeeded`` inside the run's own transaction, so it commits with
  the run or not at all (so it is how a later start learns that a run committed,
  as ``settlement_runs`` would say); ``failed`` (error and phase), ``dry_run`` or
  ``unknown`` (the connection went around COMMIT) in a separate transaction after
  the rollback.  End rows carry the input's SHA-256 as the run read it.

A run whose newest row says ``running`` but whose marker lock nobody holds
(``settlement.locks``: its process died) is *aborted*; one that said ``unknown``
has committed if ``settlement_runs`` holds its id.  ``runs list`` shows that
derived status; the next run's start also writes it down and logs it.

Logs: the ``settlement.run`` logger, one record per phase, progress every N
records or seconds, and a summary, each with ``run_id``, ``phase`` and ``counts``
in its ``extra`` (the CLI renders them as text or JSON lines).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dsl.model import Program
from settlement.batch import RunSummary, run_as_of, settle
from settlement.db import require_schema
from settlement.dialect import backend
from settlement.errors import OutcomeUnknown, RunNotFound, SettlementError
from settlement.locks import (
    DEFAULT_LOCK_TIMEOUT,
    RUN_MARKER_NAMESPACE,
    lock_run_history,
    run_marker_key,
    settlement_transaction,
)
from settlement.observe import CHUNK_PHASES, RunObserver
from settlement.records import BadRecord, Record
from settlement.tables import settlement_quarantine, settlement_run_events, settlement_runs

log = logging.getLogger("settlement.run")

_EV, _RUNS, _Q = settlement_run_events, settlement_runs, settlement_quarantine
TERMINAL = ("succeeded", "failed", "dry_run", "aborted")
STDIN_NAME = "<stdin>"
_PHASE_MESSAGES = {
    "locking": "taking the settlement lock",
    "reading": "reading records",
    "evaluating": "evaluating records",
    "posting": "posting",
    "confirming": "confirming rewards whose hold has ended",
    "checking": "checking for conflicts",
    "committing": "committing",
}


@dataclass(frozen=True)
class InputInfo:
    """The input file as the start row records it (its digest comes with the end row:
    the run computes it as it reads, so the file is read once)."""

    name: str  # absolute path, or <stdin>
    size: int | None = None


def describe_input(path: str) -> InputInfo:
    """Absolute path and size of an input file; stdin has neither."""
    if path == "-":
        return InputInfo(STDIN_NAME)
    absolute = os.path.abspath(path)
    return InputInfo(absolute, os.stat(absolute).st_size)


@dataclass(frozen=True)
class ProgressPolicy:
    """How often a run reports progress: every ``records`` records or ``seconds``,
    whichever comes first (checked after each chunk).  ``log`` False: no progress log
    lines (a progress bar shows it instead); phase rows are written either way."""

    records: int = 10_000
    seconds: float = 10.0
    log: bool = True
    on_phase: Callable[[str], None] | None = None  # told each phase (a progress bar's label)


@dataclass(frozen=True)
class Resolution:
    """What a run's start found out about an earlier run that had not ended."""

    run_id: str
    was: str  # running | unknown
    now: str  # succeeded | failed | aborted
    phase: str

    @property
    def message(self) -> str:
        if self.was == "unknown":
            return (f"run {self.run_id}, whose outcome was unknown, "
                    + ("committed" if self.now == "succeeded"
                       else "did not commit: nothing of it was written"))
        if self.now == "succeeded":
            return f"run {self.run_id} committed, but its end was not recorded"
        return f"run {self.run_id} was aborted in phase {self.phase}: nothing of it was written"


def _now() -> datetime:
    return datetime.now(UTC)


def _json(counts: Mapping[str, Any] | None) -> str | None:
    return None if counts is None else json.dumps(dict(counts), sort_keys=True)


def one_line(error: BaseException) -> str:
    """An error as the history keeps it: its class and first line."""
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class RunTracker(RunObserver):
    """The CLI's observer of a run: logs each phase and keeps its history rows."""

    def __init__(self, engine: Engine, run_id: str,
                 progress: ProgressPolicy = ProgressPolicy()) -> None:
        self.engine = engine
        self.run_id = run_id
        self.policy = progress
        self.conn: Connection | None = None
        self.current = "start"
        self.counts: dict[str, Any] = {}
        self.started = time.monotonic()
        self.next_records = progress.records
        self.next_time = self.started + progress.seconds
        self.seen: set[str] = set()
        self.recorded = False  # the start row is committed
        self.ended = False

    def _extra(self, phase: str, counts: Mapping[str, Any] | None = None,
               **more: Any) -> dict[str, Any]:
        return {"run_id": self.run_id, "phase": phase, "counts": dict(counts or {}), **more}

    # -- start -----------------------------------------------------------------

    def begin(self, *, as_of: date | None, source: InputInfo, wait: bool,
              lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> list[Resolution]:
        """Write the start row (and settle earlier unfinished runs) in one short transaction,
        and hold the run's marker until ``end``."""
        self.started = time.monotonic()
        self.next_time = self.started + self.policy.seconds
        self.conn = conn = self.engine.connect()
        db = backend(conn)
        try:
            with settlement_transaction(conn, wait=wait, lock_timeout=lock_timeout) as tx:
                require_schema(conn)
                lock_run_history(conn)
                resolutions = _resolve_unfinished(conn)
                conn.execute(_EV.insert(), {
                    "run_id": self.run_id, "status": "running", "phase": "start", "at": _now(),
                    "as_of": as_of, "input_name": source.name, "input_size": source.size,
                    "host": socket.gethostname()[:255],
                    "pid": os.getpid(),
                })
                db.hold_marker(conn, RUN_MARKER_NAMESPACE, run_marker_key(self.run_id))
            tx.commit()
        except BaseException:
            self.close()
            raise
        self.recorded = True
        for r in resolutions:
            log.warning(r.message, extra={"run_id": self.run_id, "phase": "start", "counts": {},
                                          "event": "resolved", "resolved_run": r.run_id,
                                          "resolved_status": r.now})
        log.info("settlement run %s started: as of %s, input %s", self.run_id, as_of,
                 source.name, extra=self._extra("start", event="start",
                                                as_of=str(as_of) if as_of else None,
                                                input=source.name, input_size=source.size,
                                                host=socket.gethostname(), pid=os.getpid()))
        return resolutions

    # -- RunObserver -------------------------------------------------------------

    def phase(self, name: str, counts: dict[str, Any]) -> None:
        self.counts = counts or self.counts
        if name == self.current:
            return
        self.current = name
        if self.policy.on_phase is not None:
            self.policy.on_phase(name)
        if name == "done":
            return
        first = name not in self.seen
        self.seen.add(name)
        if name not in CHUNK_PHASES:
            self._phase_row(name, counts)
        level = logging.DEBUG if name in CHUNK_PHASES and not first else logging.INFO
        log.log(level, _PHASE_MESSAGES.get(name, name),
                extra=self._extra(name, counts, event="phase"))

    def progress(self, counts: dict[str, Any]) -> None:
        self.counts = counts
        now = time.monotonic()
        if counts.get("records", 0) < self.next_records and now < self.next_time:
            return
        self.next_records = counts.get("records", 0) + self.policy.records
        self.next_time = now + self.policy.seconds
        self._phase_row("reading", counts)  # before the line: whoever reads it finds the row
        if self.policy.log:
            log.info("%d records read, %d quarantined, %d credits posted so far",
                     counts.get("records", 0), counts.get("quarantined", 0),
                     counts.get("posted", 0), extra=self._extra("reading", counts,
                                                                event="progress"))

    def before_commit(self, conn: Connection, summary: Any) -> None:
        conn.execute(_EV.insert(), self._end_row("succeeded", "done", summary.as_json(), None,
                                                 summary.input_digest))

    # -- end -------------------------------------------------------------------

    def duration_s(self) -> float:
        return round(time.monotonic() - self.started, 3)

    def _end_row(self, status: str, phase: str, counts: Mapping[str, Any] | None,
                 error: str | None, digest: str | None = None) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": status, "phase": phase, "at": _now(),
                "error": error, "input_digest": digest or None,
                "counts": _json({**(counts or {}), "duration_s": self.duration_s()})}

    def _phase_row(self, phase: str, counts: Mapping[str, Any]) -> None:
        """A phase row on PostgreSQL (elsewhere the run's lock is the only writer's)."""
        if self.conn is None or not backend(self.conn).writes_beside_a_run:
            return
        try:
            with self.conn.begin():
                self.conn.execute(_EV.insert(), {"run_id": self.run_id, "status": "running",
                                                 "phase": phase, "at": _now(),
                                                 "counts": _json(counts)})
        except sa.exc.SQLAlchemyError as e:
            log.warning("could not record phase %s: %s", phase, one_line(e),
                        extra=self._extra(phase, counts, event="history"))

    def end(self, status: str, *, summary: RunSummary | None = None,
            error: BaseException | None = None) -> None:
        """Record and log how the run ended (``succeeded`` was written with the run)."""
        if self.ended:
            return
        self.ended = True
        counts = summary.as_json() if summary is not None else self.counts
        phase = "done" if status in ("succeeded", "dry_run") else self.current
        message = one_line(error) if error is not None else None
        try:
            if status != "succeeded" and self.conn is not None:
                with self.conn.begin():
                    self.conn.execute(_EV.insert(), self._end_row(
                        status, phase, counts, message,
                        summary.input_digest if summary is not None else None))
        except sa.exc.SQLAlchemyError as e:
            log.warning("could not record the end of run %s (%s): %s; the next run's start"
                        " will", self.run_id, status, one_line(e),
                        extra=self._extra(phase, counts, event="history"))
        extra = self._extra(phase, counts, event="summary", status=status,
                            duration_s=self.duration_s())
        if status in ("succeeded", "dry_run"):
            log.info("%s in %.1f s: %d records, %d posted, %d quarantined",
                     "committed" if status == "succeeded" else "dry run rolled back",
                     self.duration_s(), counts.get("records", 0), counts.get("posted", 0),
                     counts.get("quarantined", 0), extra=extra)
        else:
            log.error("run %s %s in phase %s after %.1f s: %s", self.run_id,
                      "outcome unknown" if status == "unknown" else "failed", phase,
                      self.duration_s(), message, extra=extra)
        self.close()

    def close(self) -> None:
        if self.conn is None:
            return
        conn, self.conn = self.conn, None
        try:
            backend(conn).release_marker(conn, RUN_MARKER_NAMESPACE,
                                         run_marker_key(self.run_id))
            conn.commit()
        except sa.exc.SQLAlchemyError:
            pass  # the session is gone, and its locks with it
        finally:
            conn.close()


def settle_recorded(
    conn: Connection,
    program: Program,
    records: Iterable[Record | BadRecord],
    *,
    records_path: str,
    as_of: date | None = None,
    wait: bool = True,
    dry_run: bool = False,
    allow_future_as_of: bool = False,
    run_id: str | None = None,
    progress: ProgressPolicy = ProgressPolicy(),
    **options: Any,
) -> RunSummary:
    """``settlement.batch.settle`` with its history written and its phases logged.

    ``records_path`` is the input as given (``-``: stdin); the run log stores it
    absolute.  Whatever happens after the start row, an end row follows (or, if the
    process dies, the next start marks the run aborted).
    """
    run_id = run_id or uuid.uuid4().hex
    source = describe_input(records_path)
    planned: date | None
    try:
        planned = run_as_of(program, as_of, allow_future_as_of=allow_future_as_of, now=_now())
    except SettlementError:
        planned = as_of  # refused by settle below, and recorded as failed
    tracker = RunTracker(conn.engine, run_id, progress)
    try:
        tracker.begin(as_of=planned, source=source, wait=wait,
                      lock_timeout=options.get("lock_timeout", DEFAULT_LOCK_TIMEOUT))
        summary = settle(conn, program, records, as_of=as_of, input_name=source.name,
                         wait=wait, dry_run=dry_run, allow_future_as_of=allow_future_as_of,
                         run_id=run_id, observer=tracker, **options)
    except OutcomeUnknown as e:
        tracker.end("unknown", error=e)
        raise
    except BaseException as e:
        if tracker.recorded:  # else nothing was written (SQLite: another run held the lock)
            tracker.end("failed", error=e)
        raise
    tracker.end("dry_run" if dry_run else "succeeded", summary=summary)
    return summary


# ------------------------------------------------------------------ reading the history


@dataclass(frozen=True)
class RunEvent:
    status: str
    phase: str
    at: datetime
    error: str | None
    counts: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "phase": self.phase, "at": self.at.isoformat(),
                "error": self.error, "counts": self.counts}


@dataclass(frozen=True)
class RunInfo:
    """One run as ``runs list`` shows it: its start, and its status derived from its newest
    row (``aborted``: running, but its process is gone)."""

    run_id: str
    status: str
    phase: str
    started_at: datetime | None
    ended_at: datetime | None
    as_of: date | None
    input_name: str | None
    input_size: int | None = None
    input_digest: str | None = None
    host: str | None = None
    pid: int | None = None
    error: str | None = None
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if "duration_s" in self.counts:
            return float(self.counts["duration_s"])
        if self.started_at is not None and self.ended_at is not None:
            return round((self.ended_at - self.started_at).total_seconds(), 3)
        return None

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "status": self.status, "phase": self.phase,
                "started_at": self.started_at.isoformat() if self.started_at else None,
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
                "duration_s": self.duration_s,
                "as_of": self.as_of.isoformat() if self.as_of else None,
                "input_name": self.input_name, "input_size": self.input_size,
                "input_sha256": self.input_digest, "host": self.host, "pid": self.pid,
                "error": self.error,
                "counts": {k: v for k, v in self.counts.items() if k != "duration_s"}}


@dataclass(frozen=True)
class RunDetail:
    """``runs show``: the run, each of its history rows, and its run-log row if it
    committed (``settlement_runs``: digests, counters, the ledger head)."""

    info: RunInfo
    events: list[RunEvent]
    committed: dict[str, Any] | None
    quarantined: int

    def as_json(self) -> dict[str, Any]:
        return {**self.info.as_json(), "events": [e.as_json() for e in self.events],
                "committed": self.committed, "quarantined_rows": self.quarantined}


@dataclass(frozen=True)
class QuarantinedRecord:
    run_id: str
    file: str
    line: int
    reason: str
    raw: str

    def as_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "file": self.file, "line": self.line,
                "reason": self.reason, "raw": self.raw}


def _derive(status: str, committed: bool, live: bool) -> str:
    """A run's status from its newest row, whether it committed, whether it is live."""
    if status in TERMINAL:
        return status
    if committed:
        return "succeeded"
    if status == "unknown":
        # Written after the COMMIT call raised: the run is done with its transaction,
        # which either committed (its settlement_runs row says so) or never will.
        return "failed"
    return status if live else "aborted"


def _process_alive(host: str | None, pid: int | None) -> bool:
    """Where no lock tells (SQLite): a run on this host is live while its process is;
    one on another host cannot be told, and counts as live."""
    if host != socket.gethostname() or pid is None:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _live(conn: Connection, starts: Mapping[str, sa.Row[Any]]) -> set[str]:
    """Which of these runs (by their start rows) are still running."""
    held = backend(conn).markers_held(conn, RUN_MARKER_NAMESPACE)
    if held is not None:
        return {rid for rid in starts if run_marker_key(rid) & 0xFFFFFFFF in held}
    return {rid for rid, row in starts.items() if _process_alive(row.host, row.pid)}


def _committed(conn: Connection, run_ids: Iterable[str]) -> set[str]:
    """Which of these runs committed: their ``succeeded`` row is written in the run's own
    transaction, with its ``settlement_runs`` row (which a starting run need not read,
    nor wait for while someone locks it)."""
    ids = list(run_ids)
    if not ids:
        return set()
    stmt = sa.select(_EV.c.run_id).where(_EV.c.status == "succeeded")
    return {row.run_id for row in backend(conn).select_in(conn, stmt, _EV.c.run_id, ids)}


def _events_of(conn: Connection, run_ids: list[str]) -> dict[str, list[sa.Row[Any]]]:
    out: dict[str, list[sa.Row[Any]]] = {rid: [] for rid in run_ids}
    rows = backend(conn).select_in(conn, sa.select(_EV), _EV.c.run_id, run_ids)
    for row in sorted(rows, key=lambda r: r.id):
        out[row.run_id].append(row)
    return out


def _infos(conn: Connection, events: Mapping[str, list[sa.Row[Any]]]) -> dict[str, RunInfo]:
    open_runs = {rid: rows[0] for rid, rows in events.items()
                 if rows and rows[-1].status not in TERMINAL}
    committed = _committed(conn, open_runs)
    live = _live(conn, open_runs) if open_runs else set()
    out = {}
    for rid, rows in events.items():
        if not rows:
            continue
        start, newest = rows[0], rows[-1]
        status = _derive(newest.status, rid in committed, rid in live)
        counts: dict[str, Any] = next(
            (json.loads(r.counts) for r in reversed(rows) if r.counts), {})
        out[rid] = RunInfo(
            run_id=rid, status=status, phase=newest.phase, started_at=start.at,
            ended_at=newest.at if status in TERMINAL and newest.status in TERMINAL else None,
            as_of=start.as_of, input_name=start.input_name, input_size=start.input_size,
            input_digest=next((r.input_digest for r in reversed(rows) if r.input_digest), None),
            host=start.host, pid=start.pid,
            error=next((r.error for r in reversed(rows) if r.error), None), counts=counts)
    return out


def _legacy(row: sa.Row[Any]) -> RunInfo:
    """A run committed before the history existed (revision 0006): its run-log row."""
    counts = {k: getattr(row, k) for k in RunSummary.COUNTERS}
    counts["amount_posted"] = json.loads(row.amount_posted)
    return RunInfo(run_id=row.run_id, status="succeeded", phase="done",
                   started_at=row.started_at, ended_at=row.finished_at, as_of=row.as_of,
                   input_name=row.input_name, counts=counts)


def _resolve_unfinished(conn: Connection) -> list[Resolution]:
    """Under the run-history lock: write down the outcome of runs that did not end."""
    newest = (sa.select(sa.func.max(_EV.c.id)).group_by(_EV.c.run_id)).scalar_subquery()
    rows = conn.execute(sa.select(_EV.c.run_id, _EV.c.status, _EV.c.phase)
                        .where(_EV.c.id.in_(newest), _EV.c.status.in_(("running", "unknown")))
                        ).all()
    if not rows:
        return []
    starts = {row.run_id: row for row in backend(conn).select_in(
        conn, sa.select(_EV).where(_EV.c.phase == "start"), _EV.c.run_id,
        [r.run_id for r in rows])}
    committed = _committed(conn, starts)
    live = _live(conn, starts)
    out = []
    for row in rows:
        now = _derive(row.status, row.run_id in committed, row.run_id in live)
        if now == row.status:
            continue
        note = {"succeeded": "committed",
                "failed": "did not commit",
                "aborted": "its process ended without recording an end"}[now]
        conn.execute(_EV.insert(), {"run_id": row.run_id, "status": now, "phase": row.phase,
                                    "at": _now(), "error": None if now == "succeeded" else note})
        out.append(Resolution(row.run_id, row.status, now, row.phase))
    return out


def list_runs(conn: Connection, last: int | None = 20) -> list[RunInfo]:
    """The newest ``last`` runs (all when None), newest first."""
    first_ids = (sa.select(_EV.c.run_id, sa.func.min(_EV.c.id).label("first"))
                 .group_by(_EV.c.run_id).order_by(sa.desc("first")))
    if last is not None:
        first_ids = first_ids.limit(last)
    run_ids = [r.run_id for r in conn.execute(first_ids)]
    infos = list(_infos(conn, _events_of(conn, run_ids)).values())
    legacy = (sa.select(_RUNS).where(_RUNS.c.run_id.not_in(sa.select(_EV.c.run_id)))
              .order_by(_RUNS.c.started_at.desc()))
    if last is not None:
        legacy = legacy.limit(last)
    infos += [_legacy(row) for row in conn.execute(legacy)]
    infos.sort(key=lambda i: i.started_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return infos[:last] if last is not None else infos


def resolve_run_id(conn: Connection, run: str) -> str:
    """The run id a full id or unique prefix names (RunNotFound otherwise)."""
    found: set[str] = set()
    for table in (_EV, _RUNS):
        found |= set(conn.execute(sa.select(table.c.run_id).distinct()
                                  .where(table.c.run_id.startswith(run, autoescape=True))
                                  .limit(10)).scalars())
    if run in found:
        return run
    if not found:
        raise RunNotFound(f"no settlement run {run!r} (see `referral runs list`)")
    if len(found) > 1:
        raise RunNotFound(f"run id prefix {run!r} names {len(found)} runs: "
                          + ", ".join(sorted(found)[:5]))
    return found.pop()


def show_run(conn: Connection, run: str) -> RunDetail:
    run_id = resolve_run_id(conn, run)
    events = _events_of(conn, [run_id])
    log_row = conn.execute(sa.select(_RUNS).where(_RUNS.c.run_id == run_id)).first()
    info = _infos(conn, events).get(run_id) or _legacy(log_row)  # type: ignore[arg-type]
    committed = None
    if log_row is not None:
        committed = {k: (v.isoformat() if isinstance(v, (date, datetime)) else v)
                     for k, v in log_row._mapping.items()}
        committed["amount_posted"] = json.loads(log_row.amount_posted)
    count = conn.execute(sa.select(sa.func.count()).select_from(_Q)
                         .where(_Q.c.run_id == run_id)).scalar_one()
    return RunDetail(info, [RunEvent(r.status, r.phase, r.at, r.error,
                                     json.loads(r.counts) if r.counts else {})
                            for r in events[run_id]], committed, count)


def quarantined(conn: Connection, run: str | None = None) -> Iterator[QuarantinedRecord]:
    """Quarantined records, in the order they were written (of one run, or all)."""
    stmt = sa.select(_Q).order_by(_Q.c.id)
    if run is not None:
        stmt = stmt.where(_Q.c.run_id == resolve_run_id(conn, run))
    for row in conn.execute(stmt.execution_options(yield_per=1000)):
        yield QuarantinedRecord(row.run_id, row.file, row.line, row.reason, row.raw)
