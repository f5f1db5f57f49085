"""The editor grammars against the Lark grammar: generated files are committed as generated,
every terminal has a pattern, and the TextMate patterns tokenise the sample programs exactly
as the Lark lexer does."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lark import Lark, Token

from compiler.ide import keyword_words
from compiler.textmate import (
    IGNORED,
    TEXTMATE_FILE,
    VIM_FILE,
    main,
    terminal_scope,
    textmate_json,
    vim_syntax,
)
from dsl.parser import GRAMMAR_OPTIONS, terminal_names

ROOT = Path(__file__).resolve().parents[1]
VSCODE = ROOT / "editors" / "vscode"

# Every terminal of the grammar at least once (validation would refuse it; lexing does not).
EVERYTHING = """\
# Every terminal of the grammar, once at least.
CURRENCY INR
TIMEZONE "Asia/Kolkata"
DEFINE "vip referee" AS referee.tags CONTAINS "vip" OR referee.score > 4.5
DEFINE "adult" AS referee.age >= 18 AND referee.age <= 120  # a trailing comment

RULE sample_everything "all terminals"
  PRIORITY -1
  EXCLUSIVE
  IF adult AND "vip referee"
  AND (referee.country IN ["IN", "US"] OR referee.country NOT IN ["DE"])
  AND referee.email IS NOT NULL AND referee.blocked IS FALSE AND referee.verified IS TRUE
  AND referee.plan != "free" AND referee.plan <> "trial" AND referee.level == 2
  AND referee.signed_up < 2026-01-01 AND NOT referee.id = referrer.id
  AND referee.paid_at WITHIN 1 DAY OF referral.created_at
  AND referee.paid_at WITHIN 2 DAYS AFTER referral.created_at
  AND referee.trial_end WITHIN 3 DAYS BEFORE referee.paid_at
  THEN ISSUE INR 1000.50 REWARDS TO referee
  AND ISSUE 2.5 % OF referee.first_payment REWARD TO referrer UP TO 200 INR
  LIMIT $5 PER referrer PER YEAR
  HOLD 1 DAY
  REVERSE IF referee.refunded

if referee.x then issue €5 limit £1 per referee per ever hold 3 days

EXAMPLE "sample"
  GIVEN referee.age = 30 AND referee.tags = ["vip"], referee.score = 4.75
  EXPECT ISSUE €5 TO referee AND ISSUE ₹1,000 REWARD
EXAMPLE "none" GIVEN referee.x = false, referee.y = null EXPECT NOTHING
"""

SAMPLES = {p.name: p.read_text(encoding="utf-8")
           for p in [*sorted((ROOT / "rules").glob("*.rule")), ROOT / "docs" / "seed_rule.rule"]}
SAMPLES["everything"] = EVERYTHING

Tok = tuple[int, int, int, str]  # line, start column, end column (0-based), scope


def lark_tokens(text: str) -> list[Tok]:
    """What the Lark lexer produced (comments too), each token with its terminal's scope."""
    seen: dict[int, Token] = {}

    def collect(tok: Token) -> Token:
        if tok.type not in IGNORED:
            seen.setdefault(tok.start_pos or 0, tok)
        return tok

    callbacks: dict[str, Callable[[Token], Token]] = {n: collect for n in terminal_names()}
    Lark.open("referral.lark", lexer_callbacks=callbacks, **GRAMMAR_OPTIONS).parse(text)
    return [(t.line - 1, t.column - 1, t.end_column - 1, terminal_scope(t.type))  # type: ignore[operator]
            for t in sorted(seen.values(), key=lambda t: t.start_pos or 0)]


def python_re(oniguruma: str) -> re.Pattern[str]:
    """A TextMate (Oniguruma) regex as Python ``re``: the generator uses only the common subset."""
    assert not re.search(r"\\[hHGAzZK]|\(\?<[A-Za-z]|\\p\{|[*+?]\+", oniguruma), oniguruma
    return re.compile(oniguruma)


def textmate_tokens(grammar: dict[str, Any], text: str) -> list[Tok]:
    """Tokenise like a TextMate engine: at each point the pattern matching earliest wins,
    ties to the first listed; captures give their groups' scopes."""
    patterns = [grammar["repository"][p["include"][1:]] for p in grammar["patterns"]]
    compiled = [(python_re(p["match"]), p) for p in patterns]
    out: list[Tok] = []
    for number, line in enumerate(text.split("\n")):
        pos = 0
        while pos < len(line):
            found = [(m, p) for rx, p in compiled if (m := rx.search(line, pos))]
            if not found:
                break
            m, p = min(found, key=lambda mp: mp[0].start())
            if "captures" in p:
                out += [(number, m.start(int(g)), m.end(int(g)), c["name"])
                        for g, c in p["captures"].items() if m.group(int(g)) is not None]
            else:
                out.append((number, m.start(), m.end(), p["name"]))
            pos = max(m.end(), pos + 1)
    return out


def test_textmate_committed_file_is_the_generated_one() -> None:
    assert TEXTMATE_FILE.read_text(encoding="utf-8") == textmate_json(), (
        "run `python -m compiler.textmate`")


def test_vim_committed_file_is_the_generated_one() -> None:
    assert VIM_FILE.read_text(encoding="utf-8") == vim_syntax(), (
        "run `python -m compiler.textmate`")


def test_textmate_check_mode_reports_up_to_date() -> None:
    assert main(["--check"]) == 0


def test_textmate_every_terminal_has_a_pattern() -> None:
    grammar = json.loads(TEXTMATE_FILE.read_text(encoding="utf-8"))
    entries = grammar["repository"].values()
    scopes = {e["name"] for e in entries if "name" in e}
    scopes |= {c["name"] for e in entries for c in e.get("captures", {}).values()}
    missing = [t for t in terminal_names() if t not in IGNORED and terminal_scope(t) not in scopes]
    assert missing == []


def test_textmate_samples_exercise_every_terminal() -> None:
    seen: set[str] = set()
    for text in SAMPLES.values():

        def collect(tok: Token) -> Token:
            seen.add(tok.type)
            return tok

        callbacks: dict[str, Callable[[Token], Token]] = {n: collect for n in terminal_names()}
        Lark.open("referral.lark", lexer_callbacks=callbacks, **GRAMMAR_OPTIONS).parse(text)
    assert set(terminal_names()) - IGNORED - seen == set()


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_textmate_tokenises_like_the_lark_lexer(name: str) -> None:
    grammar = json.loads(TEXTMATE_FILE.read_text(encoding="utf-8"))
    text = SAMPLES[name]
    assert textmate_tokens(grammar, text) == lark_tokens(text)


def _vim_keywords(text: str) -> set[str]:
    """The words of ``syn keyword`` lines, and of whole-word matches (``contains`` cannot be a
    ``syn keyword``: it is one of that command's arguments)."""
    words: set[str] = set()
    for line in text.splitlines():
        if line.startswith("syn keyword "):
            words.update(line.split()[3:])
        elif m := re.fullmatch(r'syn match \w+ "\\<(\w+)\\>"', line):
            words.add(m.group(1))
    return words


def test_vim_keywords_are_the_grammar_keywords() -> None:
    grammar_words = {w.lower() for words in keyword_words().values() for w in words}
    assert _vim_keywords(VIM_FILE.read_text(encoding="utf-8")) == grammar_words


def test_vim_keywords_match_the_keyword_terminals_both_ways() -> None:
    """Checked against the grammar's own patterns, not through keyword_words()."""
    patterns = [re.compile(str(t.pattern.value), re.IGNORECASE)
                for t in Lark.open("referral.lark", **GRAMMAR_OPTIONS).terminals
                if "i" in t.pattern.flags and str(t.pattern.value).endswith(r"\b")]
    vim = _vim_keywords(VIM_FILE.read_text(encoding="utf-8"))
    assert all(any(p.fullmatch(w) for w in vim) for p in patterns)
    assert all(any(p.fullmatch(w) for p in patterns) for w in vim)


@pytest.mark.skipif(shutil.which("vim") is None, reason="vim is not installed")
def test_vim_loads_the_syntax_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    script = [
        f"set rtp^={ROOT / 'editors' / 'vim'}", "filetype on", "syntax on",
        f"edit {ROOT / 'rules' / 'paid_referrer.rule'}",
        f"redir! > {out}", "echo &filetype", "echo synIDattr(synID(4, 3, 1), 'name')",
        "echo synIDattr(synID(1, 3, 1), 'name')", "redir END", "qall!",
    ]
    args = ["vim", "-Nu", "NONE", "-i", "NONE", "-es"]
    for command in script:
        args += ["-c", command]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert out.read_text().split() == ["referral", "referralKeyword", "referralComment"]


def test_vscode_package_contributes_language_grammar_and_configuration() -> None:
    package = json.loads((VSCODE / "package.json").read_text(encoding="utf-8"))
    (language,) = package["contributes"]["languages"]
    assert language["id"] == "referral-rule" and language["extensions"] == [".rule"]
    (grammar,) = package["contributes"]["grammars"]
    assert grammar["language"] == "referral-rule"
    assert (VSCODE / grammar["path"]).resolve() == TEXTMATE_FILE
    assert grammar["scopeName"] == json.loads(TEXTMATE_FILE.read_text())["scopeName"]
    config = json.loads((VSCODE / language["configuration"]).read_text(encoding="utf-8"))
    assert config["comments"] == {"lineComment": "#"}
    assert config["brackets"] == [["(", ")"], ["[", "]"]]
    closing = {(p["open"], p["close"]) for p in config["autoClosingPairs"]}
    assert closing == {("(", ")"), ("[", "]"), ('"', '"')}
    assert (VSCODE / package["main"]).is_file()
    assert "vscode-languageclient" in package["dependencies"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_vscode_extension_starts_referral_lsp(tmp_path: Path) -> None:
    """Load extension.js in node with stand-ins for `vscode` and `vscode-languageclient`."""
    modules = tmp_path / "node_modules"
    (modules / "vscode").mkdir(parents=True)
    (modules / "vscode" / "index.js").write_text(
        "module.exports = { workspace: { getConfiguration: () => ({ get: (k, d) => d }) } };")
    (modules / "vscode-languageclient").mkdir()
    (modules / "vscode-languageclient" / "node.js").write_text(
        "class LanguageClient { constructor(id, name, server, client) {"
        " Object.assign(this, {id, name, server, client}); global.made = this; }"
        " start() { this.started = true; return Promise.resolve(); }"
        " stop() { return Promise.resolve(); } }\n"
        "module.exports = { LanguageClient, TransportKind: { stdio: 0 } };")
    shutil.copy(VSCODE / "extension.js", tmp_path / "extension.js")
    script = ("const ext = require('./extension.js'); const ctx = {subscriptions: []};"
              " ext.activate(ctx); const c = global.made;"
              " console.log(JSON.stringify({id: c.id, server: c.server, started: c.started,"
              " selector: c.client.documentSelector, subscriptions: ctx.subscriptions.length}));")
    result = subprocess.run(["node", "-e", script], cwd=tmp_path, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    made = json.loads(result.stdout)
    assert made["server"] == {"command": "referral", "args": ["lsp"], "transport": 0}
    assert made["selector"] == [{"scheme": "file", "language": "referral-rule"}]
    assert made["started"] is True and made["subscriptions"] == 1
