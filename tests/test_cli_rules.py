from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from referral.cli import main

RULES_DIR = str(Path(__file__).parent.parent / "rules")


def run(*args: str):
    return CliRunner().invoke(main, ["rules", *args])


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_shipped_rules_ok():
    result = run("check", RULES_DIR, "--strict")
    assert result.exit_code == 0, result.output
    assert result.stdout == "OK: 5 rules, 6 definitions, 14 examples in 5 files\n"
    assert result.stderr == ""


def test_check_prints_every_error_of_every_file(tmp_path):
    a = write(tmp_path, "a.rule", "RULE a IF x.y = 1 ISSUE ₹5\n")
    b = write(tmp_path, "b.rule",
              "RULE b\n  IF x.y THEN ISSUE ₹1.001\nRULE b IF x.y THEN ISSUE ₹1\n")
    result = run("check", a, b)
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{a}:1:19: error: unexpected 'ISSUE', expected one of: AND, OR, THEN\n"
        f"{b}:2:21: error: 1.001 INR has more decimals than INR allows (2)\n"
    )


def test_check_validation_errors(tmp_path):
    a = write(tmp_path, "a.rule", 'DEFINE "paid user" AS x.plan = "paid"\n'
                                  "RULE a IF paid usr THEN ISSUE ₹5\nRULE a IF x.y THEN ISSUE ₹5\n")
    result = run("check", a)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f'{a}:2:11: error: phrase "paid usr" is not defined; did you mean "paid user"?',
        f'{a}:3:1: error: duplicate rule id "a" (first defined at {a}:2:1)',
    ]


def test_check_warnings_exit_zero_unless_strict(tmp_path):
    a = write(tmp_path, "a.rule", "RULE a IF x.y THEN ISSUE ₹5\nRULE b IF x.z THEN ISSUE ₹5\n")
    warning = (f"{a}:2:1: warning: rules a and b have equal priority 0 and can both pay the "
               f"referrer; mark one EXCLUSIVE or give them different priorities (a is at {a}:1:1)")
    result = run("check", a)
    assert result.exit_code == 0
    assert result.stderr == warning + "\n"
    assert result.stdout.startswith("OK: 2 rules")
    strict = run("check", "--strict", a)
    assert strict.exit_code == 1
    assert strict.stderr == warning + "\n"
    assert strict.stdout == ""


def test_check_usage_errors_exit_2(tmp_path):
    assert run("check").exit_code == 2
    assert run("check", str(tmp_path / "missing.rule")).exit_code == 2


def test_test_shipped_rules_pass():
    result = run("test", RULES_DIR)
    assert result.exit_code == 0, result.output
    assert result.stdout.endswith("14 passed, 0 failed\n")
    assert "PASS paid referrer, subscribed referee (" in result.stdout


def test_test_failure_shows_expected_and_actual(tmp_path):
    a = write(tmp_path, "a.rule", 'RULE a IF x.y THEN ISSUE ₹5 TO referee\n'
                                  'EXAMPLE "good" GIVEN x.y = true EXPECT ISSUE ₹5 TO referee\n'
                                  'EXAMPLE "bad" GIVEN x.y = true EXPECT NOTHING\n')
    result = run("test", a)
    assert result.exit_code == 1
    assert result.stdout == (
        f"PASS good ({a}:2:1)\n"
        f"FAIL bad ({a}:3:1)\n"
        "  expected: NOTHING\n"
        "  actual:   ISSUE ₹5 TO referee\n"
        "1 passed, 1 failed\n"
    )


def test_test_rule_errors_exit_1(tmp_path):
    a = write(tmp_path, "a.rule", "RULE a IF THEN\n")
    result = run("test", a)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{a}:1:11: error: unexpected 'THEN'")


CONTEXT = {
    "referrer": {"id": "a", "plan": "paid"},
    "referee": {"id": "b", "subscribed": True, "country": "IN", "first_payment": 150000,
                "subscribed_at": "2026-01-03"},
    "referral": {"created_at": "2026-01-01"},
}


def test_eval_prints_trace(tmp_path):
    ctx = write(tmp_path, "ctx.json", json.dumps(CONTEXT))
    result = run("eval", RULES_DIR, "--context", ctx)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "rule paid_referrer_bonus: matched\n" in out
    assert "    referrer.plan = \"paid\" (actual: \"paid\") -> true\n" in out
    assert "referee.refunded = true -> false (referee.refunded is missing)" in out
    assert "      referee.id = referrer.id (actual: \"b\" vs \"a\") -> false\n" in out
    assert out.endswith("rewards:\n  paid_referrer_bonus: ISSUE ₹500 TO referrer\n"
                        "  paid_referrer_bonus: ISSUE ₹150 TO referee\n")


def test_eval_json(tmp_path):
    ctx = write(tmp_path, "ctx.json", json.dumps(CONTEXT))
    result = run("eval", RULES_DIR, "--context", ctx, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["rewards"] == [
        {"rule_id": "paid_referrer_bonus", "role": "referrer", "amount": 50000,
         "currency": "INR", "capped": False},
        {"rule_id": "paid_referrer_bonus", "role": "referee", "amount": 15000,
         "currency": "INR", "capped": False},
    ]
    assert [o["rule_id"] for o in data["outcomes"]][:3] == [
        "gold_tier", "silver_tier", "paid_referrer_bonus"]


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("{not json", "error: {ctx}: cannot read context: Expecting property name"),
        ("[1]", "error: {ctx}: the context must be a JSON object"),
        (json.dumps({"referee": {"subscribed": True, "first_payment": "lots"}}),
         "error: rule gold_tier: referee.first_payment: expected a money amount, "
         "found the string 'lots'"),
        (json.dumps({"referee": {"subscribed": True, "first_payment": 1.5}}),
         "error: rule gold_tier: referee.first_payment: expected a money amount, found "
         "the decimal 1.5"),
    ],
)
def test_eval_bad_context_exit_1(tmp_path, context, message):
    ctx = write(tmp_path, "ctx.json", context)
    result = run("eval", RULES_DIR, "--context", ctx)
    assert result.exit_code == 1
    assert result.stderr.startswith(message.format(ctx=ctx))


def test_eval_currency_option(tmp_path):
    a = write(tmp_path, "a.rule", "RULE a IF x.m >= $1 THEN ISSUE $1\n"
                                  "RULE b PRIORITY 1 IF x.n THEN ISSUE ₹1\n")
    ctx = write(tmp_path, "ctx.json", json.dumps({"x": {"m": 100}}))
    assert run("eval", a, "--context", ctx).exit_code == 1
    result = run("eval", a, "--context", ctx, "--currency", "usd")
    assert result.exit_code == 0, result.output
    assert "a: ISSUE $1 TO referrer" in result.stdout
