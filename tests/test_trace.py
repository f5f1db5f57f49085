"""Trace text: ``compiler.trace`` prints what ``rules eval`` prints, and the catalog's notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.trace import format_trace, step_note, step_text
from dsl.evaluate import compile_program
from dsl.program import load_program
from referral.cli import main

RULES_DIR = str(Path(__file__).parent.parent / "rules")

CONTEXTS = [
    {"referrer": {"id": "a", "plan": "paid"},
     "referee": {"id": "b", "subscribed": True, "country": "IN", "first_payment": 150000,
                 "subscribed_at": "2026-01-03"},
     "referral": {"created_at": "2026-01-01"}},
    {},
    {"referrer": {"id": "a", "plan": "paid"},
     "referee": {"id": "a", "subscribed": True, "country": "US", "first_payment": 2_000_000,
                 "subscribed_at": "2026-03-01", "refunded": True, "plan": "annual"},
     "referral": {"created_at": "2026-01-01"}},
    {"referrer": {"id": "r", "plan": "free"}, "referee": {"id": "e", "subscribed": True,
                                                          "first_payment": 600000}},
    # gold_tier pays the referrer and suppresses the paid bonus; the referee's share is capped
    {"referrer": {"id": "a", "plan": "paid"},
     "referee": {"id": "b", "subscribed": True, "country": "IN", "first_payment": 2_000_000,
                 "subscribed_at": "2026-01-03", "plan": "annual"},
     "referral": {"created_at": "2026-01-01"}},
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_format_trace_is_the_rules_eval_text(tmp_path: Path, context: dict) -> None:
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(context), encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "eval", RULES_DIR, "--context", str(path)])
    assert result.exit_code == 0, result.output
    program = load_program([RULES_DIR]).program
    compiled = compile_program(program, default_currency=program.default_currency())
    assert result.stdout == format_trace(compiled.evaluate(context, trace=True)) + "\n"


@pytest.mark.parametrize(
    ("step", "text", "note"),
    [
        ({"kind": "compare", "depth": 1, "path": "a.p", "op": "=", "expected": "paid",
          "actual": "free", "result": False},
         'a.p = "paid" (actual: "free") -> false', 'a.p was "free"'),
        ({"kind": "compare", "depth": 1, "path": "a.id", "op": "=", "expected": {"field": "b.id"},
          "actual": "x", "other_actual": "y", "result": False},
         'a.id = b.id (actual: "x" vs "y") -> false', 'a.id was "x", b.id was "y"'),
        ({"kind": "within", "depth": 0, "path": "a.d", "op": "WITHIN 3 DAYS OF",
          "expected": "b.d", "actual": None, "missing": True, "other_actual": "2026-01-01",
          "result": False, "reason": "a.d is missing"},
         "a.d WITHIN 3 DAYS OF b.d -> false (a.d is missing)", "a.d is missing"),
        ({"kind": "compare", "depth": 2, "path": "a.n", "op": ">", "expected": "₹1",
          "result": None, "reason": "not evaluated"},
         'a.n > "₹1" -> skipped (not evaluated)', "not evaluated"),
        ({"kind": "reverse_if", "depth": 0, "result": True}, "REVERSE IF -> true", ""),
        ({"kind": "action", "depth": 0, "result": None, "reason": "rounds down to nothing"},
         "action -> skipped (rounds down to nothing)", "rounds down to nothing"),
    ],
)
def test_step_text_and_note(step: dict, text: str, note: str) -> None:
    assert step_text(step) == text
    assert step_note(step) == note
