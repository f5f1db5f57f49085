"""Shared bench plumbing: timing, fresh databases, child processes, the machine."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from settlement.db import upgrade

PG_ADMIN = os.environ.get("REFERRAL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parent.parent


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class ChildRun:
    seconds: float
    max_rss_kb: int
    stdout: str
    cpu_seconds: float = 0.0  # the child's own user + system time (not a server's)


def run_child(argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> ChildRun:
    """Run a command to its end; wall time and its own peak RSS (rusage from os.wait4)."""
    hwm = tempfile.NamedTemporaryFile("r", suffix=".hwm", delete=False)
    hwm.close()
    env = {**(env or os.environ), "BENCH_HWM_FILE": hwm.name}
    with tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err,
                                env=env, cwd=cwd, text=True)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{err.read()[-3000:]}")
    try:
        peak = int(Path(hwm.name).read_text() or 0)
    except (OSError, ValueError):
        peak = 0
    finally:
        Path(hwm.name).unlink(missing_ok=True)
    return ChildRun(seconds, peak or usage.ru_maxrss, out, usage.ru_utime + usage.ru_stime)


# The child writes its own peak RSS (VmHWM of its address space) to BENCH_HWM_FILE on exit.
# Not ru_maxrss: subprocess starts the child with vfork, and at exec Linux folds the
# parent's high-water mark into the child's ru_maxrss, so a big bench process would show
# through in every child's figure.
_CHILD = """
import atexit, os
def _hwm():
    path = os.environ.get("BENCH_HWM_FILE")
    if path:
        status = open("/proc/self/status").read()
        with open(path, "w") as fh:
            fh.write(status.split("VmHWM:")[1].split()[0])
atexit.register(_hwm)
import referral.cli as cli
getattr(cli, "run", cli.main)()  # run: the console script (a --compare-ref may predate it)
"""


def referral_argv() -> list[str]:
    """The CLI of whatever ``referral`` package is first on PYTHONPATH."""
    # -P: no current directory on sys.path, so PYTHONPATH (--compare-ref) decides.
    return [sys.executable, "-P", "-c", _CHILD]


class Databases:
    """Fresh databases, each with the schema (``upgrade``); PostgreSQL ones dropped at close."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def pg_url(self, name: str) -> str:
        return sa.engine.make_url(PG_ADMIN).set(database=name).render_as_string(False)

    def fresh_pg(self, schema: bool = True) -> tuple[str, str]:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        url = self.pg_url(name)
        if schema:
            upgrade(url)
        return name, url

    def drop_pg(self, name: str) -> None:
        with self.admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if name in self.created:
            self.created.remove(name)

    def fresh_sqlite(self) -> tuple[Path, str]:
        path = self.tmp / f"bench_{uuid.uuid4().hex[:10]}.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        return path, url

    def close(self) -> None:
        for name in list(self.created):
            self.drop_pg(name)
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


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    pg = "not available"
    if pg_available():
        engine = sa.create_engine(PG_ADMIN)
        with engine.connect() as conn:
            pg = str(conn.execute(sa.text("SHOW server_version")).scalar())
        engine.dispose()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {
        "cpu": f"{cpu}, {os.cpu_count()} logical cores",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "postgresql": pg,
        "sqlite": sqlite3.sqlite_version,
        "load average at start": load,
        "py-spy": "installed" if (Path(sys.executable).parent / "py-spy").exists()
        or shutil.which("py-spy") else "not installed",
        "rusage self max rss (KB)": str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
    }
