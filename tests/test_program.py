from __future__ import annotations

from pathlib import Path

import pytest

from dsl.errors import RuleError, RuleValidationError
from dsl.model import And, Compare, Not, Or, PhraseRef
from dsl.parser import parse_text
from dsl.program import load_program, resolve_program
from dsl.validate import could_both_hold, edit_distance

RULES_DIR = Path(__file__).parent.parent / "rules"

VOCAB = (
    'DEFINE "referrer is a paid user" AS referrer.plan = "paid"\n'
    'DEFINE "referred user subscribes" AS referee.subscribed = true\n'
)


def write(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def diagnostics(tmp_path: Path, files: dict[str, str], *, strict: bool = False) -> list[str]:
    write(tmp_path, files)
    try:
        loaded = load_program([tmp_path], strict=strict)
    except RuleError as e:
        return [f"{Path(d.pos.file).name}:{d.pos.line}:{d.pos.column}: {d.severity}: {d.message}"
                for d in e.diagnostics]
    return [f"{Path(d.pos.file).name}:{d.pos.line}:{d.pos.column}: {d.severity}: {d.message}"
            for d in loaded.warnings]


def test_load_seed_sentence_across_files_equals_explicit_form(tmp_path):
    write(tmp_path, {
        "vocab.rule": VOCAB,
        "seed.rule": "IF referrer is a paid user AND referred user subscribes "
                     "THEN issue ₹500 reward\n",
    })
    loaded = load_program([tmp_path])
    explicit = parse_text('RULE seed_1 IF referrer.plan = "paid" AND referee.subscribed = true '
                          "THEN ISSUE ₹500 REWARD TO referrer")
    assert loaded.program.rules == explicit.rules
    # The bare sentence's id comes from the file name: a warning, since it keys payouts.
    assert [(str(w.pos), w.severity) for w in loaded.warnings] == [
        (f"{tmp_path / 'seed.rule'}:1:1", "warning")
    ]
    assert "write RULE seed_1" in loaded.warnings[0].message
    # The per-file programs stay unresolved, for fmt.
    seed = loaded.files[tmp_path / "seed.rule"]
    assert seed.rules[0].condition == And((PhraseRef("referrer is a paid user"),
                                          PhraseRef("referred user subscribes")))


def test_load_phrases_match_case_and_spacing_insensitively(tmp_path):
    write(tmp_path, {"a.rule": VOCAB + "RULE r IF Referrer IS a  PAID user THEN ISSUE ₹1\n"})
    rule = load_program([tmp_path / "a.rule"]).program.rules[0]
    assert rule.condition == Compare("referrer.plan", "=", "paid")


def test_resolve_splices_same_connective_and_nests_others():
    program = parse_text(
        'DEFINE "both" AS a.x = 1 AND a.y = 2\nDEFINE "either" AS a.x = 1 OR a.y = 2\n'
        'DEFINE "nested" AS NOT both\n'
        "RULE r IF both AND a.z = 3 OR either OR nested THEN ISSUE ₹1")
    resolved, errors = resolve_program(program)
    assert errors == []
    x, y, z = Compare("a.x", "=", 1), Compare("a.y", "=", 2), Compare("a.z", "=", 3)
    assert resolved.rules[0].condition == Or((And((x, y, z)), x, y, Not(And((x, y)))))
    assert resolved.definitions[2].condition == Not(And((x, y)))


def test_load_directory_recursive_sorted(tmp_path):
    write(tmp_path, {"b.rule": "RULE b IF a.x THEN ISSUE ₹1\n", "sub/a.rule":
                     "RULE a PRIORITY 1 IF a.x THEN ISSUE ₹1\n", "notes.txt": "ignored"})
    loaded = load_program([tmp_path])
    assert [r.id for r in loaded.program.rules] == ["b", "a"]
    assert list(loaded.files) == [tmp_path / "b.rule", tmp_path / "sub" / "a.rule"]


def test_load_reports_all_files_errors_together(tmp_path):
    got = diagnostics(tmp_path, {
        "a.rule": "RULE a IF x.y = THEN ISSUE ₹1\n",
        "b.rule": "RULE b IF x.y THEN ISSUE ₹1.001\n",
    })
    assert got == [
        "a.rule:1:17: error: unexpected 'THEN', expected one of: \"[\", FALSE, NULL, TRUE, "
        "a date, a decimal number, a field path (like referee.country), a money amount, "
        "a quoted string, a whole number",
        "b.rule:1:26: error: 1.001 INR has more decimals than INR allows (2)",
    ]


def test_load_validates_the_statements_around_errors_in_the_same_file(tmp_path):
    got = diagnostics(tmp_path, {
        "v.rule": 'DEFINE "paid user" AS referrer.plan = "paid"\n',
        "a.rule": (
            "RULE dup IF paid usr THEN ISSUE ₹1\n"          # undefined phrase
            "RULE dup IF referee.x = 1 THEN ISSUE ₹1\n"      # duplicate id
            "RULE broken IF referee.x = THEN ISSUE ₹1\n"     # syntax error
            "RULE money IF referee.x = 1 THEN ISSUE ₹1.001\n"  # bad literal
            "RULE late IF referee.x = 1 THEN ISSUE 150% OF referee.p REWARD\n"
        ),
    })
    assert [line.split(": error: ")[0] for line in got] == [
        "a.rule:1:13", "a.rule:2:1", "a.rule:3:28", "a.rule:4:40", "a.rule:5:39",
    ]
    assert "did you mean \"paid user\"" in got[0]
    assert "duplicate rule id \"dup\"" in got[1]
    assert "unexpected 'THEN'" in got[2]
    assert "more decimals than INR allows" in got[3]
    assert "150%" in got[4]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"a.rule": "RULE r IF a.x THEN ISSUE ₹1\n", "b.rule": "\nRULE r IF a.x THEN ISSUE ₹2\n"},
         "b.rule:2:1: error: duplicate rule id \"r\" (first defined at {d}/a.rule:1:1)"),
        ({"a.rule": VOCAB, "b.rule": 'DEFINE "Referred User  subscribes" AS a.x\n'},
         "b.rule:1:1: error: phrase \"Referred User subscribes\" is already defined at "
         "{d}/a.rule:2:1"),
        ({"a.rule": VOCAB, "b.rule": "RULE r\n  IF referrer is a payd user THEN ISSUE ₹1\n"},
         "b.rule:2:6: error: phrase \"referrer is a payd user\" is not defined; did you mean "
         "\"referrer is a paid user\"?"),
        ({"a.rule": "RULE r IF something else entirely THEN ISSUE ₹1\n"},
         "a.rule:1:11: error: phrase \"something else entirely\" is not defined"),
        ({"a.rule": 'DEFINE "p" AS "q"\nDEFINE "q" AS a.x AND "p"\nRULE r IF p THEN ISSUE ₹1\n'},
         "a.rule:1:1: error: phrase \"p\" is defined in terms of itself (\"p\" -> \"q\" -> \"p\")"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE 0% OF a.y"},
         "a.rule:1:26: error: rule r: a percentage must be in (0, 100], got 0%"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE 100.5% OF a.y"},
         "a.rule:1:26: error: rule r: a percentage must be in (0, 100], got 100.5%"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE -₹5"},
         "a.rule:1:26: error: rule r: a reward must be positive, got -₹5"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE 5% OF a.y UP TO ₹0"},
         "a.rule:1:26: error: rule r: UP TO must be positive, got ₹0"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE ₹5 AND ISSUE 5% OF a.y UP TO $1"},
         "a.rule:1:39: error: rule r: rewards and caps mix currencies (USD after INR)"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE ₹5 LIMIT €10 PER referrer PER DAY"},
         "a.rule:1:35: error: rule r: LIMIT is in EUR but the rule pays in INR"),
        ({"a.rule": "RULE r IF a.x THEN ISSUE ₹5 LIMIT -₹10 PER referrer PER DAY"},
         "a.rule:1:35: error: rule r: LIMIT must be positive, got -₹10"),
        ({"a.rule": 'RULE r IF a.x > "b" THEN ISSUE ₹5'},
         "a.rule:1:11: error: a.x > needs a number, money or date, not a string"),
        ({"a.rule": 'RULE r IF a.x IS "b" THEN ISSUE ₹5'},
         "a.rule:1:11: error: IS compares with TRUE, FALSE or NULL; use = or != for a string"),
        ({"a.rule": "RULE r IF a.x = null THEN ISSUE ₹5"},
         "a.rule:1:11: error: a.x = null is never true; use IS NULL"),
        ({"a.rule": 'RULE r IF a.x IN [1, "b"] THEN ISSUE ₹5'},
         "a.rule:1:11: error: the list after IN mixes number and string values"),
        ({"a.rule": 'EXAMPLE "e" GIVEN a.x = 1, a.x = 2 EXPECT NOTHING'},
         "a.rule:1:1: error: example \"e\" gives a.x twice"),
    ],
)
def test_load_error_kinds(tmp_path, files, expected):
    got = diagnostics(tmp_path, files)
    assert expected.format(d=tmp_path) in got


def test_load_typo_warning_names_known_path(tmp_path):
    got = diagnostics(tmp_path, {"a.rule": (
        "RULE a IF referee.subscribed = true THEN ISSUE ₹1\n"
        "RULE b PRIORITY 1 IF referee.subscribed AND referrer.plan = \"x\" THEN ISSUE ₹1\n"
        "RULE c PRIORITY 2\n  IF referee.subscibed = true THEN ISSUE ₹1\n"
    )})
    assert got == ["a.rule:4:6: warning: field referee.subscibed is used only here; "
                   "did you mean referee.subscribed?"]


def test_load_no_typo_warning_for_role_swaps(tmp_path):
    got = diagnostics(tmp_path, {"a.rule": (
        "RULE a IF referee.plan = \"x\" AND referee.id = \"y\" THEN ISSUE ₹1\n"
        "RULE b PRIORITY 1 IF referrer.plan = \"x\" AND referrer.id = \"y\" THEN ISSUE ₹1\n"
    )})
    assert got == []


def test_load_equal_priority_warning(tmp_path):
    got = diagnostics(tmp_path, {"a.rule": (
        "RULE a IF x.y THEN ISSUE ₹1 TO referee\n"
        "RULE b IF x.z THEN ISSUE ₹1 TO referee AND ISSUE ₹1\n"
    )})
    assert got == [f"a.rule:2:1: warning: rules a and b have equal priority 0 and can both pay "
                   f"the referee; mark one EXCLUSIVE or give them different priorities "
                   f"(a is at {tmp_path}/a.rule:1:1)"]


@pytest.mark.parametrize(
    "rules",
    [
        "RULE a IF x.y THEN ISSUE ₹1\nRULE b PRIORITY 1 IF x.y THEN ISSUE ₹1\n",
        "RULE a EXCLUSIVE IF x.y THEN ISSUE ₹1\nRULE b IF x.y THEN ISSUE ₹1\n",
        "RULE a IF x.y THEN ISSUE ₹1 TO referee\nRULE b IF x.y THEN ISSUE ₹1\n",
        'RULE a IF x.p = "a" THEN ISSUE ₹1\nRULE b IF x.p = "b" AND x.q THEN ISSUE ₹1\n',
        "RULE a IF x.p >= ₹10 THEN ISSUE ₹1\nRULE b IF x.p < ₹10 THEN ISSUE ₹1\n",
    ],
)
def test_load_no_equal_priority_warning(tmp_path, rules):
    assert diagnostics(tmp_path, {"a.rule": rules}) == []


def test_load_strict_turns_warnings_into_errors(tmp_path):
    write(tmp_path, {"a.rule": "RULE a IF x.y THEN ISSUE ₹1\nRULE b IF x.y THEN ISSUE ₹2\n"})
    assert len(load_program([tmp_path]).warnings) == 1
    with pytest.raises(RuleValidationError) as info:
        load_program([tmp_path], strict=True)
    assert [d.severity for d in info.value.diagnostics] == ["warning"]


def test_load_missing_path_is_an_error(tmp_path):
    with pytest.raises(Exception, match="no such file or directory"):
        load_program([tmp_path / "nope.rule"])


def test_load_shipped_rules_clean():
    loaded = load_program([RULES_DIR], strict=True)
    assert loaded.warnings == []
    assert {r.id for r in loaded.program.rules} >= {"paid_referrer_bonus", "gold_tier"}
    assert not any("PhraseRef" in repr(r) for r in loaded.program.rules)


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [("subscribed", "subscibed", 1), ("abc", "acb", 1), ("referee", "referrer", 2),
     ("", "ab", 2), ("same", "same", 0)],
)
def test_edit_distance(a, b, distance):
    assert edit_distance(a, b) == distance


@pytest.mark.parametrize(
    ("a", "b", "both"),
    [
        ("x.a = 1", "x.a = 2", False),
        ("x.a = 1", "x.a != 1", False),
        ("x.a = 1", "NOT x.a = 1", False),
        ('x.a IN ["a"]', 'x.a IN ["b"]', False),
        ('x.a = "a"', 'x.a NOT IN ["a"]', False),
        ("x.a > 5", "x.a <= 5", False),
        ("x.a >= 5", "x.a <= 5", True),
        ("x.a > 5", "x.b < 5", True),
        ("x.a = 1", "x.a = y.b", True),
    ],
)
def test_could_both_hold(a, b, both):
    ca = parse_text(f"RULE a IF {a} THEN ISSUE ₹1").rules[0].condition
    cb = parse_text(f"RULE b IF {b} THEN ISSUE ₹1").rules[0].condition
    assert could_both_hold(ca, cb) is both


def test_load_compiled_json_model_equals_source(tmp_path):
    from dsl.codec import dumps

    source = load_program([RULES_DIR]).program
    (tmp_path / "model.json").write_text(dumps(source), encoding="utf-8")
    assert load_program([tmp_path / "model.json"]).program == source


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{nope", "{d}/m.json:1:2: error: not JSON: Expecting property name enclosed in double "
                  "quotes"),
        ('{"schema_version": 1, "rules": [], "definitions": [], "examples": [{}]}',
         "error: {d}/m.json: $.examples[0]: 'name' is a required property"),
    ],
)
def test_load_bad_json_model(tmp_path, text, expected):
    (tmp_path / "m.json").write_text(text, encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_program([tmp_path / "m.json"])
    assert expected.format(d=tmp_path) in [str(d) for d in info.value.diagnostics]
