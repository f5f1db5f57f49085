"""Ten thousand rule texts, grammar-aware and random: loading one (parse, resolve, validate)
raises only the project's own errors, and whatever loads also compiles, formats back to text
that loads, renders, and runs its EXAMPLE blocks without any other exception."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.dot import program_to_dot
from compiler.text import format_program
from dsl.codec import dumps
from dsl.errors import ReferralError, RuleError
from dsl.evaluate import compile_program
from dsl.examples import run_examples
from dsl.program import load_program
from tests.strategies import programs
from tests.test_parser_fuzz import FRAGMENTS, VALID

pytestmark = pytest.mark.faults

edits = st.lists(
    st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=8),
              st.sampled_from(["", *FRAGMENTS]) | st.text(max_size=4)),
    min_size=1, max_size=4,
)


def apply_edits(text: str, changes: list[tuple[int, int, str]]) -> str:
    for where, length, insert in changes:
        i = where % (len(text) + 1)
        text = text[:i] + insert + text[i + length:]
    return text


# Grammar-aware: whole programs from the model strategies written out as text, as they are
# or mutated; random: any text, soup of the language's tokens, mutated example programs.
GRAMMAR = st.one_of(
    programs(phrase_refs=True).map(format_program),
    st.builds(apply_edits, programs().map(format_program), edits),
)
RANDOM = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(FRAGMENTS), max_size=60).map(" ".join),
    st.builds(apply_edits, st.sampled_from(VALID), edits),
)
TEXTS = st.one_of(GRAMMAR.map(lambda t: ("grammar-aware", t)), RANDOM.map(lambda t: ("random", t)))


def load(path: Path, text: str):
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return load_program([path])


def test_rule_texts_raise_only_project_errors(scale, figure) -> None:
    counts: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        path, again = Path(tmp) / "fuzz.rule", Path(tmp) / "formatted.rule"

        @settings(max_examples=scale.fuzz_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(TEXTS)
        def check(case: tuple[str, str]) -> None:
            origin, text = case
            counts[origin] += 1
            try:
                loaded = load(path, text)
            except RuleError as e:
                assert e.diagnostics
                for d in e.diagnostics:
                    assert d.pos is None or d.pos.file == str(path), d.line()
                counts["rejected"] += 1
                return
            except ReferralError:
                counts["rejected"] += 1
                return
            program = loaded.program
            dumps(program)
            program_to_dot(program)
            try:
                compile_program(program, default_currency=program.default_currency())
                run_examples(program)
            except ReferralError:
                counts["refused to compile"] += 1
            # Canonical text of what loaded is itself a program that loads.
            load(again, format_program(program))
            counts["loaded"] += 1

        check()
    total = counts["grammar-aware"] + counts["random"]
    assert total >= scale.fuzz_examples * 0.9  # hypothesis ran (almost) all of them
    assert counts["loaded"] > 0 and counts["rejected"] > 0
    figure(
        f"rules fuzz: {total:,} rule texts ({counts['grammar-aware']:,} grammar-aware, "
        f"{counts['random']:,} random): {counts['loaded']:,} loaded, compiled, formatted, "
        f"rendered and their EXAMPLEs run; {counts['rejected']:,} rejected with the project's "
        f"own errors; 0 other exceptions"
    )
