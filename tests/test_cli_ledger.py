"""`referral db` and `referral ledger` through CliRunner: exit codes and exact output."""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from referral.cli import main
from settlement.db import head_revision, open_engine
from settlement.locks import lock_ledger
from tests.tampering import disable_append_only

TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
HASH = re.compile(r"[0-9a-f]{64}")


def run(db_url: str, *args: str):
    return CliRunner().invoke(main, [*args, "--db", db_url])


@pytest.fixture
def cli(db_url):
    assert run(db_url, "db", "upgrade").exit_code == 0
    return lambda *args: run(db_url, *args)


def test_db_upgrade_reports_revision_and_repeats(db_url) -> None:
    for _ in range(2):
        result = run(db_url, "db", "upgrade")
        assert (result.exit_code, result.stdout) == (
            0, f"database schema at revision {head_revision()}\n"
        )


def test_ledger_command_without_schema_says_run_upgrade(db_url) -> None:
    open_engine(db_url).dispose()  # an empty database (on SQLite: an empty file)
    result = run(db_url, "ledger", "balance", "u1")
    assert result.exit_code == 1
    assert result.stderr == "error: database schema is missing; run `referral db upgrade`\n"


@pytest.mark.parametrize("args", [("db", "upgrade"), ("ledger", "verify"),
                                  ("ledger", "credit", "u1", "₹5", "--reference", "r")])
def test_unreachable_database_exit_3_one_line(args) -> None:
    result = run("postgresql://bob:pw@127.0.0.1:1/ledger", *args)
    assert result.exit_code == 3
    assert result.stderr.startswith(
        "error: cannot connect to PostgreSQL database ledger on 127.0.0.1:1: "
    )
    assert result.stderr.count("\n") == 1 and "pw" not in result.stderr


def test_credit_created_then_already_existed_then_conflict(cli) -> None:
    assert cli("ledger", "credit", "u1", "₹500", "--reference", "r1").stdout == (
        "created: r1 (user u1, ₹500 credit, pending)\n"
    )
    again = cli("ledger", "credit", "u1", "INR 500", "--reference", "r1")
    assert (again.exit_code, again.stdout) == (
        0, "already existed: r1 (user u1, ₹500 credit, pending)\n"
    )
    conflict = cli("ledger", "credit", "u1", "INR 600", "--reference", "r1")
    assert (conflict.exit_code, conflict.stderr) == (
        1,
        "error: idempotency conflict on reference 'r1': existing entry is user u1, ₹500 credit,"
        " requested user u1, ₹600 credit\n",
    )


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("500", "error: not a money amount: '500' (expected e.g. ₹500, ₹1,000.50, INR 500 "
                "or 500 INR)\n"),
        ("₹0", "error: credit 'r1': amount must be a positive number of minor units, got 0\n"),
        ("₹1.005", "error: 1.005 INR has more decimals than INR allows (2)\n"),
    ],
)
def test_credit_bad_amount_exit_1(cli, amount, message) -> None:
    result = cli("ledger", "credit", "u1", amount, "--reference", "r1")
    assert (result.exit_code, result.stderr) == (1, message)


def test_credit_without_reference_is_usage_error(cli) -> None:
    assert cli("ledger", "credit", "u1", "₹5").exit_code == 2


def test_lifecycle_messages_and_balance_json(cli) -> None:
    cli("ledger", "credit", "u1", "₹500", "--reference", "r1", "--confirmed")
    assert cli("ledger", "confirm", "r1").stdout == "r1: no change: already confirmed\n"
    assert cli("ledger", "pay", "r1").stdout == "r1: confirmed -> paid\n"
    assert cli("ledger", "balance", "u1", "--json").stdout == (
        '{"INR": {"pending": 0, "confirmed": 0, "paid": 50000, "reversed": 0, "net": 0}}\n'
    )
    rev = cli("ledger", "reverse", "r1", "--reason", "fraud")
    assert rev.stdout == "created: reversal:r1 (user u1, -₹500 debit, confirmed) reverses r1\n"
    again = cli("ledger", "reverse", "r1", "--reason", "fraud")
    assert again.stdout.startswith("already existed: reversal:r1 ")
    assert cli("ledger", "balance", "u1").stdout == (
        "INR  pending ₹0  confirmed ₹0  paid ₹0  reversed ₹500  net -₹500\n"
    )
    assert cli("ledger", "balance", "--program", "--json").stdout == '{"INR": 0}\n'
    refused = cli("ledger", "reverse", "reversal:r1", "--reason", "x")
    assert (refused.exit_code, refused.stderr) == (
        1, "error: entry 'reversal:r1' is a reversal (confirmed); reversing a reversal is refused\n"
    )


def test_balance_pending_credit_documented_json(cli) -> None:
    cli("ledger", "credit", "u1", "INR 500", "--reference", "r1")
    result = cli("ledger", "balance", "u1", "--json")
    assert json.loads(result.stdout) == {
        "INR": {"pending": 50000, "confirmed": 0, "paid": 0, "reversed": 0, "net": 50000}
    }
    assert cli("ledger", "balance", "nobody", "--json").stdout == "{}\n"
    assert cli("ledger", "balance").exit_code == 2


def test_illegal_transition_exit_1(cli) -> None:
    cli("ledger", "credit", "u1", "₹5", "--reference", "r1")
    result = cli("ledger", "pay", "r1")
    assert (result.exit_code, result.stderr) == (
        1, "error: entry 'r1' is pending; pending -> paid refused (confirm it first)\n"
    )
    missing = cli("ledger", "confirm", "nope")
    assert (missing.exit_code, missing.stderr) == (
        1, "error: no ledger entry with reference 'nope'\n"
    )


def test_show_prints_entry_and_history(cli) -> None:
    cli("ledger", "credit", "u1", "₹500", "--reference", "r1")
    cli("ledger", "confirm", "r1")
    cli("ledger", "reverse", "r1", "--reason", "refund")
    result = cli("ledger", "show", "r1")
    assert result.exit_code == 0
    assert HASH.sub("<hash>", TS.sub("<ts>", result.stdout)) == (
        "reference_id: r1\n"
        "user_id:      u1\n"
        "amount:       ₹500 (50000 INR minor units)\n"
        "entry_type:   credit\n"
        "status:       reversed\n"
        "reversal_id:  -\n"
        "timestamp:    <ts>\n"
        f"dated:        {date.today()}\n"
        "actor:        cli\n"
        "hash:         <hash>\n"
        "history:\n"
        "  <ts>  - -> pending  by cli\n"
        "  <ts>  pending -> confirmed  by cli\n"
        "  <ts>  confirmed -> reversed  by cli: refund\n"
    )


def test_export_jsonl_and_csv_field_order(cli) -> None:
    cli("ledger", "credit", "u1", "₹500", "--reference", "r1")
    cli("ledger", "reverse", "r1", "--reason", "refund")
    lines = TS.sub("<ts>", cli("ledger", "export").stdout).splitlines()
    rest = (f'"business_date": "{date.today()}", "rule_id": null, "referral_id": null, '
            '"role": null, "event_date": null, "hold_until": null, "run_id": null, '
            '"paid_date": null, "payout_batch": null}')
    assert lines == [
        '{"user_id": "u1", "amount": 50000, "currency": "INR", "entry_type": "credit", '
        '"status": "reversed", "reference_id": "r1", "reversal_id": null, "timestamp": "<ts>", '
        + rest,
        '{"user_id": "u1", "amount": -50000, "currency": "INR", "entry_type": "debit", '
        '"status": "confirmed", "reference_id": "reversal:r1", "reversal_id": "r1", '
        '"timestamp": "<ts>", ' + rest,
    ]
    assert TS.sub("<ts>", cli("ledger", "export", "--format", "csv").stdout) == (
        "user_id,amount,currency,entry_type,status,reference_id,reversal_id,timestamp,"
        "business_date,rule_id,referral_id,role,event_date,hold_until,run_id,paid_date,"
        "payout_batch\n"
        f"u1,50000,INR,credit,reversed,r1,,<ts>,{date.today()},,,,,,,,\n"
        f"u1,-50000,INR,debit,confirmed,reversal:r1,r1,<ts>,{date.today()},,,,,,,,\n"
    )


def test_verify_ok_then_names_hand_edited_row(cli, db_url) -> None:
    for i in (1, 2, 3):
        cli("ledger", "credit", f"u{i}", "₹5", "--reference", f"r{i}")
    ok = cli("ledger", "verify")
    assert (ok.exit_code, ok.stdout) == (
        0, "ok: 3 entries checked, hash chain intact, every currency sums to zero\n"
    )
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:
        disable_append_only(conn, "UPDATE", ("ledger_entries",))
        conn.execute(sa.text("UPDATE ledger_entries SET user_id = 'u9' WHERE reference_id = 'r2'"))
    engine.dispose()
    bad = cli("ledger", "verify")
    assert (bad.exit_code, bad.stderr) == (
        1,
        "error: ledger verification failed: entry id=2 reference 'r2': hash mismatch"
        " (the row was changed after it was written) (and 2 more problems)\n",
    )


def test_read_commands_do_not_wait_for_a_writer(cli, db_url) -> None:
    """An on-call engineer can read balances while a settlement run holds the write lock."""
    assert cli("ledger", "credit", "u1", "₹5", "--reference", "r1").exit_code == 0
    writer = open_engine(db_url)
    with writer.connect() as conn:
        tx = conn.begin()  # SQLite: BEGIN IMMEDIATE; PostgreSQL: an open writing transaction
        lock_ledger(conn)
        conn.execute(sa.text("INSERT INTO ledger_transitions (entry_id, from_status, "
                             "to_status, at, actor) VALUES (1, 'pending', 'confirmed', "
                             "CURRENT_TIMESTAMP, 'a writer')"))
        results = [run(db_url, "ledger", *args) for args in
                   (["balance", "u1", "--json"], ["show", "r1"], ["verify"], ["export"])]
        tx.rollback()
    writer.dispose()
    assert [r.exit_code for r in results] == [0, 0, 0, 0], [r.output for r in results]
    assert json.loads(results[0].stdout)["INR"]["pending"] == 500


@pytest.mark.parametrize("amount", ["₹1٥0", "₹𝟓𝟎𝟎"])
def test_credit_amount_with_digits_other_than_ascii_exit_1(cli, amount) -> None:
    result = cli("ledger", "credit", "u1", amount, "--reference", "r1")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: not a money amount: '{amount}'")
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [(("u1\r\nINR pending ₹0 confirmed ₹99,999", "₹5", "--reference", "r1"), "U+000D"),
     (("u1\u202e", "₹5", "--reference", "r1"), "U+202E RIGHT-TO-LEFT OVERRIDE"),
     (("u1", "₹5", "--reference", "r\x1b[2J"), "U+001B")],
)
def test_credit_ids_with_invisible_characters_are_usage_errors(cli, args, named) -> None:
    result = cli("ledger", "credit", *args)
    assert result.exit_code == 2
    assert f"contains {named}" in result.stderr


def test_credit_user_id_is_nfc(cli) -> None:
    assert cli("ledger", "credit", "jose\u0301", "₹5", "--reference", "r1").exit_code == 0
    assert "user_id:      jos\u00e9\n" in cli("ledger", "show", "r1").stdout
