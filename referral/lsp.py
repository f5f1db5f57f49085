"""The rule language server (``referral lsp``, JSON-RPC over stdio), a thin layer over
``compiler.ide``: this module only converts between the protocol's types and
positions (0-based lines, columns in the client's code units) and the library's.

Diagnostics are published for every file of the changed file's program, since a
change in one file (a DEFINE removed) can break the others.  Code lenses on
EXAMPLE lines run the ``referral.runExample`` command, which answers PASS/FAIL
with ``window/showMessage`` and returns the result.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace.position_codec import ServerTextPosition

from compiler.ide import Completion, Span, Workspace, tokens
from dsl.errors import Diagnostic

log = logging.getLogger(__name__)

RUN_EXAMPLE = "referral.runExample"

SEVERITIES = {"error": lsp.DiagnosticSeverity.Error, "warning": lsp.DiagnosticSeverity.Warning}
COMPLETION_KINDS = {
    "keyword": lsp.CompletionItemKind.Keyword,
    "operator": lsp.CompletionItemKind.Operator,
    "phrase": lsp.CompletionItemKind.Function,
    "field": lsp.CompletionItemKind.Field,
    "rule": lsp.CompletionItemKind.Reference,
    "value": lsp.CompletionItemKind.EnumMember,
}
_WORD = re.compile(r"[\w.]+")


def _version() -> str:
    try:
        return version("referral-rewards")
    except PackageNotFoundError:
        return "0"


class RuleLanguageServer(LanguageServer):
    """The pygls server holding one ``Workspace`` and what it last published."""

    def __init__(self, workspace: Workspace) -> None:
        super().__init__("referral-rules", _version())
        self.rules = workspace
        self.published: dict[Path, list[lsp.Diagnostic]] = {}  # what each file was last sent

    # -- positions ------------------------------------------------------------------

    def _lines(self, path: Path) -> list[str]:
        return (self.rules.text(path) or "").splitlines(keepends=True)

    def to_position(self, path: Path, line: int, column: int) -> lsp.Position:
        codec = self.workspace.position_codec
        return codec.position_to_client_units(
            self._lines(path), ServerTextPosition(line - 1, column - 1)
        )

    def to_range(self, span: Span) -> lsp.Range:
        return lsp.Range(self.to_position(span.file, span.line, span.column),
                         self.to_position(span.file, span.end_line, span.end_column))

    def to_location(self, span: Span) -> lsp.Location:
        return lsp.Location(from_fs_path(str(span.file)) or "", self.to_range(span))

    def from_position(self, path: Path, position: lsp.Position) -> tuple[int, int]:
        server = self.workspace.position_codec.position_from_client_units(
            self._lines(path), position
        )
        return server.line + 1, server.character + 1

    # -- diagnostics ----------------------------------------------------------------

    def publish(self, path: Path) -> None:
        """Diagnostics of every file of ``path``'s program, sent where they changed (and
        cleared for files that left the program)."""
        analysis = self.rules.analysis(path)
        found = {f: [self._diagnostic(f, d) for d in ds]
                 for f, ds in analysis.by_file(path).items()}
        gone = {f for f in self.published if f.is_relative_to(analysis.root) and f not in found}
        found.update((f, []) for f in gone)
        for file, diagnostics in found.items():
            if self.published.get(file) != diagnostics:
                self.text_document_publish_diagnostics(lsp.PublishDiagnosticsParams(
                    uri=from_fs_path(str(file)) or "", diagnostics=diagnostics))
            self.published[file] = diagnostics
        for file in gone:
            del self.published[file]

    def _diagnostic(self, file: Path, d: Diagnostic) -> lsp.Diagnostic:
        line, column = (d.pos.line, d.pos.column) if d.pos else (1, 1)
        end_line, end_column = line, column + 1
        text = self.rules.text(file) or ""
        tok = next((t for t in tokens(text) if (t.line, t.column) == (line, column)), None)
        if tok is not None:
            end_line, end_column = tok.end_line or line, tok.end_column or column + 1
        else:
            lines = text.splitlines()
            source = lines[line - 1] if 0 < line <= len(lines) else ""
            word = _WORD.match(source, column - 1)
            if word is not None:
                end_column = word.end() + 1
        span = Span(file, line, column, end_line, end_column)
        return lsp.Diagnostic(range=self.to_range(span), message=d.message,
                              severity=SEVERITIES.get(d.severity), source="referral")

    def completion_item(self, index: int, c: Completion) -> lsp.CompletionItem:
        return lsp.CompletionItem(
            label=c.label,
            kind=COMPLETION_KINDS.get(c.kind),
            detail=c.detail or None,
            sort_text=f"{index:04d}",
            filter_text=c.insert,
            text_edit=lsp.TextEdit(range=self.to_range(c.span), new_text=c.insert),
        )


def _path(uri: str) -> Path | None:
    fs = to_fs_path(uri)
    return Path(fs) if fs else None


def build_server(programs: Sequence[Path] = (), records: Path | None = None) -> RuleLanguageServer:
    """A server with every feature registered (start it with ``start_io()``)."""
    server = RuleLanguageServer(Workspace(programs, records))

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: RuleLanguageServer, params: lsp.DidOpenTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        if path is not None:
            ls.rules.open(path, params.text_document.text)
            ls.publish(path)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: RuleLanguageServer, params: lsp.DidChangeTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        if path is not None:
            ls.rules.open(path, ls.workspace.get_text_document(params.text_document.uri).source)
            ls.publish(path)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: RuleLanguageServer, params: lsp.DidSaveTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        if path is not None:
            ls.publish(path)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: RuleLanguageServer, params: lsp.DidCloseTextDocumentParams) -> None:
        path = _path(params.text_document.uri)
        if path is not None:
            ls.rules.close(path)
            ls.publish(path)  # the file on disk again, or none: its diagnostics go away

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION,
                    lsp.CompletionOptions(trigger_characters=[".", '"']))
    def completion(ls: RuleLanguageServer, params: lsp.CompletionParams) -> lsp.CompletionList:
        path = _path(params.text_document.uri)
        if path is None:
            return lsp.CompletionList(is_incomplete=False, items=[])
        line, column = ls.from_position(path, params.position)
        items = [ls.completion_item(i, c)
                 for i, c in enumerate(ls.rules.completions(path, line, column))]
        return lsp.CompletionList(is_incomplete=False, items=items)

    @server.feature(lsp.TEXT_DOCUMENT_HOVER)
    def hover(ls: RuleLanguageServer, params: lsp.HoverParams) -> lsp.Hover | None:
        path = _path(params.text_document.uri)
        found = path and ls.rules.hover(path, *ls.from_position(path, params.position))
        if not found:
            return None
        return lsp.Hover(
            contents=lsp.MarkupContent(kind=lsp.MarkupKind.Markdown, value=found.markdown),
            range=ls.to_range(found.span),
        )

    @server.feature(lsp.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: RuleLanguageServer, params: lsp.DefinitionParams) -> list[lsp.Location]:
        path = _path(params.text_document.uri)
        if path is None:
            return []
        spans = ls.rules.definition(path, *ls.from_position(path, params.position))
        return [ls.to_location(s) for s in spans]

    @server.feature(lsp.TEXT_DOCUMENT_REFERENCES)
    def references(ls: RuleLanguageServer, params: lsp.ReferenceParams) -> list[lsp.Location]:
        path = _path(params.text_document.uri)
        if path is None:
            return []
        line, column = ls.from_position(path, params.position)
        spans = ls.rules.references(
            path, line, column, include_declaration=params.context.include_declaration
        )
        return [ls.to_location(s) for s in spans]

    @server.feature(lsp.TEXT_DOCUMENT_FORMATTING)
    def formatting(
        ls: RuleLanguageServer, params: lsp.DocumentFormattingParams
    ) -> list[lsp.TextEdit] | None:
        path = _path(params.text_document.uri)
        text = ls.rules.format(path) if path else None
        if path is None or text is None:
            return None  # not parseable: leave the buffer alone
        lines = ls._lines(path)
        if text == "".join(lines):
            return []
        whole = lsp.Range(lsp.Position(0, 0), lsp.Position(len(lines), 0))
        return [lsp.TextEdit(range=whole, new_text=text)]

    @server.feature(lsp.TEXT_DOCUMENT_CODE_LENS)
    def code_lens(ls: RuleLanguageServer, params: lsp.CodeLensParams) -> list[lsp.CodeLens]:
        path = _path(params.text_document.uri)
        if path is None:
            return []
        lenses = []
        for name, line in ls.rules.examples(path):
            start = lsp.Position(line - 1, 0)
            lenses.append(lsp.CodeLens(
                range=lsp.Range(start, start),
                command=lsp.Command(title=f"▶ Run example \"{name}\"", command=RUN_EXAMPLE,
                                    arguments=[params.text_document.uri, line - 1]),
            ))
        return lenses

    @server.command(RUN_EXAMPLE)
    def run_example(ls: RuleLanguageServer, uri: str, line: int) -> dict[str, Any]:
        """Arguments: the document URI and the 0-based line of its EXAMPLE."""
        path = _path(uri)
        if path is None:
            return {"name": "", "passed": False, "message": f"not a file: {uri}"}
        result = ls.rules.run_example(path, line + 1)
        kind = lsp.MessageType.Info if result.passed else lsp.MessageType.Error
        ls.window_show_message(lsp.ShowMessageParams(type=kind, message=result.message))
        return {"name": result.name, "passed": result.passed, "message": result.message}

    return server


def serve(programs: Sequence[Path] = (), records: Path | None = None) -> None:
    """Run the server on stdin/stdout until the client exits."""
    build_server(programs, records).start_io()


if __name__ == "__main__":
    from referral.cli.lsp import lsp as _command

    _command()
