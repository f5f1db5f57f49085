"""What an editor needs to know about a rule program being edited (no LSP types here).

The editor's unsaved buffers override the files on disk, and a program is
checked whole, as ``rules check`` checks it: deleting a DEFINE from one file
shows up as errors in every file that used the phrase.  Keyword completion
asks the grammar itself (Lark's interactive parser, fed the statement up to
the cursor) which terminals may come next, so it cannot disagree with the
parser.  Positions are 1-based lines and columns counted in code points, as in
``SourcePos``; ``referral.lsp`` converts them to the protocol's.
"""

from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedInput

from compiler.text import format_condition, format_program
from dsl.errors import Diagnostic, ReferralError, SourcePos
from dsl.examples import describe_rewards, run_examples
from dsl.model import (
    ROLES,
    Compare,
    Condition,
    Definition,
    FieldRef,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Value,
    Within,
    phrase_key,
    value_kind,
    walk,
)
from dsl.parser import GRAMMAR_OPTIONS, parse_partial
from dsl.program import check_texts as dsl_check_texts
from dsl.program import holds_rule_files, program_files, program_root

log = logging.getLogger(__name__)

# Records read from a --records sample to learn field types.
SAMPLE_RECORDS = 2000

# Where a statement may start (the parser resumes there after a syntax error too).
_STATEMENT_START = re.compile(r"^[ \t]*(?:rule|define|example)\b|^if\b", re.IGNORECASE | re.M)
# The word being typed: field paths keep their dots, phrase words their ' and -.
_PARTIAL_WORD = re.compile(r"[\w.'-]*\Z")
_COMPLETE_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}\Z")
_KEYWORD_PATTERN = re.compile(r"\(?([a-z|?]+)\)?\\b")


@functools.cache
def grammar_parser() -> Lark:
    """The rule grammar built once, plain (no callbacks): for lexing and what comes next."""
    return Lark.open("referral.lark", **GRAMMAR_OPTIONS)


@functools.cache
def keyword_words() -> dict[str, tuple[str, ...]]:
    """Keyword terminal -> the words it matches (``_DAYS`` -> DAYS, DAY), from the grammar."""
    out: dict[str, tuple[str, ...]] = {}
    for t in grammar_parser().terminals:
        m = _KEYWORD_PATTERN.fullmatch(str(t.pattern.value))
        if m is None or "i" not in t.pattern.flags:
            continue
        words: list[str] = []
        for alt in m.group(1).split("|"):
            if alt.endswith("?"):  # "days?" -> DAYS, DAY
                words += [alt[:-1], alt[:-2]]
            else:
                words.append(alt)
        out[t.name] = tuple(w.upper() for w in words)
    return out


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True)
class Span:
    """A range of one file: 1-based line and column of the start, end exclusive."""

    file: Path
    line: int
    column: int
    end_line: int
    end_column: int

    def contains(self, line: int, column: int) -> bool:
        return (self.line, self.column) <= (line, column) <= (self.end_line, self.end_column)


@dataclass(frozen=True)
class Completion:
    label: str
    kind: str  # keyword | operator | phrase | field | rule | value
    insert: str
    span: Span  # the text being typed, which ``insert`` replaces
    detail: str = ""


@dataclass(frozen=True)
class Hover:
    markdown: str
    span: Span


@dataclass(frozen=True)
class ExampleRun:
    """One EXAMPLE run on the whole program, as ``rules test`` runs it."""

    name: str
    passed: bool
    message: str  # "PASS name" | "FAIL name: expected ..., got ..."


@dataclass(frozen=True)
class Symbol:
    """A phrase, rule id or field path written somewhere in the program."""

    kind: str  # phrase | rule | field
    key: str  # phrase_key(phrase) | rule id | field path
    span: Span
    declaration: bool = False


@dataclass
class FieldInfo:
    """What is known of a field's type: the literals it meets and the records sample."""

    path: str
    uses: list[tuple[str, str]] = field(default_factory=list)  # (kind, evidence)
    sample: Counter[str] = field(default_factory=Counter)

    def kind(self) -> str:
        kinds = Counter(k for k, _ in self.uses)
        if kinds:
            return kinds.most_common(1)[0][0]
        present = Counter({k: n for k, n in self.sample.items() if k != "null"})
        return present.most_common(1)[0][0] if present else "unknown"


# ------------------------------------------------------------------------------ checking


@dataclass
class Analysis:
    """One program checked whole: per-file models, the resolved program, every diagnostic."""

    root: Path
    texts: dict[Path, str]
    files: dict[Path, Program]
    merged: Program
    resolved: Program
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def by_file(self, unplaced: Path) -> dict[Path, list[Diagnostic]]:
        """Diagnostics per file of the program (an empty list for a clean file); those
        without a position go to ``unplaced``."""
        out: dict[Path, list[Diagnostic]] = {p: [] for p in self.texts}
        for d in self.diagnostics:
            out.setdefault(Path(d.pos.file) if d.pos else unplaced, []).append(d)
        return out

    @functools.cached_property
    def symbols(self) -> dict[Path, list[Symbol]]:
        return {p: _symbols(p, self.texts[p], prog) for p, prog in self.files.items()}

    def definition_of(self, key: str) -> Definition | None:
        return next((d for d in self.merged.definitions if phrase_key(d.phrase) == key), None)


def check_texts(root: Path, texts: Mapping[Path, str]) -> Analysis:
    """``load_program`` over in-memory texts: parse, merge, resolve, validate; never raises."""
    checked = dsl_check_texts(texts, parse=_parse)
    return Analysis(root, dict(texts), checked.files, checked.merged, checked.resolved,
                    checked.diagnostics)


@functools.lru_cache(maxsize=1024)
def _parse(text: str, filename: str) -> tuple[Program, tuple[Diagnostic, ...]]:
    """parse_partial, once per text: a keystroke re-checks the program, not every file."""
    program, diagnostics = parse_partial(text, filename)
    return program, tuple(diagnostics)


# ------------------------------------------------------------------------------ tokens


@functools.lru_cache(maxsize=256)
def tokens(text: str) -> tuple[Token, ...]:
    """Every token of a file (comments aside); after a syntax error, from the next statement."""
    found: dict[tuple[int, int], Token] = {}
    start = 0
    while True:
        # Newlines in front keep the line numbers those of the whole file.
        chunk = "\n" * text.count("\n", 0, start) + text[start:]
        try:
            for tok in grammar_parser().parse_interactive(chunk).iter_parse():
                found.setdefault((tok.line or 0, tok.column or 0), tok)
            break
        except UnexpectedInput as e:
            resume = _next_statement(text, max(e.line, 1), start)
            if resume is None:
                break
            start = resume
    return tuple(found[k] for k in sorted(found))


def _next_statement(text: str, after_line: int, after_offset: int) -> int | None:
    for m in _STATEMENT_START.finditer(text, after_offset + 1):
        if text.count("\n", 0, m.start()) + 1 > after_line:
            return m.start()
    return None


def _token_span(path: Path, tok: Token) -> Span:
    return Span(path, tok.line or 1, tok.column or 1, tok.end_line or 1, tok.end_column or 1)


def _conditions(program: Program) -> Iterator[Condition]:
    for r in program.rules:
        yield from walk(r.condition, r.reverse_if)
    for d in program.definitions:
        yield from walk(d.condition)


def _symbols(path: Path, text: str, program: Program) -> list[Symbol]:
    toks = tokens(text)
    at = {(t.line, t.column): t for t in toks}

    def next_token(pos: SourcePos | None, kind: str) -> Token | None:
        if pos is None:
            return None
        return next((t for t in toks if (t.line, t.column) > (pos.line, pos.column)
                     and t.type == kind), None)

    out: list[Symbol] = []
    for d in program.definitions:
        tok = next_token(d.source, "STRING")
        if tok is not None:
            out.append(Symbol("phrase", phrase_key(d.phrase), _token_span(path, tok), True))
    for cond in _conditions(program):
        if isinstance(cond, PhraseRef) and cond.pos is not None:
            tok = at.get((cond.pos.line, cond.pos.column))
            if tok is not None:
                out.append(Symbol("phrase", phrase_key(cond.phrase), _token_span(path, tok)))
    for r in program.rules:
        tok = None if r.auto_id else next_token(r.source, "NAME")
        if tok is not None:
            out.append(Symbol("rule", r.id, _token_span(path, tok), True))
    out += [Symbol("field", str(t), _token_span(path, t)) for t in toks if t.type == "PATH"]
    return out


# ------------------------------------------------------------------------------ fields


# What a literal says of the field it meets, and what a sampled record value is; bool is
# checked before int (a subclass), as everywhere in the project.
_SAMPLE_KINDS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (bool, "boolean"), (int, "integer"), (Decimal, "decimal"), (str, "string"), (list, "list"),
)


def _value_kind(value: Value) -> str | None:
    kind = value_kind(value)
    return None if kind in ("null", "field") else kind


def _compare_kind(c: Compare) -> str | None:
    if c.op in ("IN", "NOT IN") and isinstance(c.value, tuple):
        return next((k for k in map(_value_kind, c.value) if k), None)
    if c.op == "CONTAINS":
        return "list or string"
    return _value_kind(c.value)


def _sample_kind(value: object) -> str:
    if isinstance(value, str) and _ISO_DATE.match(value):
        return "date"
    return next((kind for t, kind in _SAMPLE_KINDS if isinstance(value, t)), "null")


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def sample_fields(records: Path, limit: int = SAMPLE_RECORDS) -> dict[str, Counter[str]]:
    """Field path -> how often each kind of value appears, from a JSONL or CSV sample."""
    from settlement.records import Record, read_records

    out: dict[str, Counter[str]] = {}
    seen = 0
    for rec in read_records(str(records)):
        if not isinstance(rec, Record):
            continue
        for path, value in _leaves(rec.data):
            if "." in path:  # a field path has a dot; referral_id and the like are not fields
                out.setdefault(path, Counter())[_sample_kind(value)] += 1
        seen += 1
        if seen >= limit:
            break
    return out


def field_infos(program: Program, sample: Mapping[str, Counter[str]]) -> dict[str, FieldInfo]:
    """Every field path of the program or the sample, with what its uses say of its type."""
    infos: dict[str, FieldInfo] = {}

    def use(path: str, kind: str | None, evidence: str) -> None:
        info = infos.setdefault(path, FieldInfo(path))
        if kind is not None:
            info.uses.append((kind, evidence))

    def where(pos: SourcePos | None) -> str:
        return f" ({Path(pos.file).name}:{pos.line})" if pos else ""

    for cond in _conditions(program):
        if isinstance(cond, Compare):
            text = f"`{format_condition(cond)}`{where(cond.pos)}"
            use(cond.path, _compare_kind(cond), text)
            if isinstance(cond.value, FieldRef):
                use(cond.value.path, None, text)
        elif isinstance(cond, Within):
            text = f"`{format_condition(cond)}`{where(cond.pos)}"
            use(cond.path, "date", text)
            use(cond.other, "date", text)
    for r in program.rules:
        for a in r.actions:
            if isinstance(a, PercentReward):
                use(a.of, "money", f"`{a.percent}% OF {a.of}`{where(a.pos)}")
    for ex in program.examples:
        for path, value in ex.given:
            shown = format_condition(Compare(path, "=", value))
            use(path, _value_kind(value), f"`GIVEN {shown}`{where(ex.source)}")
    for path, kinds in sample.items():
        infos.setdefault(path, FieldInfo(path)).sample.update(kinds)
    return infos


def _field_markdown(info: FieldInfo, sampled: int | None) -> str:
    lines = [f"**{info.path}**: {info.kind()}", ""]
    for kind, evidence in info.uses[:5]:
        lines.append(f"- {kind}: {evidence}")
    if len(info.uses) > 5:
        lines.append(f"- ... {len(info.uses) - 5} more uses")
    if info.sample:
        counts = ", ".join(f"{k} {n}" for k, n in info.sample.most_common())
        lines.append(f"- records sample: {counts}")
        if info.kind() == "money" and info.sample.get("integer"):
            lines.append("  (money in records is integer minor units)")
    elif sampled is not None:
        lines.append(f"- not in the records sample ({sampled} fields seen)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ workspace


class Workspace:
    """The programs being edited: files on disk, overlaid by the editor's open buffers.

    A file's program is the innermost ``programs`` directory holding it; without
    one, its directory and the ancestors that hold ``.rule`` files too (so
    ``rules/promo/x.rule`` belongs to ``rules/``, as ``rules check rules/`` sees it).
    """

    def __init__(self, programs: Sequence[Path] = (), records: Path | None = None) -> None:
        self.programs = sorted((p.absolute() for p in programs),
                               key=lambda p: len(p.parts), reverse=True)
        self.records = records
        self.buffers: dict[Path, str] = {}
        self._cache: dict[Path, Analysis] = {}
        self._fields: dict[Path, tuple[Analysis, dict[str, FieldInfo]]] = {}

    # -- buffers and programs -------------------------------------------------------

    def open(self, path: Path, text: str) -> None:
        """Open or change a buffer (its text now overrides the file on disk)."""
        self.buffers[path.absolute()] = text

    def close(self, path: Path) -> None:
        self.buffers.pop(path.absolute(), None)

    def text(self, path: Path) -> str | None:
        path = path.absolute()
        if path in self.buffers:
            return self.buffers[path]
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    def root(self, path: Path) -> Path:
        path = path.absolute()
        explicit = next((p for p in self.programs if path.is_relative_to(p)), None)
        if explicit is not None:
            return explicit
        return program_root(path, self._holds_rules)

    def _holds_rules(self, directory: Path) -> bool:
        return any(p.parent == directory for p in self.buffers) or holds_rule_files(directory)

    def analysis(self, path: Path) -> Analysis:
        """The whole program ``path`` belongs to, checked (cached until a text changes)."""
        root = self.root(path)
        paths = set(program_files([root])) if root.is_dir() else set()
        paths |= {p for p in self.buffers if p.suffix == ".rule" and p.is_relative_to(root)}
        paths.add(path.absolute())
        texts = {p: t for p in sorted(paths) if (t := self.text(p)) is not None}
        cached = self._cache.get(root)
        if cached is None or cached.texts != texts:
            cached = self._cache[root] = check_texts(root, texts)
        return cached

    def fields(self, a: Analysis) -> dict[str, FieldInfo]:
        """The field paths of a checked program and the sample (kept with the analysis)."""
        cached = self._fields.get(a.root)
        if cached is None or cached[0] is not a:
            cached = self._fields[a.root] = (a, field_infos(a.merged, self.sample))
        return cached[1]

    @functools.cached_property
    def sample(self) -> dict[str, Counter[str]]:
        if self.records is None:
            return {}
        try:
            return sample_fields(self.records)
        except (OSError, ReferralError) as e:
            log.warning("cannot read the records sample %s: %s", self.records, e)
            return {}

    # -- navigation -----------------------------------------------------------------

    def symbol_at(self, path: Path, line: int, column: int) -> tuple[Analysis, Symbol | None]:
        a = self.analysis(path)
        found = (s for s in a.symbols.get(path.absolute(), []) if s.span.contains(line, column))
        return a, next(found, None)

    def definition(self, path: Path, line: int, column: int) -> list[Span]:
        a, sym = self.symbol_at(path, line, column)
        if sym is None or sym.kind == "field":
            return []
        return [s.span for s in _all_symbols(a) if s.key == sym.key and s.kind == sym.kind
                and s.declaration]

    def references(
        self, path: Path, line: int, column: int, *, include_declaration: bool = True
    ) -> list[Span]:
        a, sym = self.symbol_at(path, line, column)
        if sym is None:
            return []
        return [s.span for s in _all_symbols(a) if s.key == sym.key and s.kind == sym.kind
                and (include_declaration or not s.declaration)]

    def hover(self, path: Path, line: int, column: int) -> Hover | None:
        a, sym = self.symbol_at(path, line, column)
        if sym is None:
            return None
        if sym.kind == "phrase":
            text = _phrase_markdown(a, sym.key)
        elif sym.kind == "rule":
            text = _rule_markdown(a, sym.key)
        else:
            info = self.fields(a).get(sym.key, FieldInfo(sym.key))
            text = _field_markdown(info, len(self.sample) if self.records else None)
        return Hover(text, sym.span)

    # -- editing --------------------------------------------------------------------

    def format(self, path: Path) -> str | None:
        """The canonical text of the buffer; None when it does not parse."""
        text = self.text(path)
        if text is None:
            return None
        program, diagnostics = _parse(text, str(path))
        if any(d.severity == "error" for d in diagnostics):
            return None
        try:
            return format_program(program)
        except ReferralError:
            return None

    def examples(self, path: Path) -> list[tuple[str, int]]:
        """(name, line) of every EXAMPLE of the file that parsed."""
        program = self.analysis(path).files.get(path.absolute(), Program())
        return [(ex.name, ex.source.line) for ex in program.examples if ex.source]

    def run_example(self, path: Path, line: int) -> ExampleRun:
        """Run the EXAMPLE starting on ``line`` against the whole program."""
        a = self.analysis(path)
        program = a.files.get(path.absolute(), Program())
        example = next((e for e in program.examples if e.source and e.source.line == line), None)
        if example is None:
            return ExampleRun("", False, f"no EXAMPLE starts on line {line}")
        if a.errors:
            first = a.errors[0]
            return ExampleRun(example.name, False,
                              f"FAIL {example.name}: the program has errors ({first.line()})")
        results = run_examples(a.resolved)
        mine = next(r for r in results if r.source == example.source)
        if mine.passed:
            return ExampleRun(mine.name, True, f"PASS {mine.name}")
        got = f"error: {mine.error}" if mine.error else f"got {describe_rewards(mine.actual)}"
        return ExampleRun(mine.name, False,
                          f"FAIL {mine.name}: expected {describe_rewards(mine.expected)}, {got}")

    def completions(self, path: Path, line: int, column: int) -> list[Completion]:
        a = self.analysis(path)
        completer = _Completer(a, self.fields(a))
        return completer.complete(path.absolute(), self.text(path) or "", line, column)


def _all_symbols(a: Analysis) -> Iterator[Symbol]:
    for symbols in a.symbols.values():
        yield from symbols


def _where(pos: SourcePos | None) -> str:
    return f"{Path(pos.file).name}:{pos.line}" if pos else "?"


def _phrase_markdown(a: Analysis, key: str) -> str:
    d = a.definition_of(key)
    if d is None:
        return f"phrase **{key}** is not defined"
    uses = sum(1 for s in _all_symbols(a) if s.kind == "phrase" and s.key == key
               and not s.declaration)
    text = format_program(Program(definitions=(replace(d, comments=()),))).strip()
    lines = ["```referral", text, "```", f"defined at {_where(d.source)}; used {uses} times"]
    resolved = next((r for r in a.resolved.definitions if phrase_key(r.phrase) == key), None)
    if resolved is not None and resolved.condition != d.condition:
        lines.append(f"\nexpands to `{format_condition(resolved.condition)}`")
    return "\n".join(lines)


def _rule_markdown(a: Analysis, rule_id: str) -> str:
    rule = next((r for r in a.merged.rules if r.id == rule_id), None)
    if rule is None:
        return f"rule **{rule_id}**"
    text = format_program(Program(rules=(replace(rule, comments=()),))).strip()
    lines = [f"**{rule.id}**: {rule.description or '(no description)'}", "",
             "```referral", text, "```", f"at {_where(rule.source)}"]
    resolved = next((r for r in a.resolved.rules if r.id == rule_id), None)
    if resolved is not None and resolved.condition != rule.condition:
        lines.append(f"\nexpands to `IF {format_condition(resolved.condition)}`")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ completion

# A NAME after these keywords is a rule id or a beneficiary role.
_RULE_ID_AFTER = frozenset({"_RULE"})
_ROLE_AFTER = frozenset({"_TO", "_PER"})
_OPERATORS = ("=", "!=", ">", ">=", "<", "<=")
_STATEMENT_KEYWORDS = ("RULE", "DEFINE", "EXAMPLE", "IF")


class _Completer:
    """Candidates at a cursor from what the grammar accepts there."""

    def __init__(self, analysis: Analysis, fields: Mapping[str, FieldInfo]) -> None:
        self.analysis = analysis
        self.fields = fields

    def complete(self, path: Path, text: str, line: int, column: int) -> list[Completion]:
        offset = _offset(text, line, column)
        line_start = text.rfind("\n", 0, offset) + 1
        before = text[line_start:offset]
        unquoted = _COMPLETE_STRING.sub(lambda m: "_" * len(m.group()), before)
        if "#" in unquoted:
            return []  # in a comment
        quote = unquoted.find('"')
        if quote >= 0:  # in a string being typed: the string is the word
            word_start = line_start + quote
        else:
            typing = _PARTIAL_WORD.search(before)
            word_start = line_start + (typing.start() if typing else len(before))
        word = self._span(path, text, word_start, offset)
        statement = _statement_start(text, word_start)
        try:
            toks, after = _feed(text[statement:word_start])
        except UnexpectedInput:
            return self._everything(word)
        last = toks[-1] if toks else None
        out = self._for(after.accepts(), last.type if last else None, word)
        if quote >= 0:
            closing = 1 if text[offset:offset + 1] == '"' else 0
            quoted = replace(word, end_column=word.end_column + closing)
            out = [replace(c, insert=_quote(c.label), span=quoted) for c in out
                   if c.kind == "phrase"]
        elif last is not None and last.type == "PHRASE":
            start = statement + (last.start_pos or 0)
            if not text[statement + (last.end_pos or 0):word_start].strip(" \t"):
                # Still typing a phrase: "IF referrer is a pa" offers "referrer is a paid user".
                typed = phrase_key(text[start:offset])
                phrase = self._span(path, text, start, offset)
                out = [c for c in self._phrases(phrase)
                       if phrase_key(c.label).startswith(typed)] + out
        return _unique(out)

    def _span(self, path: Path, text: str, start: int, end: int) -> Span:
        sl, sc = _line_col(text, start)
        el, ec = _line_col(text, end)
        return Span(path, sl, sc, el, ec)

    def _for(self, accepts: set[str], previous: str | None, word: Span) -> list[Completion]:
        out: list[Completion] = []
        if "PATH" in accepts:
            out += self._fields(word)
        if "PHRASE" in accepts:
            out += self._phrases(word)
        elif "STRING" in accepts and previous == "_DEFINE":
            out += self._undefined_phrases(word)
        if "NAME" in accepts and previous in _RULE_ID_AFTER:
            out += self._rule_ids(word)
        if "NAME" in accepts and previous in _ROLE_AFTER:
            out += [Completion(r, "value", r, word, "beneficiary") for r in ROLES]
        words = keyword_words()
        for terminal in sorted(accepts):
            for w in words.get(terminal, ()):
                out.append(Completion(w, "keyword", w, word))
        if "CMP" in accepts:
            out += [Completion(op, "operator", op, word) for op in _OPERATORS]
        return out

    def _everything(self, word: Span) -> list[Completion]:
        return [*self._fields(word), *self._phrases(word),
                *(Completion(w, "keyword", w, word) for w in _STATEMENT_KEYWORDS)]

    def _fields(self, word: Span) -> list[Completion]:
        return [Completion(p, "field", p, word, self.fields[p].kind())
                for p in sorted(self.fields)]

    def _phrases(self, word: Span) -> list[Completion]:
        return [Completion(d.phrase, "phrase", format_condition(PhraseRef(d.phrase)), word,
                           format_condition(d.condition))
                for d in self.analysis.merged.definitions]

    def _undefined_phrases(self, word: Span) -> list[Completion]:
        defined = {phrase_key(d.phrase) for d in self.analysis.merged.definitions}
        used = (c.phrase for c in _conditions(self.analysis.merged) if isinstance(c, PhraseRef))
        missing = {phrase_key(p): p for p in used if phrase_key(p) not in defined}
        return [Completion(p, "phrase", _quote(p), word, "used but not defined")
                for p in missing.values()]

    def _rule_ids(self, word: Span) -> list[Completion]:
        return [Completion(r.id, "rule", r.id, word, _rule_detail(r))
                for r in self.analysis.merged.rules if not r.auto_id]


def _rule_detail(rule: Rule) -> str:
    where = f"rule id in use at {_where(rule.source)}"
    return f"{where}: {rule.description}" if rule.description else where


def _feed(chunk: str) -> tuple[list[Token], Any]:
    """Feed a statement's beginning to the parser: its tokens and the parser after them."""
    ip = grammar_parser().parse_interactive(chunk)
    return list(ip.iter_parse()), ip


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _statement_start(text: str, offset: int) -> int:
    start = 0
    for m in _STATEMENT_START.finditer(text, 0, offset):
        start = m.start()
    return start


def _offset(text: str, line: int, column: int) -> int:
    offset = 0
    for _ in range(line - 1):
        nl = text.find("\n", offset)
        if nl < 0:
            return len(text)
        offset = nl + 1
    end = text.find("\n", offset)
    return min(offset + column - 1, len(text) if end < 0 else end)


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1


def _unique(items: list[Completion]) -> list[Completion]:
    seen: set[tuple[str, str]] = set()
    out = []
    for c in items:
        if (c.label, c.kind) not in seen:
            seen.add((c.label, c.kind))
            out.append(c)
    return out


__all__ = [
    "Analysis",
    "Completion",
    "ExampleRun",
    "FieldInfo",
    "Hover",
    "Span",
    "Symbol",
    "Workspace",
    "check_texts",
    "field_infos",
    "grammar_parser",
    "keyword_words",
    "sample_fields",
    "tokens",
]
