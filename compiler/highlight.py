"""Rule text -> HTML with syntax highlighting, from the project's own grammar.

The text is parsed with the rule grammar (LALR and the contextual lexer, as
``dsl.parser`` does), and every token the lexer produces, comments included, is
collected through Lark's lexer callbacks.  So a word is coloured as what the
parser took it for: ``referrer is a paid user`` is one phrase, ``is`` in
``referee.plan IS NULL`` a keyword.  Each token becomes ``<span class=...>``;
the text between tokens (whitespace) is copied.  Everything is HTML-escaped.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from lark import Lark, Token, Tree
from markupsafe import Markup, escape

from dsl.parser import GRAMMAR_OPTIONS, terminal_names

# Terminal name -> CSS class.  Keywords (``_RULE``, ``_IF``...) are the default.
TOKEN_CLASSES: dict[str, str] = {
    "STRING": "str",
    "MONEY": "money",
    "PERCENT": "num",
    "INT": "num",
    "DECIMAL": "num",
    "DATE": "num",
    "PATH": "path",
    "NAME": "name",
    "PHRASE": "phrase",
    "COMMENT": "comment",
    "PERIOD": "kw",
    "_TRUE": "const",
    "_FALSE": "const",
    "_NULL": "const",
    "CMP": "op",
    "_EQ": "op",
    "_LPAR": "op",
    "_RPAR": "op",
    "_LSQB": "op",
    "_RSQB": "op",
    "_COMMA": "op",
}

_sink = threading.local()


def token_class(terminal: str) -> str | None:
    """The CSS class of a terminal; None for whitespace."""
    if terminal in TOKEN_CLASSES:
        return TOKEN_CLASSES[terminal]
    if terminal.startswith("_") and terminal[1:].isalpha():
        return "kw"
    return None


def _collect(token: Token) -> Token:
    sink = getattr(_sink, "tokens", None)
    if sink is not None:
        sink.append(token)
    return token


@functools.cache
def _parser() -> Lark:
    callbacks: dict[str, Callable[[Token], Token]] = {
        name: _collect for name in terminal_names()
    }
    return Lark.open("referral.lark", lexer_callbacks=callbacks, **GRAMMAR_OPTIONS)


@dataclass(frozen=True)
class Span:
    start: int  # character offsets into the text
    end: int
    css: str


@dataclass(frozen=True)
class Lexed:
    """A parsed rule file: its token spans and where each statement starts and ends."""

    text: str
    spans: tuple[Span, ...]
    statements: dict[int, int]  # first line -> last line (1-based)

    def html(self, start: int = 0, end: int | None = None) -> Markup:
        """``text[start:end]`` as escaped HTML with a span per token."""
        end = len(self.text) if end is None else end
        out: list[str] = []
        pos = start
        for span in self.spans:
            if span.end <= start or span.start >= end:
                continue
            a, b = max(span.start, start), min(span.end, end)
            out.append(str(escape(self.text[pos:a])))
            out.append(f'<span class="{span.css}">{escape(self.text[a:b])}</span>')
            pos = b
        out.append(str(escape(self.text[pos:end])))
        return Markup("".join(out))

    def statement_lines(self, first_line: int) -> tuple[int, int]:
        """The lines of the statement starting at ``first_line``, with the comment
        lines just above it (the comments ``fmt`` keeps with it)."""
        last = self.statements.get(first_line, first_line)
        lines = self.text.splitlines()
        begin = first_line
        while begin > 1 and _comment_or_blank(lines[begin - 2]):
            begin -= 1
        while begin < first_line and not lines[begin - 1].strip():
            begin += 1
        return begin, last

    def excerpt(self, first_line: int) -> Markup:
        """The highlighted text of the statement starting at ``first_line``."""
        begin, last = self.statement_lines(first_line)
        offsets = [0]
        for line in self.text.splitlines(keepends=True):
            offsets.append(offsets[-1] + len(line))
        end = offsets[min(last, len(offsets) - 1)]
        return Markup(self.html(offsets[begin - 1], end).rstrip())


def _comment_or_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def lex(text: str) -> Lexed:
    """Parse ``text`` (a valid rule file) and keep its tokens.

    Raises Lark's ``UnexpectedInput`` on a syntax error: callers highlight
    programs that already loaded.
    """
    tokens: list[Token] = []
    _sink.tokens = tokens
    try:
        tree = _parser().parse(text)
    finally:
        _sink.tokens = None
    spans: dict[int, Span] = {}
    for tok in tokens:
        css = token_class(tok.type)
        if css is not None and tok.start_pos is not None and tok.end_pos is not None:
            # A token seen twice (the contextual lexer may retry) counts once.
            spans.setdefault(tok.start_pos, Span(tok.start_pos, tok.end_pos, css))
    statements = {
        child.meta.line: child.meta.end_line
        for child in tree.children
        if isinstance(child, Tree) and not child.meta.empty
    }
    return Lexed(text, tuple(sorted(spans.values(), key=lambda s: s.start)), statements)


def highlight(text: str) -> Markup:
    """The whole text highlighted."""
    return lex(text).html()


__all__ = ["TOKEN_CLASSES", "Lexed", "Span", "highlight", "lex", "token_class"]
