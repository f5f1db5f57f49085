"""Text -> model -> text: the formatter and the parser agree (sqlglot's validate_identity)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from compiler.text import format_program
from dsl.parser import parse_text
from tests.strategies import programs
from tests.test_text import ISSUE_EXAMPLE, ISSUE_PROGRAM

ROUND_TRIP = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def validate_identity(text: str) -> None:
    """Canonical text parses and formats back to itself."""
    assert format_program(parse_text(text, "t.rule")) == text


def test_roundtrip_issue_example_parses_to_model():
    assert parse_text(ISSUE_EXAMPLE, "t.rule") == ISSUE_PROGRAM


def test_roundtrip_issue_example_identity():
    validate_identity(ISSUE_EXAMPLE)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (
            "if referrer is a paid user and referred user subscribes then issue ₹500 reward",
            "RULE t_1\n  IF referrer is a paid user\n  AND referred user subscribes\n"
            "  THEN ISSUE ₹500 REWARD TO referrer\n",
        ),
        (
            'rule r "x" priority 2 exclusive if a.b == 1 or (c.d <> "x" and not e.f) '
            "then issue INR 5 to referee and issue 2.5% of a.b up to 100 inr "
            "limit 1000 INR per referee per ever hold 1 day reverse if a.b in [1,2,]",
            'RULE r "x"\n  PRIORITY 2\n  EXCLUSIVE\n  IF a.b = 1\n'
            '  OR c.d != "x" AND NOT e.f = true\n'
            "  THEN ISSUE ₹5 REWARD TO referee\n"
            "  AND ISSUE 2.5% OF a.b REWARD TO referrer UP TO ₹100\n"
            "  LIMIT ₹1,000 PER referee PER EVER\n  HOLD 1 DAYS\n  REVERSE IF a.b IN [1, 2]\n",
        ),
        (
            'example "e" given a.b = USD 5.00 and c.d = [true, null] expect issue $5 reward',
            'EXAMPLE "e"\n  GIVEN a.b = $5, c.d = [true, null]\n  EXPECT ISSUE $5 TO referrer\n',
        ),
        (
            '# lead\nDEFINE "a  quoted \\"one\\"" AS x.y WITHIN 3 DAYS OF z.w  # why\n',
            '# lead\n# why\nDEFINE "a quoted \\"one\\"" AS x.y WITHIN 3 DAYS OF z.w\n',
        ),
    ],
)
def test_roundtrip_sugar_formats_canonically(text, canonical):
    assert format_program(parse_text(text, "t.rule")) == canonical
    validate_identity(canonical)


def test_roundtrip_comments_survive():
    text = "# top\nRULE r\n  # inside\n  IF a.b = 1\n  THEN ISSUE ₹1 REWARD TO referrer\n# tail\n"
    program = parse_text(format_program(parse_text(text, "t.rule")), "t.rule")
    assert program.rules[0].comments == ("# top", "# inside", "# tail")


def test_roundtrip_keeps_the_blank_line_after_a_file_header():
    text = "# header\n\nRULE r\n  IF a.b = 1\n  THEN ISSUE ₹1 REWARD TO referrer\n"
    assert format_program(parse_text(text, "t.rule")) == text


@ROUND_TRIP
@given(programs())
def test_roundtrip_resolved_program(program):
    text = format_program(program)
    parsed = parse_text(text, "t.rule")
    assert parsed == program
    assert format_program(parsed) == text


@ROUND_TRIP
@given(programs(phrase_refs=True))
def test_roundtrip_program_with_phrases(program):
    text = format_program(program)
    parsed = parse_text(text, "t.rule")
    assert parsed == program
    assert format_program(parsed) == text


RULE_FILES = sorted((Path(__file__).parent.parent / "rules").glob("*.rule"))


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_roundtrip_example_program_files(path):
    original = parse_text(path.read_text(encoding="utf-8"), path.name)
    text = format_program(original)
    reparsed = parse_text(text, path.name)
    assert reparsed == original
    assert [r.comments for r in reparsed.rules] == [r.comments for r in original.rules]
    assert [e.comments for e in reparsed.examples] == [e.comments for e in original.examples]
    assert format_program(reparsed) == text
