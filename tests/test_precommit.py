"""The pre-commit hook: its manifest, and `referral rules precommit` on good and bad files."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from click.testing import CliRunner
from pre_commit.clientlib import load_manifest

from compiler.precommit import precommit, program_roots
from referral.cli import main

ROOT = Path(__file__).parent.parent
RULES_DIR = ROOT / "rules"
MANIFEST = ROOT / ".pre-commit-hooks.yaml"


def _hook() -> dict:
    hooks = {h["id"]: h for h in yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))}
    return hooks["referral-rules-check"]


def test_manifest_is_valid_for_pre_commit():
    (hook,) = load_manifest(str(MANIFEST))  # pre-commit's own schema check
    assert hook["id"] == "referral-rules-check"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    assert files.search("rules/paid_referrer.rule")
    assert not files.search("rules/README.md") and not files.search("x.rule.bak")


def test_entry_is_the_projects_console_script():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    program, *args = _hook()["entry"].split()
    assert program in scripts
    assert args == ["rules", "precommit"]


def _entry(*files: str):
    _, *args = _hook()["entry"].split()
    return CliRunner().invoke(main, [*args, *files])


def test_good_files_pass():
    # paid_referrer.rule uses phrases DEFINEd in vocabulary.rule: the whole program is loaded.
    result = _entry(str(RULES_DIR / "paid_referrer.rule"), str(RULES_DIR / "tiers.rule"))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{RULES_DIR}: 5 rules, 14/14 examples passed\n"
    assert result.stderr == ""


def _copy_rules(tmp_path: Path) -> Path:
    program = tmp_path / "rules"
    shutil.copytree(RULES_DIR, program)
    return program


def test_syntax_error_fails_with_position(tmp_path):
    program = _copy_rules(tmp_path)
    bad = program / "bad.rule"
    bad.write_text("RULE a IF x.y = 1 ISSUE ₹5\n", encoding="utf-8")
    result = _entry(str(bad))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{bad}:1:19: error: unexpected 'ISSUE', expected one of: AND, OR, THEN\n")


def test_unformatted_file_and_failing_example_fail(tmp_path):
    program = _copy_rules(tmp_path)
    bad = program / "x.rule"
    bad.write_text('RULE  x IF a.b THEN ISSUE ₹5 TO referee\n'
                   'EXAMPLE "e" GIVEN a.b = true EXPECT NOTHING\n', encoding="utf-8")
    result = _entry(str(bad))
    assert result.exit_code == 1
    assert result.stdout == f"{program}: 6 rules, 14/15 examples passed\n"
    assert result.stderr.splitlines() == [
        f"{bad}: would reformat (run `referral rules fmt {bad}`)",
        f'{bad}:2:1: error: example "e" failed: expected NOTHING, got ISSUE ₹5 TO referee',
    ]
    # Only the files handed over are format-checked: the unchanged ones stay quiet.
    other = _entry(str(program / "tiers.rule"))
    assert "would reformat" not in other.stderr


def test_program_option_groups_subdirectories(tmp_path):
    top = tmp_path / "rules"
    (top / "sub").mkdir(parents=True)
    a, b, c = top / "a.rule", top / "sub" / "b.rule", tmp_path / "other" / "c.rule"
    assert program_roots([b, c, a], [top]) == {c.parent: [c], top: [b, a]}
    assert program_roots([b, a]) == {top: [a], top / "sub": [b]}
    assert program_roots([b], [top, top / "sub"]) == {top / "sub": [b]}


def test_phrase_defined_in_a_parent_program(tmp_path):
    top = tmp_path / "rules"
    (top / "sub").mkdir(parents=True)
    (top / "vocab.rule").write_text('DEFINE "paid" AS referrer.plan = "paid"\n', encoding="utf-8")
    rule = top / "sub" / "r.rule"
    rule.write_text('RULE r "r"\n  IF paid\n  THEN ISSUE ₹5 REWARD TO referrer\n',
                    encoding="utf-8")
    assert not precommit([rule]).ok  # sub/ alone does not define "paid"
    result = precommit([rule], [top])
    assert result.ok, result.lines
    assert result.lines == [(f"{top}: 1 rules, 0/0 examples passed", False)]


def test_entry_runs_as_a_process(tmp_path):
    program = _copy_rules(tmp_path)
    _, *args = _hook()["entry"].split()
    ok = subprocess.run([sys.executable, "-m", "referral", *args, str(program / "tiers.rule")],
                        capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout) == (0, f"{program}: 5 rules, 14/14 examples passed\n")
    (program / "tiers.rule").write_text("RULE\n", encoding="utf-8")
    bad = subprocess.run([sys.executable, "-m", "referral", *args, str(program / "tiers.rule")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"{program / 'tiers.rule'}:")
