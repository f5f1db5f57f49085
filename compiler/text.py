"""Rule model -> canonical rule text (what ``rules fmt`` writes).

One method per node type (``<node>_text``) and one hook for anything else, so
a model node the formatter does not know raises instead of being dropped.
Parsing the output gives back the same model; formatting it again gives the
same text.  Unresolved per-file programs keep their vocabulary phrases and
their comments.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal
from pathlib import Path

from compiler.errors import FormatError
from dsl.codec import decimal_text
from dsl.model import (
    And,
    Compare,
    Condition,
    Definition,
    Example,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Setting,
    SettingName,
    Within,
)
from dsl.money import Money, format_money, symbol_table

INDENT = "  "
WIDTH = 100

# Mirrors the PHRASE terminal of grammar/referral.lark: words of letters, digits,
# _ ' - (not starting with a digit), single spaces, no word that ends a condition,
# and not starting with NOT.  Anything else is written as a quoted phrase.
_PHRASE_STOP = frozenset("and or then if rule define example".split())
_PLAIN_PHRASE = re.compile(r"[^\W\d][\w'-]*(?: [^\W\d][\w'-]*)*")

# Binding strength: NOT > AND > OR; comparisons and phrases are atoms.
_PREC_OR, _PREC_AND, _PREC_NOT, _PREC_ATOM = 1, 2, 3, 4


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def quote(text: str) -> str:
    """A string literal: double quotes; ``\\`` and ``\"`` are the only escapes the parser reads."""
    if "\n" in text or "\r" in text:
        raise FormatError(f"a rule string cannot hold a line break: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_plain_phrase(phrase: str) -> bool:
    """True when the phrase can be written unquoted and still parse as the same phrase."""
    if not _PLAIN_PHRASE.fullmatch(phrase):
        return False
    words = phrase.lower().split(" ")
    return words[0] != "not" and not _PHRASE_STOP.intersection(words)


class TextGenerator:
    """Canonical text for each model node.

    ``currency`` is the program's: ``$`` and ``¥`` are written for the currencies they
    are read as in it (a CAD program writes ``$5`` for CAD and ``USD 5`` for USD).
    """

    def __init__(self, currency: str | None = None) -> None:
        self.symbols = symbol_table(currency)

    def text(self, node: object) -> str:
        method = getattr(self, f"{_snake(type(node).__name__)}_text", None)
        if method is None:
            return self.unsupported(node)
        return method(node)

    def unsupported(self, node: object) -> str:
        raise FormatError(f"cannot format {type(node).__name__} as rule text: {node!r}")

    # -- statements ---------------------------------------------------------------------

    def program_text(self, program: Program) -> str:
        settings = "\n".join(self.text(s) for s in _settings(program))
        blocks: list[str] = [settings] if settings else []
        vocabulary = len(blocks)
        # Consecutive one-line DEFINEs stay together as a vocabulary block; a comment
        # starts a new paragraph.
        for d in program.definitions:
            if len(blocks) > vocabulary and not d.comments:
                blocks[-1] += "\n" + self.text(d)
            else:
                blocks.append(self.text(d))
        blocks.extend(self.text(s) for s in (*program.rules, *program.examples))
        return "\n\n".join(blocks) + "\n" if blocks else ""

    def _comments(self, comments: tuple[str, ...]) -> list[str]:
        # "" is a blank line the author left after a comment block.
        return [c if c.startswith("#") or c == "" else f"# {c}".rstrip() for c in comments]

    def setting_text(self, setting: Setting) -> str:
        lines = self._comments(setting.comments)
        value = quote(setting.value) if setting.name == "timezone" else setting.value
        lines.append(f"{setting.name.upper()} {value}")
        return "\n".join(lines)

    def definition_text(self, d: Definition) -> str:
        lines = self._comments(d.comments)
        lines.append(f"DEFINE {quote(d.phrase)} AS {self.condition_text(d.condition)}")
        return "\n".join(lines)

    def rule_text(self, rule: Rule) -> str:
        lines = self._comments(rule.comments)
        header = f"RULE {rule.id}"
        if rule.description is not None:
            header += f" {quote(rule.description)}"
        lines.append(header)
        if rule.priority:
            lines.append(f"{INDENT}PRIORITY {rule.priority}")
        if rule.exclusive:
            lines.append(f"{INDENT}EXCLUSIVE")
        cond = rule.condition
        if isinstance(cond, (And, Or)):
            joiner = "AND" if isinstance(cond, And) else "OR"
            items = [self._operand(c, cond) for c in cond.items]
            lines.append(f"{INDENT}IF {items[0]}")
            lines.extend(f"{INDENT}{joiner} {item}" for item in items[1:])
        else:
            lines.append(f"{INDENT}IF {self.condition_text(cond)}")
        if not rule.actions:
            raise FormatError(f"rule {rule.id} has no actions")
        for i, action in enumerate(rule.actions):
            lines.append(f"{INDENT}{'THEN' if i == 0 else 'AND'} {self.text(action)}")
        if rule.limit is not None:
            lines.append(f"{INDENT}{self.text(rule.limit)}")
        if rule.hold_days or rule.hold_from:
            lines.append(f"{INDENT}{hold_text(rule)}")
        if rule.reverse_if is not None:
            lines.append(f"{INDENT}REVERSE IF {self.condition_text(rule.reverse_if)}")
        return "\n".join(lines)

    def example_text(self, example: Example) -> str:
        lines = self._comments(example.comments)
        lines.append(f"EXAMPLE {quote(example.name)}")
        if not example.given:
            raise FormatError(f"example {example.name!r} has no GIVEN values")
        pairs = [f"{path} = {self.value_text(v)}" for path, v in example.given]
        lines.extend(self._wrap(f"{INDENT}GIVEN ", pairs))
        if example.expect:
            expected = " AND ".join(self.text(e) for e in example.expect)
            lines.append(f"{INDENT}EXPECT {expected}")
        else:
            lines.append(f"{INDENT}EXPECT NOTHING")
        return "\n".join(lines)

    def _wrap(self, lead: str, items: list[str]) -> list[str]:
        """Comma-separated items, continuation lines aligned under the first item."""
        lines: list[str] = []
        current = lead
        for i, item in enumerate(items):
            piece = item + ("," if i < len(items) - 1 else "")
            if current.strip() and len(current) + 1 + len(piece) > WIDTH:
                lines.append(current.rstrip())
                current = " " * len(lead)
            current += piece if current.endswith(" ") else " " + piece
        lines.append(current)
        return lines

    # -- actions ------------------------------------------------------------------------

    def fixed_reward_text(self, action: FixedReward) -> str:
        return f"ISSUE {self.money_text(action.amount)} REWARD TO {action.to}"

    def percent_reward_text(self, action: PercentReward) -> str:
        text = f"ISSUE {decimal_text(action.percent)}% OF {action.of} REWARD TO {action.to}"
        if action.cap is not None:
            text += f" UP TO {self.money_text(action.cap)}"
        return text

    def limit_text(self, limit: Limit) -> str:
        return (
            f"LIMIT {self.money_text(limit.amount)} PER {limit.per} PER {limit.period.upper()}"
        )

    def expected_reward_text(self, expected: ExpectedReward) -> str:
        return f"ISSUE {self.money_text(expected.amount)} TO {expected.to}"

    # -- conditions ---------------------------------------------------------------------

    def condition_text(self, cond: Condition) -> str:
        return self.text(cond)

    def _precedence(self, cond: Condition) -> int:
        if isinstance(cond, Or):
            return _PREC_OR
        if isinstance(cond, And):
            return _PREC_AND
        if isinstance(cond, Not):
            return _PREC_NOT
        return _PREC_ATOM

    def _operand(self, cond: Condition, parent: Condition) -> str:
        # Strictly tighter than the parent, or parenthesised: this also keeps an
        # AND nested in an AND (or NOT in NOT) as the same tree when re-parsed.
        text = self.condition_text(cond)
        if self._precedence(cond) <= self._precedence(parent):
            return f"({text})"
        return text

    def and_text(self, cond: And) -> str:
        return " AND ".join(self._operand(c, cond) for c in cond.items)

    def or_text(self, cond: Or) -> str:
        return " OR ".join(self._operand(c, cond) for c in cond.items)

    def not_text(self, cond: Not) -> str:
        return f"NOT {self._operand(cond.item, cond)}"

    def compare_text(self, cond: Compare) -> str:
        return f"{cond.path} {cond.op} {self.value_text(cond.value)}"

    def within_text(self, cond: Within) -> str:
        return f"{cond.path} WITHIN {cond.days} DAYS {cond.direction.upper()} {cond.other}"

    def phrase_ref_text(self, cond: PhraseRef) -> str:
        return cond.phrase if is_plain_phrase(cond.phrase) else quote(cond.phrase)

    # -- values -------------------------------------------------------------------------

    def value_text(self, value: object) -> str:
        # bool before int: bool is a subclass of int.
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        if isinstance(value, Decimal):
            text = decimal_text(value)
            return text if "." in text else text + ".0"
        if isinstance(value, str):
            return quote(value)
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, tuple):
            return "[" + ", ".join(self.value_text(v) for v in value) + "]"
        return self.text(value)

    def money_text(self, money: Money) -> str:
        return format_money(money, self.symbols)

    def field_ref_text(self, ref: FieldRef) -> str:
        return ref.path


def hold_text(rule: Rule) -> str:
    """``HOLD 14 DAYS`` or ``HOLD 14 DAYS FROM referee.subscribed_at``."""
    start = f" FROM {rule.hold_from}" if rule.hold_from else ""
    return f"HOLD {rule.hold_days} DAYS{start}"


def _settings(program: Program) -> list[Setting]:
    """The program's CURRENCY and TIMEZONE statements, with their comments when parsed."""
    written = {s.name: s for s in program.settings}
    out = []
    stated: tuple[tuple[SettingName, str | None], ...] = (
        ("currency", program.currency), ("timezone", program.timezone))
    for name, value in stated:
        if value is not None:
            found = written.get(name)
            out.append(found if found is not None and found.value == value
                       else Setting(name, value))
    return out


def phrase_runs(items: tuple[Condition, ...]) -> list[tuple[str | None, list[Condition]]]:
    """An AND's (or OR's) items in runs: ``(phrase, its conditions)`` for the conditions a
    DEFINEd phrase spliced in (``PhraseOrigin`` parts 1..n), ``(None, [item])`` for others."""
    runs: list[tuple[str | None, list[Condition]]] = []
    i = 0
    while i < len(items):
        origin = items[i].origin
        if origin is not None and origin.part == 1:
            run = list(items[i:i + origin.parts])
            if len(run) == origin.parts and all(
                c.origin == replace(origin, part=k) for k, c in enumerate(run, 1)
            ):
                runs.append((origin.phrase, run))
                i += origin.parts
                continue
        runs.append((None, [items[i]]))
        i += 1
    return runs


def phrase_of(cond: Condition) -> str | None:
    """The phrase a resolved condition is the whole expansion of, if any."""
    origin = cond.origin
    return origin.phrase if origin is not None and origin.part == 0 else None


class PhraseTextGenerator(TextGenerator):
    """Conditions as their author wrote them: what a DEFINEd phrase expanded to is the
    phrase again (the catalog's labels; the resolved model keeps it as ``origin``)."""

    def condition_text(self, cond: Condition) -> str:
        phrase = phrase_of(cond)
        if phrase is not None:
            return self.phrase_ref_text(PhraseRef(phrase))
        return super().condition_text(cond)

    def _precedence(self, cond: Condition) -> int:
        return _PREC_ATOM if phrase_of(cond) is not None else super()._precedence(cond)

    def _joined(self, cond: And | Or, joiner: str) -> str:
        return joiner.join(
            self.phrase_ref_text(PhraseRef(phrase)) if phrase is not None
            else self._operand(run[0], cond)
            for phrase, run in phrase_runs(cond.items)
        )

    def and_text(self, cond: And) -> str:
        return self._joined(cond, " AND ")

    def or_text(self, cond: Or) -> str:
        return self._joined(cond, " OR ")


_GENERATOR = TextGenerator()
_PHRASES = PhraseTextGenerator()


def format_program(program: Program, *, currency: str | None = None) -> str:
    """Canonical text of a program: CURRENCY and TIMEZONE, DEFINEs, RULEs, EXAMPLEs, a
    blank line between statements (consecutive DEFINEs form one block).

    ``currency`` is the whole program's when ``program`` is one of its files.
    """
    return TextGenerator(currency or program.currency).program_text(program)


def format_condition(cond: Condition) -> str:
    return _GENERATOR.condition_text(cond)


def describe_condition(cond: Condition) -> str:
    """A resolved condition in the author's words: DEFINEd phrases where they were used."""
    return _PHRASES.condition_text(cond)


def format_action(action: FixedReward | PercentReward) -> str:
    return _GENERATOR.text(action)


def format_node(node: object) -> str:
    """Text of any single model node (a rule, a limit, a value...)."""
    if node is None or isinstance(node, (bool, int, Decimal, str, date, tuple)):
        return _GENERATOR.value_text(node)
    return _GENERATOR.text(node)


def reformat_files(
    files: Mapping[Path, Program], *, currency: str | None = None
) -> dict[Path, str]:
    """The canonical text of every ``.rule`` file whose current text differs from it.

    ``files`` are the per-file, unresolved programs (``LoadedProgram.files``);
    JSON models among them are left alone.  ``currency`` is the program's CURRENCY
    (which says what ``$`` and ``¥`` mean in every file).
    """
    if currency is None:
        currency = next((p.currency for p in files.values() if p.currency), None)
    changed: dict[Path, str] = {}
    for path, program in files.items():
        if path.suffix != ".rule":
            continue
        text = format_program(program, currency=currency)
        if path.read_text(encoding="utf-8") != text:
            changed[path] = text
    return changed


def unified_diff(old: str, new: str, name: str) -> str:
    """What ``rules fmt --diff`` prints for one file (empty when nothing changes)."""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=name, tofile=name)
    # A last line without its newline still ends the diff's line.
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                   for line in lines)
