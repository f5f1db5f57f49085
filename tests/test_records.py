"""The records reader: every input format, and nothing read can be lost or misread."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from settlement.errors import RecordsFileError
from settlement.records import BadRecord, Record, read_records


def rec(rid: str, referrer: str = "A", referee: str = "B", **extra: object) -> dict:
    return {"referral_id": rid, "referrer": {"id": referrer}, "referee": {"id": referee}, **extra}


def read(path: Path) -> list[Record | BadRecord]:
    return list(read_records(str(path)))


def good(items: list[Record | BadRecord]) -> list[Record]:
    assert all(isinstance(i, Record) for i in items), [getattr(i, "reason", i) for i in items]
    return [i for i in items if isinstance(i, Record)]


# -- formats -------------------------------------------------------------------


def test_read_records_json_array_pretty_printed(tmp_path) -> None:
    path = tmp_path / "records.json"
    path.write_text(json.dumps([rec("r1"), rec("r2", "C", "D")], indent=2), encoding="utf-8")
    items = good(read(path))
    assert [(r.referral_id, r.line) for r in items] == [("r1", 2), ("r2", 11)]
    assert items[1].data == rec("r2", "C", "D")


def test_read_records_json_array_detected_by_content_without_suffix(tmp_path) -> None:
    path = tmp_path / "records.txt"
    path.write_text(" \n[" + json.dumps(rec("r1")) + ",\n" + json.dumps(rec("r2")) + "]\n",
                    encoding="utf-8")
    assert [(r.referral_id, r.line) for r in good(read(path))] == [("r1", 2), ("r2", 3)]


def test_read_records_json_array_bad_elements_quarantined_with_index_and_line(tmp_path) -> None:
    path = tmp_path / "records.json"
    path.write_text('[\n  {"referral_id": "r1", "referrer": {"id": "A"}, "referee": {"id": "B"}},'
                    '\n  42,\n  {"referral_id": "r3"}\n]\n', encoding="utf-8")
    first, second, third = read(path)
    assert isinstance(first, Record) and first.line == 2
    assert isinstance(second, BadRecord) and isinstance(third, BadRecord)
    assert (second.line, second.raw) == (3, "42")
    assert second.reason == "element 1: a record must be a JSON object, got int"
    assert (third.line, third.reason) == (4, "element 2: missing required field referrer.id")


@pytest.mark.parametrize(
    ("text", "where"),
    [('[{"referral_id": "r1"}\n {"x": 1}]', "line 2 column 2"),
     ('[\n{"referral_id": "r1", "referrer": {"id": "A"}, "referee": {"id": "B"}},\n{"a": ',
      "line 3"),
     ("[1, 2", "line 1 column 6")],
)
def test_read_records_broken_json_array_refuses_the_file(tmp_path, text, where) -> None:
    path = tmp_path / "records.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RecordsFileError, match=f"^{path}:.*{where}"):
        read(path)


def test_read_records_json_array_streams_elements_larger_than_a_read(tmp_path, monkeypatch
                                                                      ) -> None:
    import settlement.records as records

    monkeypatch.setattr(records, "READ_SIZE", 7)
    data = [rec(f"r{i}", note="x" * 50, n=10**i) for i in range(5)]
    path = tmp_path / "records.json"
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    assert [r.data for r in good(read(path))] == data


@pytest.mark.parametrize("name", ["records.jsonl.gz", "records.gz", "records.jsonl"])
def test_read_records_gzip_detected_by_content(tmp_path, name) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(
        (json.dumps(rec("r1")) + "\n" + json.dumps(rec("r2")) + "\n").encode()))
    assert [(r.referral_id, r.line) for r in good(read(path))] == [("r1", 1), ("r2", 2)]


@pytest.mark.parametrize(
    ("name", "text"),
    [("r.csv.gz", "referral_id,referrer.id,referee.id\nr1,A,B\nr2,C,D\n"),
     ("r.json.gz", json.dumps([rec("r1"), rec("r2", "C", "D")], indent=2))],
)
def test_read_records_gzip_csv_and_json_array(tmp_path, name, text) -> None:
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()))
    assert [r.referral_id for r in good(read(path))] == ["r1", "r2"]


def test_read_records_truncated_gzip_refuses_the_file(tmp_path) -> None:
    path = tmp_path / "records.jsonl.gz"
    body = gzip.compress("".join(json.dumps(rec(f"r{i}")) + "\n" for i in range(500)).encode())
    path.write_bytes(body[: len(body) // 2])
    with pytest.raises(RecordsFileError, match=f"^{path}: .*gzip"):
        read(path)


def test_read_records_gzip_stdin(monkeypatch) -> None:
    import io
    import sys

    body = gzip.compress((json.dumps(rec("r1")) + "\n").encode())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(body))))
    assert [r.referral_id for r in good(list(read_records("-")))] == ["r1"]


# -- strict CSV ------------------------------------------------------------------

HEADER = "referral_id,referrer.id,referee.id,referee.plan\n"


def csv_rows(n: int) -> list[str]:
    return [f"r{i},A{i},B{i},paid\n" for i in range(n)]


def test_read_records_csv_unterminated_quote_quarantines_only_its_line(tmp_path) -> None:
    rows = csv_rows(102)
    rows[1] = 'r1,"A1,B1,paid\n'
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "".join(rows), encoding="utf-8")
    items = read(path)
    assert len(items) == 102
    bad = [i for i in items if isinstance(i, BadRecord)]
    assert [(b.line, b.raw) for b in bad] == [(3, 'r1,"A1,B1,paid')]
    assert bad[0].reason == ("not valid CSV: a quoted cell does not end on its line"
                             " (unterminated quote; cells cannot span lines)")
    assert [i.line for i in items] == list(range(2, 104))


@pytest.mark.parametrize(
    ("row", "reason"),
    [('r1,"A"x,B,paid', "not valid CSV: ',' expected after '\"'"),
     ('r1,"A\n', "not valid CSV: a quoted cell does not end on its line"
                 " (unterminated quote; cells cannot span lines)")],
)
def test_read_records_csv_strict_errors_are_bad_lines(tmp_path, row, reason) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + row + "\nr2,C,D,paid\n", encoding="utf-8")
    *bad, last = read(path)
    assert [(b.line, b.reason) for b in bad if isinstance(b, BadRecord)] == [(2, reason)]
    assert isinstance(last, Record) and (last.referral_id, last.line) == ("r2", 3 + row.count("\n"))


def test_read_records_csv_lines_counted_physically(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text(HEADER + "r1,A,B,paid\r\n\r\nr2,C,D,paid\rr3,E,F,paid\n", encoding="utf-8")
    assert [(r.referral_id, r.line) for r in good(read(path))] == [
        ("r1", 2), ("r2", 4), ("r3", 5)]


@pytest.mark.parametrize(
    ("header", "message"),
    [("referral_id,referrer.id,referee.id,referrer.id\n",
      "column referrer.id is named twice (columns 2 and 4)"),
     ("referral_id, referee.id,referrer.id,referee.id \n",
      "column referee.id is named twice (columns 2 and 4)")],
)
def test_read_records_csv_duplicate_columns_refuse_the_file(tmp_path, header, message) -> None:
    path = tmp_path / "r.csv"
    path.write_text(header + "r1,A,B,C\n", encoding="utf-8")
    with pytest.raises(RecordsFileError) as e:
        read(path)
    assert str(e.value) == f"{path}:1: {message}; nothing of the file is settled"


def test_read_records_csv_header_with_unterminated_quote_refuses_the_file(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text('referral_id,"referrer.id,referee.id\nr1,A,B\n', encoding="utf-8")
    with pytest.raises(RecordsFileError, match=r":1: the header is not valid CSV"):
        read(path)


def test_read_records_csv_ids_are_always_strings(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("referral_id,referrer.id,referee.id,referee.age,referee.payee.id\n"
                    "77,0077,77,30,1e3\n", encoding="utf-8")
    (r,) = good(read(path))
    assert r.data == {"referral_id": "77", "referrer": {"id": "0077"},
                      "referee": {"id": "77", "age": 30, "payee": {"id": "1e3"}}}


# -- duplicate JSON keys ---------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [('{"referral_id": "r1", "referrer": {"id": "u1", "id": "attacker"}, "referee": {"id": "B"}}',
      "referrer.id"),
     ('{"referral_id": "r1", "referral_id": "r2", "referrer": {"id": "A"}, "referee": {"id": "B"}}',
      "referral_id"),
     ('{"referral_id": "r1", "referrer": {"id": "A"}, "referee": {"id": "B",'
      ' "tags": [1, {"x": 1, "x": 1}]}}', "referee.tags[1].x")],
)
def test_read_records_duplicate_json_keys_quarantine_the_record(tmp_path, text, path) -> None:
    for name, content in (("r.jsonl", text + "\n"), ("r.json", f"[\n{text}\n]")):
        file = tmp_path / name
        file.write_text(content, encoding="utf-8")
        (bad,) = read(file)
        assert isinstance(bad, BadRecord), name
        assert bad.reason.endswith(f"duplicate key {path}: a key may appear once in an object")
        assert bad.line == (1 if name == "r.jsonl" else 2)


# -- canonical ids -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "named"),
    [("referrer.id", "u1\u202e", "U+202E RIGHT-TO-LEFT OVERRIDE"),
     ("referee.id", "u2\u200b", "U+200B ZERO WIDTH SPACE"),
     ("referral_id", "r\x1b[2J", "U+001B (a control character)"),
     ("referrer.id", "u1\r\nINR pending ₹0 confirmed ₹99,999", "U+000D (a control character)"),
     ("referee.id", "u\x07", "U+0007 (a control character)"),
     ("referee.id", "u\u2028x", "U+2028 LINE SEPARATOR"),
     ("referee.payee.id", "p\u2066", "U+2066 LEFT-TO-RIGHT ISOLATE")],
)
def test_read_records_ids_with_invisible_characters_are_quarantined(tmp_path, path, value,
                                                                    named) -> None:
    data = rec("r1")
    *parents, last = path.split(".")
    obj = data
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value
    file = tmp_path / "r.jsonl"
    file.write_text(json.dumps(data) + "\n", encoding="utf-8")
    (bad,) = read(file)
    assert isinstance(bad, BadRecord)
    assert bad.reason == (f"{path} contains {named}: ids cannot hold control, format"
                          " (zero-width, bidi) or line-separator characters")


def test_read_records_csv_id_with_a_control_character_is_quarantined(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("referral_id,referrer.id,referee.id\nr1,=\x1bA,B\n", encoding="utf-8")
    (bad,) = read(path)
    assert isinstance(bad, BadRecord) and bad.reason.startswith("referrer.id contains U+001B")


def test_read_records_ids_are_nfc_strings(tmp_path) -> None:
    nfd = "cafe\u0301"
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"referral_id": nfd, "referrer": {"id": 77},
                                "referee": {"id": nfd, "name": nfd}}) + "\n", encoding="utf-8")
    (r,) = good(read(path))
    assert r.data == {"referral_id": "caf\u00e9", "referrer": {"id": "77"},
                      "referee": {"id": "caf\u00e9", "name": nfd}}
    assert r.fmt == "normalised"  # its kept snapshot is the canonical data, not the line


# -- money digits ------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["1٥0", "𝟓𝟎𝟎", "١٥٠"])
def test_read_records_json_amount_with_unicode_digits_is_not_json(tmp_path, amount) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"referral_id": "r1", "referrer": {"id": "A"}, "referee": {"id": "B",'
                    f' "first_payment": {amount}}}}}\n', encoding="utf-8")
    (bad,) = read(path)
    assert isinstance(bad, BadRecord) and bad.reason.startswith("not valid JSON: ")


@pytest.mark.parametrize("amount", ["1٥0", "𝟓𝟎𝟎", "١٥٠", "５00"])
def test_read_records_csv_amount_with_unicode_digits_stays_text(tmp_path, amount) -> None:
    path = tmp_path / "r.csv"
    path.write_text(f"referral_id,referrer.id,referee.id,referee.first_payment\nr1,A,B,{amount}\n",
                    encoding="utf-8")
    (r,) = good(read(path))
    assert r.data["referee"]["first_payment"] == amount  # a string: no rule takes it as money


def test_read_records_crlf_split_at_the_format_probe_keeps_line_numbers(tmp_path) -> None:
    import settlement.records as records

    first = json.dumps(rec("r1"))
    pad = " " * (256 - len(first) - 1)  # the probe reads 256 characters: "\r" is the last
    path = tmp_path / "r.jsonl"
    path.write_bytes((first + pad + "\r\n" + json.dumps(rec("r2")) + "\r\n").encode())
    assert records.READ_SIZE > 256
    assert [(r.referral_id, r.line) for r in good(read(path))] == [("r1", 1), ("r2", 2)]
