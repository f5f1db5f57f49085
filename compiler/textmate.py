"""Editor syntax files generated from the Lark grammar's terminals, so they cannot drift.

The TextMate grammar (VS Code, GitHub's Linguist, most editors) takes its
regular expressions from ``grammar/referral.lark`` itself: keywords from the
``_KEYWORD: /word\\b/i`` terminals, literals (MONEY, DATE, PHRASE...) verbatim.
A TextMate grammar has no parser state, so the two contexts the contextual
lexer decides by state are spelled out from the grammar's rules: a NAME is the
word after the keywords that precede NAME in some rule (RULE, TO, PER), and a
number followed by a keyword is not money.  Patterns are tried at the earliest
position, ties going to the first listed, so keywords come before PHRASE.

``python -m compiler.textmate`` rewrites ``editors/vscode/syntaxes/referral.tmLanguage.json``
and ``editors/vim/syntax/referral.vim``; ``--check`` exits 1 when either is stale.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lark.grammar import Terminal
from lark.lexer import PatternStr

from compiler.ide import grammar_parser, keyword_words
from dsl.errors import ReferralError

SCOPE_NAME = "source.referral"
EDITORS = Path(__file__).resolve().parents[1] / "editors"
TEXTMATE_FILE = EDITORS / "vscode" / "syntaxes" / "referral.tmLanguage.json"
VIM_FILE = EDITORS / "vim" / "syntax" / "referral.vim"

# Terminal -> TextMate scope for everything that is not a keyword.
TERMINAL_SCOPES: dict[str, str] = {
    "COMMENT": "comment.line.number-sign.referral",
    "STRING": "string.quoted.double.referral",
    "DATE": "constant.numeric.date.referral",
    "MONEY": "constant.numeric.money.referral",
    "PERCENT": "constant.numeric.percent.referral",
    "DECIMAL": "constant.numeric.decimal.referral",
    "INT": "constant.numeric.integer.referral",
    "PATH": "variable.other.member.referral",
    "NAME": "entity.name.referral",
    "PHRASE": "entity.name.function.phrase.referral",
    "CMP": "keyword.operator.comparison.referral",
    "_EQ": "keyword.operator.comparison.referral",
    "_LPAR": "punctuation.section.parens.referral",
    "_RPAR": "punctuation.section.parens.referral",
    "_LSQB": "punctuation.section.brackets.referral",
    "_RSQB": "punctuation.section.brackets.referral",
    "_COMMA": "punctuation.separator.comma.referral",
}
WORD_OPERATORS = frozenset({"_AND", "_OR", "_NOT", "_IS", "_IN", "_CONTAINS", "_WITHIN"})
CONSTANTS = frozenset({"_TRUE", "_FALSE", "_NULL"})
KEYWORD_SCOPE = "keyword.control.referral"
OPERATOR_WORD_SCOPE = "keyword.operator.word.referral"
CONSTANT_SCOPE = "constant.language.referral"
IGNORED = frozenset({"WS"})  # whitespace is nobody's token

# Literal terminals, in the order the lexer prefers them (Lark priority, then this order).
_LITERALS = ("DATE", "MONEY", "PERCENT", "PATH", "DECIMAL", "INT")


class GrammarDriftError(ReferralError):
    """The grammar has a terminal this generator does not know how to colour."""


def terminal_scope(terminal: str) -> str:
    """The TextMate scope of a terminal of the grammar."""
    if terminal in CONSTANTS:
        return CONSTANT_SCOPE
    if terminal in WORD_OPERATORS:
        return OPERATOR_WORD_SCOPE
    if terminal in keyword_words():
        return KEYWORD_SCOPE
    if terminal in TERMINAL_SCOPES:
        return TERMINAL_SCOPES[terminal]
    raise GrammarDriftError(f"terminal {terminal} of grammar/referral.lark has no TextMate "
                            "scope: add it to compiler.textmate.TERMINAL_SCOPES")


def _terminals() -> dict[str, Any]:
    return {t.name: t for t in grammar_parser().terminals if t.name not in IGNORED}


def _pattern(terminal: str) -> str:
    t = _terminals()[terminal]
    if isinstance(t.pattern, PatternStr):
        return re.escape(t.pattern.value)
    # Lark keeps \n and \t as the characters themselves; a grammar file shows escapes.
    value = str(t.pattern.value).replace("\n", r"\n").replace("\t", r"\t")
    return f"(?i:{value})" if "i" in t.pattern.flags else value


def _words(terminals: Iterator[str] | set[str] | frozenset[str]) -> list[str]:
    words = keyword_words()
    return sorted({w.lower() for t in terminals for w in words.get(t, ())})


def _word_group(terminals: Iterator[str] | set[str] | frozenset[str]) -> str:
    return r"\b(?i:" + "|".join(_words(terminals)) + r")\b"


def name_contexts() -> list[str]:
    """The keywords written just before a NAME in some rule of the grammar (RULE, TO, PER)."""
    found: set[str] = set()
    for rule in grammar_parser().rules:
        symbols = rule.expansion
        for before, symbol in zip(symbols, symbols[1:], strict=False):
            if symbol.name == "NAME" and isinstance(before, Terminal):
                found.add(before.name)
    return sorted(found)


def _scopes_by_group() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for name in _terminals():
        if name not in keyword_words():
            continue
        groups.setdefault(terminal_scope(name), []).append(name)
    return groups


def textmate_grammar() -> dict[str, Any]:
    """The TextMate grammar as JSON data (what ``referral.tmLanguage.json`` holds)."""
    every_keyword = r"(?i:" + "|".join(_words(set(keyword_words()))) + r")\b"
    repository: dict[str, dict[str, Any]] = {}
    order: list[str] = []

    def add(key: str, entry: dict[str, Any]) -> None:
        repository[key] = entry
        order.append(key)

    add("comment", {"name": terminal_scope("COMMENT"), "match": _pattern("COMMENT")})
    add("string", {"name": terminal_scope("STRING"), "match": _pattern("STRING")})
    for before in name_contexts():
        key = f"name-after-{before.lstrip('_').lower()}"
        add(key, {
            "match": rf"({_word_group({before})})[ \t]+(?!{every_keyword})([^\W\d]\w*)",
            "captures": {"1": {"name": terminal_scope(before)},
                         "2": {"name": terminal_scope("NAME")}},
        })
    for literal in _LITERALS:
        match = _pattern(literal)
        if literal == "MONEY":  # "HOLD 1 DAY": a number, then a keyword, never a currency
            match = rf"(?!-?\d+(?:\.\d+)?[ \t]+{every_keyword})" + match
        add(literal.lower(), {"name": terminal_scope(literal), "match": match})
    groups = _scopes_by_group()
    for scope in (CONSTANT_SCOPE, OPERATOR_WORD_SCOPE, KEYWORD_SCOPE):
        key = {CONSTANT_SCOPE: "constant", OPERATOR_WORD_SCOPE: "operator-word",
               KEYWORD_SCOPE: "keyword"}[scope]
        add(key, {"name": scope, "match": _word_group(set(groups[scope]))})
    add("phrase", {"name": terminal_scope("PHRASE"), "match": _pattern("PHRASE")})
    punctuation: dict[str, list[str]] = {}
    for name in ("CMP", "_EQ", "_LPAR", "_RPAR", "_LSQB", "_RSQB", "_COMMA"):
        same = punctuation.setdefault(terminal_scope(name), [])
        literal = _terminals()[name].pattern
        if not any(re.fullmatch(p, literal.value) for p in same):  # "=" is a CMP already
            same.append(_pattern(name))
    for scope, alternatives in punctuation.items():
        add(scope.split(".")[-2], {"name": scope, "match": "|".join(alternatives)})
    _check_covered(repository)
    return {
        "name": "Referral rule",
        "scopeName": SCOPE_NAME,
        "fileTypes": ["rule"],
        "comment": "Generated from grammar/referral.lark by `python -m compiler.textmate`; "
                   "do not edit.",
        "patterns": [{"include": f"#{key}"} for key in order],
        "repository": repository,
    }


def _check_covered(repository: dict[str, dict[str, Any]]) -> None:
    scopes = {e["name"] for e in repository.values() if "name" in e}
    scopes |= {c["name"] for e in repository.values() for c in e.get("captures", {}).values()}
    for name in _terminals():
        if terminal_scope(name) not in scopes:
            raise GrammarDriftError(f"terminal {name} has no pattern in the TextMate grammar")


# ------------------------------------------------------------------------------ vim

# Words that ":syn keyword" takes for its own arguments: matched as whole words instead.
_VIM_ARGUMENTS = frozenset({"contains", "containedin", "contained", "nextgroup", "transparent",
                            "oneline", "fold", "display", "extend", "skipwhite", "skipnl",
                            "skipempty", "conceal", "concealends", "cchar"})

_VIM_GROUPS = {KEYWORD_SCOPE: "referralKeyword", OPERATOR_WORD_SCOPE: "referralOperator",
               CONSTANT_SCOPE: "referralConstant"}

_VIM_BODY = r"""
syn match referralOperator "==\|!=\|<>\|>=\|<=\|[=<>]"
syn match referralDelimiter "[()\[\],]"
syn match referralPhrase "\<\a[[:alnum:]_'-]*\>"
syn match referralField "\<\h\w*\%(\.\h\w*\)\+"
syn match referralNumber "-\=\<\d\+\%(\.\d\+\)\=\>"
syn match referralPercent "\<\d\+\%(\.\d\+\)\=\s*%"
syn match referralDate "\<\d\{4}-\d\{2}-\d\{2}\>"
syn match referralMoney "-\=[₹$€£¥]\s*\d[0-9,]*\%(\.\d\+\)\="
syn match referralMoney "\<\a\{3}\s\+\d[0-9,]*\%(\.\d\+\)\=\>"
syn match referralMoney "\<\d[0-9,]*\%(\.\d\+\)\=\s\+\%(\%(KEYWORDS3\)\>\)\@!\a\{3}\>"
syn match referralName "\%(\<\%(NAMECONTEXT\)\s\+\)\@<=\h\w*"
ARGUMENTWORDS
syn region referralString start=+"+ skip=+\\.+ end=+"+ oneline
syn match referralComment "#.*$" contains=@Spell

hi def link referralKeyword Keyword
hi def link referralOperator Operator
hi def link referralConstant Constant
hi def link referralDelimiter Delimiter
hi def link referralPhrase Function
hi def link referralField Identifier
hi def link referralNumber Number
hi def link referralPercent Number
hi def link referralDate Number
hi def link referralMoney Number
hi def link referralName Type
hi def link referralString String
hi def link referralComment Comment

let b:current_syntax = "referral"
"""


def vim_syntax() -> str:
    """The vim syntax file: keyword lists from the grammar, patterns for the literals."""
    lines = [
        '" Vim syntax file for the referral rule language (*.rule).',
        '" Generated from grammar/referral.lark by `python -m compiler.textmate`; do not edit.',
        "scriptencoding utf-8",
        'if exists("b:current_syntax")',
        "  finish",
        "endif",
        "",
        "syn case ignore",
    ]
    groups = _scopes_by_group()
    arguments: list[str] = []
    for scope, group in _VIM_GROUPS.items():
        words = _words(set(groups[scope]))
        lines.append(f"syn keyword {group} " + " ".join(w for w in words
                                                       if w not in _VIM_ARGUMENTS))
        arguments += [f'syn match {group} "\\<{w}\\>"' for w in words if w in _VIM_ARGUMENTS]
    three = "\\|".join(w for w in _words(set(keyword_words())) if len(w) == 3)
    contexts = "\\|".join(_words(set(name_contexts())))
    body = (_VIM_BODY.replace("KEYWORDS3", three).replace("NAMECONTEXT", contexts)
            .replace("ARGUMENTWORDS", "\n".join(arguments)))
    # Matches defined later win at the same position; keywords win over all of them.
    return "\n".join(lines) + "\n" + body


def textmate_json() -> str:
    return json.dumps(textmate_grammar(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    outputs = {TEXTMATE_FILE: textmate_json(), VIM_FILE: vim_syntax()}
    stale = [p for p, text in outputs.items()
             if not p.exists() or p.read_text(encoding="utf-8") != text]
    if "--check" in argv:
        for p in stale:
            print(f"{p}: stale; run `python -m compiler.textmate`", file=sys.stderr)
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(outputs[p], encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
