"""A sentence -> a checked rule text: what ``referral rules draft`` does.

The builtin converter (``dsl.draft``) or a model endpoint
(``compiler.draft_model``) drafts one rule; it becomes canonical text
(``compiler.text``) and is then checked as any rule file is: parsed, resolved
and validated together with the program's files (``dsl.program.load_program``),
and parsed back to the same text.  A model's answer is also grounded
(``dsl.draft.grounding``): it may not pay an amount or a person the sentence
does not state.  Drafting never posts anything; the text is for a person to
review, ``rules test`` and ``rules diff``.
"""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from compiler.draft_model import ChatModel, answer_text, prompt
from compiler.text import format_node, format_program
from dsl.draft import (
    Draft,
    Lexicon,
    Mapped,
    Source,
    Unmapped,
    build_lexicon,
    draft_rule,
    rule_id_for,
)
from dsl.draft.grammar import normalize_text
from dsl.draft.grounding import facts, ungrounded
from dsl.errors import Diagnostic, RuleError, SourcePos
from dsl.model import FixedReward, PercentReward, PhraseRef, Program, Rule
from dsl.money import format_money
from dsl.parser import parse_partial
from dsl.program import load_program, program_files
from settlement.records import Record, read_records

BUILTIN = "builtin"
DRAFT_FILE = "<draft>"
MODEL_FILE = "<model answer>"
# Records read from --records to learn field paths and types.
SAMPLE_RECORDS = 1000


@dataclass(frozen=True)
class MappingLine:
    words: str
    became: str
    source: Source


@dataclass(frozen=True)
class UnmappedLine:
    words: str
    candidates: tuple[str, ...] = ()
    reason: str | None = None


@dataclass(frozen=True)
class DraftResult:
    """The checked draft, or why there is none; ``rule`` is the compiled model."""

    sentence: str
    rule_text: str | None
    model: str
    mapping: tuple[MappingLine, ...] = ()
    unmapped: tuple[UnmappedLine, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()
    rule: Rule | None = None

    @property
    def ok(self) -> bool:
        errors = any(d.severity == "error" for d in self.diagnostics)
        return self.rule_text is not None and not self.unmapped and not errors

    def to_json(self) -> dict[str, Any]:
        """The object ``rules draft --json`` prints."""
        return {
            "rule_text": self.rule_text if self.ok else None,
            "model": self.model,
            "mapping": [
                {"words": m.words, "became": m.became, "source": m.source} for m in self.mapping
            ],
            "unmapped": [
                {"words": u.words, "candidates": list(u.candidates), "reason": u.reason}
                for u in self.unmapped
            ],
            "diagnostics": [d.line() for d in self.diagnostics],
        }


@dataclass(frozen=True)
class DraftContext:
    """What a draft is mapped onto and checked with: a program and a records sample."""

    files: tuple[Path, ...] = ()
    lexicon: Lexicon = Lexicon()


def load_context(
    program: Sequence[str | Path] = (), records: str | Path | None = None,
    *, sample: int = SAMPLE_RECORDS,
) -> DraftContext:
    """The program's files (loaded, so a broken program fails here) and a records sample.

    Raises ``RuleError`` for an invalid program, ``OSError`` for unreadable records.
    """
    files = tuple(program_files(program)) if program else ()
    loaded = load_program(files) if files else None
    data: list[dict[str, Any]] = []
    if records is not None:
        stream = read_records(str(records))
        try:
            good = (r for r in stream if isinstance(r, Record))
            data = [r.data for r in itertools.islice(good, sample)]
        finally:
            close = getattr(stream, "close", None)  # a generator: closes the file
            if close is not None:
                close()
    lexicon = build_lexicon(loaded.program if loaded else None, data)
    return DraftContext(files, lexicon)


def draft(
    sentence: str | Sequence[str], context: DraftContext, *, rule_id: str | None = None,
    model: ChatModel | None = None,
) -> DraftResult:
    """Draft one rule from one or more sentences and check it with the program."""
    text = normalize_text(sentence if isinstance(sentence, str) else " ".join(sentence))
    if model is not None:
        return _draft_with_model(text, context, model, rule_id)
    found = draft_rule(text, context.lexicon, rule_id)
    mapping = tuple(_mapping_line(m) for m in found.mapping)
    unmapped = tuple(_unmapped_line(u) for u in found.unmapped)
    if found.rule is None:
        return DraftResult(text, None, BUILTIN, mapping, unmapped, _problems(found))
    rule_text, compiled, diagnostics = check(replace(found.rule, description=text), context)
    return DraftResult(text, rule_text, BUILTIN, mapping, unmapped, tuple(diagnostics), compiled)


def check(rule: Rule, context: DraftContext) -> tuple[str, Rule | None, list[Diagnostic]]:
    """The rule's canonical text, its compiled model (None if it does not check), and the
    diagnostics of checking it with the program's files."""
    text = format_program(Program(rules=(rule,)))
    with tempfile.TemporaryDirectory(prefix="referral-draft-") as tmp:
        path = Path(tmp) / "draft.rule"
        path.write_text(text, encoding="utf-8")
        try:
            loaded = load_program([*context.files, path])
        except RuleError as e:
            return text, None, _renamed(e.diagnostics, path, errors_anywhere=True)
        compiled = loaded.program.rule(rule.id)
        warnings = _renamed(loaded.warnings, path, errors_anywhere=False)
    again, problems = parse_partial(text, DRAFT_FILE)
    if problems or format_program(again) != text:
        message = "the draft does not parse back to the same text (a bug: please report it)"
        return text, None, [*problems, Diagnostic("error", message)]
    return text, compiled, warnings


def _renamed(
    diagnostics: Sequence[Diagnostic], path: Path, *, errors_anywhere: bool
) -> list[Diagnostic]:
    """The draft's diagnostics, naming it ``<draft>`` instead of its temporary file.

    The program's own files were checked before, so every error is the draft's;
    warnings about other files are not shown.
    """
    out = []
    for d in diagnostics:
        ours = d.pos is None or d.pos.file == str(path)
        if not ours and not (errors_anywhere and d.severity == "error"):
            continue
        pos = SourcePos(DRAFT_FILE, d.pos.line, d.pos.column) if d.pos and ours else d.pos
        out.append(replace(d, message=d.message.replace(str(path), DRAFT_FILE), pos=pos))
    return out


def _problems(found: Draft) -> tuple[Diagnostic, ...]:
    out = [Diagnostic("error", p) for p in found.problems]
    for n, rule in enumerate(found.alternatives, start=1):
        text = format_program(Program(rules=(rule,))).rstrip()
        context = "\n".join(f"    {line}" for line in text.splitlines())
        out.append(Diagnostic("error", f"reading {n}:", context=context))
    return tuple(out)


def _mapping_line(m: Mapped) -> MappingLine:
    became = m.became if isinstance(m.became, str) else format_node(m.became)
    return MappingLine(m.words, became, m.source)


def _unmapped_line(u: Unmapped) -> UnmappedLine:
    """Candidates as text; phrases quoted, so they read apart from fields."""
    candidates = tuple(
        c if isinstance(c, str) else f'"{c.phrase}"' if isinstance(c, PhraseRef) else format_node(c)
        for c in u.candidates
    )
    return UnmappedLine(u.words, candidates, u.reason)


# ---------------------------------------------------------------- the model backend


def _draft_with_model(
    sentence: str, context: DraftContext, model: ChatModel, rule_id: str | None
) -> DraftResult:
    content, name = model.complete(prompt(sentence, context.lexicon))
    answer = answer_text(content)
    parsed, problems = parse_partial(answer, MODEL_FILE)

    def refused(*diagnostics: Diagnostic) -> DraftResult:
        return DraftResult(sentence, None, name, diagnostics=tuple(diagnostics))

    if problems:
        return refused(*problems)
    extra = len(parsed.definitions) + len(parsed.examples)
    if len(parsed.rules) != 1 or extra:
        return refused(Diagnostic(
            "error", f"the answer holds {len(parsed.rules)} rules, {len(parsed.definitions)} "
            f"definitions and {len(parsed.examples)} examples; exactly one rule was asked for"))
    rid = rule_id or rule_id_for(sentence, context.lexicon.rule_ids)
    written = replace(parsed.rules[0], id=rid, description=sentence, comments=(),
                      auto_id=False, source=None)
    rule_text, compiled, diagnostics = check(written, context)
    if compiled is None:
        return refused(*diagnostics)
    grounding = ungrounded(written, compiled, sentence, context.lexicon)
    if grounding:
        return refused(*diagnostics, *(
            Diagnostic("error", f"not in the sentence: {p}") for p in grounding))
    return DraftResult(sentence, rule_text, name, _model_mapping(sentence, written),
                       (), tuple(diagnostics), compiled)


def _model_mapping(sentence: str, rule: Rule) -> tuple[MappingLine, ...]:
    """What the grounding check tied to words of the sentence: the amounts."""
    said = facts(sentence).mentions
    out = []
    for action in rule.actions:
        key: object = action.amount if isinstance(action, FixedReward) else action.percent
        words = next((w for w, v in said if v == key), "")
        out.append(MappingLine(words, format_node(action), "amount"))
        if isinstance(action, PercentReward) and action.cap is not None:
            cap = next((w for w, v in said if v == action.cap), "")
            out.append(MappingLine(cap, f"UP TO {format_money(action.cap)}", "amount"))
    if rule.limit is not None:
        words = next((w for w, v in said if v == rule.limit.amount), "")
        out.append(MappingLine(words, format_node(rule.limit), "amount"))
    return tuple(out)


__all__ = ["BUILTIN", "DraftContext", "DraftResult", "check", "draft", "load_context"]
