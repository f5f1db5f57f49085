"""The catalog's JavaScript evaluator against the Python one (compiler.js, run by Node.js).

Both evaluate the same programs (rules/, in UTC, and tests/data/js_differential.rule,
in Asia/Kolkata and in America/New_York, which uses every operator on every kind of
literal, field comparisons, phrases, WITHIN OF|AFTER|BEFORE, timestamps ordered and
compared with dates, money in other currencies, percentages with and without caps,
EXCLUSIVE suppression and REVERSE IF) on hundreds of generated contexts, with right and
wrong types, nulls, missing fields and timestamps with offsets: every rule's outcome and
every reward must be the same, and a context the Python evaluator refuses must be
refused with the same message.  Both also read thousands of ISO texts alike, in zones
with and without daylight saving time.
"""

from __future__ import annotations

import json
import random
import shutil
import string
import subprocess
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from compiler.catalog import try_fields
from compiler.js import context_js, js_string, program_js, runtime_js
from dsl.errors import DateRangeError, EvaluationError
from dsl.evaluate import CompiledProgram, compile_program
from dsl.examples import context_from_given
from dsl.model import Compare, FieldRef, Money, PercentReward, Program, flatten, walk
from dsl.program import load_program
from dsl.timeutil import temporal, zone
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
DIFFERENTIAL = ROOT / "tests" / "data" / "js_differential.rule"
# name -> (files, the time zone to read them in instead of their TIMEZONE's)
PROGRAMS: dict[str, tuple[Path, str | None]] = {
    "rules": (ROOT / "rules", None),
    "differential": (DIFFERENTIAL, None),  # TIMEZONE "Asia/Kolkata"
    "differential-new-york": (DIFFERENTIAL, "America/New_York"),
}
CONTEXTS = 600

# Code that leaves its answer in `out`; OUT is that answer as JSON, for Node's stdout or a
# browser's page.evaluate.
HARNESS = """
const out = [];
for (const c of CONTEXTS) {
  try {
    const e = R.evaluate(RULES, c);
    out.push({ outcomes: e.outcomes });
  } catch (err) {
    if (!(err instanceof R.EvaluationError)) throw err;
    out.push({ error: err.message });
  }
}
"""
OUT = 'JSON.stringify(out, (k, v) => (typeof v === "bigint" ? v.toString() : v))'


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if IN_CI:
            pytest.fail("Node.js is required in CI (apt-get install nodejs)")
        pytest.skip("Node.js is not installed")
    return found


def node_output(code: str) -> Any:
    """What ``code`` leaves in ``out``, run by Node.js."""
    done = subprocess.run([node(), "-"], input=f"{code}\nprocess.stdout.write({OUT});\n",
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def evaluation_js(program: Program, contexts: list[Any]) -> str:
    """The program evaluating ``contexts`` into ``out``."""
    code = program_js(program)
    code += "const CONTEXTS = [\n" + ",\n".join(context_js(c) for c in contexts) + "\n];\n"
    return code + HARNESS


def run_js(program: Program, contexts: list[Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = node_output(evaluation_js(program, contexts))
    return result


def run_python(compiled: CompiledProgram, context: Any) -> dict[str, Any]:
    try:
        evaluation = compiled.evaluate(context)
    except EvaluationError as e:
        return {"error": str(e)}
    outcomes = []
    for o in evaluation.outcomes:
        data = o.to_json()
        data.pop("trace")
        for key in ("rewards", "suppressed"):
            for r in data[key]:
                r["amount"] = str(r["amount"])
        outcomes.append(data)
    return {"outcomes": outcomes}


# ---------------------------------------------------------------- generated contexts

STRINGS = ["IN", "US", "DE", "paid", "free", "annual", "student", "a", "b", "a'b", 'q"d',
           "tab\there", "new\nline", "é₹ \"q\"", "", "Z", "xa'by"]
DATES = ["2026-01-01", "2026-01-31", "2026-02-15", "2026-03-01", "2025-12-20", "2026-03-08",
         "2026-10-31", "2026-11-01",
         "2026-01-10T10:00:00", "2026-02-01T23:59:59+05:30", "2026-01-05T08:30Z",
         # A timestamp's date is its instant's in the program's zone.
         "2026-01-31T18:29:59Z", "2026-01-31T18:30:00Z", "2026-01-31T23:30:00-05:00",
         "2026-02-01T00:15+0530", "2026-01-04 20:00:00.5-08:00", "2026-01-05T00:00:00,25z",
         # New York's clocks: 02:30 never happens in spring, 01:30 happens twice in autumn.
         "2026-03-08T02:30:00", "2026-03-08T06:59:59Z", "2026-03-08T07:00:00Z",
         "2026-11-01T01:30:00-04:00", "2026-11-01T01:30:00-05:00", "2026-11-01T05:30Z",
         "2026-11-01T01:30"]
NOT_DATES = ["2026-13-01", "2026-02-30", "soon", "2026-1-1", "2026-01-01T25:00",
             "2026-01-01T24:00", "2026-01-01T10:00+24:00", "0000-01-01", "2026-02-29T10:00Z",
             "2026-01-01T10:00:00.1234567", "2026-01-01t10:00"]
# Money a record may hold in a currency the rule does not read (or none at all).
OTHER_CURRENCIES = ["USD", "XYZ", "JPY", "KWD", "CLF", "cad"]


def _value(rnd: random.Random, kind: str, chaos: float, depth: int = 0) -> Any:
    """A value of ``kind``, else (with probability ``chaos``) anything: wrong types on
    purpose."""
    if rnd.random() < chaos:
        kind = rnd.choice(["money", "number", "date", "string", "bool", "list", "null",
                           "object", "float"])
    if kind.startswith("money"):  # money (in the default currency, INR) or money:<code>
        currency = kind.partition(":")[2] or "INR"
        amount = rnd.choice([rnd.randrange(0, 6_000_000), 500, 1000, 1250, 1251, 100_000,
                             999_999, 1_000_000, 4_999_999, 5_000_000])
        if rnd.random() < 0.6:
            return {"amount": amount, "currency": rnd.choice([currency] * 3 + [currency.lower()])}
        if rnd.random() < 0.9:
            # Minor units of the default currency, as records hold them; now and then
            # money in another currency (refused, not paid in it).
            if currency == "INR" and rnd.random() < 0.04:
                return {"amount": amount, "currency": rnd.choice(OTHER_CURRENCIES)}
            return amount if currency == "INR" else {"amount": amount, "currency": currency}
        return rnd.choice([{"amount": 500, "currency": rnd.choice(OTHER_CURRENCIES)},
                           {"amount": "5", "currency": "INR"}, -rnd.randrange(1, 1000),
                           2**63 + 5, "₹5"])
    if kind == "number":
        return rnd.choice([rnd.randrange(-3, 8), 3, 4, Decimal(rnd.choice(
            ["4.5", "4.50", "2.5", "-0.25", "10.00", "4.4999", "3"]))])
    if kind == "date":
        return rnd.choice(DATES) if rnd.random() > chaos * 3 else rnd.choice(NOT_DATES)
    if kind == "string":
        return rnd.choice(STRINGS)
    if kind == "bool":
        return rnd.choice([True, False])
    if kind.startswith("list"):
        if depth > 1:
            return []
        item = kind.partition(":")[2] or rnd.choice(["string", "money", "number"])
        return [_value(rnd, item, chaos, depth + 1) for _ in range(rnd.randrange(0, 4))]
    if kind == "null":
        return None
    if kind == "object":
        return {"a": rnd.choice([1, "x", None, Decimal("1.5")]), "b": [True, 2.0]}
    return rnd.choice([1.5, 2.0, 0.25, -3.0])


def _literal_kind(value: Any) -> str:
    return {"Money": "money", "date": "date", "int": "number", "Decimal": "number",
            "bool": "bool", "str": "string"}.get(type(value).__name__, "any")


def _money_kind(money: Money | None, default: str | None) -> str:
    return "money" if money is None or money.currency == default else f"money:{money.currency}"


def _kinds(program: Program) -> dict[str, str]:
    """Every path the program reads with its kind, as the catalog's form sees it
    (``try_fields``), made finer: money in another currency than the program's is
    ``money:<code>``, a CONTAINS of money is a list of money, and a field compared with
    a field takes the other's kind when that one is known."""
    kinds = {f.path: f.kind for f in try_fields(program.rules)}
    default = program.default_currency()
    for r in program.rules:
        for a in r.actions:
            if isinstance(a, PercentReward):
                kinds[a.of] = _money_kind(a.cap, default)
    trees = [c for r in program.rules for c in r.conditions()]
    for c in walk(*trees):
        if not isinstance(c, Compare):
            continue
        money = next((v for v in flatten(c.value) if isinstance(v, Money)), None)
        if money is not None and kinds[c.path] == "money":
            kinds[c.path] = _money_kind(money, default)
        if isinstance(c.value, FieldRef):
            other = c.value.path
            if kinds[c.path] == "any" and kinds[other] not in {"any", "list"}:
                kinds[c.path] = kinds[other]
            elif kinds[other] == "any" and kinds[c.path] not in {"any", "list"}:
                kinds[other] = kinds[c.path]
        elif c.op == "CONTAINS":
            needle = _literal_kind(c.value)
            kinds[c.path] = "string" if needle == "string" else f"list:{needle}"
    return {path: "list:string" if kind == "list" else kind for path, kind in kinds.items()}


def generated_contexts(program: Program, seed: int, n: int) -> list[dict[str, Any]]:
    rnd = random.Random(seed)
    kinds = _kinds(program)
    out = [context_from_given(e.given) for e in program.examples]
    while len(out) < n:
        chaos = rnd.choice([0.0, 0.0, 0.0, 0.02, 0.1])
        # Fields compared with fields are of one kind in most contexts.
        any_kind = rnd.choice(["string"] * 4 + ["number", "money", "date", "list", "bool"])
        pairs = []
        for path, kind in kinds.items():
            if rnd.random() < 0.12:
                continue  # missing
            if kind == "any":
                kind = any_kind if rnd.random() > chaos else rnd.choice(["string", "number"])
            pairs.append((path, _value(rnd, kind, chaos)))
        out.append(context_from_given(tuple(pairs)))
    return out


def python_answers(program: Program, contexts: list[Any]) -> list[dict[str, Any]]:
    compiled = compile_program(program, default_currency=program.default_currency())
    return [run_python(compiled, c) for c in contexts]


def differential_program(name: str) -> Program:
    files, timezone = PROGRAMS[name]
    program = load_program([files]).program
    return program if timezone is None else replace(program, timezone=timezone)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("seed", [1, 2])
def test_javascript_gives_the_python_evaluators_answer(name, seed):
    program = differential_program(name)
    contexts = generated_contexts(program, seed, CONTEXTS)
    js = run_js(program, contexts)
    python = python_answers(program, contexts)
    mismatches = [(c, p, j) for c, p, j in zip(contexts, python, js, strict=True) if p != j]
    assert not mismatches, mismatches[:3]
    # The contexts reach every outcome: rewards, suppression, reversal and refusal.
    assert sum("error" in p for p in python) >= CONTEXTS // 20
    outcomes = [o for p in python for o in p.get("outcomes", [])]
    assert any(o["rewards"] for o in outcomes) and any(o["reverse"] for o in outcomes)
    if name.startswith("differential"):
        assert any(o["suppressed"] for o in outcomes)
        assert any(r["capped"] for o in outcomes for r in o["rewards"])
        assert len({p["error"].split(":")[1] for p in python if "error" in p}) >= 8
        # Timestamps in the program's zone, WITHIN AFTER|BEFORE, money in dollars.
        assert {o["matched"] for o in outcomes if o["rule_id"] == "windows"} == {True, False}
        assert any(r["currency"] == "USD" for o in outcomes for r in o["rewards"])
        assert any("expected money in USD, found money in" in p.get("error", "")
                   for p in python)


def test_strings_are_safe_inside_a_script_element():
    assert js_string("</script><script>alert(1)") == '"<\\/script><script>alert(1)"'
    assert "</" not in context_js({"a": "</b>"})


# ---------------------------------------------------------------- dates and timestamps

ZONES = [None, "UTC", "Asia/Kolkata", "America/New_York", "Australia/Lord_Howe",
         "Pacific/Chatham"]
# Years 1 and 9999 (an offset may carry an instant out of them: Python's OverflowError),
# offsets up to a day, text around the ISO forms, Lord Howe's half-hour clock change.
EDGES = ["0001-01-01T00:00+00:01", "0001-01-01T01:00Z", "0001-01-01T00:00:00+00:00",
         "0001-01-01T05:00", "0001-01-01T12:00Z", "0001-01-01T00:00-05:30",
         "9999-12-31T23:59:59Z", "9999-12-31T12:00-12:00", "9999-12-31",
         "2026-01-01T10:00+05:99", "2026-01-01T10:00+23:59", "2026-01-01T10:00-23:60",
         "2026-01-01T10:00-00:00", "2026-01-01T10:00+0000", "٢٠٢٦-٠١-٠١", "2026-01-01T10",
         "2026-01-01T1000", "2026-01-01T10:00:00.", " 2026-01-01", "2026-01-01\n",
         "2026-01-01T1\u0660:00", "2026-01-01T10:00:00.\u0665",
         "2026-04-05T02:30:00+11:00", "2026-04-04T15:00:00Z", "2026-04-04T15:30:00Z"]


def _iso_texts(rnd: random.Random, n: int) -> list[str]:
    """ISO-looking texts, right and wrong: every part sometimes out of range."""
    out = []
    for _ in range(n):
        year = rnd.choice(["0000", "0001", "1900", "1969", "2024", "2026", "2026", "9999"])
        month = rnd.choice([*range(1, 13), 0, 13])
        day = rnd.choice([*range(1, 32), 0, 29, 30, 31, 32])
        text = f"{year}-{month:02}-{day:02}"
        if rnd.random() < 0.85:
            hour, minute = rnd.choice([*range(24), 24]), rnd.choice([0, 15, 29, 30, 45, 59, 60])
            text += f"{rnd.choice('TTT t')}{hour:02}:{minute:02}"
            if rnd.random() < 0.6:
                text += f":{rnd.choice([0, 1, 30, 59, 60]):02}"
                if rnd.random() < 0.4:
                    digits = rnd.choices(string.digits, k=rnd.randrange(0, 8))
                    text += rnd.choice(".,") + "".join(digits)
            if rnd.random() < 0.7:
                hours = rnd.choice([0, 1, 4, 5, 8, 12, 13, 14, 23, 24])
                minutes = rnd.choice([0, 30, 45, 59, 60, 99])
                sep = rnd.choice([":", ":", ""])
                text += rnd.choice(["Z", "z", f"{rnd.choice('+-')}{hours:02}{sep}{minutes:02}"])
        out.append(text)
    return out


def _python_reading(text: str, name: str | None) -> Any:
    try:
        found = temporal(text, zone(name))
    except (OverflowError, DateRangeError):  # outside years 1..9999: JavaScript's RangeError
        return ["overflow"]
    if found is None:
        return None
    if not isinstance(found, datetime):
        return ["date", found.isoformat()]
    us = ((found.hour * 60 + found.minute) * 60 + found.second) * 1_000_000 + found.microsecond
    return ["stamp", found.date().isoformat(), us]


READER = """
const out = [];
for (const name of ZONES) {
  const zone = name === null ? R.UTC : new R.Zone(name);
  out.push(TEXTS.map((t) => {
    try {
      const v = R.temporal(t, zone);
      if (v === null) return null;
      return v instanceof R.Stamp ? ["stamp", v.day.iso(), v.us] : ["date", v.iso()];
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      return ["overflow"];
    }
  }));
}
"""


def reading_js(texts: list[str]) -> str:
    """The runtime reading ``texts`` in each of ``ZONES`` into ``out``."""
    return (runtime_js() + f"const TEXTS = {context_js(texts)};\n"
            + f"const ZONES = {json.dumps(ZONES)};\n" + READER)


def reading_mismatches(texts: list[str], readings: list[list[Any]]) -> list[Any]:
    """Where the JavaScript readings (one list per zone) differ from Python's."""
    return [(name, t, p, j) for name, zone_readings in zip(ZONES, readings, strict=True)
            for t, j in zip(texts, zone_readings, strict=True)
            if (p := _python_reading(t, name)) != j]


def reading_texts() -> list[str]:
    return DATES + NOT_DATES + EDGES + _iso_texts(random.Random(7), 3000)


def test_javascript_reads_dates_and_timestamps_as_timeutil_does():
    """Every text, in every zone: the same date, the same wall clock (which Python compares
    two timestamps of one zone by), the same refusal, the same overflow."""
    texts = reading_texts()
    mismatches = reading_mismatches(texts, node_output(reading_js(texts)))
    assert not mismatches, mismatches[:5]
    kinds = [p[0] if p else None for p in (_python_reading(t, "Asia/Kolkata") for t in texts)]
    assert {"date", "stamp", "overflow", None} == set(kinds)
    assert kinds.count("stamp") >= 800 and kinds.count(None) >= 500
