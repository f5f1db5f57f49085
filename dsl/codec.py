"""The rule model <-> versioned JSON (``schema_version`` 1, ``dsl/rule-model.schema.json``).

Every literal carries its type (``{"money": {...}}``, ``{"date": "2026-01-01"}``)
so that ``program_from_json`` rebuilds exactly the model ``program_to_json``
encoded, and the output is plain data with a stable key order: a rule's JSON
without its source position is the content hash (``rule_hash``) that
settlement records as provenance.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal
from typing import Any

from dsl.bounds import MAX_NESTING
from dsl.errors import ModelSchemaError, MoneyError, ReferralError, SourcePos
from dsl.model import (
    SCHEMA_VERSION,
    Action,
    And,
    Compare,
    Condition,
    Definition,
    Example,
    ExpectedReward,
    FieldRef,
    FixedReward,
    Limit,
    Not,
    Or,
    PercentReward,
    PhraseRef,
    Program,
    Rule,
    Value,
    Within,
)
from dsl.money import Money
from dsl.schema import validate_model_json

# ---------------------------------------------------------------- encoding

class ModelEncodeError(ReferralError):
    """A model object the JSON encoding has no form for (a bug, never silent)."""


def decimal_text(value: Decimal) -> str:
    """Plain positional notation (no exponent), so the text is also rule syntax."""
    text = format(value, "f")
    return "0" if text in ("-0", "") else text


def money_to_json(money: Money) -> dict[str, Any]:
    return {"amount": money.amount, "currency": money.currency}


def source_to_json(pos: SourcePos) -> dict[str, Any]:
    return {"file": pos.file, "line": pos.line, "column": pos.column}


def value_to_json(value: Value) -> dict[str, Any]:
    # bool before int: bool is a subclass of int.
    if value is None:
        return {"null": None}
    if isinstance(value, bool):
        return {"bool": value}
    if isinstance(value, int):
        return {"int": value}
    if isinstance(value, Decimal):
        return {"decimal": decimal_text(value)}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, date):
        return {"date": value.isoformat()}
    if isinstance(value, Money):
        return {"money": money_to_json(value)}
    if isinstance(value, FieldRef):
        return {"field": value.path}
    if isinstance(value, tuple):
        return {"list": [value_to_json(v) for v in value]}
    raise ModelEncodeError(f"no JSON form for value {value!r}")


def condition_to_json(cond: Condition) -> dict[str, Any]:
    if isinstance(cond, Compare):
        return {"compare": {"path": cond.path, "op": cond.op, "value": value_to_json(cond.value)}}
    if isinstance(cond, Within):
        within: dict[str, Any] = {"path": cond.path, "days": cond.days, "of": cond.other}
        if cond.direction != "of":  # absent for OF, so rules written before keep their hash
            within["direction"] = cond.direction
        return {"within": within}
    if isinstance(cond, And):
        return {"and": [condition_to_json(c) for c in cond.items]}
    if isinstance(cond, Or):
        return {"or": [condition_to_json(c) for c in cond.items]}
    if isinstance(cond, Not):
        return {"not": condition_to_json(cond.item)}
    if isinstance(cond, PhraseRef):
        return {"phrase": cond.phrase}
    raise ModelEncodeError(f"no JSON form for condition {cond!r}")


def action_to_json(action: Action) -> dict[str, Any]:
    if isinstance(action, FixedReward):
        return {"kind": "fixed", "amount": money_to_json(action.amount), "to": action.to}
    if isinstance(action, PercentReward):
        return {
            "kind": "percent",
            "percent": decimal_text(action.percent),
            "of": action.of,
            "to": action.to,
            "cap": money_to_json(action.cap) if action.cap is not None else None,
        }
    raise ModelEncodeError(f"no JSON form for action {action!r}")


def limit_to_json(limit: Limit) -> dict[str, Any]:
    return {"amount": money_to_json(limit.amount), "per": limit.per, "period": limit.period}


def _with_source(data: dict[str, Any], pos: SourcePos | None, with_source: bool) -> dict[str, Any]:
    if with_source and pos is not None:
        data["source"] = source_to_json(pos)
    return data


def rule_to_json(rule: Rule, *, with_source: bool = True) -> dict[str, Any]:
    data = {
        "id": rule.id,
        "description": rule.description,
        "priority": rule.priority,
        "exclusive": rule.exclusive,
        "condition": condition_to_json(rule.condition),
        "actions": [action_to_json(a) for a in rule.actions],
        "limit": limit_to_json(rule.limit) if rule.limit is not None else None,
        "hold_days": rule.hold_days,
        "reverse_if": condition_to_json(rule.reverse_if) if rule.reverse_if is not None else None,
    }
    if rule.hold_from is not None:  # absent otherwise, so rules written before keep their hash
        data["hold_from"] = rule.hold_from
    return _with_source(data, rule.source, with_source)


def definition_to_json(definition: Definition, *, with_source: bool = True) -> dict[str, Any]:
    data = {"phrase": definition.phrase, "condition": condition_to_json(definition.condition)}
    return _with_source(data, definition.source, with_source)


def example_to_json(example: Example, *, with_source: bool = True) -> dict[str, Any]:
    data = {
        "name": example.name,
        "given": [{"path": p, "value": value_to_json(v)} for p, v in example.given],
        "expect": [{"to": e.to, "amount": money_to_json(e.amount)} for e in example.expect],
    }
    return _with_source(data, example.source, with_source)


def program_to_json(program: Program) -> dict[str, Any]:
    """The whole program as the versioned JSON model (CURRENCY and TIMEZONE when stated)."""
    data: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
    if program.currency is not None:
        data["currency"] = program.currency
    if program.timezone is not None:
        data["timezone"] = program.timezone
    return {
        **data,
        "definitions": [definition_to_json(d) for d in program.definitions],
        "rules": [rule_to_json(r) for r in program.rules],
        "examples": [example_to_json(e) for e in program.examples],
    }


def dumps(program: Program) -> str:
    """The JSON text written by ``rules compile``: indented, keys in model order, UTF-8 kept."""
    return json.dumps(program_to_json(program), indent=2, ensure_ascii=False) + "\n"


def rule_hash(rule: Rule) -> str:
    """Hex sha256 of the rule's meaning: same rule text anywhere -> same hash."""
    data = json.dumps(rule_to_json(rule, with_source=False), sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- decoding


def program_from_json(data: Any, filename: str = "<json>") -> Program:
    """Validate ``data`` and build exactly the Program that ``program_to_json`` encoded."""
    try:
        validate_model_json(data, filename)
        return _program(data)
    except MoneyError as e:  # a well-formed code that is not ISO 4217
        raise ModelSchemaError(f"{filename}: {e.message}") from None
    except RecursionError:  # validation and decoding recurse; check bounds what decodes
        raise ModelSchemaError(f"{filename}: conditions nest too deep (at most "
                               f"{MAX_NESTING} levels of AND, OR, NOT and lists)") from None


def _program(data: dict[str, Any]) -> Program:
    return Program(
        rules=tuple(_rule(r) for r in data["rules"]),
        definitions=tuple(
            Definition(d["phrase"], _condition(d["condition"]), _source(d))
            for d in data["definitions"]
        ),
        examples=tuple(_example(e) for e in data["examples"]),
        schema_version=data["schema_version"],
        currency=data.get("currency"),
        timezone=data.get("timezone"),
    )


def _source(data: dict[str, Any]) -> SourcePos | None:
    s = data.get("source")
    return SourcePos(s["file"], s["line"], s["column"]) if s else None


def _money(data: dict[str, Any]) -> Money:
    return Money(int(data["amount"]), data["currency"])


def _value(data: dict[str, Any]) -> Value:
    ((kind, v),) = data.items()
    if kind == "string":
        return v
    if kind == "int":
        return int(v)
    if kind == "decimal":
        return Decimal(v)
    if kind == "bool":
        return v
    if kind == "date":
        return date.fromisoformat(v)
    if kind == "money":
        return _money(v)
    if kind == "list":
        return tuple(_value(x) for x in v)
    if kind == "field":
        return FieldRef(v)
    return None


def _condition(data: dict[str, Any]) -> Condition:
    ((kind, v),) = data.items()
    if kind == "compare":
        return Compare(v["path"], v["op"], _value(v["value"]))
    if kind == "within":
        return Within(v["path"], int(v["days"]), v["of"], direction=v.get("direction", "of"))
    if kind == "and":
        return And(tuple(_condition(c) for c in v))
    if kind == "or":
        return Or(tuple(_condition(c) for c in v))
    if kind == "not":
        return Not(_condition(v))
    return PhraseRef(v)


def _action(data: dict[str, Any]) -> Action:
    if data["kind"] == "fixed":
        return FixedReward(_money(data["amount"]), data["to"])
    cap = data.get("cap")
    return PercentReward(
        Decimal(data["percent"]), data["of"], data["to"], _money(cap) if cap else None
    )


def _rule(data: dict[str, Any]) -> Rule:
    limit = data.get("limit")
    reverse_if = data.get("reverse_if")
    return Rule(
        id=data["id"],
        description=data.get("description"),
        condition=_condition(data["condition"]),
        actions=tuple(_action(a) for a in data["actions"]),
        priority=int(data.get("priority", 0)),
        exclusive=data.get("exclusive", False),
        limit=Limit(_money(limit["amount"]), limit["per"], limit["period"]) if limit else None,
        hold_days=int(data.get("hold_days", 0)),
        reverse_if=_condition(reverse_if) if reverse_if else None,
        source=_source(data),
        hold_from=data.get("hold_from"),
    )


def _example(data: dict[str, Any]) -> Example:
    return Example(
        name=data["name"],
        given=tuple((g["path"], _value(g["value"])) for g in data["given"]),
        expect=tuple(ExpectedReward(e["to"], _money(e["amount"])) for e in data["expect"]),
        source=_source(data),
    )
