"""Payees: where each person is paid, one current payee per person, every change kept.

``payees`` is append-only like the ledger: an import adds a row for a person
whose details changed (or who is new) and nothing for one whose details are the
same; the current payee is the person's newest row, the older ones are its
history.  A payout item records the payee row it pays, so a later change never
redirects money already in a batch.

An import file is CSV (a header row) or JSON Lines, one person a row:
``user_id``, ``method``, the method's fields, optional ``name``:

- ``bank``: ``ifsc`` + ``account_number`` (India), ``iban`` + ``bic`` (SEPA and
  the other IBAN countries), or ``routing_number`` + ``account_number`` (US ABA);
- ``upi``: ``vpa`` (``name@handle``);
- ``paypal``: ``email``.

Each row is checked by shape: the IBAN's length for its country and its ISO
13616 mod-97 check digits, the IFSC pattern (4 letters, ``0``, 6 letters or
digits), the BIC pattern, the ABA routing checksum, a UPI id, an e-mail address.
Every problem is reported with file, line and field, and a file with any
problem imports nothing (all rows are checked first, then written in one
transaction).  Masking (``Payee.masked``) hides account numbers and addresses
from people who only need to recognise them.
"""

from __future__ import annotations

import csv
import io
import json
import re
import unicodedata
from collections.abc import Container, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from settlement import records
from settlement.dialect import backend
from settlement.errors import PayeeImportError
from settlement.operations import op_id, operation
from settlement.tables import payees

METHODS = ("bank", "upi", "paypal")
FIELDS = ("account_number", "ifsc", "iban", "bic", "routing_number", "vpa", "email")
# Which fields make each method's schemes (every field of one scheme, no other field).
SCHEMES: dict[str, tuple[tuple[str, ...], ...]] = {
    "bank": (("ifsc", "account_number"), ("iban", "bic"), ("routing_number", "account_number")),
    "upi": (("vpa",),),
    "paypal": (("email",),),
}
# Schemes that pay only one currency: Indian bank transfers and UPI in rupees, ABA in dollars.
SCHEME_CURRENCY = {"ifsc": "INR", "vpa": "INR", "routing_number": "USD"}
MAX_NAME = 255
CHUNK = 500

# ISO 13616 registry: IBAN length per country.
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}
IFSC = re.compile(r"[A-Z]{4}0[A-Z0-9]{6}")
BIC = re.compile(r"[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?")
ACCOUNT_NUMBER = re.compile(r"[0-9]{6,18}")
ROUTING_NUMBER = re.compile(r"[0-9]{9}")
VPA = re.compile(r"[a-z0-9][a-z0-9._-]{1,255}@[a-z][a-z0-9]{1,63}")
EMAIL = re.compile(r"[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,63}")


def iban_problem(iban: str) -> str | None:
    """Why ``iban`` (spaces removed, upper case) is not an IBAN, or None."""
    if not re.fullmatch(r"[A-Z]{2}[0-9]{2}[A-Z0-9]+", iban):
        return "must be a country code, two check digits and letters or digits"
    expected = IBAN_LENGTHS.get(iban[:2])
    if expected is None:
        return f"{iban[:2]} is not an IBAN country"
    if len(iban) != expected:
        return f"an IBAN of {iban[:2]} has {expected} characters, this one {len(iban)}"
    digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        return "check digits do not match (mod-97): a typing error?"
    return None


def routing_problem(number: str) -> str | None:
    if not ROUTING_NUMBER.fullmatch(number):
        return "must be 9 digits"
    d = [int(c) for c in number]
    if (3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + d[2] + d[5] + d[8]) % 10:
        return "checksum does not match: a typing error?"
    return None


def _normalise(name: str, value: str) -> str:
    value = value.strip()
    if name in ("iban", "account_number"):
        value = re.sub(r"[\s-]", "", value)
    if name in ("iban", "ifsc", "bic"):
        value = value.upper()
    if name == "vpa":
        value = value.lower()
    return value


def _field_problem(name: str, value: str) -> str | None:
    if name == "iban":
        return iban_problem(value)
    if name == "routing_number":
        return routing_problem(value)
    shapes = {"ifsc": (IFSC, "4 letters, 0, then 6 letters or digits (e.g. HDFC0001234)"),
              "bic": (BIC, "8 or 11 letters and digits (e.g. DEUTDEFF)"),
              "account_number": (ACCOUNT_NUMBER, "6 to 18 digits"),
              "vpa": (VPA, "a UPI id name@handle (e.g. asha@okhdfc)"),
              "email": (EMAIL, "an e-mail address")}
    pattern, shape = shapes[name]
    return None if pattern.fullmatch(value) else f"must be {shape}"


@dataclass(frozen=True)
class PayeeRow:
    """One valid row of an import file."""

    user_id: str
    method: str
    details: dict[str, str]
    name: str | None
    line: int


@dataclass(frozen=True)
class Payee:
    """One row of the payees history."""

    id: int
    user_id: str
    method: str
    details: dict[str, str]
    name: str | None
    business_date: date
    imported_at: datetime
    source: str

    def masked(self) -> dict[str, str]:
        """The details as shown to people: account numbers and addresses hidden but the last
        characters, which are enough to recognise them."""
        return {k: mask(k, v) for k, v in sorted(self.details.items())}

    def receives(self, currency: str) -> bool:
        """Whether the method pays ``currency`` (UPI and IFSC only rupees, ABA only dollars)."""
        return receives(self.details, currency)


def receives(details: Iterable[str], currency: str) -> bool:
    """Whether a payee with these detail fields can be paid in ``currency``."""
    return all(SCHEME_CURRENCY.get(k, currency) == currency for k in details)


def mask(name: str, value: str) -> str:
    if name == "account_number":
        return "•" * max(len(value) - 4, 0) + value[-4:]
    if name == "iban":
        return value[:4] + "•" * max(len(value) - 8, 0) + value[-4:]
    if name in ("email", "vpa"):
        local, _, domain = value.partition("@")
        return local[:1] + "•" * max(len(local) - 1, 1) + "@" + domain
    return value


@dataclass
class ImportResult:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    rows: int = 0
    users: list[str] = field(default_factory=list)


def read_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, raw row) of a CSV (by extension ``.csv``) or JSON Lines file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PayeeImportError(str(path), [f"{path}: not UTF-8 text ({e.reason})"]) from None
    except OSError as e:
        raise PayeeImportError(str(path), [f"{path}: cannot read: {e.strerror}"]) from None
    if path.suffix.lower() == ".csv":
        yield from _csv_rows(text)
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, records.decode_line(line)
        except records.DuplicateKey as e:
            yield number, ValueError(str(e))
        except json.JSONDecodeError as e:
            yield number, ValueError(f"not JSON ({e.msg} at column {e.colno})")


def _csv_rows(text: str) -> Iterator[tuple[int, Any]]:
    """CSV read as settlement reads records: strictly, one row per physical line, a column
    named twice refused (a stray quote would otherwise swallow the rows after it)."""
    lines = enumerate(io.StringIO(text, newline=""), start=1)
    first = next(lines, None)
    if first is None:
        return
    try:
        header = [h.strip() for h in records.csv_line(first[1])]
    except csv.Error as e:
        yield 1, ValueError(f"the header is not valid CSV: {e}")
        return
    problem = records.duplicate_column(header)
    if problem:
        yield 1, ValueError(problem)
        return
    for number, line in lines:
        try:
            cells = records.csv_line(line)
        except csv.Error as e:
            yield number, ValueError(f"not valid CSV: {e}")
            continue
        if not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield number, ValueError(f"expected {len(header)} columns as in the header,"
                                     f" got {len(cells)}")
            continue
        yield number, dict(zip(header, cells, strict=True))


def validate(path: Path, rows: Iterable[tuple[int, Any]]) -> tuple[list[PayeeRow], list[str]]:
    """Every row checked; problems as ``file:line: field: message``."""
    good: list[PayeeRow] = []
    problems: list[str] = []
    first_line: dict[str, int] = {}
    for line, raw in rows:
        where = f"{path}:{line}"
        if isinstance(raw, ValueError):
            problems.append(f"{where}: {raw}")
            continue
        if not isinstance(raw, dict):
            problems.append(f"{where}: a row must be an object with user_id and method")
            continue
        row_problems, row = _check_row(raw, line)
        problems += [f"{where}: {p}" for p in row_problems]
        if row is None:
            continue
        if row.user_id in first_line:
            problems.append(f"{where}: user_id: {row.user_id!r} appears again (first on line "
                            f"{first_line[row.user_id]}): one payee per person per file")
            continue
        first_line[row.user_id] = line
        good.append(row)
    return good, problems


def _text(raw: Mapping[str, Any], name: str) -> str | None:
    value = raw.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{name}: must be text")
    text = str(value).strip()
    return text or None


def _check_row(raw: Mapping[str, Any], line: int) -> tuple[list[str], PayeeRow | None]:
    problems: list[str] = []
    known = {"user_id", "method", "name", *FIELDS}
    for key in raw:
        if key not in known:
            problems.append(f"{key}: unknown field (fields: user_id, method, name, "
                            f"{', '.join(FIELDS)})")
    try:
        user_id, method, name = _text(raw, "user_id"), _text(raw, "method"), _text(raw, "name")
        given = {f: v for f in FIELDS if (v := _text(raw, f)) is not None}
    except ValueError as e:
        return [*problems, str(e)], None
    if user_id is None:
        problems.append("user_id: missing")
    elif (why := records.id_problem(user_id)) is not None:
        problems.append(f"user_id: contains {why}: {records.ID_CHARACTERS}")
    else:
        user_id = unicodedata.normalize("NFC", user_id)  # as settlement reads ids
        if len(user_id) > 255:
            problems.append("user_id: longer than 255 characters")
    if name is not None and len(name) > MAX_NAME:
        problems.append(f"name: longer than {MAX_NAME} characters")
    if method is None:
        return [*problems, f"method: missing (one of {', '.join(METHODS)})"], None
    method = method.lower()
    if method not in SCHEMES:
        return [*problems, f"method: unknown method {method!r} (one of {', '.join(METHODS)})"], None
    details = {k: _normalise(k, v) for k, v in given.items()}
    scheme = next((s for s in SCHEMES[method] if s[0] in details), SCHEMES[method][0])
    for f in scheme:
        if f not in details:
            problems.append(f"{f}: missing (method {method} with {scheme[0]} needs "
                            f"{' and '.join(scheme)})")
    for f in details:
        if f not in scheme:
            problems.append(f"{f}: not a field of method {method} with {scheme[0]}")
    for f in scheme:
        if f in details and (why := _field_problem(f, details[f])) is not None:
            problems.append(f"{f}: {why}")
    if problems or user_id is None:
        return problems, None
    return [], PayeeRow(user_id, method, details, name, line)


def _canonical(details: Mapping[str, str]) -> str:
    return json.dumps(dict(sorted(details.items())), separators=(",", ":"), ensure_ascii=False)


def _payee(row: Any) -> Payee:
    m = row._mapping
    return Payee(id=m["id"], user_id=m["user_id"], method=m["method"],
                 details=json.loads(m["details"]), name=m["name"],
                 business_date=m["business_date"], imported_at=m["imported_at"],
                 source=m["source"])


def paying_payees(conn: Connection, currency: str, users: Container[str]
                  ) -> dict[str, tuple[int, bool]]:
    """Per person of ``users`` with a payee, the current payee's id and whether it pays
    ``currency``: what a payout run needs of them, without building every payee (a tenth
    of a run)."""
    # One pass in id order, the newest row of each person winning: the grouped newest-id
    # subquery spilled to disk and took 1.5 s for 340,000 payees.
    newest: dict[str, tuple[int, str]] = {}
    for user, payee_id, details in conn.execute(
            sa.select(payees.c.user_id, payees.c.id, payees.c.details).order_by(payees.c.id)):
        newest[user] = (payee_id, details)
    return {user: (payee_id, receives(json.loads(details), currency))
            for user, (payee_id, details) in newest.items() if user in users}


def current_payees(conn: Connection, users: Iterable[str] | None = None) -> dict[str, Payee]:
    """Each person's current payee (everyone's, or those of ``users``)."""
    def newest(where: Any) -> sa.Select[Any]:
        ids = sa.select(sa.func.max(payees.c.id)).where(where).group_by(payees.c.user_id)
        return sa.select(payees).where(payees.c.id.in_(ids.scalar_subquery()))

    if users is None:
        return {p.user_id: p for p in map(_payee, conn.execute(newest(sa.true())))}
    wanted = sorted(set(users))
    found: dict[str, Payee] = {}
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i:i + CHUNK]
        found.update((p.user_id, p) for p in map(_payee, conn.execute(
            newest(payees.c.user_id.in_(chunk)))))
    return found


def payees_by_id(conn: Connection, ids: Iterable[int]) -> dict[int, Payee]:
    """Payee rows by id (current or not: a payout item pays the row it was created with)."""
    rows = backend(conn).select_ids(conn, sa.select(payees), payees.c.id, sorted(set(ids)))
    return {p.id: p for p in map(_payee, rows)}


def payee_history(conn: Connection, user_id: str) -> list[Payee]:
    """The person's payees, newest (current) first."""
    rows = conn.execute(sa.select(payees).where(payees.c.user_id == user_id)
                        .order_by(payees.c.id.desc()))
    return [_payee(r) for r in rows]


def import_payees(
    conn: Connection, path: Path, *, business_date: date, actor: str
) -> ImportResult:
    """Check every row of ``path``, then write the new and changed payees in one transaction.

    Any problem raises PayeeImportError listing all of them, and nothing is written.
    """
    rows, problems = validate(path, read_rows(path))
    if problems:
        raise PayeeImportError(str(path), problems)
    result = ImportResult(rows=len(rows))
    # under the ledger lock: payout create reads payees under it
    with operation(conn, "payees import", actor):
        current = current_payees(conn, (r.user_id for r in rows))
        now = datetime.now(UTC)
        fresh: list[dict[str, Any]] = []
        for r in rows:
            old = current.get(r.user_id)
            if old is not None and (old.method, old.details, old.name) == (
                    r.method, r.details, r.name):
                result.unchanged += 1
                continue
            if old is None:
                result.added += 1
            else:
                result.changed += 1
            result.users.append(r.user_id)
            fresh.append({"user_id": r.user_id, "method": r.method,
                          "details": _canonical(r.details), "name": r.name,
                          "business_date": business_date, "imported_at": now,
                          "source": f"{path.name}:{r.line}", "actor": actor,
                          "op_id": op_id(conn)})
        backend(conn).append_rows(conn, payees, fresh)
    return result
