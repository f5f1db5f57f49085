"""PostgreSQL unreachable, or gone in the middle of a run: exit 3, one clear line,
nothing half-written.  The shared server is never stopped: the connection is cut instead,
by pg_terminate_backend() or by a proxy the test closes."""

from __future__ import annotations

import socket
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from settlement.db import upgrade
from settlement.demo import write_records
from tests.conftest import PG_ADMIN_URL
from tests.faults.helpers import (
    RULES_DIR,
    cli,
    ledger_state,
    one_line_error,
    settle_args,
    spawn,
    wait_for_offset,
)

pytestmark = [pytest.mark.faults, pytest.mark.slow]

AS_OF = "2026-11-25"
PG_HOST, PG_PORT = "127.0.0.1", 5432
CASES = ("127.0.0.1:1", "no-such-host.invalid:5432", "terminated", "cut")


@dataclass(frozen=True)
class Outcome:
    """What one case's run did, recorded before the case asserts anything, so that the
    figure checks what happened rather than trusting that the case passed."""

    returncode: int | None
    stderr: str
    unchanged: bool | None  # the ledger after a mid-run cut (None: no ledger to keep)


OUTCOMES: dict[str, Outcome] = {}


class Proxy:
    """A TCP proxy to PostgreSQL that can be cut: the network failing, seen from the client."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        self.server.close()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


@pytest.fixture
def night(pg_url, tmp_path: Path) -> tuple[str, Path, dict]:
    """A database that already holds one night's run, and a bigger input for the next."""
    upgrade(pg_url)
    first, records = tmp_path / "first.jsonl", tmp_path / "records.jsonl"
    with first.open("w") as fh:
        write_records(fh, 500, seed=5)
    with records.open("w") as fh:
        write_records(fh, 6000, seed=6)
    assert cli(*settle_args(RULES_DIR, first, pg_url, "2026-09-01")).exit_code == 0
    return pg_url, records, ledger_state(pg_url)


@pytest.mark.parametrize("url, names", [
    ("postgresql://postgres@127.0.0.1:1/test", "127.0.0.1:1"),
    ("postgresql://postgres@no-such-host.invalid:5432/test", "no-such-host.invalid:5432"),
])
def test_unreachable_server_exit_3_one_line(url, names, tmp_path: Path) -> None:
    records = tmp_path / "r.jsonl"
    with records.open("w") as fh:
        write_records(fh, 10, seed=1)
    proc = spawn(settle_args(RULES_DIR, records, url, AS_OF))
    _, err = proc.communicate(timeout=60)
    OUTCOMES[names] = Outcome(proc.returncode, err, None)
    assert proc.returncode == 3, err
    line = one_line_error(err)
    assert line.startswith(f"error: cannot connect to PostgreSQL database test on {names}: ")


def cut_mid_run(case: str, proc, records: Path, cut, url: str, before: dict) -> str:
    """Cut the run's connection a third into its input; record, then check, the outcome."""
    # Well into the input: chunks have been posted inside the run's transaction.
    assert wait_for_offset(proc, records, records.stat().st_size // 3), proc.communicate()
    cut()
    _, err = proc.communicate(timeout=120)
    unchanged = ledger_state(url) == before
    OUTCOMES[case] = Outcome(proc.returncode, err, unchanged)
    assert proc.returncode == 3, err
    line = one_line_error(err)
    assert unchanged, f"the ledger changed after the cut ({case})"
    return line


def test_backend_terminated_mid_run_exit_3_nothing_written(night) -> None:
    url, records, before = night
    app = f"faults-{uuid.uuid4().hex[:8]}"
    proc = spawn(settle_args(RULES_DIR, records, url, AS_OF), env={"PGAPPNAME": app})
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def terminate() -> None:
        with admin.connect() as conn:
            killed = conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :app AND xact_start IS NOT NULL"),
                {"app": app},
            ).scalars().all()
        assert killed == [True], killed  # exactly the run's one connection, inside its run

    try:
        line = cut_mid_run("terminated", proc, records, terminate, url, before)
    finally:
        admin.dispose()
    assert line.startswith("error: database unavailable: ") and line.endswith(
        "; nothing was written"), line
    # libpq reports the server's "terminating connection due to administrator command" when
    # it reads that notice first, "the connection is lost" when a send fails first, and
    # "server closed the connection unexpectedly" when a read finds the socket closed first.
    assert any(why in line for why in (
        "terminating connection", "connection is lost", "server closed the connection"
    )), line


def test_connection_cut_mid_run_exit_3_nothing_written(night) -> None:
    url, records, before = night
    proxy = Proxy((PG_HOST, PG_PORT))
    via_proxy = sa.make_url(url).set(host="127.0.0.1", port=proxy.port)
    proc = spawn(settle_args(RULES_DIR, records, via_proxy.render_as_string(False), AS_OF))
    line = cut_mid_run("cut", proc, records, proxy.cut, url, before)
    assert line.startswith("error: database unavailable: ") and line.endswith(
        "; nothing was written"), line


def test_database_gone_figure(figure) -> None:
    """Runs last in this module: checks what each case above recorded (a case that did not
    run, or ended otherwise, fails the figure) and sums them up."""
    missing = [case for case in CASES if case not in OUTCOMES]
    assert not missing, f"database-gone cases that did not run: {missing}"
    lines: dict[str, str] = {}
    for case in CASES:
        got = OUTCOMES[case]
        assert got.returncode == 3, f"{case}: exit {got.returncode}, not 3: {got.stderr}"
        out = [one_line_error(got.stderr)]  # settle's log lines aside, one error line
        lines[case] = out[0]
        if case in ("terminated", "cut"):
            assert got.unchanged is True, f"{case}: the ledger changed after the cut"
            assert "database unavailable" in out[0], f"{case}: {out[0]}"
        else:
            assert out[0].startswith("error: cannot connect to PostgreSQL"), f"{case}: {out[0]}"
    figure(
        f"database gone: {len(CASES)}/{len(CASES)} (closed port, unknown host, backend "
        "terminated mid-run, connection cut mid-run by a proxy) exit 3, one line, no "
        "traceback, ledger unchanged after the mid-run cuts; e.g. " + " | ".join(
            lines[k] for k in ("127.0.0.1:1", "terminated", "cut"))
    )
