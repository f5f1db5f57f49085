"""One default currency for a program: ``rules test`` and ``settle`` read bare amounts alike."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from dsl.errors import RuleValidationError
from dsl.examples import run_examples
from dsl.parser import parse_text
from dsl.program import load_program, resolve_program
from settlement.batch import settle
from settlement.db import open_engine, upgrade
from settlement.records import read_records

PERCENT_RULE = """\
RULE share
  IF referee.subscribed = true
  THEN ISSUE 10% OF referee.first_payment REWARD TO referrer
"""

# The rule names no currency; the examples do, and bare integers are minor units of it.
EXAMPLE_INR = """
EXAMPLE "a tenth of the first payment"
  GIVEN referee.subscribed = true, referee.first_payment = 50000
  EXPECT ISSUE ₹50 TO referrer
"""
EXAMPLE_USD = """
EXAMPLE "the same in dollars"
  GIVEN referee.subscribed = true, referee.first_payment = 50000
  EXPECT ISSUE $50 TO referrer
"""
GIVEN_ONLY = """
EXAMPLE "money given, nothing expected"
  GIVEN referee.subscribed = false, referee.first_payment = ₹500
  EXPECT NOTHING
"""


@pytest.mark.parametrize(
    ("text", "currency"),
    [
        ("RULE a IF x.y THEN ISSUE ₹1", "INR"),
        (PERCENT_RULE, None),
        (PERCENT_RULE + EXAMPLE_INR, "INR"),
        (PERCENT_RULE + GIVEN_ONLY, "INR"),
        ('DEFINE "big" AS x.spend > $10\n' + PERCENT_RULE, "USD"),
        (PERCENT_RULE + EXAMPLE_INR + EXAMPLE_USD, None),
        ("RULE a IF x.y THEN ISSUE ₹1\n" + EXAMPLE_USD, None),
    ],
)
def test_default_currency_counts_every_money_literal(text: str, currency: str | None) -> None:
    assert parse_text(text).default_currency() == currency


def _settle(
    tmp_path: Path, program_text: str, *, checked: bool = True
) -> tuple[list[bool], dict[str, object]]:
    path = tmp_path / "program.rule"
    path.write_text(program_text, encoding="utf-8")
    if checked:
        program = load_program([path]).program
    else:  # what a caller that skips the check would settle
        program, problems = resolve_program(parse_text(program_text))
        assert problems == []
    examples = [r.passed for r in run_examples(program)]
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({
        "referral_id": "r1",
        "referral": {"created_at": "2026-01-01"},
        "referrer": {"id": "A"},
        "referee": {"id": "B", "subscribed": True, "first_payment": 50000},
    }) + "\n", encoding="utf-8")
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    engine = open_engine(url)
    try:
        with engine.connect() as conn:
            summary = settle(conn, program, read_records(str(records)),
                             as_of=date(2026, 1, 10), input_name=str(records))
    finally:
        engine.dispose()
    return examples, summary.as_json()


def test_example_only_currency_passes_rules_test_and_settles(tmp_path: Path) -> None:
    examples, summary = _settle(tmp_path, PERCENT_RULE + EXAMPLE_INR)
    assert examples == [True]
    assert (summary["posted"], summary["quarantined"]) == (1, 0)
    assert summary["amount_posted"] == {"INR": 5000}


def test_ambiguous_currency_fails_check_rules_test_and_quarantines(tmp_path: Path) -> None:
    with pytest.raises(RuleValidationError, match="money literals are in INR and USD"):
        _settle(tmp_path, PERCENT_RULE + EXAMPLE_INR + EXAMPLE_USD)
    examples, summary = _settle(tmp_path, PERCENT_RULE + EXAMPLE_INR + EXAMPLE_USD,
                                checked=False)
    assert examples == [False, False]
    assert (summary["posted"], summary["quarantined"]) == (0, 1)
