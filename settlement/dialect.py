"""What PostgreSQL and SQLite do differently: one backend object per database.

``Backend`` is the portable way, in SQLAlchemy Core: executemany, ``IN``
lists in chunks, the LIMIT totals as one grouped query per rule and period.
``SQLiteBackend`` adds the connection setup SQLite needs; ``PostgresBackend``
overrides the bulk paths with array parameters and COPY, measured faster there
(bench/RESULTS.md), and holds locks as advisory locks.  As alembic picks its
``DefaultImpl`` subclass by the dialect's name, ``backend(conn)`` picks once
per connection and keeps the choice in ``conn.info``.  Which locks exist and
who takes them is ``settlement.locks``'s business; here is only how each
database holds one.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, ClassVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import operators

from settlement.errors import InvalidDatabaseURL, SchemaNotReady
from settlement.tables import entries_with_status, ledger_entries

if TYPE_CHECKING:
    import sqlite3

    import psycopg

    from settlement.ledger.types import TotalsKey

SQLITE_BUSY_TIMEOUT_SECONDS = 30
PG_CONNECT_TIMEOUT_SECONDS = 5
CHUNK_SIZE = 500
# Execution options for a connection that only reads: on SQLite its transaction
# starts with a plain BEGIN, so it neither takes nor waits for the write lock.
READ_ONLY: dict[str, Any] = {"read_only": True}

_E = ledger_entries
# One row of the LIMIT totals: rule id, user id, role, period start, period end, currency, sum.
TotalsRow = tuple[str, str, str | None, date | None, date | None, str, Any]


def _chunks(items: Sequence[Any], size: int = CHUNK_SIZE) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class Reference:
    """A foreign key of a table the ledger writes in bulk (migration 0010): ``column``
    refers to ``parent``.``parent_column``; ``constraint`` is the row-by-row constraint's
    name, ``deferred`` whether it was checked at commit."""

    column: str
    parent: str
    parent_column: str
    constraint: str
    deferred: bool = False


class Backend:
    """The portable behaviour; a subclass overrides only what its database does otherwise."""

    name: ClassVar[str]
    label: ClassVar[str]

    # -- engines and connections ----------------------------------------------

    def describe(self, url: sa.URL) -> str:
        """Where a URL points, without credentials."""
        host = url.host or "localhost"
        port = f":{url.port}" if url.port else ""
        return f"{self.label} database {url.database or ''} on {host}{port}"

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        """Driver arguments for every connection (the URL's own query may add to them)."""
        return {}

    def prepare(self, engine: Engine) -> None:
        """Set up every connection the engine makes."""

    # -- locks (see settlement.locks) -----------------------------------------

    def transaction_lock(self, conn: Connection, key: int, *, wait: bool) -> bool:
        """Hold lock ``key`` to the end of the transaction; False if taken and not ``wait``."""
        raise NotImplementedError

    @contextmanager
    def writer_wait(self, conn: Connection, timeout_ms: int) -> Iterator[None]:
        """Within the block, beginning a writing transaction waits at most ``timeout_ms``."""
        yield

    # Whether another connection can write while a settlement run holds its locks (false
    # where one write lock stands in for every lock).
    writes_beside_a_run: ClassVar[bool] = True

    def hold_marker(self, conn: Connection, namespace: int, key: int) -> None:
        """Hold marker lock (namespace, key) for the connection's session, across commits."""

    def release_marker(self, conn: Connection, namespace: int, key: int) -> None:
        """Release what ``hold_marker`` took."""

    def markers_held(self, conn: Connection, namespace: int) -> set[int] | None:
        """The keys of ``namespace`` some session holds now (unsigned 32-bit), or None
        where the database cannot tell."""
        return None

    def is_overflow(self, error: sa.exc.DBAPIError) -> bool:
        """Whether ``error`` is a SUM that left 64 bits (PostgreSQL sums BIGINT as NUMERIC,
        so there it never is)."""
        return False

    def set_lock_timeout(self, conn: Connection, seconds: float) -> None:
        """In the caller's transaction, any wait for a lock (the run lock, the ledger lock,
        a row) ends after ``seconds`` with an error ``is_lock_busy`` recognises."""

    # -- errors -----------------------------------------------------------------

    def owns(self, error: sa.exc.DBAPIError) -> bool:
        """Whether ``error`` came from this database's driver."""
        return False

    def is_lock_busy(self, error: sa.exc.DBAPIError) -> bool:
        """Whether ``error`` is a lock wait that timed out (or was not allowed to wait)."""
        return False

    def is_cancelled(self, error: sa.exc.DBAPIError) -> bool:
        """Whether ``error`` is a statement the driver cancelled on Ctrl-C."""
        return False

    # -- schema -----------------------------------------------------------------

    def append_only_ddl(self, table: str) -> list[str]:
        """Statements (idempotent) that make ``table`` refuse UPDATE, DELETE and TRUNCATE."""
        raise NotImplementedError

    def length_ddl(self, table: str, limits: dict[str, int]) -> list[str]:
        """Statements (idempotent) that refuse text longer than ``limits`` (column ->
        characters); PostgreSQL's VARCHAR(n) already does."""
        return []

    def reference_checks_ddl(self, table: str, references: Sequence[Reference]) -> list[str]:
        """Statements (idempotent) that check ``references`` of ``table`` once per INSERT
        statement instead of once per row; none where a row's check is cheap (SQLite's
        foreign keys stay)."""
        return []

    def row_references_ddl(self, table: str, references: Sequence[Reference]) -> list[str]:
        """Undo ``reference_checks_ddl``: the row-by-row foreign keys back."""
        return []

    @contextmanager
    def schema_changes(self, conn: Connection) -> Iterator[None]:
        """Around the transaction of ``db upgrade`` (begun inside the block)."""
        yield

    def check_schema(self, conn: Connection) -> None:
        """Before ``db upgrade`` commits: refuse a schema that migrations left inconsistent."""

    @contextmanager
    def schema_role(self, conn: Connection, role: str) -> Iterator[None]:
        """Within the block, create tables as ``role`` (their owner)."""
        raise SchemaNotReady(_NO_ROLES)
        yield  # pragma: no cover

    def grant_app_role(self, conn: Connection, role: str) -> None:
        """Let ``role`` read and append, nothing else: no UPDATE, DELETE, TRUNCATE, and (not
        owning the tables) no ALTER TABLE ... DISABLE TRIGGER."""
        raise SchemaNotReady(_NO_ROLES)

    def utc_date(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The UTC calendar date of a ``UTCDateTime`` column, as SQL."""
        raise NotImplementedError

    # -- statements -------------------------------------------------------------

    def insert(self, table: sa.Table) -> sqlite.Insert | postgresql.Insert:
        """The database's own INSERT, the one that has ``on_conflict_do_nothing``."""
        raise NotImplementedError

    def append_rows(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """Insert rows whose ids the database assigns and nobody reads back."""
        if rows:
            conn.execute(sa.insert(table), rows)

    def insert_entries(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """Insert ledger entries, skipping references that exist; how many were inserted."""
        # executemany: SQLAlchemy's "insertmanyvalues" sends multi-row INSERTs from one
        # cached compiled statement.
        stmt = (
            self.insert(_E)
            .on_conflict_do_nothing(index_elements=["reference_id"])
            .returning(_E.c.id)
        )
        return len(conn.execute(stmt, rows).scalars().all())

    def sealed_rows(self, conn: Connection, table: str, where: str, params: dict[str, Any],
                    order: str) -> Iterator[tuple[str | None, str]] | None:
        """(op id, canonical text) of the rows of ``table`` matching ``where``, in ``order``,
        as the database writes them; None: the caller encodes the rows itself
        (``settlement.operations.row_text``, the definition this must equal)."""
        return None

    def select_references(
        self, conn: Connection, stmt: sa.Select[Any], refs: list[str]
    ) -> Iterator[sa.Row[Any]]:
        """The rows of ``stmt`` (over ledger_entries) whose reference_id is in ``refs``."""
        for chunk in _chunks(refs):
            yield from conn.execute(stmt.where(_E.c.reference_id.in_(chunk)))

    def select_in(
        self, conn: Connection, stmt: sa.Select[Any], column: sa.ColumnElement[Any],
        values: Sequence[Any],
    ) -> Iterator[sa.Row[Any]]:
        """The rows of ``stmt`` whose ``column`` is one of ``values``."""
        for chunk in _chunks(values):
            yield from conn.execute(stmt.where(column.in_(chunk)))

    def select_ids(
        self, conn: Connection, stmt: sa.Select[Any], column: sa.ColumnElement[Any],
        ids: Sequence[int],
    ) -> Iterator[sa.Row[Any]]:
        """The rows of ``stmt`` whose integer ``column`` is in ``ids``."""
        return self.select_in(conn, stmt, column, ids)

    def credited_totals(self, conn: Connection, keys: list[TotalsKey]) -> Iterator[TotalsRow]:
        """Per key and currency, the sum of the rule's credits to the user (in the role,
        unless it is None), not reversed, with start <= event_date < end (None bounds are
        open); keys with none are absent."""
        groups: dict[tuple[str, str | None, date | None, date | None], list[str]] = (
            defaultdict(list)
        )
        for rule_id, user, role, start, end in keys:
            groups[(rule_id, role, start, end)].append(user)
        for (rule_id, role, start, end), users in groups.items():
            for chunk in _chunks(users):
                entries = entries_with_status.where(
                    _E.c.rule_id == rule_id, _E.c.entry_type == "credit", _E.c.user_id.in_(chunk)
                )
                if role is not None:
                    entries = entries.where(_E.c.role == role)
                if start is not None:
                    entries = entries.where(_E.c.event_date >= start)
                if end is not None:
                    entries = entries.where(_E.c.event_date < end)
                sub = entries.subquery()
                stmt = (
                    sa.select(sub.c.user_id, sub.c.currency, sa.func.sum(sub.c.amount))
                    .where(sub.c.status != "reversed")
                    .group_by(sub.c.user_id, sub.c.currency)
                )
                for user, currency, total in conn.execute(stmt):
                    yield rule_id, user, role, start, end, currency, total


class SQLiteBackend(Backend):
    """SQLite: a busy timeout, foreign keys, WAL, and ``BEGIN IMMEDIATE`` for writers."""

    name = "sqlite"

    def describe(self, url: sa.URL) -> str:
        return f"SQLite database {url.database or ':memory:'}"

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        return {"timeout": SQLITE_BUSY_TIMEOUT_SECONDS}

    def prepare(self, engine: Engine) -> None:
        """SQLAlchemy's pysqlite recipe: we emit BEGIN ourselves, as BEGIN IMMEDIATE.

        A deferred transaction that reads and then writes can fail with "database is
        locked" when another writer got in between; IMMEDIATE takes the write lock
        up front, so writers queue on the busy timeout and the hash chain is linear.
        """

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys = ON")
            # WAL: readers see the last commit while a settlement run writes.
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            read_only = conn.get_execution_options().get("read_only", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    writes_beside_a_run = False

    def transaction_lock(self, conn: Connection, key: int, *, wait: bool) -> bool:
        # One lock stands in for every key: the database write lock, which BEGIN
        # IMMEDIATE took when the transaction began.
        return True

    @contextmanager
    def writer_wait(self, conn: Connection, timeout_ms: int) -> Iterator[None]:
        # Set on the driver connection, so that SQLAlchemy does not begin a transaction.
        driver = _sqlite(conn)
        driver.execute(f"PRAGMA busy_timeout = {timeout_ms}")
        try:
            yield
        finally:
            driver.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")

    def insert(self, table: sa.Table) -> sqlite.Insert:
        return sqlite.insert(table)

    def owns(self, error: sa.exc.DBAPIError) -> bool:
        import sqlite3

        return isinstance(error.orig, sqlite3.Error)

    def is_lock_busy(self, error: sa.exc.DBAPIError) -> bool:
        # The busy timeout (writer_wait) elapsed while another writer held the database.
        return getattr(error.orig, "sqlite_errorname", "") in {"SQLITE_BUSY", "SQLITE_LOCKED"}

    def is_cancelled(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "sqlite_errorname", "") == "SQLITE_INTERRUPT"

    def append_only_ddl(self, table: str) -> list[str]:
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb.lower()} BEFORE {verb} ON {table}"
            f" BEGIN SELECT RAISE(ABORT, 'ledger is append-only: {verb} on {table} refused'); END"
            for verb in ("UPDATE", "DELETE")
        ]

    def length_ddl(self, table: str, limits: dict[str, int]) -> list[str]:
        """SQLite ignores VARCHAR(n): triggers refuse what PostgreSQL would, so a test on
        SQLite fails where production would."""
        return [
            f"CREATE TRIGGER IF NOT EXISTS {table}_{column}_length BEFORE INSERT ON {table}"
            f" WHEN length(NEW.{column}) > {limit}"
            f" BEGIN SELECT RAISE(ABORT, 'value too long for {table}.{column}"
            f" (at most {limit} characters)'); END"
            for column, limit in limits.items()
        ]

    @contextmanager
    def schema_changes(self, conn: Connection) -> Iterator[None]:
        """Foreign keys off: SQLite alters a CHECK by rebuilding the table, which drops
        it while other tables refer to it (the 12-step procedure of SQLite's ALTER
        TABLE page); ``check_schema`` then checks every reference before commit.
        The pragma is a no-op inside a transaction, so it is set before one begins."""
        driver = _sqlite(conn)
        driver.execute("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            driver.execute("PRAGMA foreign_keys = ON")

    def check_schema(self, conn: Connection) -> None:
        broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise SchemaNotReady(f"migration left broken foreign keys: {broken[:5]}")

    def utc_date(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        # UTCDateTime is stored as UTC wall-clock text: its first ten characters.
        return sa.func.substr(column, 1, 10)

    def is_overflow(self, error: sa.exc.DBAPIError) -> bool:
        return "integer overflow" in str(error.orig)


_NO_ROLES = ("database roles are PostgreSQL's: on SQLite the database file's permissions are"
             " the boundary (the application's OS user should not own the file)")
ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _role(name: str) -> str:
    if not ROLE_NAME.fullmatch(name):
        raise SchemaNotReady(f"role name {name!r}: use lower-case letters, digits and _"
                             " (at most 63, not starting with a digit)")
    return f'"{name}"'


class PostgresBackend(Backend):
    """PostgreSQL (psycopg 3): advisory locks, COPY, and array parameters for bulk work."""

    name = "postgresql"
    label = "PostgreSQL"

    def connect_args(self, url: sa.URL) -> dict[str, Any]:
        # No server-side prepared statements: a settlement run fills tables inside
        # one transaction, and a generic plan made while they looked empty kept
        # scanning them (find_entries 12x slower on 20k records).
        # No JIT: on tables without statistics (a run's own rows, autovacuum off) the
        # planner's estimates put short lookups over the JIT threshold, and compiling
        # took 10-60 ms for a query that runs in 3 ms (the liabilities query: six times
        # its run time; bench/RESULTS.md).
        # The URL's own ``options`` (say ``-c default_transaction_read_only=on``) come after.
        given = url.query.get("options", "")
        given = " ".join(given) if isinstance(given, tuple) else given
        return {"connect_timeout": PG_CONNECT_TIMEOUT_SECONDS, "prepare_threshold": None,
                "options": f"-c jit=off {given}".strip()}

    def transaction_lock(self, conn: Connection, key: int, *, wait: bool) -> bool:
        """A transaction-scoped advisory lock: re-entrant, released at commit or rollback."""
        if wait:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
            return True
        return bool(
            conn.execute(sa.text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key}).scalar()
        )

    def set_lock_timeout(self, conn: Connection, seconds: float) -> None:
        """``SET LOCAL lock_timeout``: the advisory locks, row and table locks all wait in
        the server's lock manager, which honours it; it ends with the transaction.  Never
        0, which PostgreSQL reads as "wait forever": a zero timeout is 1 ms."""
        milliseconds = max(1, round(seconds * 1000))
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")

    def owns(self, error: sa.exc.DBAPIError) -> bool:
        import psycopg

        return isinstance(error.orig, psycopg.Error)

    def is_lock_busy(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) == "55P03"  # lock_not_available

    def is_cancelled(self, error: sa.exc.DBAPIError) -> bool:
        return getattr(error.orig, "sqlstate", None) == "57014"  # query_canceled

    def insert(self, table: sa.Table) -> postgresql.Insert:
        return postgresql.insert(table)

    def hold_marker(self, conn: Connection, namespace: int, key: int) -> None:
        conn.execute(sa.text("SELECT pg_advisory_lock(:ns, :key)"), {"ns": namespace, "key": key})

    def release_marker(self, conn: Connection, namespace: int, key: int) -> None:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:ns, :key)"),
                     {"ns": namespace, "key": key})

    def markers_held(self, conn: Connection, namespace: int) -> set[int] | None:
        """From ``pg_locks``: a two-int advisory lock shows its keys as classid, objid
        (objsubid 2); a session that died released its locks.  Advisory locks belong to
        a database, and ``pg_locks`` shows the whole server's: this database's only."""
        rows = conn.execute(sa.text(
            "SELECT objid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2"
            " AND classid = :ns AND granted AND database ="
            " (SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"ns": namespace})
        return {int(objid) for (objid,) in rows}

    def append_only_ddl(self, table: str) -> list[str]:
        # ledger_refuse_change() is migration 0001's.
        return [
            f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()",
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()",
        ]

    def reference_checks_ddl(self, table: str, references: Sequence[Reference]) -> list[str]:
        """A row-by-row foreign key costs a query and a row lock on the parent per row (a
        payout's covers lock every credit they cover): a third of a payout's time.  The
        parents are append-only (no row ever leaves) and so are these tables (no UPDATE),
        so an INSERT's new rows are all there is to check: one AFTER INSERT trigger per
        statement looks each of them up by index (``_CHECK_REFERENCES``), at a fifth of
        the cost, and refuses the statement as the foreign key did (SQLSTATE 23503)."""
        arguments = ", ".join(f"'{part}'" for r in references
                              for part in (r.column, r.parent, r.parent_column))
        drops = ", ".join(f"DROP CONSTRAINT IF EXISTS {r.constraint}" for r in references)
        return [
            _CHECK_REFERENCES,
            f"ALTER TABLE {table} {drops}",
            f"CREATE OR REPLACE TRIGGER {table}_references AFTER INSERT ON {table}"
            " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
            f" EXECUTE FUNCTION ledger_check_references({arguments})",
        ]

    def row_references_ddl(self, table: str, references: Sequence[Reference]) -> list[str]:
        return [f"DROP TRIGGER IF EXISTS {table}_references ON {table}"] + [
            f"ALTER TABLE {table} ADD CONSTRAINT {r.constraint} FOREIGN KEY ({r.column})"
            f" REFERENCES {r.parent} ({r.parent_column})"
            + (" DEFERRABLE INITIALLY DEFERRED" if r.deferred else "")
            for r in references
        ]

    def utc_date(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.cast(sa.func.timezone("UTC", column), sa.Date)

    @contextmanager
    def schema_role(self, conn: Connection, role: str) -> Iterator[None]:
        conn.execute(sa.text(f"SET LOCAL ROLE {_role(role)}"))
        yield
        conn.execute(sa.text("RESET ROLE"))

    def grant_app_role(self, conn: Connection, role: str) -> None:
        quoted = _role(role)
        row = conn.execute(sa.text("SELECT rolsuper, rolname = current_user FROM pg_roles"
                                   " WHERE rolname = :r"), {"r": role}).first()
        if row is not None and (row[0] or row[1]):
            raise SchemaNotReady(
                f"role {role!r} {'is a superuser' if row[0] else 'owns the tables'}: the"
                " application role must be another role, without superuser rights")
        if row is None:
            conn.execute(sa.text(f"CREATE ROLE {quoted} NOLOGIN"))
        schema = conn.execute(sa.text("SELECT current_schema()")).scalar_one()
        where = f'"{schema}"'
        for statement in (
            f"GRANT USAGE ON SCHEMA {where} TO {quoted}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA {where} FROM {quoted}",
            f"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA {where} TO {quoted}",
            f"REVOKE INSERT ON alembic_version FROM {quoted}",
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {where} TO {quoted}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT SELECT, INSERT ON TABLES"
            f" TO {quoted}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {where} GRANT USAGE ON SEQUENCES TO {quoted}",
        ):
            conn.execute(sa.text(statement))

    def append_rows(self, conn: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        """COPY on the same psycopg connection, so inside the caller's transaction
        (several times faster than multi-row INSERT for a settlement run's
        transitions and postings)."""
        if not rows:
            return
        columns = list(rows[0])
        statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
        with _translated(statement), _psycopg(conn).cursor() as cursor, \
                cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([row[c] for c in columns])

    def insert_entries(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        """COPY, as ``append_rows`` (two fifths less than ``INSERT ... SELECT unnest``
        with ON CONFLICT).  The writers checked every reference free under the ledger
        lock, so a clash means a writer that skipped the lock: the unique index refuses
        the statement, and none of the rows counts as inserted."""
        try:
            self.append_rows(conn, _E, rows)
        except sa.exc.IntegrityError as e:
            if getattr(e.orig, "sqlstate", None) == _UNIQUE_VIOLATION:
                return 0
            raise
        return len(rows)

    def sealed_rows(self, conn: Connection, table: str, where: str, params: dict[str, Any],
                    order: str) -> Iterator[tuple[str | None, str]] | None:
        """The server writes each row's canonical text (``"name":value`` pairs of the
        non-NULL columns in name order, joined by ``concat_ws``, which skips NULLs; strings
        escaped by ``to_json``, times and dates as ``row_text`` writes them), so a seal of
        a million rows is not a million Python dicts and JSON encodings: the settle's seal
        took a fifth of its run.  tests/test_operations.py holds both encodings equal,
        hostile strings included."""
        columns = conn.execute(_COLUMN_TYPES, {"table": table}).all()
        pairs = []
        for name, kind in sorted(columns):
            if kind not in _SEALED_TYPES:
                return None  # a type this does not know: row_text decides
            pairs.append(f"""'"{name}":' || """ + _SEALED_TYPES[kind].format(f'"{name}"'))
        sql = (f"SELECT op_id, '{{' || concat_ws(',', {', '.join(pairs)}) || '}}'"
               f" FROM {table}{' WHERE ' + where if where else ''} ORDER BY {order}")
        result = conn.execute(sa.text(sql).execution_options(yield_per=1000), params)
        return ((row[0], row[1]) for row in result)

    def select_references(
        self, conn: Connection, stmt: sa.Select[Any], refs: list[str]
    ) -> Iterator[sa.Row[Any]]:
        """One query with one array parameter (``= ANY(:refs)``), whose text is the
        same for every call; an expanded ``IN (...)`` list of a thousand literals
        cost more to render and parse than to run."""
        return iter(conn.execute(_any_reference(stmt), {"refs": refs}))

    def select_in(
        self, conn: Connection, stmt: sa.Select[Any], column: sa.ColumnElement[Any],
        values: Sequence[Any],
    ) -> Iterator[sa.Row[Any]]:
        """One array parameter, as ``select_references``."""
        if not values:
            return iter(())
        return iter(conn.execute(_probe_each(stmt, column),
                                 {"values": list(dict.fromkeys(values))}))

    def credited_totals(self, conn: Connection, keys: list[TotalsKey]) -> Iterator[TotalsRow]:
        params = {"rules": [k[0] for k in keys], "users": [k[1] for k in keys],
                  "roles": [k[2] for k in keys], "starts": [k[3] for k in keys],
                  "ends": [k[4] for k in keys]}
        for row in conn.execute(_TOTALS, params):
            yield cast(TotalsRow, tuple(row))


@functools.cache
def _any_reference(stmt: sa.Select[Any]) -> sa.Select[Any]:
    """``stmt`` for the references in one array parameter, built once per statement."""
    return stmt.where(
        _E.c.reference_id == sa.any_(sa.bindparam("refs", type_=postgresql.ARRAY(sa.String)))
    )


@functools.cache
def _probe_each(stmt: sa.Select[Any], column: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """``stmt`` for the values of one array parameter, as one index probe per value.

    ``column = ANY(:values)`` was planned from the column's statistics, which a run's own
    rows never have (a transaction's inserts are not analyzed, and autovacuum may be off):
    with none, a thousand values looked like most of the table, so every chunk scanned
    the whole table and a run slowed down as the ledger grew.  A LATERAL subquery behind
    an OFFSET 0 fence is planned for one value, which an index answers.  Rows come in
    ``stmt``'s order.
    """
    kind = sa.BigInteger() if isinstance(column.type, sa.Integer) else sa.String()
    wanted = (sa.func.unnest(sa.bindparam("values", type_=postgresql.ARRAY(kind)))
              .table_valued("value").render_derived(name="wanted"))
    shown = list(stmt.selected_columns)
    keys: list[tuple[sa.ColumnElement[Any], bool]] = []
    for clause in stmt._order_by_clauses:
        descending = (isinstance(clause, sa.UnaryExpression)
                      and clause.modifier is operators.desc_op)
        keys.append((clause.element if isinstance(clause, sa.UnaryExpression) else clause,
                     descending))
    inner = stmt.order_by(None).with_only_columns(
        *(c.label(f"shown_{i}") for i, c in enumerate(shown)),
        *(key.label(f"order_{i}") for i, (key, _) in enumerate(keys)),
        maintain_column_froms=True)
    found = inner.where(column == wanted.c.value).offset(0).lateral("found")
    return (sa.select(*(found.c[f"shown_{i}"].label(c.key) if c.key else found.c[f"shown_{i}"]
                        for i, c in enumerate(shown)))
            .select_from(wanted.join(found, sa.true()))
            .order_by(*(found.c[f"order_{i}"].desc() if descending else found.c[f"order_{i}"]
                        for i, (_, descending) in enumerate(keys))))


_UNIQUE_VIOLATION = "23505"  # SQLSTATE unique_violation

# The statement-level reference check (``PostgresBackend.reference_checks_ddl``): its
# arguments are (column, parent, parent column) triples.  Each new row is looked up in the
# parent's index: hash and merge joins and sequential scans are off inside the function,
# since the parents' statistics (none, when autovacuum has not run) would otherwise pick a
# scan of the whole parent, every statement.
_CHECK_REFERENCES = """
CREATE OR REPLACE FUNCTION ledger_check_references() RETURNS trigger LANGUAGE plpgsql AS $f$
DECLARE
    missing text;
    i int := 0;
BEGIN
    WHILE i < TG_NARGS LOOP
        EXECUTE format('SELECT n.%1$I::text FROM new_rows n WHERE n.%1$I IS NOT NULL'
                       ' AND NOT EXISTS (SELECT FROM %2$I p WHERE p.%3$I = n.%1$I) LIMIT 1',
                       TG_ARGV[i], TG_ARGV[i + 1], TG_ARGV[i + 2]) INTO missing;
        IF missing IS NOT NULL THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'insert on %s refused: %s %s is not in %s.%s', TG_TABLE_NAME, TG_ARGV[i],
                missing, TG_ARGV[i + 1], TG_ARGV[i + 2]);
        END IF;
        i := i + 3;
    END LOOP;
    RETURN NULL;
END $f$ SET enable_seqscan = off SET enable_hashjoin = off SET enable_mergejoin = off
"""

_COLUMN_TYPES = sa.text(
    "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
    " WHERE attrelid = to_regclass(:table) AND attnum > 0 AND NOT attisdropped")
# Per column type, the SQL of its JSON value in ``settlement.operations.row_text``'s form.
_JSON_TEXT = "to_json({})::text"
_SEALED_TYPES = {
    "bigint": "{}::text", "integer": "{}::text", "smallint": "{}::text",
    "boolean": "{}::text", "text": _JSON_TEXT, "character varying": _JSON_TEXT,
    "character": _JSON_TEXT,
    "date": """'"' || to_char({}, 'YYYY-MM-DD') || '"'""",
    "timestamp with time zone":
        """'"' || to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'""",
    "timestamp without time zone":
        """'"' || to_char({}, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '"'""",
    "bytea": """'"' || encode({}, 'hex') || '"'""",
}


def _credited_totals_query() -> sa.Select[Any]:
    wanted = (
        sa.func.unnest(
            sa.bindparam("rules", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("users", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("roles", type_=postgresql.ARRAY(sa.String)),
            sa.bindparam("starts", type_=postgresql.ARRAY(sa.Date)),
            sa.bindparam("ends", type_=postgresql.ARRAY(sa.Date)),
        )
        .table_valued("rule_id", "user_id", "role", "start", "end")
        .render_derived(name="wanted")
    )
    entries = (
        entries_with_status.where(
            _E.c.rule_id == wanted.c.rule_id,
            _E.c.user_id == wanted.c.user_id,
            _E.c.entry_type == "credit",
            sa.or_(wanted.c.role.is_(None), _E.c.role == wanted.c.role),
            sa.or_(wanted.c.start.is_(None), _E.c.event_date >= wanted.c.start),
            sa.or_(wanted.c.end.is_(None), _E.c.event_date < wanted.c.end),
        )
        # OFFSET 0 is a planner fence: one (rule_id, user_id) index probe per wanted row.
        # Without it (or with ``user_id = ANY(...)``) the planner, whose statistics are stale
        # while a run fills the table, scanned every entry of the rule for each chunk: the
        # run slowed down as the ledger grew.
        .offset(0)
        .lateral("entries")
    )
    return (
        sa.select(wanted.c.rule_id, wanted.c.user_id, wanted.c.role, wanted.c.start,
                  wanted.c.end, entries.c.currency, sa.func.sum(entries.c.amount))
        .select_from(wanted.join(entries, sa.true()))
        .where(entries.c.status != "reversed")
        .group_by(wanted.c.rule_id, wanted.c.user_id, wanted.c.role, wanted.c.start,
                  wanted.c.end, entries.c.currency)
    )


_TOTALS = _credited_totals_query()


@contextmanager
def _translated(statement: str) -> Iterator[None]:
    """psycopg's errors on the driver connection as SQLAlchemy's (a lost server is an
    ``OperationalError``, a value too long a ``DataError``), as for every other statement."""
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        raise sa.exc.DBAPIError.instance(statement, None, e, psycopg.Error) from e


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    return cast("psycopg.Connection[Any]", conn.connection.driver_connection)


def _sqlite(conn: Connection) -> sqlite3.Connection:
    return cast("sqlite3.Connection", conn.connection.driver_connection)


BACKENDS: dict[str, Backend] = {b.name: b for b in (SQLiteBackend(), PostgresBackend())}
_INFO_KEY = "settlement.backend"


def for_name(name: str) -> Backend:
    """The backend of a dialect or URL backend name (``postgresql``, ``sqlite``)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise InvalidDatabaseURL(
            f"unsupported database {name!r} ({', '.join(BACKENDS)})"
        ) from None


def of_error(error: sa.exc.DBAPIError) -> Backend | None:
    """The backend whose driver raised ``error`` (None: neither, e.g. a test's stand-in)."""
    return next((b for b in BACKENDS.values() if b.owns(error)), None)


def backend(conn: Connection) -> Backend:
    """The connection's backend: chosen on first use, then kept in ``conn.info``."""
    try:
        info = getattr(conn, "info", None)
    except sa.exc.PendingRollbackError:  # the server dropped it: its own error is raised
        return for_name(conn.dialect.name)
    if info is None:  # alembic's offline MockConnection (``db upgrade --sql``)
        return for_name(conn.dialect.name)
    chosen = info.get(_INFO_KEY)
    if chosen is None:
        chosen = conn.info[_INFO_KEY] = for_name(conn.dialect.name)
    return cast(Backend, chosen)
