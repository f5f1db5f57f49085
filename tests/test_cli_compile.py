"""`rules compile|fmt|render` through CliRunner: exit codes, files, exact messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from compiler.errors import DOT_MISSING
from compiler.text import format_program
from dsl.codec import program_from_json
from dsl.parser import parse_text
from referral.cli.rules import rules
from tests.test_text import ISSUE_EXAMPLE

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"

MESSY = (
    '# vocabulary\ndefine "referrer pays" as referrer.plan = "paid"\n'
    "rule bonus if referrer pays then issue INR 500 reward\n"
)
MESSY_CANONICAL = (
    '# vocabulary\nDEFINE "referrer pays" AS referrer.plan = "paid"\n\n'
    "RULE bonus\n  IF referrer pays\n  THEN ISSUE ₹500 REWARD TO referrer\n"
)
BROKEN = "RULE a\n  IF referee.plan = \n  THEN ISSUE ₹5 REWARD TO referrer\n"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def program_dir(tmp_path):
    d = tmp_path / "rules"
    d.mkdir()
    (d / "seed.rule").write_text(ISSUE_EXAMPLE, encoding="utf-8")
    (d / "messy.rule").write_text(MESSY, encoding="utf-8")
    return d


def test_compile_prints_valid_model(runner, program_dir):
    result = runner.invoke(rules, ["compile", str(program_dir)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    program = program_from_json(data)
    assert [r.id for r in program.rules] == ["bonus", "paid_referrer_bonus"]
    bonus = data["rules"][0]
    assert bonus["condition"] == {
        "compare": {"path": "referrer.plan", "op": "=", "value": {"string": "paid"}}
    }
    assert bonus["source"] == {"file": str(program_dir / "messy.rule"), "line": 3, "column": 1}


def test_compile_output_file(runner, program_dir, tmp_path):
    out = tmp_path / "model.json"
    result = runner.invoke(rules, ["compile", str(program_dir / "seed.rule"), "-o", str(out)])
    assert result.exit_code == 0
    assert result.stdout == f"wrote {out} (1 rules)\n"
    assert program_from_json(json.loads(out.read_text(encoding="utf-8"))).rules[0].id == (
        "paid_referrer_bonus"
    )


def test_compile_errors_one_per_line(runner, tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BROKEN, encoding="utf-8")
    result = runner.invoke(rules, ["compile", str(bad)])
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines and all(line.startswith(f"{bad}:") for line in lines)
    assert lines[0].startswith(f"{bad}:3:3: error: unexpected")


def test_compile_missing_path_is_usage_error(runner, tmp_path):
    result = runner.invoke(rules, ["compile", str(tmp_path / "nope.rule")])
    assert result.exit_code == 2


def test_fmt_rewrites_changed_files_only(runner, program_dir):
    result = runner.invoke(rules, ["fmt", str(program_dir)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"reformatted {program_dir / 'messy.rule'}\n"
    assert (program_dir / "messy.rule").read_text(encoding="utf-8") == MESSY_CANONICAL
    assert (program_dir / "seed.rule").read_text(encoding="utf-8") == ISSUE_EXAMPLE
    again = runner.invoke(rules, ["fmt", str(program_dir)])
    assert (again.exit_code, again.stdout) == (0, "")


def test_fmt_check_lists_and_writes_nothing(runner, program_dir):
    result = runner.invoke(rules, ["fmt", "--check", str(program_dir)])
    assert result.exit_code == 1
    assert result.stdout == f"would reformat {program_dir / 'messy.rule'}\n"
    assert (program_dir / "messy.rule").read_text(encoding="utf-8") == MESSY


def test_fmt_check_clean_exits_0(runner, program_dir):
    result = runner.invoke(rules, ["fmt", "--check", str(program_dir / "seed.rule")])
    assert (result.exit_code, result.stdout) == (0, "")


def test_fmt_output_parses_to_same_file_model(runner, program_dir):
    before = parse_text(MESSY, "m.rule")
    runner.invoke(rules, ["fmt", str(program_dir)])
    after = parse_text((program_dir / "messy.rule").read_text(encoding="utf-8"), "m.rule")
    assert after == before
    assert format_program(after) == MESSY_CANONICAL


def test_fmt_broken_file_untouched(runner, tmp_path):
    bad = tmp_path / "bad.rule"
    bad.write_text(BROKEN, encoding="utf-8")
    result = runner.invoke(rules, ["fmt", str(bad)])
    assert result.exit_code == 1
    assert bad.read_text(encoding="utf-8") == BROKEN


@pytest.mark.parametrize("fmt_name", ["dot", "svg", "png"])
def test_render_writes_one_file_per_rule(runner, program_dir, tmp_path, fmt_name):
    out = tmp_path / "diagrams"
    result = runner.invoke(rules, ["render", str(program_dir), "--format", fmt_name,
                                   "-o", str(out)])
    assert result.exit_code == 0, result.output
    expected = [out / f"bonus.{fmt_name}", out / f"paid_referrer_bonus.{fmt_name}"]
    assert result.stdout == "".join(f"{p}\n" for p in expected)
    assert all(p.stat().st_size > 0 for p in expected)


def test_render_default_directory(runner, program_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(rules, ["render", str(program_dir / "seed.rule")])
    assert result.exit_code == 0
    assert result.stdout == "diagrams/paid_referrer_bonus.dot\n"
    assert (tmp_path / "diagrams" / "paid_referrer_bonus.dot").exists()


def test_render_without_graphviz(runner, program_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = runner.invoke(rules, ["render", str(program_dir), "--format", "svg",
                                   "-o", str(tmp_path / "d")])
    assert result.exit_code == 1
    assert result.stderr == f"error: {DOT_MISSING}\n"


def test_render_bad_format_is_usage_error(runner, program_dir):
    result = runner.invoke(rules, ["render", str(program_dir), "--format", "pdf"])
    assert result.exit_code == 2
    assert "'pdf' is not one of 'dot', 'svg', 'png'" in result.stderr


def test_fmt_check_example_program_is_canonical(runner):
    """rules/ is what `rules fmt` writes, so CI catches an unformatted example."""
    result = runner.invoke(rules, ["fmt", "--check", str(RULES_DIR)])
    assert result.exit_code == 0, result.output
