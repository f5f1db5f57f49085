"""Every error a user can cause is one line with where, why and an exit code; files a
command writes appear whole or not at all (--explain, compile -o, payout export -o)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.db import upgrade
from tests.test_settle_cli import error_line, settle_args, snapshot
from tests.test_settlement import FIRST


def one_line(result, code: int) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return error_line(result.stderr)


class _Full:
    """A file on a full disk: every write fails as the kernel's would."""

    def __init__(self, fd: int, *_a: object) -> None:
        os.close(fd)

    def __enter__(self) -> _Full:
        return self

    def __exit__(self, *_a: object) -> None:
        pass

    def write(self, _text: str) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_settle_stdin_closed(db_url, rules_dir) -> None:
    upgrade(db_url)
    args = settle_args(rules_dir, Path("-"), db_url)
    process = subprocess.run(
        ["sh", "-c", 'exec "$0" -m referral "$@" <&-', sys.executable, *args],
        capture_output=True, text=True, check=False)
    assert (process.returncode, process.stderr) == (
        1, "error: --records -: standard input is closed; nothing was read\n")


def test_settle_non_utf8_records_path(db_url, rules_dir, tmp_path) -> None:
    upgrade(db_url)
    path = os.fsdecode(os.fsencode(str(tmp_path)) + b"/\xff.jsonl")
    Path(path).write_text(FIRST[0] + "\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["settle", "--rules", str(rules_dir), "--records", path,
                                       "--db", db_url, "--as-of", "2026-01-10"])
    assert one_line(result, 1) == (
        f"error: --records '{tmp_path}/\\xff.jsonl': the path is not valid UTF-8 (the run log"
        " stores it); rename the file, or pipe it: --records - < FILE\n")
    assert snapshot(db_url) == set()


def test_credit_beyond_bigint_is_refused_one_line(db_url) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, ["ledger", "credit", "u1", "INR 100000000000000000000",
                                       "--reference", "hand:1", "--db", db_url])
    assert one_line(result, 1) == (
        "error: credit 'hand:1': 10000000000000000000000 minor units is more than the ledger"
        " holds (at most 9223372036854775807)\n")


def test_user_id_over_255_characters_is_refused_one_line(db_url) -> None:
    upgrade(db_url)
    result = CliRunner().invoke(main, ["ledger", "credit", "u" * 300, "₹5", "--reference",
                                       "hand:1", "--db", db_url])
    assert one_line(result, 1) == ("error: credit 'hand:1': the user id is 300 characters;"
                                   " at most 255\n")
    assert snapshot(db_url) == set()


def test_read_only_postgresql_transaction_is_one_line(pg_url) -> None:
    upgrade(pg_url)
    read_only = sa.make_url(pg_url).update_query_dict(
        {"options": "-c default_transaction_read_only=on"}).render_as_string(hide_password=False)
    result = CliRunner().invoke(main, ["ledger", "credit", "u1", "₹5", "--reference", "hand:1",
                                       "--db", read_only])
    # Entries go in by COPY on PostgreSQL; the database's own words say so.
    assert one_line(result, 1) == (
        "error: the database refused the command: cannot execute COPY FROM in a read-only"
        " transaction; nothing was written\n")
    assert snapshot(pg_url) == set()


def test_explain_writes_only_decisions_and_explain_all_everything(
        db_url, rules_dir, small_input, tmp_path) -> None:
    upgrade(db_url)
    why = tmp_path / "why.jsonl"
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url,
                                                  "--explain", str(why), "--dry-run"))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in why.read_text().splitlines()]
    everything = tmp_path / "all.jsonl"
    assert CliRunner().invoke(main, settle_args(
        rules_dir, small_input, db_url, "--explain", str(everything), "--explain-all",
        "--dry-run")).exit_code == 0
    full = [json.loads(line) for line in everything.read_text().splitlines()]
    assert len(full) == len(FIRST)
    assert all("trace" in r for line in full for r in line.get("rules", []))
    assert any(not r["matched"] for line in full for r in line.get("rules", []))
    # The default: no traces, no rule that did not apply, no record that decided nothing.
    assert all(set(r) <= {"rule_id", "matched", "reverse", "suppressed_by"}
               for line in lines for r in line.get("rules", []))
    assert all(r["matched"] or r.get("reverse") or r.get("suppressed_by")
               for line in lines for r in line.get("rules", []))
    assert all(line.get("rules") or line.get("actions") or "quarantined" in line
               for line in lines)
    assert [(line["file"], line["line"]) for line in lines] == [
        (line["file"], line["line"]) for line in full
        if any(r["matched"] or r["reverse"] or r["suppressed_by"] for r in line.get("rules", []))
        or line.get("actions") or "quarantined" in line]
    assert why.stat().st_size * 2 < everything.stat().st_size


def test_explain_of_a_refused_run_is_never_written(db_url, rules_dir, small_input,
                                                   tmp_path) -> None:
    upgrade(db_url)
    why = tmp_path / "why.jsonl"
    why.write_text("yesterday's\n")
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url, "--explain",
                                                  str(why), "--max-quarantine", "0"))
    assert result.exit_code == 4
    assert why.read_text() == "yesterday's\n"  # no line says "posted" for a rolled-back run
    assert leftovers(tmp_path) == []
    assert snapshot(db_url) == set()


def test_explain_on_a_full_disk_is_one_line_and_writes_nothing(
        db_url, rules_dir, small_input, tmp_path, monkeypatch) -> None:
    upgrade(db_url)
    monkeypatch.setattr("referral.cli.output._open", _Full)
    why = tmp_path / "why.jsonl"
    result = CliRunner().invoke(main, settle_args(rules_dir, small_input, db_url,
                                                  "--explain", str(why)))
    assert one_line(result, 1) == (f"error: {why}: cannot write: No space left on device;"
                                   " the file was not written\n")
    assert not why.exists() and leftovers(tmp_path) == []
    assert snapshot(db_url) == set()  # the run was rolled back


def test_compile_output_on_a_full_disk_leaves_no_file(rules_dir, tmp_path, monkeypatch) -> None:
    out = tmp_path / "model.json"
    monkeypatch.setattr("referral.cli.output._open", _Full)
    result = CliRunner().invoke(main, ["rules", "compile", str(rules_dir), "-o", str(out)])
    assert one_line(result, 1) == (f"error: {out}: cannot write: No space left on device;"
                                   " the file was not written\n")
    assert not out.exists() and leftovers(tmp_path) == []
    monkeypatch.undo()
    ok = CliRunner().invoke(main, ["rules", "compile", str(rules_dir), "-o", str(out)])
    assert ok.exit_code == 0 and json.loads(out.read_text())["rules"]


def test_output_into_a_missing_directory_is_one_line(rules_dir, tmp_path) -> None:
    out = tmp_path / "no" / "model.json"
    result = CliRunner().invoke(main, ["rules", "compile", str(rules_dir), "-o", str(out)])
    assert one_line(result, 1) == f"error: {out}: cannot write: No such file or directory\n"


def test_payout_export_on_a_full_disk_marks_nothing_sent(db_url, tmp_path, monkeypatch) -> None:
    def cli(*args: str):
        return CliRunner().invoke(main, [*args, "--db", db_url])

    upgrade(db_url)
    payees = tmp_path / "payees.csv"
    payees.write_text("user_id,method,email\nu1,paypal,u1@example.com\n")
    cli("ledger", "credit", "u1", "₹700", "--reference", "a", "--confirmed", "--date",
        "2026-11-02")
    assert cli("payees", "import", str(payees)).exit_code == 0
    assert cli("payout", "create", "--as-of", "2026-11-30").exit_code == 0
    out = tmp_path / "payout.csv"
    monkeypatch.setattr("referral.cli.output._open", _Full)
    full = cli("payout", "export", "2026-11-30-INR", "--format", "paypal", "-o", str(out))
    assert one_line(full, 1) == (f"error: {out}: cannot write: No space left on device;"
                                 " the file was not written\n")
    assert not out.exists() and leftovers(tmp_path) == []
    shown = json.loads(cli("payout", "show", "2026-11-30-INR", "--json").stdout)
    assert shown["items"][0]["status"] == "created"  # the sent marks were rolled back
    monkeypatch.undo()
    again = cli("payout", "export", "2026-11-30-INR", "--format", "paypal", "-o", str(out))
    assert again.exit_code == 0 and out.read_text().startswith("u1@example.com,700.00,INR,")


def test_a_file_the_command_cannot_write_is_one_line(rules_dir, tmp_path) -> None:
    (tmp_path / "afile").write_text("")
    target = tmp_path / "afile" / "sub"
    result = CliRunner().invoke(main, ["rules", "render", str(rules_dir), "--format", "dot",
                                       "-o", str(target)])
    assert one_line(result, 1) == f"error: {target}: Not a directory\n"
