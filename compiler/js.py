"""Rule model -> JavaScript: the rules as functions the catalog's pages run in the browser.

The generated code is a list of rules for ``R.evaluate`` (the runtime,
``compiler/templates/evaluate.js``, which mirrors ``dsl.evaluate.interpreter``):
each rule's IF and REVERSE IF become one JavaScript expression of runtime calls,
its rewards one function each.  The rules read money, dates and timestamps with the
program's currency, time zone (``Intl`` gives the zone's clock) and date fields, as
``compile_program`` does.  As in ``compiler.text`` and ``compiler.dot`` there is one
method per node type (``<node>_js``) and one hook for anything unsupported, so no node
is dropped silently.  ``context_js`` writes a context (the nested values a record or an
EXAMPLE gives) as a JavaScript value, as the tests hand contexts to Node.js.  Every
string is JSON-escaped with ``</`` broken up, so the code can sit inside an inline
``<script>``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from compiler.errors import FormatError
from dsl.codec import decimal_text
from dsl.model import (
    And,
    Compare,
    FieldRef,
    FixedReward,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Within,
)
from dsl.money import CURRENCY_EXPONENTS, SYMBOLS, Money


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def js_string(text: str) -> str:
    """A JavaScript string literal that is also safe inside ``<script>``."""
    return json.dumps(text, ensure_ascii=True).replace("</", "<\\/")


def runtime_js() -> str:
    """``evaluate.js`` with the currency tables of ``dsl.money`` filled in."""
    code = resources.files("compiler.templates").joinpath("evaluate.js").read_text("utf-8")
    exponents = json.dumps(dict(sorted(CURRENCY_EXPONENTS.items())), ensure_ascii=True)
    return (code.replace("__EXPONENTS__", exponents)
            .replace("__SYMBOLS__", json.dumps(SYMBOLS, ensure_ascii=True)))


_ORDERING = frozenset({">", ">=", "<", "<="})


class JsGenerator:
    """JavaScript for each model node: ``default_currency`` reads bare integer amounts,
    ``timezone`` timestamps, and ``date_paths`` are the fields the program reads as dates
    (``Program.date_paths``: comparing one with a field compares dates)."""

    def __init__(self, default_currency: str | None, timezone: str | None = None,
                 date_paths: frozenset[str] = frozenset()) -> None:
        self.default_currency = default_currency
        self.timezone = timezone
        self.date_paths = date_paths

    def js(self, node: object) -> str:
        method = getattr(self, f"{_snake(type(node).__name__)}_js", None)
        if method is None:
            return self.unsupported(node)
        return method(node)

    def unsupported(self, node: object) -> str:
        raise FormatError(f"cannot generate JavaScript for {type(node).__name__}: {node!r}")

    # -- rules ---------------------------------------------------------------------------

    def rules_js(self, rules: Sequence[Rule]) -> str:
        """``const RULES = [...]``: the rules in the order given (evaluation order), each
        reading timestamps in the program's time zone."""
        zone = f"new R.Zone({js_string(self.timezone)})" if self.timezone else "R.UTC"
        return (f"const RULES = (function () {{\nconst ZONE = {zone};\nreturn [\n"
                + ",\n".join(self.rule_js(r) for r in rules) + "\n];\n})();\n")

    def rule_js(self, rule: Rule) -> str:
        reverse = ("(c) => " + self.js(rule.reverse_if)) if rule.reverse_if is not None else "null"
        actions = ",\n      ".join(self.js(a) for a in rule.actions)
        default = js_string(self.default_currency) if self.default_currency else "null"
        return (
            f"(function () {{\n  const RULE_ID = {js_string(rule.id)};\n"
            f"  const rt = R.makeRule(RULE_ID, {default}, ZONE);\n"
            f"  return {{\n    id: RULE_ID, priority: {rule.priority}, "
            f"exclusive: {'true' if rule.exclusive else 'false'},\n"
            f"    when: (c) => {self.js(rule.condition)},\n"
            f"    reverse: {reverse},\n"
            f"    actions: [\n      {actions}\n    ],\n  }};\n}})()"
        )

    def fixed_reward_js(self, action: FixedReward) -> str:
        return (f"R.fixed(RULE_ID, {js_string(action.to)}, {action.amount.amount}n, "
                f"{js_string(action.amount.currency)})")

    def percent_reward_js(self, action: PercentReward) -> str:
        cap = self.money_js(action.cap) if action.cap is not None else "null"
        return (f"R.percent(rt, RULE_ID, {js_string(action.of)}, "
                f"{js_string(decimal_text(action.percent))}, {js_string(str(action.percent))}, "
                f"{js_string(action.to)}, {cap})")

    # -- conditions ----------------------------------------------------------------------

    def and_js(self, cond: And) -> str:
        return "(" + " && ".join(self.js(c) for c in cond.items) + ")" if cond.items else "true"

    def or_js(self, cond: Or) -> str:
        return "(" + " || ".join(self.js(c) for c in cond.items) + ")" if cond.items else "false"

    def not_js(self, cond: Not) -> str:
        return f"!{self.js(cond.item)}"

    def compare_js(self, cond: Compare) -> str:
        path, op = js_string(cond.path), js_string(cond.op)
        if isinstance(cond.value, FieldRef):
            other = cond.value.path
            dates = cond.op in _ORDERING or bool({cond.path, other} & self.date_paths)
            return (f"R.cmpField(rt, c, {path}, {op}, {js_string(other)}, "
                    f"{'true' if dates else 'false'})")
        return f"R.cmp(rt, c, {path}, {op}, {self.value_js(cond.value)})"

    def within_js(self, cond: Within) -> str:
        return (f"R.within(rt, c, {js_string(cond.path)}, {cond.days}, "
                f"{js_string(cond.direction)}, {js_string(cond.other)})")

    def phrase_ref_js(self, cond: PhraseRef) -> str:
        raise FormatError(f"phrase {cond.phrase!r} was not resolved: generate JavaScript from "
                          "a loaded program")

    # -- values --------------------------------------------------------------------------

    def value_js(self, value: object) -> str:
        """A rule's literal: lists are ``R.Tuple`` (Python's tuples), dates ``R.date``."""
        if isinstance(value, tuple):
            return "new R.Tuple([" + ", ".join(self.value_js(v) for v in value) + "])"
        return context_js(value)

    def money_js(self, money: Money) -> str:
        return f"new R.Money({money.amount}n, {js_string(money.currency)})"


def context_js(value: Any) -> str:
    """A context value as JavaScript: whole numbers as BigInt, decimals as ``R.Dec``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}n"
    if isinstance(value, Decimal):
        return f"new R.Dec({js_string(decimal_text(value))}, {js_string(str(value))})"
    if isinstance(value, float):
        return repr(value) if value == value and abs(value) != float("inf") else (
            "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity"))
    if isinstance(value, str):
        return js_string(value)
    if isinstance(value, Money):
        return f"new R.Money({value.amount}n, {js_string(value.currency)})"
    if isinstance(value, datetime):
        raise FormatError(f"no JavaScript form for the datetime {value!r}: a context holds "
                          "timestamps as ISO text, as records do")
    if isinstance(value, date):
        return f"R.date({value.year}, {value.month}, {value.day})"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(context_js(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{js_string(str(k))}: {context_js(v)}"
                               for k, v in value.items()) + "}"
    raise FormatError(f"no JavaScript form for the context value {value!r}")


def program_js(program: Program, rules: Sequence[Rule] | None = None) -> str:
    """The runtime and ``rules`` (by default all the program's, in evaluation order), read
    with the program's currency, time zone and date fields: everything
    ``R.evaluate(RULES, c)`` needs."""
    generator = JsGenerator(program.default_currency(), program.timezone, program.date_paths())
    return runtime_js() + generator.rules_js(program.by_priority() if rules is None else rules)


__all__ = ["JsGenerator", "context_js", "js_string", "program_js", "runtime_js"]
