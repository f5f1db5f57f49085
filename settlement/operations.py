"""Operations: every row a command writes carries the command's op id, and the operations log
seals what each operation wrote.

An operation is one command that writes: a settlement run (its op id is the run id), a
payout run, a payee import, a hand write (``ledger credit``, ``confirm``, ``pay``,
``reverse``, ``approve``).  Its rows, in every table of ``OPERATION_TABLES``, carry its op
id.  When it ends (inside its transaction, before the commit) the operation is *sealed*:
its ledger rows are folded into the liabilities report's daily aggregate
(``settlement.ledger.daily``, a table of its own), then its rows are read back in key
order, and one ``ledger_operations`` row records, per table, how many there are and the
sha256 of their canonical JSON; that row is chained to the previous operation's
(``prev_hash``), as entries are.  ``ledger verify`` recomputes
every operation's rows from the tables (``verify_operations``): a row edited, deleted or
added under a known op id changes its operation's seal; a row with no op id, or one the
log does not know, is refused.  Rows written before op ids existed (NULL) were sealed by
migration 0007 as one operation (``LEGACY_OP_ID``).

A seal covers a row's non-NULL columns as the driver returns them, so a later migration may
add a nullable column (old rows keep their seals) but must not give old rows a value (a
``server_default`` on a sealed table) without resealing them.

What this cannot see alone: an attacker who rewrites rows *and* recomputes every seal and
the chain after them.  The chain's head written outside the database (``referral ledger
anchor``) catches that; see ``settlement.anchors``.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement.dialect import backend
from settlement.errors import LedgerError
from settlement.locks import lock_ledger, writing
from settlement.tables import OPERATION_TABLES, RANGED_BY, ledger_operations

GENESIS_HASH = "0" * 64
LEGACY_OP_ID = "0007:before-operation-ids"
STREAM_ROWS = 1000
_OPS = ledger_operations
_KEY = "settlement.operation"


@dataclass(frozen=True)
class Operation:
    """The operation a transaction is writing for."""

    op_id: str
    command: str
    actor: str
    started: datetime
    # Per table keyed by id, its newest id when the operation began: the operation's rows
    # come after it (writers hold the ledger lock; ids only grow), so its seal reads them
    # by id, and the largest tables need no index on op_id.
    after: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Seal:
    """What an operation wrote, per table: rows and their sha256 (``counts``/``digests``)."""

    counts: dict[str, int]
    digests: dict[str, str]

    def as_json(self) -> dict[str, list[Any]]:
        """``ledger_operations.counts``: table -> [rows, sha256]."""
        return {t: [n, self.digests[t]] for t, n in self.counts.items()}

    def digest(self) -> str:
        return _sha(_dumps(self.as_json()))


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bytes | memoryview):
        return bytes(value).hex()
    return value


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_PLAIN = (str, int)


def row_text(row: Mapping[str, Any]) -> str:
    """A row as the seal sees it: canonical JSON of its non-NULL columns (sorted), as the
    driver returns them (a column added later is NULL in older rows, so their seals hold)."""
    return _ENCODE({k: v if type(v) in _PLAIN else _canonical(v)
                    for k, v in sorted(row.items()) if v is not None})


def table_rows(conn: Connection, table: str, op_id: str | None = None,
               after: int | None = None, upto: int | None = None
               ) -> Iterator[tuple[str | None, str]]:
    """(op id, ``row_text``) of each row of ``table`` in key order, read raw (untyped, so
    every reader sees the same values): all rows, or one operation's (NULL op id:
    ``LEGACY_OP_ID``), among those with an id above ``after`` (and at most ``upto``)
    when given."""
    order = ", ".join(OPERATION_TABLES[table])
    where = ("" if op_id is None else "op_id IS NULL" if op_id == LEGACY_OP_ID
             else "op_id = :op")
    if after is not None and op_id is not None:
        column = RANGED_BY[table][1]
        where = f"{column} > :after AND {where}" if upto is None else (
            f"{column} > :after AND {column} <= :upto AND {where}")
    params = {"op": op_id, "after": after, "upto": upto}
    written = backend(conn).sealed_rows(conn, table, where, params, order)
    if written is not None:
        yield from written
        return
    result = conn.execute(
        sa.text(f"SELECT * FROM {table}{' WHERE ' + where if where else ''} ORDER BY {order}"
                ).execution_options(yield_per=STREAM_ROWS), params)
    names = list(result.keys())
    ordered = sorted(range(len(names)), key=names.__getitem__)
    at_op = names.index("op_id")
    for row in result:
        yield row[at_op], _ENCODE({
            names[i]: v if type(v) in _PLAIN else _canonical(v)
            for i in ordered if (v := row[i]) is not None
        })


class _Sealer:
    """Per table, the running count and sha256 of one operation's rows."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.hashes: dict[str, Any] = {}

    def add(self, table: str, text: str) -> None:
        h = self.hashes.get(table)
        if h is None:
            h = self.hashes[table] = hashlib.sha256()
            self.counts[table] = 0
        h.update(text.encode("utf-8") + b"\n")
        self.counts[table] += 1

    def seal(self) -> Seal:
        return Seal(dict(self.counts), {t: h.hexdigest() for t, h in self.hashes.items()})


def compute_seal(conn: Connection, op_id: str, tables: Iterable[str] = OPERATION_TABLES,
                 after: Mapping[str, int] | None = None,
                 upto: Mapping[str, int] | None = None) -> Seal:
    """What the tables hold for ``op_id`` now (``tables``: a migration names those it knows;
    ``after``: per table, an id its rows of ``op_id`` all follow; ``upto``: the newest
    id now)."""
    sealer = _Sealer()
    for table in tables:
        bound = RANGED_BY.get(table, (table, ""))[0]
        for _, text in table_rows(conn, table, op_id, (after or {}).get(bound),
                                  (upto or {}).get(bound)):
            sealer.add(table, text)
    return sealer.seal()


BY_ID = tuple(t for t, key in OPERATION_TABLES.items() if key == ("id",))


_NEWEST_IDS = sa.text("SELECT " + ", ".join(
    f"(SELECT coalesce(max(id), 0) FROM {t})" for t in BY_ID))


def newest_ids(conn: Connection) -> dict[str, int]:
    """Per table keyed by id, its newest id (0 when empty): one statement, an index probe
    per table."""
    return dict(zip(BY_ID, conn.execute(_NEWEST_IDS).one(), strict=True))


def operation_hash(row: Mapping[str, Any]) -> str:
    """sha256 over an operations row's non-NULL columns but ``hash`` (``prev_hash``
    included; a column added later is NULL in older rows, so their hashes hold)."""
    return _sha(_dumps({k: _canonical(v) for k, v in row.items()
                        if k != "hash" and v is not None}))


def operations_head(conn: Connection) -> tuple[int, str, str] | None:
    """The newest operation's id, hash and op id, or None."""
    row = conn.execute(
        sa.select(_OPS.c.id, _OPS.c.hash, _OPS.c.op_id).order_by(_OPS.c.id.desc()).limit(1)
    ).first()
    return (row.id, row.hash, row.op_id) if row else None


def append_operation(conn: Connection, op: Operation, seal: Seal) -> dict[str, Any]:
    """Chain the operations row of ``seal`` after the newest one (under the ledger lock)."""
    lock_ledger(conn)
    last = operations_head(conn)
    row: dict[str, Any] = {
        "id": last[0] + 1 if last else 1, "op_id": op.op_id, "command": op.command[:255],
        "actor": op.actor[:255], "at": op.started, "counts": _dumps(seal.as_json()),
        "digest": seal.digest(), "prev_hash": last[1] if last else GENESIS_HASH,
    }
    row["hash"] = operation_hash(row)
    conn.execute(_OPS.insert(), row)
    return row


def current(conn: Connection) -> Operation | None:
    """The operation the connection's transaction writes for, if one was begun."""
    held = conn.info.get(_KEY)
    if held is None:
        return None
    tx, op = held
    running = conn.get_transaction()
    return op if running is not None and tx is running and running.is_active else None


def op_id(conn: Connection) -> str:
    """The op id every row written now must carry."""
    op = current(conn)
    if op is None:
        raise LedgerError("a write outside an operation (settlement.operations.operation)")
    return op.op_id


def begin(conn: Connection, command: str, actor: str, op_id: str | None = None) -> Operation:
    """Begin an operation for the connection's transaction (which must have begun)."""
    tx = conn.get_transaction()
    if tx is None:
        raise LedgerError("an operation needs a transaction")
    if current(conn) is not None:
        raise LedgerError("an operation is already running in this transaction")
    op = Operation(op_id or uuid.uuid4().hex, command, actor, datetime.now(UTC),
                   newest_ids(conn))
    conn.info[_KEY] = (tx, op)
    return op


def seal(conn: Connection) -> dict[str, Any] | None:
    """End the transaction's operation: record what it wrote (nothing: no row); the caller
    commits.  Returns the operations row written, if any."""
    op = current(conn)
    conn.info.pop(_KEY, None)
    if op is None:
        return None
    # Imported here: the ledger package's writers import this module.
    from settlement.ledger.daily import fold

    # The operation's rows lie between the newest ids when it began and the newest now: a
    # range with both ends, which the planner reads by index on a table without
    # statistics (with one end it guessed a third of the table, and scanned all of it).
    # The newest ids are read again for the seal: the fold has just added its own rows.
    fold(conn, op.op_id, after=op.after, upto=newest_ids(conn))  # sealed with the rest
    sealed = compute_seal(conn, op.op_id, after=op.after, upto=newest_ids(conn))
    if not sealed.counts:
        return None
    return append_operation(conn, op, sealed)


def abandon(conn: Connection) -> None:
    """Forget the transaction's operation (it is being rolled back)."""
    conn.info.pop(_KEY, None)


@contextmanager
def operation(conn: Connection, command: str, actor: str) -> Iterator[Operation]:
    """Join the running operation, or run the block as one: in the caller's transaction
    (or one of its own) under the ledger writer lock, sealed when the block ends."""
    running = current(conn)
    if running is not None:
        with writing(conn):
            yield running
        return
    with writing(conn):
        op = begin(conn, command, actor)
        try:
            yield op
        except BaseException:
            abandon(conn)
            raise
        seal(conn)


# -- verification ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Known:
    name: str
    sealed: dict[str, list[Any]]
    digest: str


def _op_name(row: Any) -> str:
    return (f"operation id={row.id} {row.op_id!r} ({row.command} by {row.actor} at "
            f"{_canonical(row.at)})")


def _op_link_problem(row: Any, prev: str) -> str | None:
    if row.prev_hash != prev:
        return ("prev_hash does not match the previous operation's hash (an operation was"
                " removed, inserted or reordered)")
    return None


def _op_hash_problem(row: Any) -> str | None:
    if operation_hash(row._mapping) != row.hash:
        return "hash mismatch (the operations row was changed after it was written)"
    return None


def _row_op_problem(table: str, op: str | None, text: str, known: Mapping[str, _Known]
                    ) -> str | None:
    """A row whose op id is missing or not in the log: written behind the operations."""
    if op is None and LEGACY_OP_ID not in known:
        return f"{_row_name(table, text)}: has no operation id (not written by a command)"
    if op is not None and op not in known:
        return (f"{_row_name(table, text)}: operation {op!r} is not in the operations log"
                " (not written by a command)")
    return None


def _seal_problems(name: str, sealed: Mapping[str, list[Any]], digest: str, got: Seal
                   ) -> list[str]:
    """The operation's rows now against its seal, per table: how many, then their sha256;
    and the seal against the digest the chain covers."""
    problems = []
    if _sha(_dumps(sealed)) != digest:
        problems.append(f"{name}: its counts do not match its digest (the row was changed)")
    for table in OPERATION_TABLES:
        want, want_sha = sealed.get(table, [0, None])
        have = got.counts.get(table, 0)
        if have < want:
            problems.append(f"{name}: {table} holds {have} of the {want} rows it wrote"
                            " (rows were deleted)")
        elif have > want:
            problems.append(f"{name}: {table} holds {have} rows, it wrote {want}"
                            " (rows were added under its id)")
        elif have and got.digests[table] != want_sha:
            problems.append(f"{name}: {table} rows differ from what it wrote"
                            " (a row was changed)")
    return problems


def _row_name(table: str, text: str) -> str:
    row = json.loads(text)
    key = ", ".join(f"{c}={row.get(c)!r}" for c in OPERATION_TABLES[table])
    return f"{table} row {key}"


MAX_ROW_PROBLEMS = 20


def verify_operations(conn: Connection) -> list[str]:
    """The operations log and every row it seals: the log's chain, each row's op id, and
    each operation's rows against its seal; streamed, one pass per table."""
    problems: list[str] = []
    known: dict[str, _Known] = {}
    prev = GENESIS_HASH
    for row in conn.execute(
        sa.select(_OPS).order_by(_OPS.c.id).execution_options(yield_per=STREAM_ROWS)
    ):
        name = _op_name(row)
        for found in (_op_link_problem(row, prev), _op_hash_problem(row)):
            if found is not None:
                problems.append(f"{name}: {found}")
        prev = row.hash
        known[row.op_id] = _Known(name, json.loads(row.counts), row.digest)
    sealers: dict[str, _Sealer] = {}
    stray = 0
    for table in OPERATION_TABLES:
        for row_op, text in table_rows(conn, table):
            found = _row_op_problem(table, row_op, text, known)
            if found is not None:
                stray += 1
                if stray <= MAX_ROW_PROBLEMS:
                    problems.append(found)
                continue
            op = row_op or LEGACY_OP_ID
            sealer = sealers.get(op)
            if sealer is None:
                sealer = sealers[op] = _Sealer()
            sealer.add(table, text)
    if stray > MAX_ROW_PROBLEMS:
        problems.append(f"{stray - MAX_ROW_PROBLEMS} more rows without a known operation")
    empty = Seal({}, {})
    for op, seen in known.items():
        got = sealers[op].seal() if op in sealers else empty
        problems += _seal_problems(seen.name, seen.sealed, seen.digest, got)
    return problems
