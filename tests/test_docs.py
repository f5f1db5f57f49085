"""Documentation that cannot go stale: the README's language reference, the seed rule's
diagram, the documented `rules diff --json` keys and the example CI workflow."""

from __future__ import annotations

import re
import shlex
from datetime import date
from html import unescape
from pathlib import Path

import click
import yaml
from click.testing import CliRunner

from compiler.dot import rule_to_dot
from dsl.model import Program
from dsl.money import Money
from dsl.program import load_program
from referral.cli import main
from settlement.impact import Payouts, compare

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
GRAMMAR = (ROOT / "grammar" / "referral.lark").read_text(encoding="utf-8")
WORKFLOW = ROOT / "docs" / "ci" / "rules.yml"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end == -1 else text[start:end]


def grammar_keywords() -> set[str]:
    """Every keyword the grammar accepts: terminals like ``_HOLD: /hold\\b/i``,
    ``_DAYS: /days?\\b/i`` (DAY and DAYS) and ``PERIOD: /(day|month|year|ever)\\b/i``."""
    words: set[str] = set()
    for pattern in re.findall(r"^_?[A-Z]+:\s*/([a-z()|?]+)\\b/i\s*$", GRAMMAR, re.M):
        for alt in pattern.strip("()").split("|"):
            if alt.endswith("s?"):
                words.update({alt[:-2].upper(), alt[:-1].upper()})
            else:
                words.add(alt.upper())
    return words


def grammar_operators() -> set[str]:
    """The comparison operators and punctuation (terminals defined by string literals)."""
    ops: set[str] = set()
    for body in re.findall(r'^(?:CMP|_EQ|_LPAR|_RPAR|_LSQB|_RSQB|_COMMA):\s*(.+)$', GRAMMAR, re.M):
        ops.update(re.findall(r'"([^"]+)"', body))
    return ops


def test_grammar_keywords_found():
    # The parse of the grammar must itself work, or the reference test below would pass vacuously.
    assert {"RULE", "DEFINE", "HOLD", "DAY", "DAYS", "REWARD", "REWARDS", "EVER", "NULL",
            "WITHIN", "CONTAINS", "EXCLUSIVE"} <= grammar_keywords()
    assert len(grammar_keywords()) >= 35
    assert {"==", "!=", "<>", ">=", "<=", "=", ">", "<", "(", ")", "[", "]", ","} == (
        grammar_operators())


def test_every_keyword_and_operator_is_in_the_language_reference():
    reference = _section(README, "### Language reference")
    code = " ".join(re.findall(r"`([^`]+)`", reference))
    missing = sorted(k for k in grammar_keywords() if not re.search(rf"\b{k}\b", code))
    assert missing == [], f"keywords missing from the README's language reference: {missing}"
    tokens = set(code.split())
    missing_ops = sorted(
        op for op in grammar_operators() if op not in tokens and op not in code)
    assert missing_ops == []


def _dot_labels(dot: str) -> list[str]:
    labels: list[str] = []
    for quoted, bare in re.findall(r'label=(?:"((?:[^"\\]|\\.)*)"|(\w+))', dot):
        text = bare or re.sub(r'\\(["\\])', r"\1", quoted)
        labels.extend(text.split("\\n"))
    return labels


def test_seed_rule_svg_is_the_rendering_of_the_seed_rule():
    program = load_program([ROOT / "docs" / "seed_rule.rule"]).program
    (rule,) = program.rules
    svg = (ROOT / "docs" / "seed_rule.svg").read_text(encoding="utf-8")
    texts = [unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
    assert sorted(texts) == sorted(_dot_labels(rule_to_dot(rule)))
    assert "ISSUE ₹500 REWARD TO referrer" in texts
    assert "](docs/seed_rule.svg)" in README


def test_rules_diff_json_keys_are_documented():
    old, new = Program(rules=()), Program(rules=())
    key = ("r", "ref-1", "referrer", "u1")
    report = compare(old, new, Payouts({key: Money(500, "INR")}, 1, 0),
                     Payouts({key: Money(700, "INR")}, 1, 0), date(2026, 1, 1))
    data = report.as_json()
    documented = _section(README, "### Tools")
    keys = set(data) | set(data["quarantined"]) | set(data["totals"])
    keys |= set(data["rules"][0]) | set(data["rules"][0]["changes"][0])
    keys |= set(data["rules"][0]["changes"][0]["old"])
    missing = sorted(k for k in keys if f'"{k}"' not in documented)
    assert missing == []


# ---- the example CI workflow


def _workflow() -> dict:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def _referral_commands() -> list[list[str]]:
    """Every `referral ...` command line in the workflow's run steps, as argv lists."""
    commands: list[list[str]] = []
    for job in _workflow()["jobs"].values():
        for step in job["steps"]:
            script = step.get("run", "").replace("\\\n", " ")
            for line in script.splitlines():
                words = shlex.split(line.strip(), comments=True)
                while "referral" in words:
                    words = words[words.index("referral") + 1:]
                    end = next((i for i, w in enumerate(words)
                                if w in {">", ">>", "|", "||", "&&", ";"}), len(words))
                    commands.append(words[:end])
    return commands


def test_workflow_is_valid_actions_yaml():
    data = _workflow()
    triggers = data.get("on", data.get(True))  # YAML 1.1 reads a bare `on` key as true
    assert set(triggers) == {"push", "pull_request"}
    steps = data["jobs"]["rules"]["steps"]
    assert all("uses" in s or "run" in s for s in steps)
    uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact")]
    assert any("site/" in s["with"]["path"] and "diagrams/" in s["with"]["path"]
               for s in uploads)


def _leaf(argv: list[str]) -> tuple[list[str], click.Command]:
    names: list[str] = []
    command: click.Command = main
    for word in argv:
        child = (command.get_command(click.Context(command), word)
                 if isinstance(command, click.Group) else None)
        if child is None:
            break
        command = child
        names.append(word)
    return names, command


def test_every_referral_command_in_the_workflow_is_real():
    commands = _referral_commands()
    named = {" ".join(_leaf(argv)[0]) for argv in commands}
    assert {"rules check", "rules fmt", "rules test", "rules render", "rules diff",
            "rules catalog", "demo generate"} <= named
    for argv in commands:
        names, command = _leaf(argv)
        assert names and not isinstance(command, click.Group), argv
        help_result = CliRunner().invoke(main, [*names, "--help"])
        assert help_result.exit_code == 0, (argv, help_result.output)
        known = {o for p in command.params for o in (*p.opts, *p.secondary_opts)}
        unknown = [w for w in argv if w.startswith("-") and w.split("=")[0] not in known]
        assert unknown == [], f"{' '.join(argv)}: unknown options {unknown}"
