"""The catalog's JavaScript evaluator against the Python one (compiler.js, run by Node.js).

Both evaluate the same programs (rules/ and tests/data/js_differential.rule, which uses
every operator on every kind of literal, field comparisons, phrases, percentages with
and without caps, EXCLUSIVE suppression and REVERSE IF) on hundreds of generated
contexts, with right and wrong types, nulls and missing fields: every rule's outcome
and every reward must be the same, and a context the Python evaluator refuses must be
refused with the same message.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from compiler.catalog import try_fields
from compiler.js import context_js, js_string, program_js
from dsl.errors import EvaluationError
from dsl.evaluate import compile_program
from dsl.examples import context_from_given
from dsl.model import Compare, FieldRef, Program, walk
from dsl.program import load_program
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = {"rules": ROOT / "rules",
            "differential": ROOT / "tests" / "data" / "js_differential.rule"}
CONTEXTS = 400

HARNESS = """
const big = (k, v) => (typeof v === "bigint" ? v.toString() : v);
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
process.stdout.write(JSON.stringify(out, big));
"""


def node() -> str:
    found = shutil.which("node")
    if found is None:
        if IN_CI:
            pytest.fail("Node.js is required in CI (apt-get install nodejs)")
        pytest.skip("Node.js is not installed")
    return found


def run_js(program: Program, contexts: list[Any]) -> list[dict[str, Any]]:
    code = program_js(program.by_priority(), program.default_currency())
    code += "const CONTEXTS = [\n" + ",\n".join(context_js(c) for c in contexts) + "\n];\n"
    done = subprocess.run([node(), "-"], input=code + HARNESS, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_python(program: Program, context: Any) -> dict[str, Any]:
    compiled = compile_program(program, default_currency=program.default_currency())
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
DATES = ["2026-01-01", "2026-01-31", "2026-02-15", "2026-03-01", "2025-12-20",
         "2026-01-10T10:00:00", "2026-02-01T23:59:59+05:30", "2026-01-05T08:30Z"]
NOT_DATES = ["2026-13-01", "2026-02-30", "soon", "2026-1-1", "2026-01-01T25:00"]


def _value(rnd: random.Random, kind: str, chaos: float, depth: int = 0) -> Any:
    """A value of ``kind``, else (with probability ``chaos``) anything: wrong types on
    purpose."""
    if rnd.random() < chaos:
        kind = rnd.choice(["money", "number", "date", "string", "bool", "list", "null",
                           "object", "float"])
    if kind == "money":
        amount = rnd.choice([rnd.randrange(0, 6_000_000), 500, 1000, 100_000, 999_999, 1_000_000,
                             4_999_999, 5_000_000])
        if rnd.random() < 0.6:
            return {"amount": amount, "currency": rnd.choice(["INR", "INR", "INR", "inr"])}
        if rnd.random() < 0.9:
            return amount  # minor units of the default currency, as records hold them
        return rnd.choice([{"amount": 500, "currency": rnd.choice(["USD", "XYZ"])},
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


def _kinds(program: Program) -> dict[str, str]:
    """Every path the program reads with its kind, as the catalog's form sees it
    (``try_fields``), made finer: a CONTAINS of money is a list of money, and a field
    compared with a field takes the other's kind when that one is known."""
    kinds = {f.path: f.kind for f in try_fields(program.rules)}
    trees = [c for r in program.rules for c in r.conditions()]
    for c in walk(*trees):
        if not isinstance(c, Compare):
            continue
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


def _contexts(program: Program, seed: int, n: int) -> list[dict[str, Any]]:
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


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("seed", [1, 2])
def test_javascript_gives_the_python_evaluators_answer(name, seed):
    program = load_program([PROGRAMS[name]]).program
    contexts = _contexts(program, seed, CONTEXTS)
    js = run_js(program, contexts)
    python = [run_python(program, c) for c in contexts]
    mismatches = [(c, p, j) for c, p, j in zip(contexts, python, js, strict=True) if p != j]
    assert not mismatches, mismatches[:3]
    # The contexts reach every outcome: rewards, suppression, reversal and refusal.
    assert sum("error" in p for p in python) >= CONTEXTS // 20
    outcomes = [o for p in python for o in p.get("outcomes", [])]
    assert any(o["rewards"] for o in outcomes) and any(o["reverse"] for o in outcomes)
    if name == "differential":
        assert any(o["suppressed"] for o in outcomes)
        assert any(r["capped"] for o in outcomes for r in o["rewards"])
        assert len({p["error"].split(":")[1] for p in python if "error" in p}) >= 8


def test_strings_are_safe_inside_a_script_element():
    assert js_string("</script><script>alert(1)") == '"<\\/script><script>alert(1)"'
    assert "</" not in context_js({"a": "</b>"})
