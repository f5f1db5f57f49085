"""Rule texts, grammar-aware and random, long and deep: loading one (parse, resolve,
validate) raises only the project's own errors, and whatever loads also compiles,
evaluates, formats back to text that loads, renders to DOT that Graphviz's ``dot``
lays out, and runs its EXAMPLE blocks without any other exception.

Texts are not capped: random text and token soup run to thousands of characters;
generated programs have up to 40 rules over up to 100 fields, conditions nested up to
``DEEP`` levels (NOT chains, parentheses, AND/OR groups), long titles and literals.
Deeper nesting and huger literals crashed evaluation before ``rules check`` had bounds
(issue 18 item 7, ``dsl/bounds.py``): the cases at the end must be refused by the check
or run cleanly."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

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

DEEP = 100  # nesting the strict fuzz reaches; beyond ~150 is issue 18 item 7
DOT_SECONDS = {"short": 15.0, "full": 150.0}  # Graphviz time per test
# dot's layout time grows fast with a graph's size: a rule nested 100 AND/OR groups deep
# took over 120 s (found by this fuzz); bigger graphs are counted, not laid out.
DOT_LINES = 400

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


TITLE = st.text(st.characters(blacklist_characters='"\\\n\r',
                              whitelist_categories=("L", "N", "P", "S", "Zs")), max_size=2000)


def field_name(i: int) -> str:
    """Field names far apart, so that the typo check has nothing to suggest."""
    return "k" + hashlib.sha256(str(i).encode()).hexdigest()[:10]


# Each field has one type: its comparisons and literals follow it.
KINDS = ("number", "money", "text", "flag")
LITERALS = {
    "number": st.integers(-10**30, 10**30).map(str),
    "money": st.integers(0, 10**12).map(lambda n: f"₹{n:,}"),
    "text": TITLE.map(lambda t: f'"{t}"'),
    "flag": st.sampled_from(["true", "false"]),
}
OPERATORS = {"number": ["=", "!=", ">=", "<"], "money": ["=", ">=", "<"], "text": ["=", "!="],
             "flag": ["=", "!="]}


@st.composite
def conditions(draw: st.DrawFn, fields: int) -> str:
    """A comparison of fields, wrapped ``depth`` levels deep in one of three ways."""
    def leaf() -> str:
        i = draw(st.integers(0, fields - 1))
        kind = KINDS[i % len(KINDS)]
        return (f"referee.{field_name(i)} {draw(st.sampled_from(OPERATORS[kind]))} "
                f"{draw(LITERALS[kind])}")

    depth = draw(st.integers(0, DEEP))
    shape = draw(st.sampled_from(["not", "parens", "groups"]))
    if shape == "not":
        return "NOT " * depth + leaf()
    if shape == "parens":
        return "(" * depth + leaf() + ")" * depth
    ops = draw(st.lists(st.sampled_from(["AND", "OR"]), min_size=depth, max_size=depth))
    return "".join(f"({leaf()} {op} " for op in ops) + leaf() + ")" * depth


@st.composite
def big_programs(draw: st.DrawFn, most_rules: int = 40, most_fields: int = 100) -> str:
    """Many rules over many fields, each with a deep condition and a long title."""
    fields = draw(st.integers(1, most_fields))
    out = ["CURRENCY INR\n"]
    for i in range(draw(st.integers(1, most_rules))):
        out.append(f'RULE r{i} "{draw(TITLE)}"\n  PRIORITY {draw(st.integers(0, 10**6))}\n')
        if draw(st.booleans()):
            out.append("  EXCLUSIVE\n")
        out.append(f"  IF {draw(conditions(fields))}\n")
        out.append(f"  THEN ISSUE ₹{draw(st.integers(1, 10**9)):,} TO "
                   f"{draw(st.sampled_from(['referrer', 'referee']))}\n")
        if draw(st.booleans()):
            out.append(f"  LIMIT ₹{draw(st.integers(1, 10**9)):,} PER "
                       f"{draw(st.sampled_from(['referrer', 'referee', 'person']))} PER "
                       f"{draw(st.sampled_from(['DAY', 'MONTH', 'YEAR']))}\n")
        if draw(st.booleans()):
            out.append(f"  HOLD {draw(st.integers(0, 3650))} DAYS\n")
        if draw(st.booleans()):
            out.append(f"  REVERSE IF {draw(conditions(fields))}\n")
        out.append("\n")
    return "".join(out)


# Grammar-aware: whole programs from the model strategies written out as text, big ones
# written here, as they are or mutated; random: any text, soup of the language's tokens,
# mutated example programs.  Big programs are smaller in the short form (validation of
# many rules and fields is slow today: issue 18 item 8).
BIG = {"short": (8, 30), "full": (40, 100)}


def texts(scale: str) -> st.SearchStrategy[tuple[str, str]]:
    big = big_programs(*BIG[scale])
    grammar = st.one_of(
        programs(phrase_refs=True).map(format_program),
        st.builds(apply_edits, programs().map(format_program), edits),
        big,
        st.builds(apply_edits, big, edits),
    )
    random = st.one_of(
        st.text(max_size=3000),
        st.lists(st.sampled_from(FRAGMENTS), max_size=600).map(" ".join),
        st.builds(apply_edits, st.sampled_from(VALID), edits),
    )
    return st.one_of(grammar.map(lambda t: ("grammar-aware", t)),
                     random.map(lambda t: ("random", t)))


CONTEXT = {"referrer": {"id": "u1"}, "referee": {
    "id": "u2", **{field_name(i): [7, 700, "x", True][i % 4] for i in range(100)}}}


def load(path: Path, text: str) -> Any:
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    return load_program([path])


def dot_lays_out(source: str) -> None:
    """Graphviz accepts the DOT the project wrote (a syntax error is the project's bug)."""
    done = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and "Error" not in done.stderr, done.stderr[:500]


def test_rule_texts_raise_only_project_errors(scale, figure) -> None:
    assert shutil.which("dot"), "Graphviz's dot is not installed (make test installs it)"
    counts: Counter[str] = Counter()
    budget = time.monotonic() + DOT_SECONDS[scale.name]
    with tempfile.TemporaryDirectory() as tmp:
        path, again = Path(tmp) / "fuzz.rule", Path(tmp) / "formatted.rule"

        @settings(max_examples=scale.fuzz_examples, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(texts(scale.name))
        def check(case: tuple[str, str]) -> None:
            origin, text = case
            counts[origin] += 1
            counts["characters"] = max(counts["characters"], len(text))
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
            counts["most rules"] = max(counts["most rules"], len(program.rules))
            dumps(program)
            sources = program_to_dot(program)
            for source in list(sources.values())[:3]:
                if source.count("\n") > DOT_LINES:
                    counts["too big for dot"] += 1
                elif time.monotonic() < budget:
                    dot_lays_out(source)
                    counts["dot runs"] += 1
            try:
                compiled = compile_program(program, default_currency=program.default_currency())
                compiled.evaluate(CONTEXT)
                compiled.evaluate_closures(CONTEXT, trace=True)
                run_examples(program)
            except ReferralError:
                counts["refused to compile"] += 1
            # Canonical text of what loaded is itself a program that loads.
            load(again, format_program(program))
            counts["loaded"] += 1

        check()
    total = counts["grammar-aware"] + counts["random"]
    assert total >= scale.fuzz_examples * 0.9  # hypothesis ran (almost) all of them
    assert counts["loaded"] > 0 and counts["rejected"] > 0 and counts["dot runs"] > 0
    figure(
        f"rules fuzz: {total:,} rule texts ({counts['grammar-aware']:,} grammar-aware, "
        f"{counts['random']:,} random; up to {counts['characters']:,} characters, "
        f"{counts['most rules']} rules, nesting {DEEP} deep): {counts['loaded']:,} loaded, "
        f"compiled, evaluated, formatted, rendered ({counts['dot runs']:,} laid out by "
        f"Graphviz dot, {counts['too big for dot']:,} over {DOT_LINES} DOT lines not) and "
        f"their EXAMPLEs run; {counts['rejected']:,} rejected with the "
        "project's own errors; 0 other exceptions"
    )


def _rule(condition: str, extra: str = "") -> str:
    return f'CURRENCY INR\nRULE r "t"\n  IF {condition}\n  THEN ISSUE ₹1 TO referrer\n{extra}'


# The crashes issue 18 item 7 found: now refused by `rules check` (or run cleanly).


@pytest.mark.parametrize("text", [
    pytest.param(_rule("NOT " * 200 + "referee.x = 1"), id="200 nested NOTs"),
    pytest.param(_rule("NOT " * 600 + "referee.x = 1"), id="600 nested NOTs"),
    pytest.param(_rule("(referee.x = 1 AND " * 200 + "referee.x = 2" + ")" * 200),
                 id="200 nested AND groups"),
    pytest.param(_rule("referee.x = " + "9" * 5000), id="a 5,000-digit literal"),
    pytest.param("CURRENCY INR\n" + "".join(f'DEFINE "d{i}" AS "d{i - 1}"\n'
                                           for i in range(1, 3000))
                 + 'DEFINE "d0" AS referee.x = 1\nRULE r "t"\n  IF "d2999"\n'
                 "  THEN ISSUE ₹1 TO referrer\n", id="a 3,000-long DEFINE chain"),
])
def test_deep_or_huge_rule_text_raises_only_project_errors(text: str, tmp_path: Path) -> None:
    try:
        loaded = load(tmp_path / "deep.rule", text)
    except ReferralError:
        return  # refused by rules check: what issue 18 item 7 asks for
    program = loaded.program
    compiled = compile_program(program, default_currency=program.default_currency())
    compiled.evaluate(CONTEXT)
    for source in program_to_dot(program).values():
        dot_lays_out(source)
    load(tmp_path / "again.rule", format_program(program))
