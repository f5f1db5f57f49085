"""The language server driven through the protocol: a `python -m referral.lsp` subprocess
speaking JSON-RPC over stdio, one server for the module, one program directory per test."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dsl.errors import RuleError
from dsl.program import load_program
from referral.cli.lsp import lsp as lsp_command

TIMEOUT = 15  # seconds for any one answer; a healthy server answers in milliseconds

VOCABULARY = """\
DEFINE "referrer is a paid user" AS referrer.plan = "paid"
DEFINE "referred user subscribes" AS referee.subscribed = true
"""

BONUS = """\
RULE paid_bonus "Paid referrers earn ₹500"
  IF referrer is a paid user
  AND referred user subscribes
  AND referee.first_payment >= ₹1,000
  THEN ISSUE ₹500 REWARD TO referrer

EXAMPLE "paid referrer earns"
  GIVEN referrer.id = "u1", referrer.plan = "paid", referee.id = "u2",
        referee.subscribed = true, referee.first_payment = ₹2,000
  EXPECT ISSUE ₹500 TO referrer

EXAMPLE "wrong on purpose"
  GIVEN referrer.id = "u1", referrer.plan = "free", referee.id = "u2"
  EXPECT ISSUE ₹500 TO referrer
"""

RECORDS = "\n".join(json.dumps(r) for r in [
    {"referral_id": "r1", "referrer": {"id": "u1", "plan": "paid"},
     "referee": {"id": "u2", "subscribed": True, "first_payment": 150000, "age": 31}},
    {"referral_id": "r2", "referrer": {"id": "u3", "plan": "free"},
     "referee": {"id": "u4", "subscribed": False, "first_payment": 90000, "age": 45}},
]) + "\n"


class Client:
    """A minimal LSP client: Content-Length framing, ids, and a queue of what arrives."""

    def __init__(self, args: list[str], stderr: Path) -> None:
        self._stderr = stderr.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "referral.lsp", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
        )
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any]] = queue.Queue()
        self.notifications: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.proc.stdout
        assert out is not None
        while True:
            length = None
            while True:
                header = out.readline()
                if not header:
                    return
                if header in (b"\r\n", b"\n"):
                    break
                name, _, value = header.decode("ascii").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            assert length is not None
            self._inbox.put(json.loads(out.read(length)))

    def _send(self, message: dict[str, Any]) -> None:
        body = json.dumps({"jsonrpc": "2.0", **message}).encode("utf-8")
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.proc.stdin.flush()

    def _take(self) -> dict[str, Any]:
        try:
            message = self._inbox.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError("the language server did not answer in time") from None
        if "id" in message and "method" in message:  # a request from the server
            self._send({"id": message["id"], "result": None})
        elif "method" in message:
            self.notifications.append(message)
        return message

    def request(self, method: str, params: Any) -> Any:
        self._next_id += 1
        self._send({"id": self._next_id, "method": method, "params": params})
        while True:
            message = self._take()
            if message.get("id") == self._next_id and "method" not in message:
                assert "error" not in message, message["error"]
                return message.get("result")

    def notify(self, method: str, params: Any) -> None:
        self._send({"method": method, "params": params})

    def notification(self, method: str, match: Callable[[Any], bool]) -> Any:
        """The first notification (seen or still to come) of ``method`` whose params match;
        it is consumed, so a later call waits for a newer one."""
        while True:
            for i, n in enumerate(self.notifications):
                if n["method"] == method and match(n["params"]):
                    return self.notifications.pop(i)["params"]
            self._take()

    def close(self) -> None:
        try:
            self.request("shutdown", None)
            self.notify("exit", None)
            self.proc.wait(timeout=TIMEOUT)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self._stderr.close()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    home = tmp_path_factory.mktemp("lsp")
    records = home / "sample.jsonl"
    records.write_text(RECORDS, encoding="utf-8")
    c = Client(["--records", str(records)], home / "stderr.txt")
    try:
        c.request("initialize", {"processId": None, "rootUri": None, "capabilities": {}})
        c.notify("initialized", {})
        yield c
    finally:
        c.close()


@pytest.fixture
def program(tmp_path: Path) -> Path:
    root = tmp_path / "rules"
    root.mkdir()
    (root / "vocabulary.rule").write_text(VOCABULARY, encoding="utf-8")
    (root / "bonus.rule").write_text(BONUS, encoding="utf-8")
    return root


def uri(path: Path) -> str:
    return path.absolute().as_uri()


def open_doc(client: Client, path: Path, text: str | None = None) -> None:
    text = path.read_text(encoding="utf-8") if text is None else text
    client.notify("textDocument/didOpen", {"textDocument": {
        "uri": uri(path), "languageId": "referral-rule", "version": 1, "text": text}})


def change_doc(client: Client, path: Path, text: str, version: int) -> None:
    client.notify("textDocument/didChange", {
        "textDocument": {"uri": uri(path), "version": version},
        "contentChanges": [{"text": text}]})


def diagnostics_of(client: Client, path: Path, match: Callable[[list[Any]], bool]) -> list[Any]:
    params = client.notification("textDocument/publishDiagnostics",
                                 lambda p: p["uri"] == uri(path) and match(p["diagnostics"]))
    return list(params["diagnostics"])


def at(client: Client, method: str, path: Path, line: int, character: int, **extra: Any) -> Any:
    return client.request(method, {"textDocument": {"uri": uri(path)},
                                   "position": {"line": line, "character": character}, **extra})


def labels(items: list[dict[str, Any]], kind: int) -> list[str]:
    return [i["label"] for i in items if i.get("kind") == kind]


KEYWORD, FIELD, FUNCTION, REFERENCE, ENUM_MEMBER = 14, 5, 3, 18, 20


def test_lsp_diagnostics_follow_the_whole_program(client: Client, program: Path) -> None:
    bonus, vocabulary = program / "bonus.rule", program / "vocabulary.rule"
    open_doc(client, bonus)
    assert diagnostics_of(client, bonus, lambda ds: True) == []

    # Removing a DEFINE from the unsaved vocabulary buffer breaks the other file.
    broken = 'DEFINE "referrer is a paid user" AS referrer.plan = "paid"\nDEFINE "x" AS ((\n'
    open_doc(client, vocabulary)
    change_doc(client, vocabulary, broken, 2)
    in_bonus = diagnostics_of(client, bonus, bool)
    in_vocabulary = diagnostics_of(client, vocabulary, bool)

    # The same file:line:col errors as `rules check` on the same texts saved.
    vocabulary.write_text(broken, encoding="utf-8")
    with pytest.raises(RuleError) as e:
        load_program([program])
    expected = {(Path(d.pos.file).name, d.pos.line - 1, d.pos.column - 1, d.message)
                for d in e.value.diagnostics if d.pos}
    got = {(name, d["range"]["start"]["line"], d["range"]["start"]["character"], d["message"])
           for name, ds in (("bonus.rule", in_bonus), ("vocabulary.rule", in_vocabulary))
           for d in ds}
    assert got == expected
    undefined = next(d for d in in_bonus if "is not defined" in d["message"])
    assert undefined["message"] == 'phrase "referred user subscribes" is not defined'
    assert undefined["range"] == {"start": {"line": 2, "character": 6},
                                  "end": {"line": 2, "character": 30}}
    assert undefined["severity"] == 1

    change_doc(client, vocabulary, VOCABULARY, 3)
    assert diagnostics_of(client, bonus, lambda ds: not ds) == []


def test_lsp_closing_an_unsaved_file_clears_its_diagnostics(
    client: Client, program: Path
) -> None:
    draft = program / "draft.rule"  # never saved
    open_doc(client, draft, "RULE r IF (\n")
    (error,) = diagnostics_of(client, draft, bool)
    assert error["message"].startswith("unexpected end of input")
    client.notify("textDocument/didClose", {"textDocument": {"uri": uri(draft)}})
    assert diagnostics_of(client, draft, lambda ds: not ds) == []


def test_lsp_diagnostics_warnings_have_warning_severity(client: Client, tmp_path: Path) -> None:
    bare = tmp_path / "bare.rule"
    bare.write_text("IF referee.subscribed THEN ISSUE ₹5\n", encoding="utf-8")
    open_doc(client, bare)
    (warning,) = diagnostics_of(client, bare, bool)
    assert warning["severity"] == 2
    assert warning["message"].startswith("rule without a RULE header gets the id bare_1")
    assert warning["range"]["start"] == {"line": 0, "character": 0}


@pytest.mark.parametrize(("text", "kind", "wanted", "unwanted"), [
    # keywords the grammar accepts after a field path, not those it refuses
    ("RULE r IF referee.country ", KEYWORD, ["IN", "IS", "CONTAINS", "THEN"], ["RULE", "ISSUE"]),
    ("RULE r IF referee.subscribed THEN ISSUE ₹5 ", KEYWORD,
     ["TO", "REWARD", "AND", "LIMIT", "HOLD", "RULE"], ["IN", "THEN"]),
    ("", KEYWORD, ["RULE", "DEFINE", "EXAMPLE", "IF"], ["THEN", "AND"]),
    # phrases DEFINEd in the other file, where a condition starts
    ("RULE r IF ", FUNCTION, ["referrer is a paid user", "referred user subscribes"], []),
    ("RULE r IF referrer is a pa", FUNCTION, ["referrer is a paid user"],
     ["referred user subscribes"]),
    # after DEFINE: the phrases used but not defined yet
    ("RULE q IF brand new phrase THEN ISSUE ₹5\nDEFINE ", FUNCTION, ["brand new phrase"],
     ["referrer is a paid user"]),
    # field paths of the program and of the --records sample
    ("RULE r IF ", FIELD, ["referee.first_payment", "referrer.plan", "referee.age"], []),
    ("RULE r IF referee.subscribed THEN ISSUE ₹5 REWARD TO referrer\nEXAMPLE \"e\" GIVEN ",
     FIELD, ["referee.age", "referrer.id"], []),
    # rule ids where a rule id goes, beneficiaries where a role goes
    ("RULE ", REFERENCE, ["paid_bonus"], []),
    ("RULE r IF referee.subscribed THEN ISSUE ₹5 TO ", ENUM_MEMBER, ["referrer", "referee"], []),
    ("RULE r IF referee.country ", FIELD, [], ["referee.age"]),
])
def test_lsp_completion_offers_what_fits_the_context(
    client: Client, program: Path, text: str, kind: int, wanted: list[str], unwanted: list[str]
) -> None:
    new = program / "new.rule"
    open_doc(client, new, text)
    lines = text.split("\n")
    result = at(client, "textDocument/completion", new, len(lines) - 1, len(lines[-1]))
    offered = labels(result["items"], kind)
    assert set(wanted) <= set(offered), offered
    assert not set(unwanted) & set(offered), offered


def test_lsp_completion_replaces_the_phrase_being_typed(client: Client, program: Path) -> None:
    new = program / "new.rule"
    text = "RULE r\n  IF referrer is a pa"
    open_doc(client, new, text)
    result = at(client, "textDocument/completion", new, 1, len("  IF referrer is a pa"))
    (item,) = [i for i in result["items"] if i["label"] == "referrer is a paid user"]
    assert item["detail"] == 'referrer.plan = "paid"'
    assert item["textEdit"] == {"newText": "referrer is a paid user", "range": {
        "start": {"line": 1, "character": 5}, "end": {"line": 1, "character": 21}}}


def test_lsp_hover_shows_definition_type_and_rule(client: Client, program: Path) -> None:
    bonus = program / "bonus.rule"
    open_doc(client, bonus)
    phrase = at(client, "textDocument/hover", bonus, 1, 10)
    assert 'DEFINE "referrer is a paid user" AS referrer.plan = "paid"' in (
        phrase["contents"]["value"])
    assert "vocabulary.rule:1" in phrase["contents"]["value"]
    assert phrase["range"] == {"start": {"line": 1, "character": 5},
                               "end": {"line": 1, "character": 28}}

    field = at(client, "textDocument/hover", bonus, 3, 10)["contents"]["value"]
    assert field.startswith("**referee.first_payment**: money")
    assert "`referee.first_payment >= ₹1,000` (bonus.rule:4)" in field
    assert "records sample: integer 2" in field

    rule = at(client, "textDocument/hover", bonus, 0, 7)["contents"]["value"]
    assert rule.startswith("**paid_bonus**: Paid referrers earn ₹500")
    assert "  THEN ISSUE ₹500 REWARD TO referrer" in rule
    assert 'expands to `IF referrer.plan = "paid" AND referee.subscribed = true' in rule

    assert at(client, "textDocument/hover", bonus, 4, 4) is None  # THEN: a keyword


def test_lsp_positions_are_utf16_code_units(client: Client, tmp_path: Path) -> None:
    emoji = tmp_path / "emoji.rule"
    open_doc(client, emoji, 'RULE r "😀😀" IF referee.vip THEN ISSUE ₹5\n')
    hover = at(client, "textDocument/hover", emoji, 0, 17)  # each 😀 is two UTF-16 units
    assert hover["contents"]["value"].startswith("**referee.vip**: boolean")
    assert hover["range"] == {"start": {"line": 0, "character": 17},
                              "end": {"line": 0, "character": 28}}


def test_lsp_definition_and_references_of_phrases_and_rules(
    client: Client, program: Path
) -> None:
    bonus, vocabulary = program / "bonus.rule", program / "vocabulary.rule"
    (root := program / "more.rule").write_text(
        "RULE other IF referred user subscribes THEN ISSUE ₹1\n", encoding="utf-8")
    open_doc(client, bonus)
    (definition,) = at(client, "textDocument/definition", bonus, 2, 10)
    assert definition == {"uri": uri(vocabulary), "range": {
        "start": {"line": 1, "character": 7}, "end": {"line": 1, "character": 33}}}

    refs = at(client, "textDocument/references", bonus, 2, 10,
              context={"includeDeclaration": True})
    assert sorted((Path(r["uri"]).name, r["range"]["start"]["line"]) for r in refs) == [
        ("bonus.rule", 2), ("more.rule", 0), ("vocabulary.rule", 1)]
    refs = at(client, "textDocument/references", bonus, 2, 10,
              context={"includeDeclaration": False})
    assert len(refs) == 2

    (rule,) = at(client, "textDocument/definition", root, 0, 7)
    assert rule["uri"] == uri(root) and rule["range"]["start"] == {"line": 0, "character": 5}
    assert at(client, "textDocument/definition", bonus, 3, 10) == []  # a field: no DEFINE


def test_lsp_formatting_returns_the_canonical_text(client: Client, program: Path) -> None:
    messy = program / "messy.rule"
    open_doc(client, messy, 'rule  r  if referee.subscribed then issue ₹5 to referee\n')
    edits = client.request("textDocument/formatting", {
        "textDocument": {"uri": uri(messy)}, "options": {"tabSize": 2, "insertSpaces": True}})
    assert edits == [{"newText": "RULE r\n  IF referee.subscribed = true\n"
                                 "  THEN ISSUE ₹5 REWARD TO referee\n",
                      "range": {"start": {"line": 0, "character": 0},
                                "end": {"line": 1, "character": 0}}}]

    change_doc(client, messy, "RULE r IF (\n", 2)
    assert client.request("textDocument/formatting", {
        "textDocument": {"uri": uri(messy)}, "options": {"tabSize": 2, "insertSpaces": True}
    }) is None


def test_lsp_code_lens_runs_one_example(client: Client, program: Path) -> None:
    bonus = program / "bonus.rule"
    open_doc(client, bonus)
    lenses = client.request("textDocument/codeLens", {"textDocument": {"uri": uri(bonus)}})
    assert [(lens["range"]["start"]["line"], lens["command"]["title"]) for lens in lenses] == [
        (6, '▶ Run example "paid referrer earns"'), (11, '▶ Run example "wrong on purpose"')]
    command = lenses[0]["command"]
    assert command["command"] == "referral.runExample"

    result = client.request("workspace/executeCommand", {
        "command": command["command"], "arguments": command["arguments"]})
    assert result == {"name": "paid referrer earns", "passed": True,
                      "message": "PASS paid referrer earns"}
    shown = client.notification("window/showMessage", lambda p: "paid referrer" in p["message"])
    assert shown == {"type": 3, "message": "PASS paid referrer earns"}

    failing = lenses[1]["command"]
    result = client.request("workspace/executeCommand", {
        "command": failing["command"], "arguments": failing["arguments"]})
    assert result["passed"] is False
    assert result["message"] == ("FAIL wrong on purpose: expected ISSUE ₹500 TO referrer, "
                                 "got NOTHING")
    assert client.notification("window/showMessage",
                               lambda p: "wrong on purpose" in p["message"])["type"] == 1


def test_lsp_command_object_offers_its_options() -> None:
    result = CliRunner().invoke(lsp_command, ["--help"])
    assert result.exit_code == 0
    assert "--records" in result.output and "--program" in result.output
