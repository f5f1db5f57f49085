"""One exception tree for the whole project.

Every error that a user can cause carries where it happened, printed the way
compilers print: ``file:line:col: error: message``.  Stages subclass the root so
that the CLI can turn any of them into a one-line message and an exit code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace


@dataclass(frozen=True, order=True)
class SourcePos:
    """A place in a source file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One error or warning found while checking a program."""

    severity: str  # "error" | "warning"
    message: str
    pos: SourcePos | None = None
    context: str | None = None  # the offending source line with a caret under the column

    def line(self) -> str:
        """``file:line:col: severity: message``, as the CLI prints it (one a line)."""
        where = f"{self.pos}: " if self.pos else ""
        return f"{where}{self.severity}: {self.message}"

    def __str__(self) -> str:
        return self.line() + ("\n" + self.context if self.context else "")


def caret_context(text: str | Sequence[str], line: int, column: int) -> str:
    """The source line at ``line``, indented, with a caret under ``column`` (tabs kept).

    ``text`` is the file's text, or its lines (``splitlines``) when many diagnostics
    point into one file: splitting it for each would be quadratic.
    """
    lines = text.splitlines() if isinstance(text, str) else text
    src = lines[line - 1] if 0 < line <= len(lines) else ""
    pad = "".join("\t" if ch == "\t" else " " for ch in src[: column - 1])
    return f"    {src}\n    {pad}^"


@dataclass(frozen=True)
class Sources:
    """The text of every file a program was parsed from, by the name positions use.

    Diagnostics found after parsing (phrases, validation) get their source line
    from here, so no file is read twice; a position in a file not read as rule
    text (a JSON model names the ``.rule`` files it was compiled from) gets none.
    """

    texts: Mapping[str, str] = field(default_factory=dict)
    _lines: dict[str, list[str]] = field(default_factory=dict, compare=False, repr=False)

    def context(self, pos: SourcePos | None) -> str | None:
        text = self.texts.get(pos.file) if pos is not None else None
        if pos is None or text is None:
            return None
        lines = self._lines.get(pos.file)
        if lines is None:
            lines = self._lines[pos.file] = text.splitlines()
        return caret_context(lines, pos.line, pos.column)

    def attach(self, diagnostic: Diagnostic) -> Diagnostic:
        """The diagnostic with its source line, unless it already has one."""
        if diagnostic.context is not None:
            return diagnostic
        context = self.context(diagnostic.pos)
        return diagnostic if context is None else replace(diagnostic, context=context)


class ReferralError(Exception):
    """Root of every error this project raises on purpose."""

    def __init__(self, message: str, pos: SourcePos | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos

    def __str__(self) -> str:
        return f"{self.pos}: error: {self.message}" if self.pos else self.message


class MoneyError(ReferralError, ValueError):
    """A money amount or currency that cannot be represented exactly."""


class RuleError(ReferralError):
    """A rule program that does not parse or does not validate.

    Carries every diagnostic found, so that all errors of all files are
    reported at once rather than only the first.
    """

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = diagnostics
        first = next((d for d in diagnostics if d.severity == "error"), diagnostics[0])
        super().__init__(first.message, first.pos)

    def __str__(self) -> str:
        return "\n".join(str(d) for d in self.diagnostics)


class RuleSyntaxError(RuleError):
    """The text is not in the rule language."""


class RuleValidationError(RuleError):
    """The text parses but the program is inconsistent (duplicate ids, unknown phrases...)."""


class ModelSchemaError(ReferralError):
    """JSON given as a rule model does not match the published JSON Schema."""


class EvaluationError(ReferralError):
    """A context value has the wrong type for a rule (a bad record, not a bad rule)."""


class DateError(EvaluationError):
    """A value that is not an ISO 8601 date or timestamp, or a time zone that does not exist."""


class DateRangeError(DateError):
    """A date, or a date computed from one, outside the calendar (years 1 to 9999)."""
