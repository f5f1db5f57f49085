"""A generated 20-rule program and the same rules as plain Python and for the peers.

One random spec (seeded) is written four ways: rule-language source (parsed
and compiled like any program), plain Python source (compiled with ``exec``;
the hand-written baseline for a program nobody wrote by hand), rule-engine
expressions and business-rules condition trees.  Contexts hold every field,
so all four read the same values.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NUMBERS = [f"n{i}" for i in range(10)]
STRINGS = [f"s{i}" for i in range(5)]
FLAGS = [f"b{i}" for i in range(3)]
WORDS = ["red", "green", "blue", "gold", "grey", "teal"]
OPS = ["=", "!=", ">", ">=", "<", "<="]


@dataclass(frozen=True)
class Clause:
    field: str
    op: str  # one of OPS, or IN
    value: Any  # int, str, bool, or a tuple of str for IN


@dataclass(frozen=True)
class GenRule:
    id: str
    priority: int
    all_of: tuple[Clause, ...]
    any_of: tuple[Clause, ...]  # an OR group inside the AND (may be empty)
    role: str
    amount: int  # paise


def make_spec(count: int = 20, seed: int = 7) -> list[GenRule]:
    rng = random.Random(seed)

    def clause() -> Clause:
        kind = rng.random()
        if kind < 0.55:
            return Clause(rng.choice(NUMBERS), rng.choice(OPS), rng.randrange(0, 1000))
        if kind < 0.8:
            if rng.random() < 0.5:
                return Clause(rng.choice(STRINGS), "IN", tuple(rng.sample(WORDS, 3)))
            return Clause(rng.choice(STRINGS), rng.choice(["=", "!="]), rng.choice(WORDS))
        return Clause(rng.choice(FLAGS), "=", rng.random() < 0.5)

    rules = []
    for i in range(count):
        all_of = tuple(clause() for _ in range(rng.randint(1, 3)))
        any_of = tuple(clause() for _ in range(2)) if rng.random() < 0.5 else ()
        rules.append(GenRule(f"g{i:02d}", count - i, all_of, any_of,
                             rng.choice(["referrer", "referee"]), 100 * rng.randint(1, 50)))
    return rules


def contexts(n: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    for _ in range(n):
        user: dict[str, Any] = {f: rng.randrange(0, 1000) for f in NUMBERS}
        user.update({f: rng.choice(WORDS) for f in STRINGS})
        user.update({f: rng.random() < 0.5 for f in FLAGS})
        yield {"user": user}


def _lit(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    return str(value)


def _rupees(paise: int) -> str:
    return f"₹{paise // 100}" if paise % 100 == 0 else f"₹{paise // 100}.{paise % 100:02d}"


def dsl_source(spec: list[GenRule]) -> str:
    out = []
    for r in spec:
        parts = [f"user.{c.field} {c.op} {_lit(c.value)}" for c in r.all_of]
        if r.any_of:
            parts.append("(" + " OR ".join(f"user.{c.field} {c.op} {_lit(c.value)}"
                                           for c in r.any_of) + ")")
        out.append(f'RULE {r.id} "generated"\n  PRIORITY {r.priority}\n  IF '
                   + "\n  AND ".join(parts)
                   + f"\n  THEN ISSUE {_rupees(r.amount)} REWARD TO {r.role}\n")
    return "\n".join(out)


def _py(c: Clause) -> str:
    ref = f"u[{c.field!r}]"
    if c.op == "IN":
        return f"{ref} in {c.value!r}"
    if isinstance(c.value, bool):
        return f"{ref} is {c.value}" if c.op == "=" else f"{ref} is not {c.value}"
    return f"{ref} {'==' if c.op == '=' else c.op} {c.value!r}"


def python_source(spec: list[GenRule]) -> str:
    lines = ["def evaluate(ctx):", "    u = ctx['user']", "    out = []"]
    for r in spec:  # already in priority order
        cond = " and ".join(_py(c) for c in r.all_of)
        if r.any_of:
            cond += " and (" + " or ".join(_py(c) for c in r.any_of) + ")"
        lines += [f"    if {cond}:", f"        out.append(({r.id!r}, {r.role!r}, {r.amount}))"]
    lines.append("    return tuple(out), ()")
    return "\n".join(lines) + "\n"


def python_function(spec: list[GenRule]) -> Callable[[Mapping[str, Any]], Any]:
    ns: dict[str, Any] = {}
    exec(compile(python_source(spec), "<generated rules>", "exec"), ns)  # noqa: S102
    return ns["evaluate"]


def _re(c: Clause) -> str:
    ref = f"user['{c.field}']"
    if c.op == "IN":
        return f"{ref} in {_lit(c.value)}".replace('"', "'")
    op = "==" if c.op == "=" else c.op
    return f"{ref} {op} {_lit(c.value)}".replace('"', "'")


def rule_engine_texts(spec: list[GenRule]) -> dict[str, tuple[str, None]]:
    out = {}
    for r in spec:
        text = " and ".join(_re(c) for c in r.all_of)
        if r.any_of:
            text += " and (" + " or ".join(_re(c) for c in r.any_of) + ")"
        out[r.id] = (text, None)
    return out


_BR_OPS = {"=": "equal_to", ">": "greater_than", ">=": "greater_than_or_equal_to",
           "<": "less_than", "<=": "less_than_or_equal_to"}


def _br(c: Clause) -> dict[str, Any]:
    if c.op == "IN":
        return {"any": [{"name": c.field, "operator": "equal_to", "value": v} for v in c.value]}
    if isinstance(c.value, bool):
        return {"name": c.field, "operator": "is_true" if c.value else "is_false", "value": True}
    if c.op == "!=":
        if c.field in NUMBERS:  # no numeric not_equal_to: < or >
            return {"any": [{"name": c.field, "operator": "less_than", "value": c.value},
                            {"name": c.field, "operator": "greater_than", "value": c.value}]}
        # strings: equal_to negated through "any" of the other words is not the same thing,
        # so compare with a derived variable instead (see business_rules_variables).
        return {"name": f"{c.field}_is_not_{c.value}", "operator": "is_true", "value": True}
    return {"name": c.field, "operator": _BR_OPS[c.op], "value": c.value}


def business_rules_conditions(spec: list[GenRule]) -> dict[str, tuple[dict[str, Any], None]]:
    out = {}
    for r in spec:
        items = [_br(c) for c in r.all_of]
        if r.any_of:
            items.append({"any": [_br(c) for c in r.any_of]})
        out[r.id] = ({"all": items}, None)
    return out


def business_rules_variables(spec: list[GenRule]) -> type:
    from business_rules.variables import (
        BaseVariables,
        boolean_rule_variable,
        numeric_rule_variable,
        string_rule_variable,
    )

    def getter(name: str) -> Callable[[Any], Any]:
        return lambda self: self.user[name]

    attrs: dict[str, Any] = {
        "__init__": lambda self, ctx: setattr(self, "user", ctx["user"]),
    }
    for f in NUMBERS:
        attrs[f] = numeric_rule_variable(getter(f))
    for f in STRINGS:
        attrs[f] = string_rule_variable(getter(f))
    for f in FLAGS:
        attrs[f] = boolean_rule_variable(getter(f))
    for r in spec:
        for c in r.all_of + r.any_of:
            if c.op == "!=" and c.field in STRINGS:
                name = f"{c.field}_is_not_{c.value}"
                attrs[name] = boolean_rule_variable(
                    (lambda f, v: lambda self: self.user[f] != v)(c.field, c.value)
                )
    return type("GeneratedVariables", (BaseVariables,), attrs)
