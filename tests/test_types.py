"""Money, time and types that cannot be misread (issue 12, the language half).

Each ``test_repro_<n>_...`` is one of the issue's reproductions that lives in the
language; they failed on the code before it.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from dsl.errors import EvaluationError, RuleError
from dsl.evaluate import compile_program
from dsl.examples import run_examples
from dsl.model import Program
from dsl.money import Money
from dsl.program import load_program

RULES_DIR = Path(__file__).parent.parent / "rules"


def load(tmp_path: Path, files: dict[str, str]) -> tuple[Program, list[str]]:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = load_program([tmp_path])
    return loaded.program, [w.message for w in loaded.warnings]


def errors(tmp_path: Path, files: dict[str, str]) -> list[str]:
    with pytest.raises(RuleError) as info:
        load(tmp_path, files)
    return [d.line().replace(str(tmp_path) + "/", "") for d in info.value.diagnostics
            if d.severity == "error"]


def evaluate(program: Program, ctx: dict, *, fast: bool) -> list[Money]:
    compiled = compile_program(program, default_currency=program.default_currency())
    run = compiled.evaluate if fast else compiled.evaluate_closures
    return [r.amount for r in run(ctx).rewards]


PEOPLE = {"referrer": {"id": "A"}, "referee": {"id": "B"}}


# ---------------------------------------------------------------- 1: LIMIT mixes currencies

@pytest.mark.parametrize("fast", [True, False])
def test_repro_1_percentage_base_in_another_currency_is_an_error(tmp_path, fast) -> None:
    program, _ = load(tmp_path, {"p.rule": (
        "RULE share IF referee.subscribed\n"
        "  THEN ISSUE 10% OF referee.first_payment REWARD TO referee\n"
        "  LIMIT ₹50 PER referee PER MONTH\n"
    )})
    ctx = {**PEOPLE, "referee": {"id": "B", "subscribed": True,
                                 "first_payment": {"amount": 100000, "currency": "USD"}}}
    with pytest.raises(EvaluationError, match="referee.first_payment: expected money in INR, "
                                              "found money in USD"):
        evaluate(program, ctx, fast=fast)
    ctx["referee"]["first_payment"] = 100000  # a bare integer is the program's INR
    assert evaluate(program, ctx, fast=fast) == [Money(10000, "INR")]


def test_repro_1_limit_in_another_currency_than_an_uncapped_share(tmp_path) -> None:
    got = errors(tmp_path, {"p.rule": (
        "CURRENCY INR\n"
        "RULE share IF referee.subscribed\n"
        "  THEN ISSUE 10% OF referee.first_payment REWARD TO referee\n"
        "  LIMIT $50 PER referee PER MONTH\n"
    )})
    assert got == ["p.rule:4:9: error: rule share: LIMIT is in USD but the rule pays in INR "
                   "(a percentage without UP TO pays in the program's currency)"]


# ---------------------------------------------------------------- 2: a rule in another currency

def test_repro_2_a_second_currency_without_currency_statement_is_an_error(tmp_path) -> None:
    for f in RULES_DIR.glob("*.rule"):  # rules/ as it was, before it said CURRENCY INR
        text = f.read_text(encoding="utf-8").replace("CURRENCY INR\n", "")
        (tmp_path / f.name).write_text(text, encoding="utf-8")
    got = errors(tmp_path, {"dollars.rule": "RULE dollars IF referee.subscribed "
                                            "THEN ISSUE USD 10 TO referrer\n"})
    assert got == ["dollars.rule:1:47: error: the program's money literals are in INR and USD: "
                   "write CURRENCY "
                   "<code> (the currency of bare integer amounts in records)"]
    shutil.copy(RULES_DIR / "vocabulary.rule", tmp_path / "vocabulary.rule")
    program = load_program([tmp_path]).program
    assert program.default_currency() == "INR"


# ---------------------------------------------------------------- 3: percentage-only programs

PERCENT_ONLY = (
    "RULE share IF referee.subscribed\n"
    "  THEN ISSUE 10% OF referee.first_payment REWARD TO referrer\n"
    'EXAMPLE "a tenth" GIVEN referee.subscribed = true, referee.first_payment = 150000\n'
    "  EXPECT ISSUE INR 150 TO referrer\n"
)


def test_repro_3_percentage_only_program_declares_its_currency(tmp_path) -> None:
    program, _ = load(tmp_path, {"p.rule": "CURRENCY INR\n" + PERCENT_ONLY})
    assert program.currency == "INR"
    assert [r.passed for r in run_examples(program)] == [True]


def test_repro_3_a_percentage_without_any_currency_is_a_warning(tmp_path) -> None:
    _, warnings = load(tmp_path, {"p.rule": (
        "RULE share IF referee.subscribed\n"
        "  THEN ISSUE 10% OF referee.first_payment REWARD TO referrer\n"
    )})
    assert warnings == ["the program names no currency, so a record's bare integer amounts "
                        "cannot be read: write CURRENCY <code>"]


def test_repro_3_currency_override_wins(tmp_path) -> None:
    program, _ = load(tmp_path, {"p.rule": "CURRENCY USD\n" + PERCENT_ONLY})
    assert [r.passed for r in run_examples(program)] == [False]
    assert [r.passed for r in run_examples(program, currency="INR")] == [True]
    assert program.default_currency("inr") == "INR"


# ---------------------------------------------------------------- 4: time zones

SAME_INSTANT = ["2026-11-16T02:30:00Z", "2026-11-15T21:30:00-05:00", "2026-11-16T08:00:00+05:30"]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("zone", "inside"), [
    (None, False), ('"UTC"', False), ('"America/New_York"', True), ('"Asia/Kolkata"', False),
])
def test_repro_4_one_instant_falls_on_one_date(tmp_path, zone, inside, fast) -> None:
    header = f"TIMEZONE {zone}\n" if zone else ""
    program, _ = load(tmp_path, {"p.rule": header + (
        "RULE campaign IF referral.created_at <= 2026-11-15 THEN ISSUE ₹5 TO referrer\n"
    )})
    for value in SAME_INSTANT:
        ctx = {**PEOPLE, "referral": {"created_at": value}}
        assert bool(evaluate(program, ctx, fast=fast)) is inside, value


# ---------------------------------------------------------------- 5: dates compare as dates

@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("subscribed", "created", "expected"), [
    ("2026-02-09", "2026-02-09T10:00:00", True),      # a date against a timestamp: by the date
    ("2026-02-10", "2026-02-09", True),
    ("2026-02-08T23:00:00-05:00", "2026-02-09", True),  # 04:00 UTC on the 9th
    ("2026-02-09T09:00:00Z", "2026-02-09T10:00:00+00:00", False),  # two instants
    ("2026-02-09T06:00:00+05:30", "2026-02-09T00:00:00Z", True),   # 00:30Z >= 00:00Z
])
def test_repro_5_two_date_fields_compare_as_dates(tmp_path, subscribed, created, expected,
                                                  fast) -> None:
    program, _ = load(tmp_path, {"p.rule": (
        "RULE late IF referee.subscribed_at >= referral.created_at THEN ISSUE ₹5 TO referrer\n"
    )})
    ctx = {**PEOPLE, "referee": {"id": "B", "subscribed_at": subscribed},
           "referral": {"created_at": created}}
    assert bool(evaluate(program, ctx, fast=fast)) is expected


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("condition", [
    "referee.subscribed_at >= referral.created_at",
    "referee.subscribed_at = referral.created_at",
    "referee.subscribed_at WITHIN 3 DAYS AFTER referral.created_at",
    "referee.subscribed_at > 2026-01-01",
])
def test_repro_5_a_value_that_is_not_a_date_is_an_error(tmp_path, condition, fast) -> None:
    program, _ = load(tmp_path, {"p.rule": (
        f"RULE late IF {condition} AND referral.created_at > 2000-01-01\n"
        "  THEN ISSUE ₹5 TO referrer\n"
    )})
    ctx = {**PEOPLE, "referee": {"id": "B", "subscribed_at": "soon"},
           "referral": {"created_at": "2026-02-09"}}
    with pytest.raises(EvaluationError, match="rule late: referee.subscribed_at: expected a date"):
        evaluate(program, ctx, fast=fast)


# ---------------------------------------------------------------- 10: no false typo warning

def test_repro_10_required_fields_are_not_typos(tmp_path) -> None:
    _, warnings = load(tmp_path, {"p.rule": (
        "RULE a IF referee.plan = \"x\" AND NOT referee.id = referrer.id THEN ISSUE ₹1\n"
        "RULE b PRIORITY 1 IF referral.channel = \"x\" AND referrer.channel = \"y\"\n"
        "  THEN ISSUE ₹1\n"
    )})
    assert warnings == []


# ---------------------------------------------------------------- 11: $ and ¥, every currency

@pytest.mark.parametrize(("currency", "literal", "money"), [
    ("CAD", "$10", Money(1000, "CAD")),
    ("AUD", "$10.50", Money(1050, "AUD")),
    ("USD", "$10", Money(1000, "USD")),
    ("INR", "$10", Money(1000, "USD")),
    ("CNY", "¥5.50", Money(550, "CNY")),
    ("JPY", "¥500", Money(500, "JPY")),
    ("EUR", "¥500", Money(500, "JPY")),
    ("BRL", "BRL 10", Money(1000, "BRL")),
])
def test_repro_11_symbols_mean_the_programs_currency(tmp_path, currency, literal, money) -> None:
    program, warnings = load(tmp_path, {
        "a.rule": f"RULE a IF x.y THEN ISSUE {literal}\n",
        "b.rule": f"CURRENCY {currency}\n",
    })
    assert program.rules[0].actions[0].amount == money
    assert warnings == []


def test_repro_11_an_undeclared_symbol_is_a_warning(tmp_path) -> None:
    program, warnings = load(tmp_path, {"a.rule": "RULE a IF x.y THEN ISSUE $10\n"})
    assert program.rules[0].actions[0].amount == Money(1000, "USD")
    assert warnings == ["$10 is read as USD, but $ also names other dollars (CAD, AUD, SGD...): "
                        "write CURRENCY USD, or USD 10"]


def test_repro_11_every_iso_currency_is_known() -> None:
    from dsl.money import exponent, parse_money
    assert parse_money("BRL 10") == Money(1000, "BRL")
    assert exponent("CLF") == 4 and exponent("BHD") == 3


def test_event_date_in_a_program_time_zone() -> None:
    from zoneinfo import ZoneInfo

    from dsl.timeutil import event_date
    assert {event_date(v, ZoneInfo("UTC")) for v in SAME_INSTANT} == {date(2026, 11, 16)}


# ---------------------------------------------------------------- the model of the new syntax

# rule_hash of every rule of rules/ at 569a91d, before HOLD ... FROM, WITHIN ... AFTER and
# PER person existed: the codec leaves their keys out when unused, so hashes stay.
HASHES_BEFORE = {
    "annual_plan_cashback": "05efad98c814c18e40b11c2d5f5d33c2286c6d72ac3576f9efce071062672583",
    "paid_referrer_bonus": "71d61fb0418cc83f5ca95a9eaee57afc62ec47019484569a02cd06e967ecec62",
    "gold_tier": "45cdf8064ce01ea8acc36fcca33ce3d75e9e16b0a792700d0b25fee272f6ab84",
    "silver_tier": "922e9eb7bc71ec7d65e32aca81041b3f8aecc31c1642d493334731259dba9b15",
    "free_referrer_welcome": "15bc8666d8b4f13cd78d0e661adea4169a56d97a8c43c72659f8674722dfd74a",
}


def test_rule_hash_unchanged_for_rules_without_the_new_syntax() -> None:
    from dataclasses import replace

    from dsl.codec import rule_hash
    rules = load_program([RULES_DIR]).program.rules
    assert {r.id for r in rules} == set(HASHES_BEFORE)
    for rule in rules:
        assert rule.hold_from == "referee.subscribed_at", rule.id  # rules/ says what it means
        assert rule_hash(replace(rule, hold_from=None)) == HASHES_BEFORE[rule.id], rule.id


NEW_SYNTAX = """\
CURRENCY CAD
TIMEZONE "America/Toronto"

RULE late "Late subscribers"
  IF referee.subscribed_at WITHIN 30 DAYS AFTER referral.created_at
  AND referee.trial_end WITHIN 3 DAYS BEFORE referee.subscribed_at
  THEN ISSUE $10 REWARD TO referrer
  AND ISSUE 5% OF referee.first_payment REWARD TO referee
  LIMIT $500 PER person PER MONTH
  HOLD 14 DAYS FROM referee.subscribed_at

EXAMPLE "late"
  GIVEN referral.created_at = "2026-01-01T10:00:00+05:30", referee.subscribed_at = 2026-01-20,
        referee.trial_end = 2026-01-18, referee.first_payment = 150000
  EXPECT ISSUE $10 TO referrer AND ISSUE $75 TO referee
"""


def test_new_syntax_round_trips_through_text_and_json(tmp_path) -> None:
    from compiler.text import format_program
    from dsl.codec import program_from_json, program_to_json
    from dsl.parser import parse_text
    program, warnings = load(tmp_path, {"p.rule": NEW_SYNTAX})
    assert warnings == []
    assert (program.currency, program.timezone) == ("CAD", "America/Toronto")
    rule = program.rules[0]
    assert rule.actions[0].amount == Money(1000, "CAD")
    assert (rule.limit.per, rule.hold_from) == ("person", "referee.subscribed_at")
    assert [w.direction for w in rule.condition.items] == ["after", "before"]
    loaded = load_program([tmp_path])
    assert format_program(loaded.files[tmp_path / "p.rule"]) == NEW_SYNTAX
    assert program_from_json(program_to_json(program)) == program
    assert parse_text(format_program(program)) == program  # the file says CURRENCY CAD
    assert [r.passed for r in run_examples(program)] == [True]


def test_dot_label_shows_hold_from() -> None:
    from compiler.dot import rule_to_dot
    from dsl.parser import parse_text
    rule = parse_text(NEW_SYNTAX).rules[0]
    assert 'label="HOLD 14 DAYS FROM\\nreferee.subscribed_at (pending)"' in rule_to_dot(rule)


def test_fmt_writes_usd_in_full_in_a_dollar_program() -> None:
    from compiler.text import format_program
    from dsl.parser import parse_text
    program = Program(rules=parse_text("RULE a IF x.y THEN ISSUE USD 5").rules, currency="CAD")
    assert "ISSUE USD 5 REWARD" in format_program(program)
    assert "ISSUE $5 REWARD" in format_program(parse_text("RULE a IF x.y THEN ISSUE USD 5"))


def test_settings_stated_twice_name_both_places(tmp_path) -> None:
    got = errors(tmp_path, {"a.rule": "CURRENCY INR\nTIMEZONE \"UTC\"\n",
                            "b.rule": "\n\nCURRENCY USD\n"})
    assert got == ["b.rule:3:1: error: CURRENCY is stated twice: here and at "
                   f"{tmp_path}/a.rule:1:1 (a program has one CURRENCY)".replace(
                       str(tmp_path) + "/", "")]


@pytest.mark.parametrize(("statement", "message"), [
    ("CURRENCY XYZ", "p.rule:1:10: error: unknown currency 'XYZ' (not an ISO 4217 code)"),
    ('TIMEZONE "Mars/Olympus"', "p.rule:1:10: error: unknown time zone 'Mars/Olympus' "
                                '(expected an IANA name like "Asia/Kolkata" or "UTC")'),
    ("RULE r IF x.y THEN ISSUE ₹1 LIMIT ₹5 PER anyone PER DAY",
     "p.rule:1:42: error: unknown LIMIT ... PER 'anyone' (expected referrer, referee or "
     "person)"),
])
def test_bad_settings_and_limits_are_errors(tmp_path, statement, message) -> None:
    assert errors(tmp_path, {"p.rule": statement + "\n"}) == [message]


def test_rule_id_longer_than_the_reference_budget_is_an_error(tmp_path) -> None:
    from dsl.model import MAX_RULE_ID_CHARS
    assert MAX_RULE_ID_CHARS == 255 - len("reversal:reward:") - 1 - 128 - 1 - 8 - 1 - 6 == 94
    long_id = "r" * 95
    got = errors(tmp_path, {"p.rule": f"RULE {'r' * 94} IF x.y THEN ISSUE ₹1\n"
                                      f"RULE {long_id} IF x.z THEN ISSUE ₹1 TO referee\n"})
    assert got == [f"p.rule:2:1: error: rule id {long_id} is 95 characters; ledger references "
                   "allow at most 94 (reversal:reward:<rule id>:<referral id>:<role>#<n> must "
                   "fit in 255 characters)"]


def test_schema_rule_id_length_is_the_reference_budget() -> None:
    from dsl.model import MAX_RULE_ID_CHARS
    from dsl.schema import model_schema
    assert model_schema()["$defs"]["rule"]["properties"]["id"]["maxLength"] == MAX_RULE_ID_CHARS


def test_json_model_with_an_unknown_currency_is_a_schema_error() -> None:
    from dsl.codec import program_from_json
    from dsl.errors import ModelSchemaError
    data = {"schema_version": 1, "definitions": [], "examples": [], "rules": [{
        "id": "r", "condition": {"and": [{"compare": {"path": "x.y", "op": "=",
                                                      "value": {"bool": True}}}]},
        "actions": [{"kind": "fixed", "to": "referrer",
                     "amount": {"amount": 1, "currency": "ZZZ"}}]}]}
    with pytest.raises(ModelSchemaError, match="m.json: unknown currency 'ZZZ'"):
        program_from_json(data, "m.json")


@pytest.mark.parametrize(("direction", "subscribed", "expected"), [
    ("OF", "2025-12-30", True), ("AFTER", "2025-12-30", False), ("BEFORE", "2025-12-30", True),
    ("AFTER", "2026-01-03", True), ("BEFORE", "2026-01-03", False), ("AFTER", "2026-01-05", False),
    ("AFTER", "2026-01-01", True), ("BEFORE", "2026-01-01", True),
])
@pytest.mark.parametrize("fast", [True, False])
def test_within_after_and_before(tmp_path, direction, subscribed, expected, fast) -> None:
    program, _ = load(tmp_path, {"p.rule": (
        f"RULE w IF referee.subscribed_at WITHIN 3 DAYS {direction} referral.created_at\n"
        "  THEN ISSUE ₹5 TO referrer\n")})
    ctx = {**PEOPLE, "referee": {"id": "B", "subscribed_at": subscribed},
           "referral": {"created_at": "2026-01-01"}}
    assert bool(evaluate(program, ctx, fast=fast)) is expected


# ---------------------------------------------------------------- examples in both forms

def test_example_in_record_form_catches_string_dates(tmp_path) -> None:
    # Literal dates compare as dates; as records hold them they must too.
    program, _ = load(tmp_path, {"p.rule": (
        "RULE late IF referee.subscribed_at >= referral.created_at THEN ISSUE ₹5 TO referrer\n"
        'EXAMPLE "same day" GIVEN referee.subscribed_at = 2026-02-09,\n'
        '  referral.created_at = "2026-02-09T10:00:00+05:30" EXPECT ISSUE ₹5 TO referrer\n'
    )})
    (result,) = run_examples(program)
    assert result.passed and result.form is None


def test_example_fails_when_one_form_fails(tmp_path) -> None:
    program, _ = load(tmp_path, {"p.rule": (
        "CURRENCY INR\n"
        "RULE share IF referee.subscribed\n"
        "  THEN ISSUE 10% OF referee.first_payment REWARD TO referrer\n"
        'EXAMPLE "in dollars" GIVEN referee.subscribed = true, referee.first_payment = $1,500\n'
        "  EXPECT ISSUE $150 TO referrer\n"
        'EXAMPLE "in rupees" GIVEN referee.subscribed = true, referee.first_payment = 150000\n'
        "  EXPECT ISSUE ₹150 TO referrer\n"
    )})
    first, second = run_examples(program)
    assert (first.passed, first.form) == (False, "literal")
    assert "expected money in INR, found money in USD" in (first.error or "")
    assert (second.passed, second.form) == (True, None)
