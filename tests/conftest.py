"""Shared fixtures.

``db_url`` runs a test once on SQLite and once on PostgreSQL.  PostgreSQL tests
use a database created for this test run (dropped at the end); each test gets
an empty ``public`` schema.  Outside CI a missing server skips those tests; in
CI (``CI=true``) it fails them, since a skipped PostgreSQL test hides breakage.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import settings

# Database-backed examples vary in speed on a shared CI machine: no per-example deadline.
# In CI the examples are derived from each test (derandomize): a red CI run is the code's,
# never the draw's; local runs and `make faults` keep exploring new examples.
settings.register_profile("project", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI", "").lower() in {"1", "true", "yes"}
                      else "project")

PG_ADMIN_URL = os.environ.get(
    "REFERRAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL is required in CI: {reason}")
    pytest.skip(f"PostgreSQL not available: {reason}")


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, drop it afterwards."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        _pg_unavailable(str(e.orig).strip().splitlines()[0])
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the whole test run."""
    with fresh_pg_database("referral_test") as url:
        yield url


def _reset_pg_schema(url: str) -> None:
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """The URL of an empty database: a SQLite file, or PostgreSQL with a clean schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("pg_database_url")
    _reset_pg_schema(url)
    return url


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """PostgreSQL only (concurrency tests that need real row locks and advisory locks)."""
    url = request.getfixturevalue("pg_database_url")
    _reset_pg_schema(url)
    return url


@pytest.fixture
def ledger_engine(db_url: str) -> Iterator[sa.Engine]:
    """An engine on an empty database upgraded to the head revision (both databases)."""
    from settlement.db import open_engine, upgrade

    engine = open_engine(db_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def rules_dir(tmp_path: Path) -> Path:
    """A rules directory holding tests.test_settlement's program (settle CLI tests)."""
    from tests.test_settlement import RULES

    d = tmp_path / "rules"
    d.mkdir()
    (d / "program.rule").write_text(RULES, encoding="utf-8")
    return d


@pytest.fixture
def small_input(tmp_path: Path) -> Path:
    """tests.test_settlement's first records as a JSON Lines file."""
    from tests.test_settlement import FIRST

    path = tmp_path / "first.jsonl"
    path.write_text("\n".join(FIRST) + "\n", encoding="utf-8")
    return path
