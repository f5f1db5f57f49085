"""Payees: shape checks per method, all-or-nothing imports, history, masking."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from referral.cli import main
from settlement.errors import PayeeImportError
from settlement.payees import (
    current_payees,
    iban_problem,
    import_payees,
    mask,
    payee_history,
    read_rows,
    routing_problem,
    validate,
)

DAY = date(2026, 11, 1)


@pytest.mark.parametrize(("iban", "problem"), [
    ("DE89370400440532013000", None),
    ("GB82WEST12345698765432", None),
    ("DE89370400440532013001", "check digits do not match (mod-97): a typing error?"),
    ("DE8937040044053201300", "an IBAN of DE has 22 characters, this one 21"),
    ("ZZ89370400440532013000", "ZZ is not an IBAN country"),
    ("89DE370400440532013000", "must be a country code, two check digits and letters or digits"),
])
def test_iban_checks(iban: str, problem: str | None) -> None:
    assert iban_problem(iban) == problem


@pytest.mark.parametrize(("number", "problem"), [
    ("021000021", None), ("021000022", "checksum does not match: a typing error?"),
    ("12345", "must be 9 digits"),
])
def test_aba_routing_checksum(number: str, problem: str | None) -> None:
    assert routing_problem(number) == problem


def test_every_bad_row_is_reported_with_file_line_and_field(tmp_path) -> None:
    path = tmp_path / "payees.csv"
    path.write_text(
        "user_id,method,name,ifsc,account_number,iban,bic,vpa,email\n"
        "u1,bank,Asha,HDFC0001234,123456789012,,,,\n"
        "u2,cheque,,,,,,,\n"
        "u3,bank,,,,DE89370400440532013001,DEUTDEFF,,\n"
        "u4,bank,,HDFC1234567,123456789012,,,,\n"
        "u5,upi,,,,,,not-a-vpa,\n"
        "u6,paypal,,,,,,,nobody@\n"
        "u1,paypal,,,,,,,asha@example.com\n"
        "u7,bank,,,123456789012,,,,\n"
        "u8,upi,,,,,,ok@okhdfc,x@example.com\n"
    )
    rows, problems = validate(path, read_rows(path))
    assert [r.user_id for r in rows] == ["u1"]
    assert problems == [
        f"{path}:3: method: unknown method 'cheque' (one of bank, upi, paypal)",
        f"{path}:4: iban: check digits do not match (mod-97): a typing error?",
        f"{path}:5: ifsc: must be 4 letters, 0, then 6 letters or digits (e.g. HDFC0001234)",
        f"{path}:6: vpa: must be a UPI id name@handle (e.g. asha@okhdfc)",
        f"{path}:7: email: must be an e-mail address",
        f"{path}:8: user_id: 'u1' appears again (first on line 2): one payee per person per file",
        f"{path}:9: ifsc: missing (method bank with ifsc needs ifsc and account_number)",
        f"{path}:10: email: not a field of method upi with vpa",
    ]


def test_a_file_with_a_bad_row_imports_nothing(ledger_engine, tmp_path) -> None:
    path = tmp_path / "payees.jsonl"
    path.write_text('{"user_id": "u1", "method": "paypal", "email": "a@example.com"}\n'
                    '{"user_id": "u2", "method": "upi"}\n'
                    "not json\n")
    with ledger_engine.connect() as conn:
        with pytest.raises(PayeeImportError) as err:
            import_payees(conn, path, business_date=DAY, actor="t")
        assert err.value.problems == [
            f"{path}:2: vpa: missing (method upi with vpa needs vpa)",
            f"{path}:3: not JSON (Expecting value at column 1)",
        ]
        assert current_payees(conn) == {}


def test_history_is_append_only_and_unchanged_rows_add_nothing(ledger_engine, tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.csv"
    first.write_text('{"user_id": "u1", "method": "bank", "iban": "DE89 3704 0044 0532 0130 00",'
                     ' "bic": "deutdeff", "name": "Jana"}\n'
                     '{"user_id": 7, "method": "paypal", "email": "seven@example.com"}\n')
    second.write_text("user_id,method,vpa,email\nu1,upi,jana@okicici,\n"
                      "7,paypal,,seven@example.com\n")
    with ledger_engine.connect() as conn:
        a = import_payees(conn, first, business_date=DAY, actor="t")
        b = import_payees(conn, second, business_date=date(2026, 11, 2), actor="t")
        history = payee_history(conn, "u1")
    assert (a.added, a.changed, a.unchanged) == (2, 0, 0)
    assert (b.added, b.changed, b.unchanged) == (0, 1, 1)
    assert [(p.method, p.details, p.source) for p in history] == [
        ("upi", {"vpa": "jana@okicici"}, "b.csv:2"),
        ("bank", {"bic": "DEUTDEFF", "iban": "DE89370400440532013000"}, "a.jsonl:1"),
    ]
    assert history[1].masked() == {"bic": "DEUTDEFF", "iban": "DE89••••••••••••••3000"}


def test_mask_hides_all_but_the_last_characters() -> None:
    assert mask("account_number", "123456789012") == "••••••••9012"
    assert mask("email", "asha@example.com") == "a•••@example.com"
    assert mask("ifsc", "HDFC0001234") == "HDFC0001234"


def test_cli_import_reports_each_problem_then_exit_1(db_url, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade", "--db", db_url]).exit_code == 0
    bad = tmp_path / "p.csv"
    bad.write_text("user_id,method,email\nu1,paypal,a@example.com\nu1,paypal,b@example.com\n")
    result = runner.invoke(main, ["payees", "import", str(bad), "--db", db_url])
    assert (result.exit_code, result.stderr) == (1, (
        f"{bad}:3: user_id: 'u1' appears again (first on line 2): one payee per person per "
        f"file\nerror: {bad}: 1 problem; nothing was imported\n"))
    good = tmp_path / "ok.csv"
    good.write_text("user_id,method,ifsc,account_number,name\nu1,bank,SBIN0000001,"
                    "00001234567890,Asha\n")
    result = runner.invoke(main, ["payees", "import", str(good), "--date", "2026-11-01",
                                  "--db", db_url])
    assert (result.exit_code, result.stdout) == (
        0, f"{good}: 1 rows: 1 new, 0 changed, 0 unchanged\n")
    shown = runner.invoke(main, ["payees", "show", "u1", "--db", db_url])
    assert shown.stdout == ("current: bank (Asha)  account_number ••••••••••7890  "
                            "ifsc SBIN0000001  since 2026-11-01  from ok.csv:2\n")
    missing = runner.invoke(main, ["payees", "show", "u9", "--db", db_url])
    assert (missing.exit_code, missing.stderr) == (1, "error: no payee for user u9\n")


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [("payees.csv", "user_id,method,email,name\nu1,paypal,a@example.com,\"Asha\n"
      "u2,paypal,b@example.com,Bo\n",
      "2: not valid CSV: a quoted cell does not end on its line (unterminated quote;"
      " cells cannot span lines)"),
     ("payees.csv", "user_id,method,email,email\nu1,paypal,a@example.com,x@example.com\n",
      "1: column email is named twice (columns 3 and 4)"),
     ("payees.jsonl", '{"user_id": "u1", "method": "paypal", "email": "a@example.com",'
      ' "email": "attacker@example.com"}\n',
      "1: duplicate key email: a key may appear once in an object"),
     ("payees.jsonl", '{"user_id": "u1\\u202e", "method": "paypal", "email": "a@example.com"}\n',
      "1: user_id: contains U+202E RIGHT-TO-LEFT OVERRIDE: ids cannot hold control, format"
      " (zero-width, bidi) or line-separator characters")],
)
def test_payee_files_are_read_strictly(tmp_path, name, text, problem) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    _, problems = validate(path, read_rows(path))
    assert f"{path}:{problem}" in problems


def test_payee_user_ids_are_nfc(tmp_path) -> None:
    path = tmp_path / "payees.csv"
    path.write_text("user_id,method,email\njose\u0301,paypal,a@example.com\n", encoding="utf-8")
    rows, problems = validate(path, read_rows(path))
    assert (problems, [r.user_id for r in rows]) == ([], ["jos\u00e9"])
