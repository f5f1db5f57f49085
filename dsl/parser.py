"""Rule text -> typed rule model, one file at a time.

The grammar (``grammar/referral.lark``) is loaded once at import.  Parsing is
LALR(1) with Lark's contextual lexer, so it is deterministic and fast; a
``Transformer`` builds the dataclasses of ``dsl.model``.  The result is
*unresolved*: vocabulary phrases stay ``PhraseRef`` nodes until
``dsl.program`` resolves them against the DEFINEs of the whole program.

Every problem is reported as a ``Diagnostic`` (``file:line:col: error: ...``)
with the source line and a caret, and a file with several broken statements
reports each of them, not only the first.
"""

from __future__ import annotations

import bisect
import re
import threading
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken
from lark.tree import Meta

import grammar
from dsl.bounds import MAX_DAYS, MAX_NESTING, MAX_NUMBER_DIGITS, MAX_PRIORITY
from dsl.errors import (
    Diagnostic,
    EvaluationError,
    MoneyError,
    RuleSyntaxError,
    SourcePos,
    caret_context,
)
from dsl.model import (
    LIMIT_PERS,
    PERIODS,
    ROLES,
    Action,
    And,
    Compare,
    CompareOp,
    Condition,
    Definition,
    Direction,
    Example,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    LimitPer,
    Not,
    Or,
    PercentReward,
    Period,
    PhraseRef,
    Program,
    Role,
    Rule,
    Setting,
    Value,
    Within,
)
from dsl.money import (
    AMBIGUOUS_SYMBOLS,
    CURRENCY_EXPONENTS,
    SYMBOLS,
    Money,
    parse_money,
    symbol_table,
)
from dsl.timeutil import zone

_comments = threading.local()


def _collect_comment(token: Token) -> None:
    sink = getattr(_comments, "sink", None)
    if sink is not None:
        sink.append(token)


def _collect_symbol(token: Token) -> Token:
    """Money written with $ or ¥, whose currency depends on the program's CURRENCY."""
    sink = getattr(_comments, "symbols", None)
    if sink is not None and str(token).lstrip("-")[:1] in AMBIGUOUS_SYMBOLS:
        sink.append(token)
    return token


# How the grammar is built; compiler.highlight builds its lexing twin with the same options.
GRAMMAR_OPTIONS: dict[str, Any] = {
    "rel_to": grammar.__file__,
    "parser": "lalr",
    "lexer": "contextual",
    "propagate_positions": True,
    "maybe_placeholders": True,
}
_PARSER = Lark.open(
    "referral.lark",
    lexer_callbacks={"COMMENT": _collect_comment, "MONEY": _collect_symbol},
    **GRAMMAR_OPTIONS,
)


def terminal_names() -> list[str]:
    """Every terminal of the grammar (keywords, literals, punctuation)."""
    return [t.name for t in _PARSER.terminals]

# What the user is told was expected, instead of internal terminal names.
TOKEN_NAMES: dict[str, str] = {
    "PATH": "a field path (like referee.country)",
    "NAME": "a name",
    "STRING": "a quoted string",
    "MONEY": "a money amount",
    "PERCENT": "a percentage",
    "DATE": "a date",
    "DECIMAL": "a decimal number",
    "INT": "a whole number",
    "PHRASE": "a phrase",
    "PERIOD": "DAY, MONTH, YEAR or EVER",
    "CMP": "a comparison (=, !=, >, >=, <, <=)",
    "_EQ": '"="',
    "_LPAR": '"("',
    "_RPAR": '")"',
    "_LSQB": '"["',
    "_RSQB": '"]"',
    "_COMMA": '","',
    "$END": "end of input",
}

# The CMP terminal's spellings; == and <> are accepted and written as = and !=.
_CMP_OPS: dict[str, CompareOp] = {
    "=": "=", "==": "=", "!=": "!=", "<>": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<=",
}
_ROLES: dict[str, Role] = {r: r for r in ROLES}
_LIMIT_PERS: dict[str, LimitPer] = {p: p for p in LIMIT_PERS}
_PERIODS: dict[str, Period] = {p: p for p in PERIODS}
_STATEMENT_START = re.compile(
    r"^[ \t]*(?:rule|define|example|currency|timezone)\b|^if\b", re.IGNORECASE | re.M
)


def token_name(name: str) -> str:
    if name in TOKEN_NAMES:
        return TOKEN_NAMES[name]
    return name.lstrip("_") if name.lstrip("_").isalpha() else name


def _expected(names: set[str] | frozenset[str]) -> str:
    shown = sorted({token_name(n) for n in names if n not in {"COMMENT", "WS"}})
    if len(shown) == 1:
        return f"expected {shown[0]}"
    return "expected one of: " + ", ".join(shown)


def _syntax_diagnostic(e: UnexpectedInput, text: str, filename: str) -> Diagnostic:
    if isinstance(e, UnexpectedToken) and e.token.type == "$END" or isinstance(e, UnexpectedEOF):
        lines = text.splitlines() or [""]
        line, column = len(lines), len(lines[-1]) + 1
        expected = getattr(e, "expected", None) or getattr(e, "accepts", None) or set()
        message = f"unexpected end of input, {_expected(set(expected))}"
    elif isinstance(e, UnexpectedToken):
        line, column = e.line, e.column
        found = str(e.token).split("\n")[0]
        expected = e.accepts or e.expected
        message = f"unexpected {found!r}, {_expected(set(expected))}"
    else:
        assert isinstance(e, UnexpectedCharacters)
        line, column = e.line, e.column
        found = e.char
        if found == '"':
            message = "unterminated string (a string ends with \" on the same line)"
        else:
            message = f"unexpected character {found!r}, {_expected(set(e.allowed or ()))}"
    offset = e.pos_in_stream if isinstance(e, UnexpectedCharacters) else (
        e.token.start_pos if isinstance(e, UnexpectedToken) and e.token.type != "$END" else None)
    digit = _foreign_digit(text, offset) if offset is not None else None
    if digit is not None:
        assert offset is not None
        char = text[offset + digit]
        column += digit
        message = (f"U+{ord(char):04X} {unicodedata.name(char, 'DIGIT')} is not an ASCII "
                   "digit: numbers, amounts and dates are written with 0-9")
    return Diagnostic(
        "error", message, SourcePos(filename, line, column), caret_context(text, line, column)
    )


# What may stand before the digits of a literal: a sign, a currency symbol or code, and
# the digits, separators and spaces of the literal itself.
_LITERAL_LEAD = re.compile(r"[-₹$€£¥A-Za-z0-9,.: \t]{0,24}")


def _foreign_digit(text: str, offset: int) -> int | None:
    """How far past ``offset`` a literal's first non-ASCII digit is (``₹1٥0``, ``₹𝟓𝟎𝟎``),
    when the lexer stopped in a number written with another script's digits."""
    lead = _LITERAL_LEAD.match(text, offset)
    end = lead.end() if lead else offset
    if end < len(text) and text[end].isdecimal() and "\n" not in text[offset:end]:
        return end - offset
    return None


def _resume_offset(text: str, error_line: int, after: int) -> int | None:
    """Where parsing restarts after a syntax error: the next statement start at or
    after the error's line (past the current start, so parsing always advances)."""
    offset = 0
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        if i >= error_line and offset > after and _STATEMENT_START.match(line):
            return offset
        offset += len(line)
    return None


def _place(tok: Token) -> tuple[int, int]:
    """A lexed token's line and column (Lark types them optional, for hand-made tokens)."""
    assert tok.line is not None and tok.column is not None
    return tok.line, tok.column


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def _normalize_phrase(phrase: str) -> str:
    return " ".join(phrase.split())


def _auto_id_prefix(filename: str) -> str:
    stem = re.sub(r"\W+", "_", Path(filename).stem).strip("_").lower()
    if not stem or stem[0].isdigit():
        stem = "rule_" + stem if stem else "rule"
    return stem


Statement = Rule | Definition | Example | Setting


class _Clause:
    """A rule clause on its way into the Rule (keeps its position for errors)."""

    def __init__(self, kind: str, value: Any, pos: SourcePos) -> None:
        self.kind, self.value, self.pos = kind, value, pos


class _ToModel(Transformer):
    """Parse tree -> model.  Literal errors are collected, not raised, so that every
    bad literal of a file is reported."""

    def __init__(self, filename: str, text: str, symbols: Mapping[str, str]) -> None:
        super().__init__()
        self.filename = filename
        self.text = text
        self.lines = text.splitlines()
        self.symbols = symbols
        self.errors: list[Diagnostic] = []
        self._auto = 0
        self._prefix = _auto_id_prefix(filename)

    def _pos(self, tok: Token) -> SourcePos:
        return SourcePos(self.filename, *_place(tok))

    def _meta_pos(self, meta: Meta) -> SourcePos:
        return SourcePos(self.filename, meta.line, meta.column)

    def _error(self, message: str, pos: SourcePos) -> None:
        self.errors.append(
            Diagnostic("error", message, pos, caret_context(self.lines, pos.line, pos.column))
        )

    def _role(self, tok: Token) -> Role:
        role = _ROLES.get(str(tok).lower())
        if role is None:
            self._error(f"unknown beneficiary {str(tok)!r} (expected referrer or referee)",
                        self._pos(tok))
            return "referrer"
        return role

    def _digits_ok(self, tok: Token) -> bool:
        """A number literal within ``MAX_NUMBER_DIGITS`` (checked before ``int()``, which
        refuses thousands of digits with a ValueError)."""
        digits = sum(ch in "0123456789" for ch in str(tok))
        if digits <= MAX_NUMBER_DIGITS:
            return True
        self._error(f"a number has at most {MAX_NUMBER_DIGITS} digits, this one {digits}",
                    self._pos(tok))
        return False

    def _int(self, tok: Token) -> int:
        return int(tok) if self._digits_ok(tok) else 0

    def _days(self, tok: Token, keyword: str, pos: SourcePos) -> int:
        days = self._int(tok)
        if days < 0:
            self._error(f"{keyword} needs a number of days >= 0, got {days}", self._pos(tok))
        elif days > MAX_DAYS:
            self._error(f"{keyword} {days} DAYS is more than {MAX_DAYS:,} days (100 years)", pos)
        return days

    def _money(self, tok: Token) -> Money:
        if not self._digits_ok(tok):
            return Money(0, "INR")
        text = str(tok)
        negative = text.startswith("-")
        try:
            m = parse_money(text[1:] if negative else text, self.symbols)
        except MoneyError as e:
            self._error(e.message, self._pos(tok))
            return Money(0, "INR")
        return Money(-m.amount, m.currency) if negative else m

    # ---- literals
    def string(self, items: Sequence[Token]) -> str:
        return _unquote(items[0])

    def integer(self, items: Sequence[Token]) -> int:
        return self._int(items[0])

    def decimal(self, items: Sequence[Token]) -> Decimal:
        return Decimal(str(items[0])) if self._digits_ok(items[0]) else Decimal(0)

    def money(self, items: Sequence[Token]) -> Money:
        return self._money(items[0])

    def date(self, items: Sequence[Token]) -> date:
        try:
            return date.fromisoformat(str(items[0]))
        except ValueError:
            self._error(f"not a valid date: {str(items[0])}", self._pos(items[0]))
            return date(1970, 1, 1)

    def true(self, _: Sequence[Any]) -> bool:
        return True

    def false(self, _: Sequence[Any]) -> bool:
        return False

    def null(self, _: Sequence[Any]) -> None:
        return None

    def list(self, items: Sequence[Value]) -> tuple[Value, ...]:
        return tuple(items)

    def field_ref(self, items: Sequence[Token]) -> FieldRef:
        return FieldRef(str(items[0]))

    # ---- conditions
    def compare(self, items: Sequence[Any]) -> Compare:
        path, op, value = items
        return Compare(str(path), _CMP_OPS[str(op)], value, self._pos(path))

    def is_(self, items: Sequence[Any]) -> Compare:
        return Compare(str(items[0]), "IS", items[1], self._pos(items[0]))

    def is_not(self, items: Sequence[Any]) -> Compare:
        return Compare(str(items[0]), "IS NOT", items[1], self._pos(items[0]))

    def in_(self, items: Sequence[Any]) -> Compare:
        return Compare(str(items[0]), "IN", items[1], self._pos(items[0]))

    def not_in(self, items: Sequence[Any]) -> Compare:
        return Compare(str(items[0]), "NOT IN", items[1], self._pos(items[0]))

    def contains(self, items: Sequence[Any]) -> Compare:
        return Compare(str(items[0]), "CONTAINS", items[1], self._pos(items[0]))

    def within(self, items: Sequence[Any], direction: Direction = "of") -> Within:
        path, tok, other = items
        days = self._days(tok, "WITHIN", self._pos(path))
        return Within(str(path), days, str(other), self._pos(path), direction)

    def within_after(self, items: Sequence[Any]) -> Within:
        return self.within(items, "after")

    def within_before(self, items: Sequence[Any]) -> Within:
        return self.within(items, "before")

    def truthy(self, items: Sequence[Token]) -> Compare:
        return Compare(str(items[0]), "=", True, self._pos(items[0]))

    def phrase(self, items: Sequence[Token]) -> PhraseRef:
        tok = items[0]
        text = _unquote(tok) if tok.type == "STRING" else str(tok)
        return PhraseRef(_normalize_phrase(text), self._pos(tok))

    def negation(self, items: Sequence[Any]) -> Not:
        return Not(items[0])

    def and_expr(self, items: Sequence[Any]) -> And:
        return And(tuple(items))

    def or_expr(self, items: Sequence[Any]) -> Or:
        return Or(tuple(items))

    # ---- actions and clauses
    @v_args(meta=True)
    def fixed(self, meta: Meta, items: Sequence[Any]) -> FixedReward:
        amount = self._money(items[0])
        to, cap = self._action_opts(items[1:])
        if cap is not None:
            self._error("UP TO applies only to percentage rewards", self._pos(cap[1]))
        return FixedReward(amount, to, pos=self._pos(items[0]))

    @v_args(meta=True)
    def percent(self, meta: Meta, items: Sequence[Any]) -> PercentReward:
        tok, path = items[0], items[1]
        percent = Decimal(str(tok).rstrip("%").strip()) if self._digits_ok(tok) else Decimal(1)
        to, cap = self._action_opts(items[2:])
        return PercentReward(percent, str(path), to, cap[0] if cap else None, pos=self._pos(tok))

    def _action_opts(self, opts: Sequence[Any]) -> tuple[Role, tuple[Money, Token] | None]:
        to: Role | None = None
        cap: tuple[Money, Token] | None = None
        for opt in opts:
            if opt is None:
                continue
            kind, value, tok = opt
            if kind == "to":
                if to is not None:
                    self._error("TO given twice in one action", self._pos(tok))
                to = value
            else:
                if cap is not None:
                    self._error("UP TO given twice in one action", self._pos(tok))
                cap = (value, tok)
        return to or "referrer", cap

    def beneficiary(self, items: Sequence[Token]) -> tuple[str, Role, Token]:
        return ("to", self._role(items[0]), items[0])

    def cap(self, items: Sequence[Token]) -> tuple[str, Money, Token]:
        return ("cap", self._money(items[0]), items[0])

    def actions(self, items: Sequence[Action]) -> tuple[Action, ...]:
        return tuple(items)

    @v_args(meta=True)
    def priority(self, meta: Meta, items: Sequence[Token]) -> _Clause:
        priority = self._int(items[0])
        if abs(priority) > MAX_PRIORITY:
            self._error(f"PRIORITY must be between -{MAX_PRIORITY:,} and {MAX_PRIORITY:,}, "
                        f"got {priority}", self._meta_pos(meta))
        return _Clause("priority", priority, self._meta_pos(meta))

    @v_args(meta=True)
    def exclusive(self, meta: Meta, items: Sequence[Any]) -> _Clause:
        return _Clause("exclusive", True, self._meta_pos(meta))

    @v_args(meta=True)
    def limit(self, meta: Meta, items: Sequence[Token]) -> _Clause:
        amount = self._money(items[0])
        period = _PERIODS[str(items[2]).lower()]  # the PERIOD terminal admits only these
        per = _LIMIT_PERS.get(str(items[1]).lower())
        if per is None:
            self._error(f"unknown LIMIT ... PER {str(items[1])!r} (expected referrer, referee "
                        "or person)", self._pos(items[1]))
            per = "referrer"
        value = Limit(amount, per, period, pos=self._pos(items[0]))
        return _Clause("limit", value, self._meta_pos(meta))

    @v_args(meta=True)
    def hold(self, meta: Meta, items: Sequence[Token]) -> _Clause:
        days = self._days(items[0], "HOLD", self._meta_pos(meta))
        start = str(items[1]) if items[1] is not None else None
        return _Clause("hold", (days, start), self._meta_pos(meta))

    @v_args(meta=True)
    def reverse(self, meta: Meta, items: Sequence[Any]) -> _Clause:
        return _Clause("reverse", items[0], self._meta_pos(meta))

    def rule_header(self, items: Sequence[Any]) -> tuple[str, str | None]:
        return str(items[0]), _unquote(items[1]) if items[1] is not None else None

    @v_args(meta=True)
    def rule(self, meta: Meta, items: Sequence[Any]) -> Rule:
        header = items[0]
        if header is None:
            self._auto += 1
            rule_id, description = f"{self._prefix}_{self._auto}", None
        else:
            rule_id, description = header
        clauses: dict[str, Any] = {}
        condition: Condition = And(())  # the grammar requires IF and THEN
        actions: tuple[Action, ...] = ()
        for item in items[1:]:
            if isinstance(item, _Clause):
                if item.kind in clauses:
                    self._error(f"{item.kind.upper()} given twice in rule {rule_id}", item.pos)
                clauses[item.kind] = item.value
            elif isinstance(item, tuple):
                actions = item
            else:
                condition = item
        return Rule(
            id=rule_id,
            description=description,
            condition=condition,
            actions=actions,
            priority=clauses.get("priority", 0),
            exclusive=clauses.get("exclusive", False),
            limit=clauses.get("limit"),
            hold_days=clauses.get("hold", (0, None))[0],
            reverse_if=clauses.get("reverse"),
            source=self._meta_pos(meta),
            auto_id=header is None,
            hold_from=clauses.get("hold", (0, None))[1],
        )

    @v_args(meta=True)
    def currency(self, meta: Meta, items: Sequence[Token]) -> Setting:
        code = str(items[0]).upper()
        if code not in CURRENCY_EXPONENTS:
            self._error(f"unknown currency {str(items[0])!r} (not an ISO 4217 code)",
                        self._pos(items[0]))
        return Setting("currency", code, self._meta_pos(meta))

    @v_args(meta=True)
    def timezone(self, meta: Meta, items: Sequence[Token]) -> Setting:
        name = _unquote(items[0])
        try:
            zone(name)
        except EvaluationError as e:
            self._error(e.message, self._pos(items[0]))
        return Setting("timezone", name, self._meta_pos(meta))

    @v_args(meta=True)
    def definition(self, meta: Meta, items: Sequence[Any]) -> Definition:
        return Definition(
            _normalize_phrase(_unquote(items[0])),
            items[1],
            source=self._meta_pos(meta),
        )

    def given(self, items: Sequence[Any]) -> tuple[str, Value]:
        return (str(items[0]), items[1])

    def expected(self, items: Sequence[Any]) -> ExpectedReward:
        role = self._role(items[1]) if items[1] is not None else "referrer"
        return ExpectedReward(role, self._money(items[0]))

    def expect_nothing(self, _: Sequence[Any]) -> tuple[ExpectedReward, ...]:
        return ()

    def expect_rewards(self, items: Sequence[ExpectedReward]) -> tuple[ExpectedReward, ...]:
        return tuple(items)

    @v_args(meta=True)
    def example(self, meta: Meta, items: Sequence[Any]) -> Example:
        return Example(
            _unquote(items[0]),
            tuple(items[1:-1]),
            items[-1],
            source=self._meta_pos(meta),
        )


def _statement_start_before(text: str, error_line: int, after: int) -> int | None:
    """The start of the statement holding a syntax error (the last statement start at
    or before its line, past ``after``), so the statements before it still parse."""
    found = None
    offset = 0
    for i, line in enumerate(text.splitlines(keepends=True), start=1):
        if i > error_line:
            break
        if offset > after and _STATEMENT_START.match(line):
            found = offset
        offset += len(line)
    return found


# Syntax errors reported per file: recovery parses the rest of the file after each.
MAX_SYNTAX_ERRORS = 100

def _parse_trees(text: str, filename: str) -> tuple[list[Tree], list[Diagnostic]]:
    """Parse the text; after a syntax error, resume at the next statement.

    Returns the parse trees of every statement that parsed (those before a broken
    statement too) and the syntax diagnostics, one per broken statement.
    """
    trees: list[Tree] = []
    diagnostics: list[Diagnostic] = []
    start = 0

    def padded(begin: int, end: int | None = None) -> str:
        # Pad with newlines so that line numbers stay those of the whole file.
        return "\n" * text.count("\n", 0, begin) + text[begin:end]

    while True:
        chunk = padded(start)
        try:
            trees.append(_PARSER.parse(chunk))
            return trees, diagnostics
        except UnexpectedInput as e:
            diag = _syntax_diagnostic(e, chunk, filename)
            if diag not in diagnostics:
                diagnostics.append(diag)
            assert diag.pos is not None
            broken = _statement_start_before(text, diag.pos.line, start)
            if broken is not None:
                try:
                    trees.append(_PARSER.parse(padded(start, broken)))
                except UnexpectedInput:
                    pass  # the split guessed wrong: those statements stay unchecked
            resume = _resume_offset(text, diag.pos.line, start)
            if resume is None:
                return trees, diagnostics
            if len(diagnostics) >= MAX_SYNTAX_ERRORS:  # each resume parses the rest again
                diagnostics.append(Diagnostic(
                    "error", f"too many syntax errors: stopped after {MAX_SYNTAX_ERRORS}",
                    diag.pos, diag.context))
                return trees, diagnostics
            start = resume


def _attach_comments(
    statements: list[tuple[Statement, int, int]], comments: list[Token]
) -> list[Statement]:
    """Give each comment to the statement it precedes or sits in (the last one for
    trailing comments), so that ``fmt`` never drops a comment.

    A blank line between a leading comment block and what follows it (a file's
    header comment, say) is kept as an empty string in ``comments``.
    """
    if not statements:
        return []
    buckets: list[list[str]] = [[] for _ in statements]
    lines = [_place(tok)[0] for tok in comments]
    ends = [end_line for _stmt, _start, end_line in statements]  # in source order
    for n, (tok, line) in enumerate(zip(comments, lines, strict=True)):
        index = min(bisect.bisect_left(ends, line), len(statements) - 1)
        buckets[index].append(str(tok).rstrip())
        start = statements[index][1]
        if line < start:
            following = lines[n + 1] if n + 1 < len(comments) else start
            if min(following, start) > line + 1:
                buckets[index].append("")
    return [
        replace(stmt, comments=tuple(extra)) if extra else stmt
        for (stmt, _start, _end), extra in zip(statements, buckets, strict=True)
    ]


def parse_text(text: str, filename: str = "<string>") -> Program:
    """Parse one file into an unresolved Program (phrases still ``PhraseRef``)."""
    program, diagnostics = parse_partial(text, filename)
    if diagnostics:
        raise RuleSyntaxError(diagnostics)
    return program


def parse_partial(
    text: str, filename: str = "<string>", *, symbols: Mapping[str, str] | None = None
) -> tuple[Program, list[Diagnostic]]:
    """Parse what can be parsed: the statements free of errors, and every error.

    ``load_program`` validates those statements too, so an author sees the
    duplicate ids and unknown phrases of a file along with its syntax errors.
    ``symbols`` says what ``$`` and ``¥`` mean (``money.symbol_table``); by default
    what the file's own CURRENCY says, so a file with ``CURRENCY CAD`` is parsed
    twice when it writes ``$``.  ``load_program`` decides it for a whole program.
    """
    program, diagnostics = _parse_partial(text, filename, symbols or SYMBOLS)
    if symbols is None and program.symbol_literals:
        table = symbol_table(program.currency)
        if table != SYMBOLS:
            return _parse_partial(text, filename, table)
    return program, diagnostics


# The parse tree nodes that nest (the model's And, Or, Not and list values).
_NESTING_NODES = frozenset({"and_expr", "or_expr", "negation", "list"})


def _too_deep(statement: Tree) -> tuple[int, int] | None:
    """Where a statement's conditions first nest beyond ``MAX_NESTING``, found without
    recursion (LALR parsing is iterative; the transformer is not)."""
    stack: list[tuple[Tree, int]] = [(statement, 0)]
    while stack:
        node, depth = stack.pop()
        if node.data in _NESTING_NODES:
            depth += 1
            if depth > MAX_NESTING:
                return node.meta.line, node.meta.column
        stack.extend((c, depth) for c in node.children if isinstance(c, Tree))
    return None


def _parse_partial(
    text: str, filename: str, symbols: Mapping[str, str]
) -> tuple[Program, list[Diagnostic]]:
    sink: list[Token] = []
    symbol_tokens: list[Token] = []
    _comments.sink, _comments.symbols = sink, symbol_tokens
    try:
        trees, diagnostics = _parse_trees(text, filename)
    finally:
        _comments.sink = _comments.symbols = None
    transformer = _ToModel(filename, text, symbols)
    statements: list[tuple[Statement, int, int]] = []
    for tree in trees:
        for child in tree.children:
            deep = _too_deep(child)
            if deep is not None:  # refused before the (recursive) transformer sees it
                transformer._error(
                    f"conditions nest {MAX_NESTING + 1} deep here (at most {MAX_NESTING} "
                    "levels of AND, OR, NOT and lists)", SourcePos(filename, *deep))
                continue
            errors_before = len(transformer.errors)
            stmt = transformer.transform(child)
            if len(transformer.errors) == errors_before:  # a bad literal: leave it out
                statements.append((stmt, child.meta.line, child.meta.end_line))
    unplaced = SourcePos("", 0, 0)
    diagnostics = sorted(diagnostics + transformer.errors, key=lambda d: d.pos or unplaced)
    # A parse that was retried after an error would see comments twice; dedupe by place.
    seen: dict[tuple[int, int], Token] = {}
    for tok in sink:
        seen.setdefault(_place(tok), tok)
    ordered = [seen[place] for place in sorted(seen)]
    with_comments = _attach_comments(statements, ordered)
    settings = tuple(s for s in with_comments if isinstance(s, Setting))
    literals = {_place(tok): str(tok) for tok in symbol_tokens}
    program = Program(
        rules=tuple(s for s in with_comments if isinstance(s, Rule)),
        definitions=tuple(s for s in with_comments if isinstance(s, Definition)),
        examples=tuple(s for s in with_comments if isinstance(s, Example)),
        currency=next((s.value for s in settings if s.name == "currency"), None),
        timezone=next((s.value for s in settings if s.name == "timezone"), None),
        settings=settings,
        symbol_literals=tuple((literals[place], SourcePos(filename, *place))
                              for place in sorted(literals)),
    )
    return program, diagnostics


__all__ = ["parse_text", "parse_partial", "token_name", "TOKEN_NAMES"]
