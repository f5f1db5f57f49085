"""A connection lost around COMMIT: "outcome unknown" (exit 3), and the next start says
whether the run committed."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.batch import RUN_INFO_KEY
from settlement.db import upgrade
from tests.test_settle_cli import settle_args, snapshot


def lose_the_connection_at_commit(monkeypatch, *, committed: bool) -> None:
    """The settle run's COMMIT raises as a dropped connection does: after the server
    committed (``committed``), or with the transaction rolled back."""
    real_commit = sa.engine.RootTransaction.commit

    def commit(self: sa.engine.RootTransaction) -> None:
        if not self.connection.info.get(RUN_INFO_KEY):
            return real_commit(self)  # the run history's own transactions
        if committed:
            real_commit(self)
        else:
            self.rollback()
        raise sa.exc.OperationalError(
            "COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(sa.engine.RootTransaction, "commit", commit)


@pytest.mark.parametrize("committed", [True, False], ids=["committed", "rolled-back"])
def test_connection_lost_at_commit_is_outcome_unknown_then_resolved(
        db_url, rules_dir, small_input, monkeypatch, committed) -> None:
    upgrade(db_url)
    with monkeypatch.context() as patch:
        lose_the_connection_at_commit(patch, committed=committed)
        lost = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url))
    assert lost.exit_code == 3
    last = lost.stderr.splitlines()[-1]
    [run_id] = [line.split("run ")[1].split(":")[0] for line in [last]]
    assert last == (f"error: outcome unknown for run {run_id}: server closed the connection"
                    " unexpectedly; rerunning is safe")
    assert "nothing was written" not in lost.stderr
    assert (len(snapshot(db_url)) == 11) is committed

    listed = json.loads(CliRunner().invoke(main, ["runs", "list", "--json", "--db",
                                                  db_url]).stdout)
    assert [(r["run_id"], r["status"]) for r in listed] == [
        (run_id, "succeeded" if committed else "failed")]

    rerun = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--json",
                                                 "--log-format", "json"))
    assert rerun.exit_code == 0, rerun.output
    resolved = [json.loads(line) for line in rerun.stderr.splitlines()]
    resolved = [e for e in resolved if e["event"] == "resolved"]
    outcome = "committed" if committed else "did not commit: nothing of it was written"
    assert [e["message"] for e in resolved] == [
        f"run {run_id}, whose outcome was unknown, {outcome}"]
    assert resolved[0]["level"] == "warning"
    assert json.loads(rerun.stdout)["posted"] == (0 if committed else 11)
    assert len(snapshot(db_url)) == 11  # rerunning was safe either way
    statuses = json.loads(CliRunner().invoke(main, ["runs", "list", "--json", "--db",
                                                    db_url]).stdout)
    assert [r["status"] for r in statuses] == ["succeeded",
                                               "succeeded" if committed else "failed"]
