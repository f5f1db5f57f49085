"""Referral records: JSON Lines or CSV, streamed one at a time.

A record is a nested mapping (the rule context) plus where it came from, so a
bad one can be quarantined with its file, line and raw text.  Nothing here
holds more than one record in memory.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from dsl.errors import EvaluationError
from dsl.evaluate import nest_context

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
    # "jsonl": ``raw`` is the record's JSON text (it decodes to ``data``); "csv": a row.
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


# One decoder for every line: json.loads(..., parse_float=) builds a new one per call.
DECODER = json.JSONDecoder(parse_float=Decimal)


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
            data = DECODER.decode(raw)
        except ValueError as e:
            yield _bad(name, number, raw, f"not valid JSON: {e}")
            continue
        except RecursionError:  # "[[[[...": json recurses once per nesting level
            yield _bad(name, number, raw, "not valid JSON: nested too deeply")
            continue
        problem = _check_required(data)
        if problem:
            yield _bad(name, number, raw, problem)
        else:
            yield Record(name, number, raw, data)


class _LineTap:
    """Feeds csv.reader line by line and remembers the raw text of the current row."""

    def __init__(self, stream: Iterator[str]) -> None:
        self._stream = stream
        self.line = 0
        self.taken: list[str] = []

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._stream)
        self.line += 1
        self.taken.append(line)
        return line

    def take(self) -> str:
        raw = "".join(self.taken).rstrip("\r\n")
        self.taken = []
        return raw


def _csv(stream: Iterator[str], name: str) -> Iterator[Record | BadRecord]:
    tap = _LineTap(stream)
    reader = csv.reader(tap)
    try:
        header = next(reader)
    except StopIteration:
        return
    tap.take()
    header = [h.strip() for h in header]
    while True:
        start = tap.line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield _bad(name, start, tap.take(), f"not valid CSV: {e}")
            continue
        raw = tap.take()
        if not any(cell.strip() for cell in row):
            continue
        problem = _text_problem(raw)
        if problem:
            yield _bad(name, start, raw, problem)
            continue
        if len(row) != len(header):
            yield _bad(
                name, start, raw, f"expected {len(header)} columns as in the header, got {len(row)}"
            )
            continue
        flat = {h: _csv_value(v) for h, v in zip(header, row, strict=True) if v != ""}
        try:
            data = nest_context(flat.items())
        except EvaluationError as e:
            yield _bad(name, start, raw, f"columns: {e.message}")
            continue
        problem = _check_required(data)
        if problem:
            yield _bad(name, start, raw, problem)
        else:
            yield Record(name, start, raw, data, "csv")


def detect_format(path: str, first_line: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    return "jsonl" if first_line.lstrip().startswith("{") else "csv"


def read_records(path: str, *, fmt: str | None = None) -> Iterator[Record | BadRecord]:
    """Stream records from a file (``-`` is stdin), detecting JSONL or CSV.

    A leading BOM is dropped (spreadsheets write one); bytes that are not UTF-8
    make their line a bad record instead of stopping the run.
    """
    if path == "-":
        stream: TextIO = io.TextIOWrapper(
            sys.stdin.buffer, encoding="utf-8-sig", errors="surrogateescape", newline=""
        )
        name = "<stdin>"
    else:
        stream = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")
        name = path
    try:
        first = stream.readline()
        fmt = fmt or detect_format(path, first)
        rest = _chain(first, stream)
        yield from (_csv(rest, name) if fmt == "csv" else _jsonl(rest, name))
    finally:
        if path != "-":
            stream.close()


def _chain(first: str, stream: TextIO) -> Iterator[str]:
    if first:
        yield first
    yield from stream
