"""Referral records: JSON Lines, CSV or a JSON array, gzipped or not, streamed.

A record is a nested mapping (the rule context) plus where it came from, so a
bad one can be quarantined with its file, line and raw text.  Nothing here
holds more than one record in memory.  Nothing is read two ways: a key or a
column named twice, a quote left open, an id that prints like another (not in
NFC, or with invisible or bidi characters) is refused, never resolved silently.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import sys
import unicodedata
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, TextIO, cast

from dsl.errors import EvaluationError
from dsl.evaluate import nest_context
from settlement.errors import RecordsFileError

REQUIRED_FIELDS = ("referral_id", "referrer.id", "referee.id")
# Ids end up in ledger references, VARCHAR(255): "reward:<rule id>:<referral_id>:<role>".
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class Record:
    """One referral event, ready for evaluation."""

    file: str
    line: int
    raw: str
    data: dict[str, Any]
    # "jsonl": ``raw`` is the record's JSON text (it decodes to ``data``); "csv": a row;
    # "normalised": JSON whose ids were made canonical (``data`` is what counts).
    fmt: str = "jsonl"

    @property
    def referral_id(self) -> str:
        return str(self.data["referral_id"])

    def get(self, path: str) -> Any:
        return lookup(self.data, path)


@dataclass(frozen=True)
class BadRecord:
    """A line that cannot be a record; quarantined with the reason."""

    file: str
    line: int
    raw: str
    reason: str



def lookup(data: Any, path: str) -> Any:
    """Value at a dotted path, or None when any step is missing."""
    cur = data
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _check_required(data: Any) -> str | None:
    if not isinstance(data, dict):
        return f"a record must be a JSON object, got {type(data).__name__}"
    for path in REQUIRED_FIELDS:
        value = lookup(data, path)
        if value is None or (isinstance(value, str) and not value.strip()):
            return f"missing required field {path}"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return f"{path} must be a string or an integer, got {json.dumps(value, default=str)}"
        if len(str(value)) > MAX_ID_CHARS:
            return f"{path} is longer than {MAX_ID_CHARS} characters"
        if isinstance(value, str) and _text_problem(value):
            return f"{path} must be text without NUL characters or unpaired surrogates"
    return None


def is_id_path(path: str) -> bool:
    """Fields that identify someone or something: ``referral_id`` and every ``*.id``."""
    return path == "referral_id" or path == "id" or path.endswith(".id")


# Characters an id cannot hold: they are invisible, reorder text (bidi) or break lines,
# so two ids that print alike could pay two people, or forge lines in a report.
_REFUSED = {"Cc": "a control character", "Cf": "a format character",
            "Zl": "a line separator", "Zp": "a paragraph separator", "Cs": "a surrogate"}
ID_CHARACTERS = "ids cannot hold control, format (zero-width, bidi) or line-separator characters"


def id_problem(text: str) -> str | None:
    """The first character ``text`` cannot hold as an id, named by its code point."""
    if text.isprintable():  # the usual case: none of _REFUSED (nor other spaces) in it
        return None
    for ch in text:
        category = unicodedata.category(ch)
        if category in _REFUSED:
            name = unicodedata.name(ch, None)
            return f"U+{ord(ch):04X} " + (name if name else f"({_REFUSED[category]})")
    return None


def canonical_id(text: str) -> str:
    """One id as settlement keeps it (NFC); ValueError naming a character it cannot hold."""
    problem = id_problem(text)
    if problem:
        raise ValueError(f"contains {problem}: {ID_CHARACTERS}")
    return unicodedata.normalize("NFC", text)


def canonical_ids(data: dict[str, Any]) -> tuple[str | None, bool]:
    """Make every id of ``data`` canonical in place: a string, in NFC (so a name typed
    decomposed and one typed composed are one person).  Returns a problem (an id with a
    character it cannot hold) and whether anything was changed."""
    changed = False
    stack: list[tuple[dict[str, Any], str]] = [(data, "")]
    while stack:  # is_id_path, unrolled: this runs for every key of every record
        obj, path = stack.pop()
        for key, value in obj.items():
            kind = type(value)
            if kind is dict:
                stack.append((value, f"{path}{key}."))
            elif key != "id" and (path or key != "referral_id"):
                continue
            elif kind is int:
                obj[key], changed = str(value), True
            elif kind is str:
                problem = id_problem(value)
                if problem:
                    return f"{path}{key} contains {problem}: {ID_CHARACTERS}", changed
                if not unicodedata.is_normalized("NFC", value):
                    obj[key], changed = unicodedata.normalize("NFC", value), True
    return None, changed


def _record(name: str, line: int, raw: str, data: Any, fmt: str = "jsonl", where: str = ""
            ) -> Record | BadRecord:
    """A record, or why ``data`` cannot be one (``where``: an element's index, say)."""
    problem = _check_required(data)
    if problem is None:
        problem, changed = canonical_ids(data)
        if problem is None:
            return Record(name, line, raw, data, "normalised" if changed else fmt)
    return _bad(name, line, raw, where + problem)


def _text_problem(text: str) -> str | None:
    """Why a database could not store ``text`` (PostgreSQL refuses NUL and invalid UTF-8)."""
    if "\x00" in text:
        return "contains a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8 text"
    return None


def _bad(name: str, line: int, raw: str, reason: str) -> BadRecord:
    """A BadRecord whose raw text can be stored: undecodable bytes and NUL are escaped."""
    raw = raw.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return BadRecord(name, line, raw.replace("\x00", "\\x00"), reason)


def _csv_value(text: str) -> Any:
    """CSV cells: JSON numbers and booleans are typed; everything else stays a string."""
    if text == "":
        return None
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "null":
        return None
    if text[0] in "-0123456789" and not text.startswith("-", 1):
        try:
            value = json.loads(text, parse_float=Decimal)
        except ValueError:
            return text
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            return value
    return text


class _Duplicated(dict[str, Any]):
    """A JSON object in which ``key`` appeared more than once."""

    __slots__ = ("key",)
    key: str


_duplicates = 0  # objects with a repeated key decoded so far (a cheap "any in this record?")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object; a repeated key is remembered: json would silently keep the last value,
    and ``{"id": "u1", "id": "attacker"}`` would pay the attacker."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    global _duplicates
    _duplicates += 1
    marked = _Duplicated(obj)
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            marked.key = key
            break
        seen.add(key)
    return marked


def _duplicate_path(value: Any) -> str | None:
    """The dotted path of the first repeated key in ``value`` (iterative: JSON nests deep)."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, _Duplicated):
            return path + obj.key
        if isinstance(obj, dict):
            stack.extend((v, f"{path}{k}.") for k, v in reversed(obj.items()))
        elif isinstance(obj, list):
            stack.extend((v, f"{path[:-1]}[{i}].") for i, v in reversed(list(enumerate(obj))))
    return None


def decode(text: str, pos: int = 0) -> tuple[Any, int]:
    """The JSON value at ``pos`` of ``text`` and where it ends; a repeated key raises."""
    before = _duplicates
    value, end = DECODER.raw_decode(text, pos)
    if _duplicates != before:
        raise DuplicateKey(f"duplicate key {_duplicate_path(value)}: a key may appear once"
                           " in an object")
    return value, end


def decode_line(raw: str) -> Any:
    """The one JSON value of a line (what ``json.loads`` does, repeated keys refused)."""
    value, end = decode(raw, len(raw) - len(raw.lstrip(" \t\r\n")))
    if end != len(raw) and raw[end:].strip(" \t\r\n"):
        raise json.JSONDecodeError("Extra data", raw, end)
    return value


class DuplicateKey(ValueError):
    """A JSON object names a key twice."""


# One decoder for every line: json.loads(..., parse_float=) builds a new one per call.
DECODER = json.JSONDecoder(parse_float=Decimal, object_pairs_hook=_object)


def _jsonl(stream: Iterator[str], name: str) -> Iterator[Record | BadRecord]:
    for number, line in enumerate(stream, start=1):
        raw = line.rstrip("\r\n")
        if not raw.strip():
            continue
        problem = _text_problem(raw)
        if problem:
            yield _bad(name, number, raw, problem)
            continue
        try:
            if raw.startswith("\ufeff"):  # what json.loads refuses; a file's first BOM is dropped
                raise json.JSONDecodeError("Unexpected UTF-8 BOM", raw, 0)
            data = decode_line(raw)
        except DuplicateKey as e:
            yield _bad(name, number, raw, str(e))
            continue
        except ValueError as e:
            yield _bad(name, number, raw, f"not valid JSON: {e}")
            continue
        except RecursionError:  # "[[[[...": json recurses once per nesting level
            yield _bad(name, number, raw, "not valid JSON: nested too deeply")
            continue
        yield _record(name, number, raw, data)


UNTERMINATED = ("a quoted cell does not end on its line (unterminated quote;"
                " cells cannot span lines)")


def csv_line(line: str) -> list[str]:
    """One physical line as one CSV row, strictly: a quote left open is an error here, so
    one stray quote cannot swallow the lines after it."""
    try:
        return next(csv.reader((line,), strict=True))
    except csv.Error as e:
        raise csv.Error(UNTERMINATED if str(e) == "unexpected end of data" else str(e)) from None
    except StopIteration:
        return []


def duplicate_column(header: list[str]) -> str | None:
    """Why a header cannot be read: csv.DictReader would keep the last of two equal names."""
    seen: dict[str, int] = {}
    for number, column in enumerate(header, start=1):
        if column and column in seen:
            return f"column {column} is named twice (columns {seen[column]} and {number})"
        seen[column] = number
    return None


def _csv_header(line: str, name: str) -> list[str]:
    try:
        header = [h.strip() for h in csv_line(line)]
    except csv.Error as e:
        raise RecordsFileError(f"{name}:1: the header is not valid CSV: {e}") from None
    problem = duplicate_column(header)
    if problem:
        raise RecordsFileError(f"{name}:1: {problem}; nothing of the file is settled")
    return header


def _csv(stream: Iterator[str], name: str) -> Iterator[Record | BadRecord]:
    """CSV with a header row; every physical line is one record (or a bad one)."""
    lines = enumerate(stream, start=1)
    first = next(lines, None)
    if first is None:
        return
    header = _csv_header(first[1], name)
    ids = [is_id_path(h) for h in header]
    for number, line in lines:
        raw = line.rstrip("\r\n")
        try:
            row = csv_line(line)
        except csv.Error as e:
            yield _bad(name, number, raw, f"not valid CSV: {e}")
            continue
        if not any(cell.strip() for cell in row):
            continue
        problem = _text_problem(raw)
        if problem:
            yield _bad(name, number, raw, problem)
            continue
        if len(row) != len(header):
            yield _bad(name, number, raw,
                       f"expected {len(header)} columns as in the header, got {len(row)}")
            continue
        flat = {h: v if is_id else _csv_value(v)
                for h, v, is_id in zip(header, row, ids, strict=True) if v != ""}
        try:
            data = nest_context(flat.items())
        except EvaluationError as e:
            yield _bad(name, number, raw, f"columns: {e.message}")
            continue
        yield _record(name, number, raw, data, "csv")


class _Text:
    """A text stream read in chunks, with the line and column of a position in it.

    Only the text from the current element on is held: consumed text is dropped,
    so a JSON array of any size is read in flat memory.
    """

    def __init__(self, text: str, stream: TextIO, name: str) -> None:
        self.buf, self.pos, self.stream, self.name = text, 0, stream, name
        self.eof = False
        self.line, self.base, self.line_start = 1, 0, 0  # base: offset of buf[0] in the file

    def fill(self, at_least: int = 0) -> bool:
        """Read more text (at least ``at_least`` characters when there are); False at the end."""
        if self.eof:
            return False
        if self.pos > READ_SIZE:
            self.base += self.pos
            self.buf, self.pos = self.buf[self.pos:], 0
        chunk = self.stream.read(max(READ_SIZE, at_least))
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def advance(self, to: int) -> None:
        newlines = self.buf.count("\n", self.pos, to)
        if newlines:
            self.line += newlines
            self.line_start = self.base + self.buf.rfind("\n", self.pos, to) + 1
        self.pos = to

    def skip_space(self) -> str:
        """The next character after whitespace ("" at the end of the text)."""
        while True:
            m = _SPACE.match(self.buf, self.pos)
            self.advance(m.end() if m else self.pos)
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def where(self, pos: int | None = None) -> str:
        pos = self.pos if pos is None else pos
        line, start = self.line, self.line_start
        newlines = self.buf.count("\n", self.pos, pos)
        if newlines:
            line += newlines
            start = self.base + self.buf.rfind("\n", self.pos, pos) + 1
        return f"line {line} column {self.base + pos - start + 1}"

    def error(self, message: str, pos: int | None = None) -> RecordsFileError:
        return RecordsFileError(
            f"{self.name}: not a valid JSON array at {self.where(pos)}: {message};"
            " nothing after it can be read, so nothing of the file is settled"
        )

    def decode(self, index: int) -> tuple[Any, str, str | None]:
        """The JSON value at the current position, its text, and a repeated key's problem;
        more is read until the value is whole."""
        while True:
            duplicate = None
            try:
                value, end = decode(self.buf, self.pos)
            except DuplicateKey as e:
                # Delimit the value again without the check; the record is quarantined.
                duplicate = str(e)
                value, end = DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as e:
                # A value cut off by the end of the buffer fails at its end, or in a string:
                # read on.  Any other failure is in the text itself.
                cut = e.msg.startswith("Unterminated string") or e.pos >= len(self.buf) - 32
                if cut and len(self.buf) - self.pos <= MAX_ELEMENT_CHARS and self.fill(
                        len(self.buf) - self.pos):
                    continue
                if cut and not self.eof:
                    raise self.error(f"element {index} is longer than {MAX_ELEMENT_CHARS} "
                                     "characters or never ends") from None
                raise self.error(e.msg, e.pos) from None
            except RecursionError:
                raise self.error(f"element {index} is nested too deeply") from None
            if end == len(self.buf) and self.fill():  # a number may go on in the next chunk
                continue
            raw = self.buf[self.pos:end]
            self.advance(end)
            return value, raw, duplicate


def _json_array(text: _Text, name: str) -> Iterator[Record | BadRecord]:
    """A JSON array of records (pretty-printed or not), streamed element by element.

    An element that is not a record is quarantined with its index and line; text
    that is not JSON refuses the file, since nothing after it can be delimited.
    """
    if text.skip_space() != "[":
        raise text.error("expected '['")
    text.advance(text.pos + 1)
    index = 0
    if text.skip_space() == "]":
        text.advance(text.pos + 1)
    else:
        while True:
            if text.skip_space() == "":
                raise text.error(f"the array ends after element {index - 1}")
            line = text.line
            data, raw, duplicate = text.decode(index)
            problem = _text_problem(raw) or duplicate
            if problem:
                yield _bad(name, line, raw, f"element {index}: {problem}")
            else:
                yield _record(name, line, raw, data, where=f"element {index}: ")
            after = text.skip_space()
            if after == "]":
                text.advance(text.pos + 1)
                break
            if after != ",":
                raise text.error(f"expected ',' or ']' after element {index}")
            text.advance(text.pos + 1)
            index += 1
    if text.skip_space():
        raise text.error("text after the array's closing ']'")


def detect_format(path: str, first_char: str) -> str:
    """``csv``, ``jsonl`` or ``json`` (an array): by the name (``.gz`` aside), else by the
    first character of the content; a ``.json`` file is an array when it starts with ``[``."""
    stem = path[:-3] if path.lower().endswith(".gz") else path
    suffix = Path(stem).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if first_char == "[":
        return "json"
    if suffix == ".json" or first_char == "{":
        return "jsonl"
    return "csv"


GZIP_MAGIC = b"\x1f\x8b"
READ_SIZE = 1 << 16
# One array element larger than this is refused (a JSON Lines line has no such bound,
# but one record of 64 Mi characters is a broken file, not a referral).
MAX_ELEMENT_CHARS = 1 << 26
_SPACE = re.compile(r"[ \t\r\n]+")


def read_records(path: str, *, fmt: str | None = None) -> Iterator[Record | BadRecord]:
    """Stream records from a file (``-`` is stdin): JSON Lines, CSV or a JSON array,
    any of them gzip-compressed (known by its first bytes, whatever the name).

    A leading BOM is dropped (spreadsheets write one); bytes that are not UTF-8
    make their record a bad record instead of stopping the run.  What cannot be
    read as a whole (a broken array or gzip stream) raises ``RecordsFileError``.
    """
    name = "<stdin>" if path == "-" else path
    binary: IO[bytes] = sys.stdin.buffer if path == "-" else open(path, "rb")  # noqa: SIM115
    try:
        source: IO[bytes] = binary
        if _peek(binary, 2) == GZIP_MAGIC:
            source = cast(IO[bytes], gzip.GzipFile(fileobj=binary, mode="rb"))
        stream = io.TextIOWrapper(source, encoding="utf-8-sig", errors="surrogateescape",
                                  newline="")
        try:
            yield from _read(stream, path, name, fmt)
        except (EOFError, OSError, zlib.error) as e:
            if source is binary:
                raise
            raise RecordsFileError(f"{name}: not a readable gzip stream: {e}") from None
    finally:
        if path != "-":
            binary.close()


def _read(stream: TextIO, path: str, name: str, fmt: str | None) -> Iterator[Record | BadRecord]:
    head = ""
    while not head.strip():  # the first character that is not whitespace decides
        chunk = stream.read(256)
        if not chunk:
            break
        head += chunk
    stripped = head.lstrip()
    fmt = fmt or detect_format(path, stripped[:1])
    if fmt == "json":
        yield from _json_array(_Text(head, stream, name), name)
        return
    rest = _lines(head, stream)
    yield from (_csv(rest, name) if fmt == "csv" else _jsonl(rest, name))


def _peek(binary: IO[bytes], n: int) -> bytes:
    """The first ``n`` bytes, left in the stream (stdin cannot seek)."""
    if isinstance(binary, io.BufferedReader):
        return binary.peek(n)[:n]
    start = binary.tell()
    data = binary.read(n)
    binary.seek(start)
    return data


def _lines(head: str, stream: TextIO) -> Iterator[str]:
    """The stream's lines, the already-read ``head`` first (lines end as the file's do)."""
    if head and not head.endswith("\n"):  # a "\r" may be the half of a "\r\n"
        head += stream.readline()
    if head:
        yield from io.StringIO(head, newline="")
    yield from stream
