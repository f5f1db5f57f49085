"""The parser never crashes: any text either parses or raises the project's own error."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dsl.errors import RuleError
from dsl.model import Program
from dsl.parser import parse_text

RULES_DIR = Path(__file__).parent.parent / "rules"
VALID = [p.read_text(encoding="utf-8") for p in sorted(RULES_DIR.glob("*.rule"))]

# Pieces of the language, so that random text often gets deep into the grammar.
FRAGMENTS = [
    "RULE", "r1", "IF", "THEN", "AND", "OR", "NOT", "(", ")", "[", "]", ",", "=", "!=", ">=",
    "IS", "NULL", "IN", "CONTAINS", "WITHIN", "3", "DAYS", "OF", "ISSUE", "REWARD", "TO",
    "referrer", "referee", "UP", "₹500", "₹1,000.505", "10%", "a.b", "x.y.z", '"s"', '"',
    "DEFINE", "AS", "EXAMPLE", "GIVEN", "EXPECT", "NOTHING", "LIMIT", "PER", "MONTH", "HOLD",
    "REVERSE", "PRIORITY", "EXCLUSIVE", "2026-01-01", "2026-13-45", "1.5", "-7", "500 XYZ",
    "paid user", "#c\n", "\n", " ", "true", "$", "€10",
]

fuzz_settings = settings(max_examples=200, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow])


def parses_or_rule_error(text: str) -> None:
    try:
        result = parse_text(text, "fuzz.rule")
    except RuleError as e:
        assert e.diagnostics
        for d in e.diagnostics:
            assert d.pos is not None and d.pos.file == "fuzz.rule"
            assert d.pos.line >= 1 and d.pos.column >= 1
        return
    assert isinstance(result, Program)
    assert parse_text(text, "fuzz.rule") == result  # deterministic


@fuzz_settings
@given(st.text(max_size=200))
def test_fuzz_arbitrary_text(text):
    parses_or_rule_error(text)


@fuzz_settings
@given(st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(" ".join))
def test_fuzz_token_soup(text):
    parses_or_rule_error(text)


@fuzz_settings
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=8),
                       st.sampled_from(["", *FRAGMENTS]) | st.text(max_size=4)),
             min_size=1, max_size=4),
)
def test_fuzz_mutated_valid_programs(text, edits):
    for where, length, insert in edits:
        i = where % (len(text) + 1)
        text = text[:i] + insert + text[i + length:]
    parses_or_rule_error(text)
