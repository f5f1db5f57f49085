"""Rules that cannot crash: what ``rules check`` accepts evaluates, and what it refuses
is a positioned error (issue 18 items 7 and 8, and ASCII digits in literals)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compiler.dot import program_to_dot
from compiler.js import program_js
from compiler.text import format_program
from dsl.bounds import MAX_DAYS, MAX_NESTING, MAX_NUMBER_DIGITS, MAX_PHRASE_DEPTH, MAX_PRIORITY
from dsl.codec import dumps, program_from_json
from dsl.errors import EvaluationError, MoneyError, RuleError
from dsl.evaluate import compile_program, nest_context
from dsl.evaluate.codegen import INLINE_DEPTH
from dsl.money import parse_money
from dsl.parser import parse_text
from dsl.program import check_texts, load_program
from referral.cli import main


def first_error(text: str) -> tuple[str, int, int]:
    with pytest.raises(RuleError) as info:
        parse_text(text, "f.rule")
    d = info.value.diagnostics[0]
    assert d.pos is not None
    return d.message, d.pos.line, d.pos.column


# ---------------------------------------------------------------- ASCII digits only

@pytest.mark.parametrize(
    ("literal", "digit", "col"),
    [
        ("₹1٥0", "U+0665 ARABIC-INDIC DIGIT FIVE", 19),
        ("₹𝟓𝟎𝟎", "U+1D7D3 MATHEMATICAL BOLD DIGIT FIVE", 18),
        ("INR ١٠٠", "U+0661 ARABIC-INDIC DIGIT ONE", 21),
        ("१२", "U+0967 DEVANAGARI DIGIT ONE", 17),
        ("1.٥", "U+0665 ARABIC-INDIC DIGIT FIVE", 19),
        ("２０２６-01-01", "U+FF12 FULLWIDTH DIGIT TWO", 17),
    ],
)
def test_literal_non_ascii_digit_refused_at_the_digit(literal, digit, col):
    message, line, column = first_error(f"RULE a IF x.y = {literal} THEN ISSUE ₹5")
    assert message == (f"{digit} is not an ASCII digit: numbers, amounts and dates are "
                       "written with 0-9")
    assert (line, column) == (1, col)


@pytest.mark.parametrize(
    "text",
    [
        "RULE a IF x.y = 1 THEN ISSUE ₹٥",
        "RULE a IF x.y = 1 THEN ISSUE ٥% OF x.z",
        "RULE a IF x.y = 1 THEN ISSUE ₹5 HOLD ٣ DAYS",
        "RULE a PRIORITY ٣ IF x.y = 1 THEN ISSUE ₹5",
        "RULE a IF x.y WITHIN ٣ DAYS OF x.z THEN ISSUE ₹5",
    ],
)
def test_every_number_position_refuses_non_ascii_digits(text):
    message, _line, _col = first_error(text)
    assert "is not an ASCII digit" in message


def test_ascii_digits_and_unicode_strings_still_parse():
    program = parse_text('RULE a IF x.y = ₹150 AND x.n = "١٥٠" THEN ISSUE ₹5', "f.rule")
    assert program.rules[0].actions[0].amount.amount == 500


@pytest.mark.parametrize("text", ["₹1٥0", "₹𝟓𝟎𝟎", "INR ١٠٠", "१२ INR"])
def test_parse_money_refuses_non_ascii_digits(text):
    with pytest.raises(MoneyError):
        parse_money(text)


# ---------------------------------------------------------------- bounds: nothing check
# accepts can crash rules test or settlement; one beyond each bound is a positioned error

def rule_text(cond: str, clauses: str = "", given: str = 'referee.x = 1') -> str:
    return (f"RULE r1\n  IF {cond}\n  THEN ISSUE ₹500 REWARD TO referrer\n  {clauses}\n\n"
            f'EXAMPLE "e"\n  GIVEN referrer.id = "u1", referee.id = "u2", {given}\n'
            "  EXPECT ISSUE ₹500 TO referrer\n")


def even_nots(n: int) -> str:
    """``n`` nested NOTs around a true comparison; true when ``n`` is even."""
    return "NOT " * n + "referee.x = 1"


def groups(n: int) -> str:
    """``n`` nested parenthesised AND/OR groups, true when referee.x = 1."""
    cond = "referee.x = 1"
    for i in range(n):
        cond = f"({cond} OR referee.y = 2)" if i % 2 else f"({cond} AND referee.x >= 1)"
    return cond


def lists(n: int) -> str:
    return "referee.tags CONTAINS 1 OR referee.x IN " + "[" * n + "1" + "]" * n


def chain(n: int) -> str:
    """A DEFINE chain: p1 is a comparison, each next phrase is the one before."""
    lines = ['DEFINE "p1" AS referee.x = 1']
    lines += [f'DEFINE "p{i}" AS "p{i - 1}"' for i in range(2, n + 1)]
    return "\n".join(lines) + "\n"


def check(tmp_path, text: str):
    path = tmp_path / "deep.rule"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["rules", "check", str(path)]), str(path)


def test_bounds_are_documented_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for figure in (MAX_NESTING, MAX_PHRASE_DEPTH, MAX_NUMBER_DIGITS, f"{MAX_DAYS:,}",
                   f"{MAX_PRIORITY:,}"):
        assert str(figure) in readme


@pytest.mark.parametrize(
    ("text", "message", "line", "col"),
    [
        (rule_text(even_nots(MAX_NESTING + 1)),
         f"conditions nest {MAX_NESTING + 1} deep here (at most {MAX_NESTING} levels of AND, "
         "OR, NOT and lists)", 2, 6 + 4 * MAX_NESTING),
        (rule_text(even_nots(600)), "conditions nest", 2, 6 + 4 * MAX_NESTING),
        (rule_text(even_nots(5000)), "conditions nest", 2, 6 + 4 * MAX_NESTING),
        # A group is placed at its first condition, a list at its bracket.
        (rule_text(groups(MAX_NESTING + 1)), "conditions nest", 2, 7 + MAX_NESTING),
        (rule_text(groups(300)), "conditions nest", 2, 7 + MAX_NESTING),
        (rule_text(lists(MAX_NESTING)), "conditions nest", 2, 45 + MAX_NESTING),
        (rule_text("referee.x = 1", "HOLD 3000000 DAYS"),
         f"HOLD 3000000 DAYS is more than {MAX_DAYS:,} days", 4, 3),
        (rule_text("referee.x = 1", f"HOLD {MAX_DAYS + 1} DAYS"), "HOLD", 4, 3),
        (rule_text(f"referee.x WITHIN {MAX_DAYS + 1} DAYS OF referee.y"),
         f"WITHIN {MAX_DAYS + 1} DAYS is more than {MAX_DAYS:,} days", 2, 6),
        (rule_text("referee.x = " + "9" * 5000),
         f"a number has at most {MAX_NUMBER_DIGITS} digits, this one 5000", 2, 18),
        (rule_text("referee.x = " + "9" * (MAX_NUMBER_DIGITS + 1)), "a number has", 2, 18),
        (rule_text("referee.x = 1." + "9" * MAX_NUMBER_DIGITS), "a number has", 2, 18),
        (rule_text("referee.p = ₹" + "9" * 5000), "a number has", 2, 18),
        (rule_text("referee.x = 1").replace("ISSUE ₹500 REWARD", "ISSUE 1." + "0" * 40 + "%"
                                            " OF referee.p REWARD"), "a number has", 3, 14),
        (f"RULE r1 PRIORITY {MAX_PRIORITY + 1} IF referee.x = 1 THEN ISSUE ₹5\n",
         f"PRIORITY must be between -{MAX_PRIORITY:,} and {MAX_PRIORITY:,}", 1, 9),
        (f"RULE r1 PRIORITY {'9' * 5000} IF referee.x = 1 THEN ISSUE ₹5\n",
         "a number has", 1, 18),
        (chain(MAX_PHRASE_DEPTH + 1) + rule_text(f'"p{MAX_PHRASE_DEPTH + 1}"'),
         f'phrase "p{MAX_PHRASE_DEPTH + 1}" is defined through {MAX_PHRASE_DEPTH + 1} nested '
         f"phrases (at most {MAX_PHRASE_DEPTH})", MAX_PHRASE_DEPTH + 1, 1),
        (chain(3000) + rule_text('"p3000"'), 'phrase "p33" is defined through 33', 33, 1),
        ('DEFINE "deep" AS ' + even_nots(40) + "\n" + rule_text('NOT ' * 30 + '"deep"'),
         f"rule r1: its condition nests 70 deep once its phrases are expanded (at most "
         f"{MAX_NESTING})", 2, 1),
    ],
)
def test_check_refuses_beyond_each_bound(tmp_path, text, message, line, col):
    result, path = check(tmp_path, text)
    assert result.exit_code == 1, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{line}:{col}: error: {message}"), first
    assert "Traceback" not in result.output


def at_bounds_text() -> str:
    """One program at every bound at once."""
    digits = "9" * MAX_NUMBER_DIGITS
    deepest_list = "[" * (MAX_NESTING - 2) + "1" + "]" * (MAX_NESTING - 2)
    return (
        chain(MAX_PHRASE_DEPTH)
        + f"RULE deep PRIORITY {MAX_PRIORITY}\n"
        f"  IF {'NOT ' * (MAX_NESTING - 1)}referee.x = 2\n"
        f"  AND {groups(MAX_NESTING - 1)}\n  AND NOT referee.x = {digits}\n"
        f"  AND (referee.x = 1 OR referee.l IN {deepest_list})\n"
        f'  AND "p{MAX_PHRASE_DEPTH}"\n'
        f"  AND referee.d WITHIN {MAX_DAYS} DAYS OF referral.d\n"
        f"  THEN ISSUE ₹500 REWARD TO referrer\n  HOLD {MAX_DAYS} DAYS\n"
        f"RULE low PRIORITY -{MAX_PRIORITY} IF referee.x = 1 THEN ISSUE ₹{digits[:16]} TO referee\n"
        'EXAMPLE "at the bounds"\n'
        '  GIVEN referrer.id = "u1", referee.id = "u2", referee.x = 1, referee.y = 2,\n'
        "        referee.d = 2026-01-01, referral.d = 2025-12-01\n"
        f"  EXPECT ISSUE ₹500 TO referrer AND ISSUE ₹{int(digits[:16]):,} TO referee\n"
    )


def test_program_at_every_bound_checks_tests_and_evaluates(tmp_path, monkeypatch):
    text = at_bounds_text()
    result, path = check(tmp_path, text)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["rules", "test", path])
    assert result.exit_code == 0, result.output
    assert "1 passed, 0 failed" in result.stdout
    program = load_program([path]).program
    compiled = compile_program(program)
    ctx = nest_context(pairs({"referrer.id": "u1", "referee.id": "u2", "referee.x": 1,
                        "referee.y": 2, "referee.d": "2026-01-01", "referral.d": "2025-12-01"}))
    fast, traced = compiled.evaluate(ctx), compiled.evaluate(ctx, trace=True)
    assert [r.amount for r in fast.rewards] == [r.amount for r in traced.rewards]
    assert [r.rule_id for r in fast.rewards] == ["deep", "low"]
    # Every human-readable output of what check accepts.
    unresolved = parse_text(text, path)
    assert parse_text(format_program(unresolved), path) == unresolved
    assert all(dot for dot in program_to_dot(program).values())
    assert program_from_json(json.loads(dumps(program))) == program
    assert program_js(program)
    # The catalog, its Graphviz step stubbed (the dot program is not always installed).
    import compiler.catalog

    monkeypatch.setattr(compiler.catalog.shutil, "which", lambda _name: "/usr/bin/dot")
    monkeypatch.setattr(compiler.catalog, "_pipe_svg",
                        lambda digraph, _id: digraph.source and '<svg width="9pt"></svg>')
    built = compiler.catalog.build_catalog(load_program([path]), tmp_path / "site")
    assert set(built.pages) == {"deep", "low"} and built.examples_passed == 1


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(st.lists(st.sampled_from(["not", "and", "or", "list"]), min_size=MAX_NESTING,
                max_size=MAX_NESTING))
def test_fuzz_nesting_at_the_bound_evaluates_one_beyond_is_refused(kinds):
    lists_deep = kinds.count("list")
    cond = "referee.x IN " + "[" * lists_deep + "1" + "]" * lists_deep if lists_deep else (
        "referee.x = 1")
    for kind in (k for k in kinds if k != "list"):
        cond = {"not": f"NOT {cond}", "and": f"({cond} AND referee.y = 2)",
                "or": f"({cond} OR referee.y = 2)"}[kind]
    program = load_texts(rule_text(cond))
    compiled = compile_program(program)
    for x in (1, [1], 2):
        ctx = nest_context(pairs({"referrer.id": "u1", "referee.id": "u2", "referee.x": x,
                            "referee.y": 2}))
        assert outcome(compiled, ctx, trace=False) == outcome(compiled, ctx, trace=True)
    assert program_to_dot(program)
    with pytest.raises(RuleError, match="conditions nest"):
        load_texts(rule_text(f"NOT {cond}"))


def outcome(compiled, ctx, *, trace: bool):
    """The rewards, or the record's error: the generated path and the closures agree."""
    try:
        return compiled.evaluate(ctx, trace=trace).rewards
    except EvaluationError as e:
        return str(e)


def pairs(values: dict):
    return values.items()


def load_texts(text: str):
    checked = check_texts({Path("f.rule"): text})
    if checked.errors:
        raise RuleError(checked.errors)
    return checked.resolved


def test_codegen_handles_the_deepest_condition_python_cannot_parse_inline():
    program = load_texts(rule_text(even_nots(MAX_NESTING)) + rule_text(groups(MAX_NESTING))
                         .replace("r1", "r2").replace('"e"', '"f"'))
    compiled = compile_program(program)
    ctx = nest_context(pairs({"referrer.id": "u1", "referee.id": "u2", "referee.x": 1}))
    assert [r.rule_id for r in compiled.evaluate(ctx).rewards] == ["r1", "r2"]
    # Beyond INLINE_DEPTH the generated code calls the closure of the group.
    assert compiled.source.count("(not ") == INLINE_DEPTH
    assert "_cond" in compiled.source


def json_model(condition: dict, **rule: object) -> dict:
    return {"schema_version": 1, "definitions": [], "examples": [],
            "rules": [{"id": "r1", "condition": condition,
                       "actions": [{"kind": "fixed", "to": "referrer",
                                    "amount": {"amount": 500, "currency": "INR"}}], **rule}]}


def nested_not(n: int) -> dict:
    cond: dict = {"compare": {"path": "referee.x", "op": "=", "value": {"int": 1}}}
    for _ in range(n):
        cond = {"not": cond}
    return cond


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (json_model(nested_not(MAX_NESTING + 1)),
         f"rule r1: its condition nests {MAX_NESTING + 1} deep (at most {MAX_NESTING})"),
        (json_model(nested_not(900)), "conditions nest too deep"),
        (json_model(nested_not(1), hold_days=MAX_DAYS + 1), "hold_days"),
        (json_model(nested_not(1), priority=MAX_PRIORITY + 1), "priority"),
    ],
)
def test_json_model_beyond_a_bound_is_refused(tmp_path, model, message):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(model), encoding="utf-8")
    result = CliRunner().invoke(main, ["rules", "check", str(path)])
    assert result.exit_code == 1, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_json_model_at_the_nesting_bound_loads(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps(json_model(nested_not(MAX_NESTING))), encoding="utf-8")
    assert load_program([path]).program.rules[0].id == "r1"


def test_limit_beyond_a_ledger_amount_is_refused(tmp_path):
    limit = f"LIMIT ₹{'9' * 20} PER referrer PER MONTH"
    result, path = check(tmp_path, rule_text("referee.x = 1", limit))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{path}:4:9: error: rule r1: LIMIT must be at most "
                                    f"{2**63 - 1} minor units")


# ---------------------------------------------------------------- linear validation

def warnings_of(text: str) -> list[str]:
    return [d.message for d in check_texts({Path("f.rule"): text}).warnings]


def test_equal_priority_warnings_are_one_per_priority():
    text = "".join(f"RULE r{i} IF x.f{i} THEN ISSUE ₹5\n" for i in range(4))
    text += "RULE s1 PRIORITY 5 IF x.a THEN ISSUE ₹5\nRULE s2 PRIORITY 5 IF x.b THEN ISSUE ₹5\n"
    got = [w for w in warnings_of(text) if "priority" in w]
    assert got == [
        "4 rules of equal priority 0 can pay the referrer twice for one referral: r0, r1, r2, "
        "r3; mark them EXCLUSIVE or give them different priorities (rules catalog lists each "
        "pair)",
        "rules s1 and s2 have equal priority 5 and can both pay the referrer; mark one "
        "EXCLUSIVE or give them different priorities (s1 is at f.rule:5:1)",
    ]


def test_equal_priority_warning_names_ten_rules_and_counts_the_rest():
    text = "".join(f"RULE r{i:02d} IF x.f{i} THEN ISSUE ₹5\n" for i in range(25))
    (got,) = [w for w in warnings_of(text) if "priority" in w]
    assert ": r00, r01, r02, r03, r04, r05, r06, r07, r08, r09 and 15 more;" in got


def test_equal_priority_disjoint_equalities_are_not_double_pays():
    tiers = "".join(f'RULE c{i} IF referee.country = "C{i}" THEN ISSUE ₹5\n' for i in range(300))
    assert not [w for w in warnings_of(tiers) if "priority" in w]
    both = tiers + 'RULE paid IF referee.plan = "paid" THEN ISSUE ₹5\n'
    (got,) = [w for w in warnings_of(both) if "priority" in w]
    assert got.startswith("301 rules of equal priority 0 can pay the referrer twice")


def count_calls(monkeypatch, name: str) -> list[int]:
    import dsl.validate

    calls = [0]
    real = getattr(dsl.validate, name)

    def counted(*args):
        calls[0] += 1
        return real(*args)

    monkeypatch.setattr(dsl.validate, name, counted)
    return calls


def test_equal_priority_check_is_linear(monkeypatch):
    n = 400
    calls = count_calls(monkeypatch, "_contradict")
    text = "".join(f'RULE r{i} IF x.f{i} >= {i} AND x.plan = "paid" THEN ISSUE ₹5\n'
                   for i in range(n))
    warnings_of(text)
    assert calls[0] <= 10 * n  # pairwise: n * (n - 1) / 2 pairs of 2 x 2 conjuncts


def test_typo_check_is_linear(monkeypatch):
    import random

    rng = random.Random(5)
    n = 1000
    names = {"".join(rng.choice("abcdefghij") for _ in range(8)) for _ in range(n)}
    calls = count_calls(monkeypatch, "edit_distance")
    text = "".join(f"RULE r{i} PRIORITY {i} IF referee.{name} THEN ISSUE ₹5\n"
                   for i, name in enumerate(sorted(names)))
    warnings_of(text)
    assert calls[0] <= 5 * n  # pairwise: every path used once against every other


def typo_oracle(counts: dict[str, int]) -> dict[str, str]:
    """The pairwise typo check (before the index), for paths used once."""
    from collections import defaultdict

    from dsl.validate import _distinct_on_purpose, edit_distance

    segment_paths = defaultdict(set)
    for path in counts:
        for i, seg in enumerate(path.split(".")):
            segment_paths[(i, seg)].add(path)
    found = {}
    for path in counts:
        if counts[path] != 1:
            continue
        segs, best = path.split("."), None
        for other in counts:
            osegs = other.split(".")
            if other == path or len(osegs) != len(segs):
                continue
            differing = [i for i, (x, y) in enumerate(zip(segs, osegs, strict=True)) if x != y]
            if len(differing) != 1:
                continue
            seg = segs[differing[0]]
            if len(seg) < 4 or len(segment_paths[(differing[0], seg)]) > 1:
                continue
            if _distinct_on_purpose(segs, osegs, differing[0]):
                continue
            dist = edit_distance(path, other)
            if dist <= 2 and (best is None or (dist, other) < best):
                best = (dist, other)
        if best is not None:
            found[path] = best[1]
    return found


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(
    st.sampled_from(["referee", "referrer", "user", "users"]),
    st.text("abcd", min_size=3, max_size=7),
    st.sampled_from(["", ".id", ".plan", ".plam"])), min_size=40, max_size=120),
    st.sampled_from([2, 40]))
def test_typo_index_finds_what_the_pairwise_check_found(parts, scan):
    import dsl.validate

    paths = [f"{root}.{seg}{tail}" for root, seg, tail in parts]
    counts = {p: paths.count(p) for p in paths}
    old = dsl.validate._Neighbours.SCAN
    dsl.validate._Neighbours.SCAN = scan  # 2: every bucket indexed; 40: most scanned
    try:
        text = "".join(f"RULE r{i} PRIORITY {i} IF {p} THEN ISSUE ₹5\n"
                       for i, p in enumerate(paths))
        got = {}
        for w in warnings_of(text):
            if w.startswith("field "):
                path, other = w.split()[1], w.split()[-1].rstrip("?")
                got[path] = other
    finally:
        dsl.validate._Neighbours.SCAN = old
    assert got == typo_oracle(counts)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(st.lists(st.tuples(
    st.sampled_from([0, 1]),
    st.sampled_from(['x.c = "a"', 'x.c = "b"', "x.n > 5", "x.n < 3", "x.n = 4", "x.f",
                     'x.c IN ["a", "b"]', "NOT x.f"]),
    st.sampled_from(["", ' AND x.d = "q"', ' AND x.d = "r"', " AND x.n >= 9"]),
    st.sampled_from(["referrer", "referee"])), min_size=2, max_size=10))
def test_equal_priority_rules_are_those_the_pairwise_check_pairs(rules):
    from dsl.validate import could_both_hold, double_pays

    text = "".join(f"RULE r{i} PRIORITY {prio} IF {cond}{more} THEN ISSUE ₹5 TO {to}\n"
                   for i, (prio, cond, more, to) in enumerate(rules))
    checked = check_texts({Path("f.rule"): text})
    program = checked.resolved
    paired = {r.id for a in program.rules for b in program.rules
              if a is not b and a.priority == b.priority and not (a.exclusive or b.exclusive)
              and {x.to for x in a.actions} & {x.to for x in b.actions}
              and could_both_hold(a.condition, b.condition) for r in (a, b)}
    assert paired == {r.id for a, b, _ in double_pays(program) for r in (a, b)}
    named = set()
    for w in (d.message for d in checked.warnings if "priority" in d.message):
        ids = w.split(": ", 1)[1].split(";")[0] if w[0].isdigit() else w
        named |= {t.strip(",") for t in ids.split() if t.strip(",").startswith("r")
                  and t.strip(",")[1:].isdigit()}
    assert named == paired


def test_settle_at_every_bound_posts(db_url, tmp_path):
    from settlement.db import upgrade

    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "at.rule").write_text(at_bounds_text(), encoding="utf-8")
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({
        "referral_id": "g1", "referrer": {"id": "u1"},
        "referee": {"id": "u2", "x": 1, "y": 2, "d": "2026-01-01"},
        "referral": {"d": "2025-12-01", "created_at": "2026-01-01"}}) + "\n", encoding="utf-8")
    upgrade(db_url)
    result = CliRunner().invoke(main, ["settle", "--rules", str(rules), "--records",
                                       str(records), "--db", db_url, "--as-of", "2026-01-10",
                                       "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["posted"], summary["quarantined"]) == (2, 0)
    assert summary["amount_posted"] == {"INR": 50_000 + int("9" * 16) * 100}
