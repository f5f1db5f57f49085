"""Output for editors and CI: `rules fmt -` and `--diff`, `rules check --format json|github`,
`rules test --junit` (read back with junitparser, a JUnit reader)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from junitparser import Error, Failure, JUnitXml

from dsl.errors import Diagnostic, SourcePos
from dsl.examples import run_examples
from dsl.program import load_program
from referral.cli import main
from referral.cli.formatting import github_annotation

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
MESSY = "rule  a if x.y = 1 then issue ₹5\n"
CANONICAL = "RULE a\n  IF x.y = 1\n  THEN ISSUE ₹5 REWARD TO referrer\n"


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, ["rules", *args], input=input)


# ---------------------------------------------------------------- rules fmt

def test_fmt_stdin_prints_the_canonical_text():
    result = run("fmt", "-", input=MESSY)
    assert (result.exit_code, result.stdout, result.stderr) == (0, CANONICAL, "")


def test_fmt_stdin_canonical_input_is_unchanged():
    assert run("fmt", "-", input=CANONICAL).stdout == CANONICAL
    check = run("fmt", "--check", "-", input=CANONICAL)
    assert (check.exit_code, check.stdout) == (0, "")


def test_fmt_stdin_check_and_diff_exit_1():
    check = run("fmt", "--check", "-", input=MESSY)
    assert (check.exit_code, check.stdout) == (1, "would reformat <stdin>\n")
    diff = run("fmt", "--diff", "-", input=MESSY)
    assert diff.exit_code == 1
    assert diff.stdout == (
        "--- <stdin>\n+++ <stdin>\n@@ -1 +1,3 @@\n-rule  a if x.y = 1 then issue ₹5\n"
        "+RULE a\n+  IF x.y = 1\n+  THEN ISSUE ₹5 REWARD TO referrer\n")


def test_fmt_stdin_syntax_error_prints_nothing_on_stdout():
    result = run("fmt", "-", input="RULE a IF x.y = THEN ISSUE ₹5\n")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("<stdin>:1:17: error: unexpected 'THEN'")


def test_fmt_stdin_keeps_comments_and_phrases_from_elsewhere():
    # A buffer alone: its phrases are DEFINEd in other files, which fmt never needs.
    text = "# why\nrule a if referrer is a paid user then issue ₹5\n"
    result = run("fmt", "-", input=text)
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "# why\nRULE a\n  IF referrer is a paid user\n  THEN ISSUE ₹5 REWARD TO referrer\n")


def test_fmt_stdin_cannot_be_mixed_with_paths(tmp_path):
    result = run("fmt", "-", str(RULES_DIR))
    assert result.exit_code == 2
    assert "'-' (standard input) cannot be combined with other paths" in result.stderr


def test_fmt_stdin_as_a_process():
    done = subprocess.run([sys.executable, "-m", "referral", "rules", "fmt", "-"],
                          input=MESSY.encode("utf-8"), capture_output=True, check=False)
    assert (done.returncode, done.stdout.decode("utf-8")) == (0, CANONICAL)


def test_fmt_diff_lists_changes_and_writes_nothing(tmp_path):
    messy = tmp_path / "m.rule"
    messy.write_text(MESSY, encoding="utf-8")
    clean = tmp_path / "c.rule"
    clean.write_text(CANONICAL.replace("RULE a", "RULE c"), encoding="utf-8")
    result = run("fmt", "--diff", str(tmp_path))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"--- {messy}\n+++ {messy}\n@@ -1 +1,3 @@\n")
    assert str(clean) not in result.stdout
    assert messy.read_text(encoding="utf-8") == MESSY
    messy.write_text(CANONICAL, encoding="utf-8")
    again = run("fmt", "--diff", str(tmp_path))
    assert (again.exit_code, again.stdout) == (0, "")


def test_fmt_file_using_phrases_of_another_file(tmp_path):
    """The fmt hook gets only the changed files: their syntax is all fmt needs."""
    rule = tmp_path / "r.rule"
    rule.write_text("rule r if referrer is a paid user then issue ₹5\n", encoding="utf-8")
    result = run("fmt", str(rule))
    assert (result.exit_code, result.stdout) == (0, f"reformatted {rule}\n")


def test_fmt_syntax_error_in_one_file_writes_none(tmp_path):
    good = tmp_path / "a.rule"
    good.write_text(MESSY, encoding="utf-8")
    bad = tmp_path / "b.rule"
    bad.write_text("RULE b IF x.y = THEN ISSUE ₹5\n", encoding="utf-8")
    result = run("fmt", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{bad}:1:17: error:")
    assert good.read_text(encoding="utf-8") == MESSY


# ---------------------------------------------------------------- rules check --format

BAD = "RULE a IF x.y THEN ISSUE ₹5\nRULE b IF x.z THEN ISSUE ₹5\nRULE c IF nope THEN ISSUE ₹5\n"
WARN = "RULE a IF x.y THEN ISSUE ₹5\nRULE b IF x.z THEN ISSUE ₹5\n"


def test_check_json_of_a_clean_program():
    result = run("check", str(RULES_DIR), "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "ok": True, "errors": 0, "warnings": 0, "files": 5,
        "program": {"rules": 5, "definitions": 6, "examples": 14}, "diagnostics": []}
    assert result.stderr == ""


def test_check_json_lists_every_diagnostic(tmp_path):
    path = tmp_path / "bad.rule"
    path.write_text(BAD, encoding="utf-8")
    result = run("check", str(path), "--format", "json")
    assert result.exit_code == 1
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert report == {
        "ok": False, "errors": 1, "warnings": 0, "files": 1, "program": None,
        "diagnostics": [{"file": str(path), "line": 3, "column": 11, "severity": "error",
                         "message": 'phrase "nope" is not defined'}]}


def test_check_json_warnings_and_strict(tmp_path):
    path = tmp_path / "w.rule"
    path.write_text(WARN, encoding="utf-8")
    result = run("check", str(path), "--format", "json")
    assert result.exit_code == 0
    report = json.loads(result.stdout)
    assert (report["ok"], report["errors"], report["warnings"]) == (True, 0, 1)
    (d,) = report["diagnostics"]
    assert (d["line"], d["column"], d["severity"]) == (2, 1, "warning")
    assert d["message"].startswith("rules a and b have equal priority 0")
    strict = run("check", str(path), "--format", "json", "--strict")
    assert strict.exit_code == 1
    assert json.loads(strict.stdout)["ok"] is False


def test_check_github_annotations(tmp_path):
    path = tmp_path / "w.rule"
    path.write_text(WARN, encoding="utf-8")
    result = run("check", str(path), "--format", "github")
    assert result.exit_code == 0
    first, summary = result.stdout.splitlines()
    assert first.startswith(f"::warning file={path},line=2,col=1::rules a and b have equal")
    assert summary == "OK: 2 rules, 0 definitions, 0 examples in 1 files"
    path.write_text(BAD, encoding="utf-8")
    bad = run("check", str(path), "--format", "github")
    assert bad.exit_code == 1
    assert bad.stdout == f'::error file={path},line=3,col=11::phrase "nope" is not defined\n'


@pytest.mark.parametrize(("diagnostic", "line"), [
    (Diagnostic("error", "a, b: 100%\nnext", SourcePos("r,1:x.rule", 2, 3)),
     "::error file=r%2C1%3Ax.rule,line=2,col=3::a, b: 100%25%0Anext"),
    (Diagnostic("warning", "no place"), "::warning::no place"),
])
def test_github_annotation_escapes(diagnostic, line):
    assert github_annotation(diagnostic) == line


def test_check_unknown_format_is_usage_error():
    result = run("check", str(RULES_DIR), "--format", "xml")
    assert result.exit_code == 2


# ---------------------------------------------------------------- rules test --junit

def test_junit_of_the_shipped_rules(tmp_path):
    out = tmp_path / "junit.xml"
    result = run("test", str(RULES_DIR), "--junit", str(out))
    assert result.exit_code == 0, result.output
    xml = JUnitXml.fromfile(str(out))
    (suite,) = list(xml)
    program = load_program([RULES_DIR]).program
    assert (suite.tests, suite.failures, suite.errors) == (len(program.examples), 0, 0)
    cases = list(suite)
    assert [c.name for c in cases] == [e.name for e in program.examples]
    assert all(c.is_passed for c in cases)
    first = cases[0]
    assert first.classname == f"rules.{Path(program.examples[0].source.file).stem}"
    assert first._elem.get("file") == program.examples[0].source.file
    assert first._elem.get("line") == str(program.examples[0].source.line)


def test_junit_failure_and_error(tmp_path):
    src = tmp_path / "r.rule"
    src.write_text(
        'RULE r\n  IF a.x >= 1\n  THEN ISSUE ₹5 REWARD TO referrer\n\n'
        'EXAMPLE "pays"\n  GIVEN a.x = 1\n  EXPECT ISSUE ₹5 TO referrer\n\n'
        'EXAMPLE "wrong <amount> & \\"quotes\\""\n  GIVEN a.x = 1\n'
        '  EXPECT ISSUE ₹6 TO referrer\n\n'
        'EXAMPLE "bad data"\n  GIVEN a.x = "one"\n  EXPECT NOTHING\n', encoding="utf-8")
    out = tmp_path / "junit.xml"
    result = run("test", str(src), "--junit", str(out))
    assert result.exit_code == 1
    assert result.stdout.endswith("1 passed, 2 failed\n")
    (suite,) = list(JUnitXml.fromfile(str(out)))
    assert (suite.tests, suite.failures, suite.errors) == (3, 1, 1)
    passed, wrong, bad = list(suite)
    assert passed.is_passed
    assert wrong.name == 'wrong <amount> & "quotes"'
    (failure,) = wrong.result
    assert isinstance(failure, Failure)
    assert failure.message == "expected ISSUE ₹6 TO referrer, got ISSUE ₹5 TO referrer"
    (error,) = bad.result
    assert isinstance(error, Error)
    expected = run_examples(load_program([src]).program)[2].error
    assert error.message == expected and expected.startswith("rule r: a.x: expected a number")


def test_junit_not_written_when_the_program_is_invalid(tmp_path):
    src = tmp_path / "r.rule"
    src.write_text("RULE r IF nope THEN ISSUE ₹5\n", encoding="utf-8")
    out = tmp_path / "junit.xml"
    result = run("test", str(src), "--junit", str(out))
    assert result.exit_code == 1
    assert not out.exists()


def test_junit_unwritable_file(tmp_path):
    result = run("test", str(RULES_DIR), "--junit", str(tmp_path / "no" / "such" / "j.xml"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {tmp_path / 'no' / 'such' / 'j.xml'}: cannot write")
