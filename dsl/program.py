"""A rule program: every ``.rule`` file of a directory or a file list, resolved.

Each file parses on its own (``dsl.parser``); here the files are merged, the
vocabulary phrases are expanded against the DEFINEs of *all* files, and the
program is validated (``dsl.validate``).  Every error of every file is collected
and raised together, so that an author fixes a whole batch at once; each gets
its source line from the texts read here (``Sources``), never from a second read.
"""

from __future__ import annotations

import difflib
import gc
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from dsl.bounds import MAX_NESTING, MAX_PHRASE_DEPTH, Expansion, expansion, phrase_expansions
from dsl.codec import program_from_json
from dsl.errors import (
    Diagnostic,
    ModelSchemaError,
    ReferralError,
    RuleValidationError,
    SourcePos,
    Sources,
)
from dsl.model import (
    And,
    Condition,
    Definition,
    Not,
    Or,
    PhraseOrigin,
    PhraseRef,
    Program,
    phrase_key,
    walk,
)
from dsl.money import SYMBOLS, symbol_table
from dsl.parser import parse_partial
from dsl.validate import validate


@dataclass
class LoadedProgram:
    """The resolved program, the per-file unresolved programs (for fmt), and warnings."""

    program: Program
    files: dict[Path, Program] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)


def program_files(paths: Sequence[str | Path]) -> list[Path]:
    """Expand directories to their ``*.rule`` files (sorted, recursive)."""
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*.rule") if f.is_file()))
        elif p.exists():
            out.append(p)
        else:
            raise ReferralError(f"no such file or directory: {p}")
    return out


def holds_rule_files(directory: Path) -> bool:
    return any(f.is_file() for f in directory.glob("*.rule"))


def program_root(path: Path, holds_rules: Callable[[Path], bool] = holds_rule_files) -> Path:
    """The program a ``.rule`` file belongs to when nobody says: its directory and
    every ancestor that holds ``.rule`` files too, so ``rules/promo/x.rule`` belongs to
    ``rules/`` (as ``rules check rules/`` loads it) when ``rules/`` has rule files."""
    root = path.absolute().parent
    while root.parent != root and holds_rules(root.parent):
        root = root.parent
    return root


def merge(programs: Sequence[Program]) -> Program:
    """One program of many files; CURRENCY and TIMEZONE are the first stated (check
    refuses a second)."""
    return Program(
        rules=tuple(r for p in programs for r in p.rules),
        definitions=tuple(d for p in programs for d in p.definitions),
        examples=tuple(e for p in programs for e in p.examples),
        currency=next((p.currency for p in programs if p.currency is not None), None),
        timezone=next((p.timezone for p in programs if p.timezone is not None), None),
        settings=tuple(s for p in programs for s in p.settings),
        symbol_literals=tuple(lit for p in programs for lit in p.symbol_literals),
    )


def _symbols_of(
    programs: Iterable[Program], currency: str | None = None
) -> Mapping[str, str] | None:
    """What $ and ¥ mean in a program of these files, when not what the parser assumed
    (None): its currency (``currency``, else its CURRENCY) is a dollar other than USD
    or a yen other than JPY."""
    programs = list(programs)
    declared = currency or next((p.currency for p in programs if p.currency is not None), None)
    table = symbol_table(declared)
    if table == SYMBOLS or not any(p.symbol_literals for p in programs):
        return None
    return table


_HINTS = 50  # undefined phrases given a "did you mean" per program


class _Resolver:
    """Expands phrases; records undefined phrases and definition cycles."""

    def __init__(self, definitions: Sequence[Definition]) -> None:
        self.defs: dict[str, Definition] = {}
        for d in definitions:
            self.defs.setdefault(phrase_key(d.phrase), d)
        self.errors: list[Diagnostic] = []
        self._done: dict[str, Condition] = {}
        self._cyclic: set[str] = set()
        self._hints: dict[str, str] = {}
        self.expansions = phrase_expansions(self.defs)
        # Phrases beyond a bound (dsl.bounds) are never expanded: the resolver recurses.
        self._too_deep = {key for key, e in self.expansions.items() if _beyond(e)}
        for key, d in self.defs.items():
            e = self.expansions[key]
            if e.phrases == MAX_PHRASE_DEPTH + 1:
                self._error(f'phrase "{d.phrase}" is defined through {e.phrases} nested phrases '
                            f"(at most {MAX_PHRASE_DEPTH})", d.source)
            elif e.nesting > MAX_NESTING and not self._uses_too_deep(d.condition):
                self._error(f'phrase "{d.phrase}": its condition nests {e.nesting} deep once '
                            f"its phrases are expanded (at most {MAX_NESTING})", d.source)

    def _uses_too_deep(self, cond: Condition) -> bool:
        return any(isinstance(c, PhraseRef) and phrase_key(c.phrase) in self._too_deep
                   for c in walk(cond))

    def within_bounds(self, cond: Condition, owner: str, pos: SourcePos | None) -> bool:
        """Whether ``cond`` expands within the bounds; says why not when the reason is
        not a phrase already reported."""
        if self._uses_too_deep(cond):
            return False
        found = expansion(cond, self.expansions)
        if found.nesting <= MAX_NESTING:
            return True
        expanded = " once its phrases are expanded" if any(
            isinstance(c, PhraseRef) for c in walk(cond)) else ""
        self._error(f"{owner}: its condition nests {found.nesting} deep{expanded} "
                    f"(at most {MAX_NESTING})", pos)
        return False

    def _error(self, message: str, pos: SourcePos | None) -> None:
        self.errors.append(Diagnostic("error", message, pos))

    def _hint(self, key: str) -> str:
        """``; did you mean "..."?`` for an undefined phrase: difflib over every phrase,
        so only for the first ``_HINTS`` distinct ones (a file of thousands of unknown
        phrases would otherwise cost phrases x definitions)."""
        if key not in self._hints:
            if len(self._hints) >= _HINTS:
                return ""
            close = difflib.get_close_matches(key, list(self.defs), n=1, cutoff=0.6)
            self._hints[key] = f'; did you mean "{self.defs[close[0]].phrase}"?' if close else ""
        return self._hints[key]

    def definition(self, key: str, stack: tuple[str, ...] = ()) -> Condition | None:
        if key in self._done:
            return self._done[key]
        if key in self._too_deep:
            return None
        if key in stack:
            cycle = (*stack[stack.index(key):], key)
            chain = " -> ".join(f'"{self.defs[k].phrase}"' for k in cycle)
            if key not in self._cyclic:
                self._cyclic.update(stack[stack.index(key):])
                d = self.defs[key]
                message = f'phrase "{d.phrase}" is defined in terms of itself ({chain})'
                self._error(message, d.source)
            return None
        cond = self.resolve(self.defs[key].condition, (*stack, key))
        if cond is not None:
            self._done[key] = cond
        return cond

    def resolve(self, cond: Condition, stack: tuple[str, ...] = ()) -> Condition | None:
        if isinstance(cond, PhraseRef):
            key = phrase_key(cond.phrase)
            if key not in self.defs:
                hint = self._hint(key)
                self._error(f'phrase "{cond.phrase}" is not defined{hint}', cond.pos)
                return None
            return _from_phrase(self.definition(key, stack), self.defs[key].phrase)
        if isinstance(cond, (And, Or)):
            items: list[Condition] = []
            for item in cond.items:
                resolved = self.resolve(item, stack)
                if resolved is None:
                    return None
                # A phrase that expands to the same connective splices in, so that
                # "IF p AND q" equals the explicit "IF a AND b AND q".
                if isinstance(item, PhraseRef) and type(resolved) is type(cond):
                    items.extend(_spliced(resolved))
                else:
                    items.append(resolved)
            return type(cond)(tuple(items))
        if isinstance(cond, Not):
            inner = self.resolve(cond.item, stack)
            return None if inner is None else Not(inner)
        return cond


def _beyond(e: Expansion) -> bool:
    return e.phrases > MAX_PHRASE_DEPTH or e.nesting > MAX_NESTING


def _from_phrase(cond: Condition | None, phrase: str) -> Condition | None:
    """The expansion of ``phrase``, marked with it for display (``PhraseOrigin``)."""
    return None if cond is None else replace(cond, origin=PhraseOrigin(phrase))


def _spliced(cond: And | Or) -> list[Condition]:
    """The items of a phrase's AND/OR spliced into its user's, each marked as a part."""
    phrase = cond.origin.phrase if cond.origin else ""
    n = len(cond.items)
    return [replace(c, origin=PhraseOrigin(phrase, i, n)) for i, c in enumerate(cond.items, 1)]


def resolve_program(program: Program) -> tuple[Program, list[Diagnostic]]:
    """Expand every phrase; returns the resolved program and the errors found
    (without source lines: ``load_program`` adds them)."""
    resolver = _Resolver(program.definitions)
    rules = []
    for r in program.rules:
        if not all(resolver.within_bounds(c, f"rule {r.id}", r.source) for c in r.conditions()):
            rules.append(replace(r, condition=And(()), reverse_if=None))
            continue
        cond = resolver.resolve(r.condition)
        rev = resolver.resolve(r.reverse_if) if r.reverse_if is not None else None
        rules.append(replace(r, condition=cond if cond is not None else And(()), reverse_if=rev))
    definitions = []
    for d in program.definitions:
        cond = resolver.definition(phrase_key(d.phrase))
        definitions.append(replace(d, condition=cond if cond is not None else And(())))
    resolved = replace(program, rules=tuple(rules), definitions=tuple(definitions))
    return resolved, resolver.errors


def _load_json(path: Path) -> Program:
    data = json.loads(path.read_text(encoding="utf-8"))
    return program_from_json(data, str(path))


@dataclass
class CheckedProgram:
    """A program checked whole, never raising: what ``load_program`` and editors share."""

    files: dict[Path, Program]
    merged: Program
    resolved: Program
    diagnostics: list[Diagnostic]

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]


Parse = Callable[[str, str], tuple[Program, Sequence[Diagnostic]]]


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a program is checked.

    Parsing and validating build many objects that all stay alive, and each
    oldest-generation collection walks all of them: measured on 10,000 rules, that
    made check superlinear (16x the CPU time of 1,000 rules; 10x without it).  The
    model has no reference cycles, so nothing is held longer than the check.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def check_texts(texts: Mapping[Path, str], *, parse: Parse = parse_partial) -> CheckedProgram:
    """Parse, merge, resolve and validate in-memory rule texts (an editor's buffers)."""
    with _collector_paused():
        files, diagnostics = _parse_texts(texts, parse)
        return _check(files, diagnostics, {str(p): t for p, t in texts.items()},
                      syntax_failed=bool(diagnostics))


def _parse_texts(
    texts: Mapping[Path, str],
    parse: Parse,
    models: Iterable[Program] = (),
    currency: str | None = None,
) -> tuple[dict[Path, Program], list[Diagnostic]]:
    """Parse every text; again, with what $ and ¥ mean, when the program's currency
    (``currency``, else CURRENCY in any file or JSON model among ``models``) is
    another dollar or yen."""
    parsed = {path: parse(text, str(path)) for path, text in texts.items()}
    symbols = _symbols_of([*models, *(program for program, _ in parsed.values())], currency)
    if symbols is not None:
        parsed = {path: parse_partial(text, str(path), symbols=symbols)
                  for path, text in texts.items()}
    files = {path: program for path, (program, _) in parsed.items()}
    return files, [d for _, found in parsed.values() for d in found]


def _check(
    files: dict[Path, Program],
    diagnostics: list[Diagnostic],
    texts: dict[str, str],
    *,
    syntax_failed: bool,
    currency: str | None = None,
) -> CheckedProgram:
    merged = merge(list(files.values()))
    if currency is not None:
        merged = replace(merged, currency=currency)
    resolved, resolve_errors = resolve_program(merged)
    diagnostics = diagnostics + resolve_errors
    skip = bool(resolve_errors) or syntax_failed
    diagnostics += validate(merged, resolved, skip_combination=skip)
    sources = Sources(texts)
    return CheckedProgram(files, merged, resolved,
                          _sorted([sources.attach(d) for d in diagnostics]))


@dataclass
class ParsedFiles:
    """Every file of a program parsed on its own (not merged, resolved or validated)."""

    files: dict[Path, Program] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)  # rule text by file name
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def syntax_errors(self) -> list[Diagnostic]:
        """The diagnostics with their source lines, file by file."""
        sources = Sources(self.texts)
        return _sorted([sources.attach(d) for d in self.diagnostics])


def parse_files(paths: Sequence[str | Path], *, currency: str | None = None) -> ParsedFiles:
    """Read and parse each file of ``paths`` (directories: their ``.rule`` files), with
    what $ and ¥ mean in the program; JSON models are decoded against the schema.
    Never raises for a bad file."""
    models: dict[Path, Program] = {}
    texts: dict[Path, str] = {}
    diagnostics: list[Diagnostic] = []
    order = program_files(paths)
    for path in order:
        try:
            if path.suffix == ".json":
                models[path] = _load_json(path)
            else:
                texts[path] = path.read_text(encoding="utf-8")
        except json.JSONDecodeError as e:
            pos = SourcePos(str(path), e.lineno, e.colno)
            diagnostics.append(Diagnostic("error", f"not JSON: {e.msg}", pos))
        except ModelSchemaError as e:
            # One line per schema violation, each already naming the file and JSON path.
            for line in str(e).splitlines():
                diagnostics.append(Diagnostic("error", line))
        except UnicodeDecodeError as e:
            pos = SourcePos(str(path), 1, 1)
            diagnostics.append(Diagnostic("error", f"not UTF-8 text: {e.reason}", pos))
        except (ValueError, RecursionError) as e:  # json's own limits: digits, nesting
            reason = "nests too deep" if isinstance(e, RecursionError) else str(e).split(";")[0]
            pos = SourcePos(str(path), 1, 1)
            diagnostics.append(Diagnostic("error", f"not a readable JSON model: {reason}", pos))
    parsed, found = _parse_texts(texts, parse_partial, models.values(), currency)
    files = {path: models.get(path) or parsed[path] for path in order
             if path in models or path in parsed}
    return ParsedFiles(files, {str(p): t for p, t in texts.items()}, diagnostics + found)


def load_program(
    paths: Sequence[str | Path], *, strict: bool = False, currency: str | None = None
) -> LoadedProgram:
    """Parse, merge, resolve and validate a program.

    Raises ``RuleError`` carrying every diagnostic of every file (syntax and
    validation).  With ``strict`` warnings are errors too.  ``currency`` (an
    explicit ``--currency``) is the program's currency, as if it said CURRENCY.
    """
    currency = Program().default_currency(currency)  # the one rule, and the code's check
    with _collector_paused():
        parsed = parse_files(paths, currency=currency)
        checked = _check(parsed.files, parsed.diagnostics, parsed.texts,
                         syntax_failed=bool(parsed.diagnostics), currency=currency)
    if checked.errors or (strict and checked.warnings):
        raise RuleValidationError(checked.diagnostics)
    return LoadedProgram(checked.resolved, parsed.files, checked.warnings)


def _sorted(diags: list[Diagnostic]) -> list[Diagnostic]:
    """Errors file by file, line by line (stable for the same position)."""
    unplaced = SourcePos("", 0, 0)
    return sorted(diags, key=lambda d: d.pos or unplaced)


__all__ = [
    "CheckedProgram",
    "LoadedProgram",
    "ParsedFiles",
    "check_texts",
    "load_program",
    "merge",
    "parse_files",
    "program_files",
    "program_root",
    "resolve_program",
]
